-- Fair share of the validation queue (#25). The relay claimed the oldest jobs across tenants,
-- so one organization's backlog (a bulk import, a broker outage drained) went out, all of it,
-- before any other organization's next upload. Now it claims in turns: every organization
-- with jobs waiting gets its oldest one into the batch, then its second oldest, and so on;
-- within a turn, oldest first. Together with the relay keeping the work queue shallow
-- (RELAY_QUEUE_DEPTH: a backlog waits here, in the outbox, where the order is decided), a
-- job of an organization without a backlog waits behind at most one queue's depth.
--
-- The organizations with jobs come from a skip scan of the (organization_id, created_at)
-- index (one probe per organization), and each organization's turns from the same index:
-- the cost of a claim grows with the number of organizations waiting, not with the backlog.

-- REGISTRY: app.outbox_claim (replaced; same signature and contract as V2's). Locks the rows
-- it returns (FOR UPDATE SKIP LOCKED) until the caller's transaction ends, so concurrent relays
-- never publish the same job at once. Safe: returns ids only; the worker re-checks everything
-- under the job's own tenant context.
create or replace function app.outbox_claim(p_limit integer)
returns table (id uuid, organization_id uuid, file_id uuid, user_id uuid)
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
  with recursive waiting (organization_id) as (
    (select o.organization_id from app.outbox o order by o.organization_id limit 1)
    union all
    select (select o.organization_id
              from app.outbox o
             where o.organization_id > w.organization_id
             order by o.organization_id
             limit 1)
      from waiting w
     where w.organization_id is not null
  ), turns as (
    select j.id, j.created_at, row_number() over (partition by w.organization_id order by j.created_at) as turn
      from waiting w
      cross join lateral (
        select o.id, o.created_at
          from app.outbox o
         where o.organization_id = w.organization_id
         order by o.created_at
         limit p_limit
      ) j
     where w.organization_id is not null
  ), batch as (
    select t.id, t.turn, t.created_at from turns t order by t.turn, t.created_at limit p_limit
  )
  select o.id, o.organization_id, o.file_id, o.user_id
    from batch b
    join app.outbox o on o.id = b.id
   order by b.turn, b.created_at
     for update of o skip locked
$$;
