-- Webhooks (#27, third part): an organization's endpoints, and one delivery row per event and
-- endpoint, written by a registry trigger in the transaction that writes the event (so a change,
-- its event and its deliveries commit together or not at all).
--
-- Delivery (src/worker/webhooks.rs): the relay claims due deliveries (`webhook_deliveries_claim`,
-- in turns across endpoints, a few of each at once), then publishes them to the webhook queue; the consumer begins an attempt
-- (`webhook_attempt_begin`, which reads the endpoint's secret: the app role cannot), posts it
-- signed, and records the outcome (`webhook_attempt_finish`), which schedules the next attempt
-- in `due_at` or ends the delivery, and disables an endpoint that has failed for too long. The
-- schedule lives here, not in broker TTLs: a retry a day away survives a broker that lost its
-- queues, and the list shows exactly when it is due.
--
-- Who: owners and admins manage endpoints and read deliveries (a restrictive policy); the app
-- role never reads a secret (column grants): the worker signs through the registry.

create table app.webhooks (
  organization_id       uuid not null references app.organizations (id),
  id                    uuid not null default gen_random_uuid(),
  url                   text not null constraint webhooks_url_length check (length(url) between 1 and 2048),
  description           text not null default '' constraint webhooks_description_length check (length(description) <= 500),
  events                text[] not null constraint webhooks_events_known check (
                          cardinality(events) between 1 and 10
                          and events <@ array['*',
                            'file.uploaded', 'file.ready', 'file.failed', 'file.deleted',
                            'member.joined', 'member.role_changed', 'member.deactivated',
                            'link.created', 'link.revoked']),
  secret                bytea not null constraint webhooks_secret_length check (length(secret) >= 24),
  -- After a rotation the old secret signs too until then (both signatures are sent).
  previous_secret       bytea,
  previous_secret_until timestamptz,
  enabled               boolean not null default true,
  -- Since when every attempt has failed (null after any success); past WEBHOOK_DISABLE_AFTER the
  -- endpoint is disabled.
  failing_since         timestamptz,
  disabled_at           timestamptz,
  created_by            uuid not null,
  created_at            timestamptz not null default now(),
  constraint webhooks_pkey primary key (organization_id, id),
  constraint webhooks_created_by_fkey foreign key (organization_id, created_by) references app.users (organization_id, id)
);

create table app.webhook_deliveries (
  organization_id uuid not null,
  id              uuid not null default gen_random_uuid(),
  webhook_id      uuid not null,
  event_seq       bigint not null,
  event_type      text not null,
  state           text not null default 'pending'
                    constraint webhook_deliveries_state_known check (state in ('pending', 'delivered', 'failed')),
  -- Published and not yet begun: the message that carries it may start an attempt.
  queued          boolean not null default false,
  -- An attempt has begun and its outcome is not recorded yet.
  attempting      boolean not null default false,
  attempts        integer not null default 0,
  last_status     integer,
  last_error      text,
  -- When the relay publishes it (again): the next attempt, or the end of an attempt's lease (a
  -- worker killed mid-attempt). Null once it is delivered or failed.
  due_at          timestamptz default now(),
  created_at      timestamptz not null default now(),
  finished_at     timestamptz,
  constraint webhook_deliveries_pkey primary key (organization_id, id),
  constraint webhook_deliveries_webhook_fkey foreign key (organization_id, webhook_id)
    references app.webhooks (organization_id, id) on delete cascade,
  -- An event past its retention takes its deliveries with it.
  constraint webhook_deliveries_event_fkey foreign key (organization_id, event_seq)
    references app.events (organization_id, seq) on delete cascade
);
-- The deliveries page of one endpoint, newest first.
create index webhook_deliveries_webhook_idx
  on app.webhook_deliveries (organization_id, webhook_id, created_at desc, id desc);
-- The event's cascade on prune.
create index webhook_deliveries_event_idx on app.webhook_deliveries (organization_id, event_seq);
-- The relay's claim: the endpoints with due deliveries (a skip scan), each one's due deliveries
-- and those in flight (the registry's webhook_deliveries_claim).
create index webhook_deliveries_pending_idx on app.webhook_deliveries (organization_id, webhook_id, due_at)
  where state = 'pending';

alter table app.webhooks enable row level security, force row level security;
alter table app.webhook_deliveries enable row level security, force row level security;

create policy tenant_isolation on app.webhooks as permissive for all to tenant_files_app, tenant_files_owner
  using (organization_id = (select nullif(s.setting, '')::uuid from (select current_setting('app.org_id', true)) s (setting)))
  with check (organization_id = (select nullif(s.setting, '')::uuid from (select current_setting('app.org_id', true)) s (setting)));
create policy registry on app.webhooks as permissive for all to tenant_files_definer
  using (current_user = 'tenant_files_definer') with check (current_user = 'tenant_files_definer');
create policy webhooks_managed_by_managers on app.webhooks as restrictive for all to tenant_files_app
  using ((select app.current_member_role()) in ('owner', 'admin'))
  with check ((select app.current_member_role()) in ('owner', 'admin'));

create policy tenant_isolation on app.webhook_deliveries as permissive for all to tenant_files_app, tenant_files_owner
  using (organization_id = (select nullif(s.setting, '')::uuid from (select current_setting('app.org_id', true)) s (setting)))
  with check (organization_id = (select nullif(s.setting, '')::uuid from (select current_setting('app.org_id', true)) s (setting)));
create policy registry on app.webhook_deliveries as permissive for all to tenant_files_definer
  using (current_user = 'tenant_files_definer') with check (current_user = 'tenant_files_definer');
create policy webhook_deliveries_seen_by_managers on app.webhook_deliveries as restrictive for all to tenant_files_app
  using ((select app.current_member_role()) in ('owner', 'admin'))
  with check ((select app.current_member_role()) in ('owner', 'admin'));

-- The app role writes secrets and never reads them back.
grant select (organization_id, id, url, description, events, enabled, failing_since, disabled_at, created_by, created_at),
      insert (organization_id, id, url, description, events, secret, created_by),
      update (secret, previous_secret_until),
      delete
   on app.webhooks to tenant_files_app;
grant select, update (enabled, failing_since, disabled_at) on app.webhooks to tenant_files_definer;
-- A retry by hand puts a delivery back to pending.
grant select, update (state, queued, due_at, finished_at) on app.webhook_deliveries to tenant_files_app;
grant select, insert, update on app.webhook_deliveries to tenant_files_definer;

-- A rotation keeps the old secret signing (until previous_secret_until, which the rotation
-- sets): the trigger moves it, since the app role may not read it to copy it itself.
create function app.webhooks_keep_previous_secret()
returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  if new.secret is distinct from old.secret then
    new.previous_secret := old.secret;
  end if;
  return new;
end
$$;
create trigger webhooks_keep_previous_secret before update of secret on app.webhooks
  for each row execute function app.webhooks_keep_previous_secret();

-- One delivery per enabled endpoint that takes the event, with the event. A registry trigger:
-- whoever caused the event (any member) may not read the organization's endpoints.
create function app.webhook_deliveries_fan_out()
returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  insert into app.webhook_deliveries (organization_id, webhook_id, event_seq, event_type)
  select w.organization_id, w.id, new.seq, new.type
    from app.webhooks w
   where w.organization_id = new.organization_id
     and w.enabled
     and (new.type = any (w.events) or '*' = any (w.events));
  return null;
end
$$;
alter function app.webhook_deliveries_fan_out() owner to tenant_files_definer;
revoke execute on function app.webhook_deliveries_fan_out() from public;
create trigger webhook_deliveries_fan_out after insert on app.events
  for each row execute function app.webhook_deliveries_fan_out();

-- The relay: due deliveries of every organization, in turns across endpoints (each endpoint
-- with due deliveries gets its oldest into the batch, then its second, ...), and no more of one
-- endpoint than p_per_endpoint queued or under way at once: a slow or backlogged endpoint holds
-- at most that many of the workers' delivery slots, and the others' deliveries go out beside
-- its backlog, not behind it. The endpoints come from a skip scan of the pending index (one
-- probe per endpoint with due deliveries): the cost grows with endpoints waiting, not with the
-- backlog. The claimed rows are locked while it runs (two relays never claim the same), and
-- committed queued and leased before the relay publishes them (a consumer then always finds its
-- delivery queued): should no attempt begin within the lease (a failed publish, a lost message),
-- they are due again.
create function app.webhook_deliveries_claim(p_limit integer, p_lease_seconds bigint, p_per_endpoint integer)
returns table (organization_id uuid, id uuid)
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
  with recursive due (organization_id, webhook_id) as (
    (select d.organization_id, d.webhook_id
       from app.webhook_deliveries d
      where d.state = 'pending' and d.due_at <= now()
      order by d.organization_id, d.webhook_id
      limit 1)
    union all
    select n.organization_id, n.webhook_id
      from due w
     cross join lateral (
       select d.organization_id, d.webhook_id
         from app.webhook_deliveries d
        where d.state = 'pending' and d.due_at <= now()
          and (d.organization_id, d.webhook_id) > (w.organization_id, w.webhook_id)
        order by d.organization_id, d.webhook_id
        limit 1) n
  ), turns as (
    select c.organization_id, c.id, c.due_at,
           row_number() over (partition by w.organization_id, w.webhook_id order by c.due_at) as turn
      from due w
     cross join lateral (
       select count(*) as n
         from app.webhook_deliveries f
        where f.organization_id = w.organization_id and f.webhook_id = w.webhook_id
          and f.state = 'pending' and f.due_at > now() and (f.queued or f.attempting)) busy
     cross join lateral (
       select d.organization_id, d.id, d.due_at
         from app.webhook_deliveries d
        where d.organization_id = w.organization_id and d.webhook_id = w.webhook_id
          and d.state = 'pending' and d.due_at <= now()
        order by d.due_at
        limit greatest(p_per_endpoint - busy.n, 0)) c
  ), batch as (
    select t.organization_id, t.id from turns t order by t.turn, t.due_at limit p_limit
  ), locked as (
    select d.organization_id, d.id
      from batch b
      join app.webhook_deliveries d on d.organization_id = b.organization_id and d.id = b.id
       for update of d skip locked
  )
  update app.webhook_deliveries d
     set queued = true, attempting = false, due_at = now() + make_interval(secs => p_lease_seconds)
    from locked l
   where d.organization_id = l.organization_id and d.id = l.id
  returning d.organization_id, d.id
$$;
alter function app.webhook_deliveries_claim(integer, bigint, integer) owner to tenant_files_definer;
revoke execute on function app.webhook_deliveries_claim(integer, bigint, integer) from public;
grant execute on function app.webhook_deliveries_claim(integer, bigint, integer) to tenant_files_app;

-- The consumer: begins an attempt of a queued delivery (a duplicate message, or one for a
-- delivery already done, begins nothing: no row) and returns what to send and how to sign it.
-- The attempt is leased: a worker that dies in it leaves it due again when the lease ends.
create function app.webhook_attempt_begin(p_org uuid, p_id uuid, p_lease_seconds bigint)
returns table (url text, secret bytea, previous_secret bytea, enabled boolean, attempts integer,
               event_type text, event_created_at timestamptz, data jsonb)
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
  with begun as (
    update app.webhook_deliveries d
       set queued = false, attempting = true, attempts = d.attempts + 1,
           due_at = now() + make_interval(secs => p_lease_seconds)
     where d.organization_id = p_org and d.id = p_id and d.state = 'pending' and d.queued
    returning d.organization_id, d.webhook_id, d.event_seq, d.attempts
  )
  select w.url, w.secret,
         case when w.previous_secret_until > now() then w.previous_secret end,
         w.enabled, b.attempts, e.type, e.created_at, e.data
    from begun b
    join app.webhooks w on w.organization_id = b.organization_id and w.id = b.webhook_id
    join app.events e on e.organization_id = b.organization_id and e.seq = b.event_seq
$$;
alter function app.webhook_attempt_begin(uuid, uuid, bigint) owner to tenant_files_definer;
revoke execute on function app.webhook_attempt_begin(uuid, uuid, bigint) from public;
grant execute on function app.webhook_attempt_begin(uuid, uuid, bigint) to tenant_files_app;

-- The consumer: the outcome of an attempt. Delivered; or failed, due again in p_retry_seconds
-- (null: no attempts left, the delivery is failed). An endpoint whose every attempt has failed
-- for p_disable_after_seconds is disabled, once, with a `webhook.disabled` audit entry; returns
-- whether this outcome disabled it.
create function app.webhook_attempt_finish(p_org uuid, p_id uuid, p_delivered boolean, p_status integer,
                                           p_error text, p_retry_seconds bigint, p_disable_after_seconds bigint)
returns boolean
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  hook uuid;
  disabled app.webhooks%rowtype;
begin
  update app.webhook_deliveries d
     set attempting = false,
         state = case when p_delivered then 'delivered' when p_retry_seconds is null then 'failed' else 'pending' end,
         last_status = p_status,
         last_error = left(p_error, 500),
         due_at = case when not p_delivered and p_retry_seconds is not null
                       then now() + make_interval(secs => p_retry_seconds) end,
         finished_at = case when p_delivered or p_retry_seconds is null then now() end
   where d.organization_id = p_org and d.id = p_id and d.state = 'pending'
  returning d.webhook_id into hook;
  if hook is null then
    return false;
  end if;
  if p_delivered then
    update app.webhooks w set failing_since = null
     where w.organization_id = p_org and w.id = hook and w.failing_since is not null;
    return false;
  end if;
  update app.webhooks w set failing_since = coalesce(w.failing_since, now())
   where w.organization_id = p_org and w.id = hook;
  update app.webhooks w set enabled = false, disabled_at = now()
   where w.organization_id = p_org and w.id = hook and w.enabled
     and w.failing_since <= now() - make_interval(secs => p_disable_after_seconds)
  returning * into disabled;
  if disabled.id is null then
    return false;
  end if;
  insert into app.audit_log (organization_id, actor_user_id, action, target_type, target_id, details)
  values (p_org, null, 'webhook.disabled', 'webhook', hook,
          jsonb_build_object('url', disabled.url, 'failing_since', disabled.failing_since,
                             'last_status', p_status, 'last_error', left(p_error, 500)));
  return true;
end
$$;
alter function app.webhook_attempt_finish(uuid, uuid, boolean, integer, text, bigint, bigint) owner to tenant_files_definer;
revoke execute on function app.webhook_attempt_finish(uuid, uuid, boolean, integer, text, bigint, bigint) from public;
grant execute on function app.webhook_attempt_finish(uuid, uuid, boolean, integer, text, bigint, bigint) to tenant_files_app;
