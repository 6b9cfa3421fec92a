-- Background validation: the transactional outbox, the purge queue for deleted files' bytes, and
-- the registry functions the worker uses to cross tenants. See docs/worker.md and docs/rls.md.

------------------------------------------------------------------------------------------------
-- 1. Outbox: a validation job is written in the same transaction as its file row, so a job
--    exists if and only if the upload committed. The relay publishes and then deletes it.
------------------------------------------------------------------------------------------------
create table app.outbox (
  id              uuid primary key,           -- becomes the message's job_id
  organization_id uuid not null references app.organizations (id),
  file_id         uuid not null,
  user_id         uuid not null,
  created_at      timestamptz not null default now(),
  updated_at      timestamptz not null default now(),
  constraint outbox_file_fkey foreign key (file_id) references app.files (id)
);
create index outbox_organization_id_created_at_idx on app.outbox (organization_id, created_at);
-- The relay reads oldest first across tenants.
create index outbox_created_at_idx on app.outbox (created_at);
create trigger outbox_updated_at before update on app.outbox
  for each row execute function app.touch_updated_at();

alter table app.outbox enable row level security;
alter table app.outbox force row level security;
create policy tenant_isolation on app.outbox
  using (organization_id = (select app.current_org_id()))
  with check (organization_id = (select app.current_org_id()));

-- The service only ever adds jobs for its own tenant; reading and deleting is the relay's,
-- through the registry.
grant insert on app.outbox to tenant_files_app;
-- (UPDATE on one column only because SELECT ... FOR UPDATE requires an UPDATE privilege.)
grant select, delete, update (updated_at) on app.outbox to tenant_files_definer;

-- REGISTRY: app.outbox_claim. The relay must see every tenant's pending jobs. Locks the rows it
-- returns (FOR UPDATE SKIP LOCKED) until the caller's transaction ends, so concurrent relays
-- never publish the same job at once. Safe: returns ids only (no file contents, names or
-- users' data); the worker re-checks everything under the job's own tenant context.
create function app.outbox_claim(p_limit integer)
returns table (id uuid, organization_id uuid, file_id uuid, user_id uuid)
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
  select o.id, o.organization_id, o.file_id, o.user_id
    from app.outbox o
   order by o.created_at
   limit p_limit
     for update skip locked
$$;

-- REGISTRY: app.outbox_delete. Removes jobs once the broker confirmed them. Safe: deletes only
-- the given outbox rows, which the caller holds locked from outbox_claim.
create function app.outbox_delete(p_ids uuid[])
returns void
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
  delete from app.outbox where id = any(p_ids)
$$;

------------------------------------------------------------------------------------------------
-- 2. Stuck jobs: a file pending too long (lost message, crash between steps) gets a new job.
------------------------------------------------------------------------------------------------
-- A constant default fills existing rows without an UPDATE (which the owner, under forced RLS,
-- could not see anyway).
alter table app.files add column enqueued_at timestamptz not null default now();
grant select, update (enqueued_at) on app.files to tenant_files_definer;
grant insert on app.outbox to tenant_files_definer;

-- REGISTRY: app.requeue_stale_pending. Periodic sweep: for every live file still pending after
-- p_older_than_seconds since its last job, writes a new outbox job (for the uploader) and
-- restamps it, so nothing stays pending forever. Safe: writes only outbox rows that copy a
-- file's own organization and uploader; the job is re-authorized by the worker as usual.
create function app.requeue_stale_pending(p_older_than_seconds bigint, p_limit integer)
returns integer
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
  with stale as (
    select f.id, f.organization_id, f.uploaded_by
      from app.files f
     where f.status = 'pending'
       and f.deleted_at is null
       and f.enqueued_at < now() - make_interval(secs => p_older_than_seconds)
       and not exists (select from app.outbox o where o.file_id = f.id)
     order by f.enqueued_at
     limit p_limit
       for update of f skip locked
  ), restamped as (
    update app.files f
       set enqueued_at = now()
      from stale
     where f.id = stale.id
    returning f.id, f.organization_id, f.uploaded_by
  ), queued as (
    insert into app.outbox (id, organization_id, file_id, user_id)
    select gen_random_uuid(), organization_id, id, uploaded_by
      from restamped
    returning 1
  )
  select count(*)::integer from queued
$$;
create index files_pending_enqueued_at_idx on app.files (enqueued_at)
  where status = 'pending' and deleted_at is null;

------------------------------------------------------------------------------------------------
-- 3. Purge: the bytes of soft-deleted files are removed in the background. The soft delete
--    enqueues the file here in the same statement (trigger), so none is forgotten.
------------------------------------------------------------------------------------------------
create table app.purge_queue (
  file_id         uuid primary key references app.files (id),
  organization_id uuid not null references app.organizations (id),
  created_at      timestamptz not null default now(),
  updated_at      timestamptz not null default now()
);
create index purge_queue_organization_id_idx on app.purge_queue (organization_id, created_at);
create trigger purge_queue_updated_at before update on app.purge_queue
  for each row execute function app.touch_updated_at();
alter table app.purge_queue enable row level security;
alter table app.purge_queue force row level security;
create policy tenant_isolation on app.purge_queue
  using (organization_id = (select app.current_org_id()))
  with check (organization_id = (select app.current_org_id()));
grant insert on app.purge_queue to tenant_files_app;
grant select, delete, update (updated_at) on app.purge_queue to tenant_files_definer;

-- Runs as the deleting user (invoker): the policy admits only their own organization's row.
create function app.files_enqueue_purge() returns trigger
language plpgsql
as $$
begin
  if old.deleted_at is null and new.deleted_at is not null then
    insert into app.purge_queue (file_id, organization_id) values (new.id, new.organization_id);
  end if;
  return null;
end
$$;
grant execute on function app.files_enqueue_purge() to tenant_files_app;
create trigger files_enqueue_purge after update of deleted_at on app.files
  for each row execute function app.files_enqueue_purge();

-- REGISTRY: app.purge_claim. The purger must see deleted files of every tenant. Returns and
-- locks (until the caller's transaction ends) up to p_limit entries. Safe: ids only, and only
-- of files that are already deleted.
create function app.purge_claim(p_limit integer)
returns table (file_id uuid, organization_id uuid)
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
  select q.file_id, q.organization_id
    from app.purge_queue q
   order by q.created_at
   limit p_limit
     for update skip locked
$$;

-- REGISTRY: app.purge_done. Forgets entries whose bytes are gone. Safe: deletes only the given
-- queue entries; the files rows stay, deleted.
create function app.purge_done(p_file_ids uuid[])
returns void
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
  delete from app.purge_queue where file_id = any(p_file_ids)
$$;

------------------------------------------------------------------------------------------------
-- 4. The worker's write: validation outcome, re-authorized in the same statement.
------------------------------------------------------------------------------------------------
-- The app role already may UPDATE status, mime_type, error_message, processed_at (V1).

alter function app.outbox_claim(integer) owner to tenant_files_definer;
alter function app.outbox_delete(uuid[]) owner to tenant_files_definer;
alter function app.requeue_stale_pending(bigint, integer) owner to tenant_files_definer;
alter function app.purge_claim(integer) owner to tenant_files_definer;
alter function app.purge_done(uuid[]) owner to tenant_files_definer;

grant execute on function
  app.outbox_claim(integer),
  app.outbox_delete(uuid[]),
  app.requeue_stale_pending(bigint, integer),
  app.purge_claim(integer),
  app.purge_done(uuid[])
to tenant_files_app;
