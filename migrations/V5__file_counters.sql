-- Per-organization file counts by status, kept by the database in the same statement as every
-- change, so the list endpoint's total costs one row read instead of a count over the
-- organization's files (O(1) instead of O(files)). Exact under concurrency: the counters live
-- on the organization row, which every upload already locks for the quota.

alter table app.organizations
  add column files_pending bigint not null default 0 check (files_pending >= 0),
  add column files_ready   bigint not null default 0 check (files_ready >= 0),
  add column files_failed  bigint not null default 0 check (files_failed >= 0);

grant update (files_pending, files_ready, files_failed) on app.organizations to tenant_files_definer;

-- Backfill existing rows. The owner is subject to the forced policies like everyone else, so
-- it lifts FORCE for the two tables for the length of this migration's transaction only (a
-- failure rolls the whole migration back, FORCE included); the audit checks it is back.
alter table app.organizations no force row level security;
alter table app.files no force row level security;
update app.organizations o
   set files_pending = (select count(*) from app.files f
                         where f.organization_id = o.id and f.deleted_at is null and f.status = 'pending'),
       files_ready   = (select count(*) from app.files f
                         where f.organization_id = o.id and f.deleted_at is null and f.status = 'ready'),
       files_failed  = (select count(*) from app.files f
                         where f.organization_id = o.id and f.deleted_at is null and f.status = 'failed');
alter table app.organizations force row level security;
alter table app.files force row level security;

-- REGISTRY: app.files_track_usage (SECURITY DEFINER trigger), now also counting files by
-- status. Same safety argument as before: it only touches the organization of the row being
-- written, which the files policy has already checked.
create or replace function app.files_track_usage() returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  was_live boolean := tg_op = 'UPDATE' and old.deleted_at is null;
  is_live boolean := new.deleted_at is null;
begin
  if tg_op = 'INSERT' then
    update app.organizations
       set storage_used_bytes = storage_used_bytes + new.file_size_bytes,
           files_pending = files_pending + (new.status = 'pending')::int,
           files_ready   = files_ready   + (new.status = 'ready')::int,
           files_failed  = files_failed  + (new.status = 'failed')::int
     where id = new.organization_id;
  elsif was_live and (not is_live or new.status is distinct from old.status) then
    update app.organizations
       set storage_used_bytes = storage_used_bytes - case when is_live then 0 else old.file_size_bytes end,
           files_pending = files_pending - (old.status = 'pending')::int + (is_live and new.status = 'pending')::int,
           files_ready   = files_ready   - (old.status = 'ready')::int   + (is_live and new.status = 'ready')::int,
           files_failed  = files_failed  - (old.status = 'failed')::int  + (is_live and new.status = 'failed')::int
     where id = old.organization_id;
  end if;
  return null;
end
$$;

drop trigger files_track_usage on app.files;
create trigger files_track_usage after insert or update of deleted_at, status on app.files
  for each row execute function app.files_track_usage();
