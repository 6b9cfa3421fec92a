-- The organization's usage and status counters (V1, V5) are kept once per statement instead of
-- once per row. The worker records a batch of validation outcomes in one UPDATE
-- (docs/worker.md, "Outcomes in batches"): with a row-level trigger that statement would update
-- its organization's row once per file, leaving as many dead versions of that row for every
-- reader of the counters to step over. Now each statement adds up its rows' changes per
-- organization from its transition tables and updates each organization's row once. Same
-- arithmetic as V5, same transaction, same quota CHECK: exact under concurrency as before.
--
-- PostgreSQL allows transition tables only on triggers without a column list, so the update
-- trigger now fires for every UPDATE of app.files (a rename, say); such a statement changes no
-- status and no deletion, finds nothing to add up, and touches no organization.

-- REGISTRY: app.files_track_usage (SECURITY DEFINER trigger), unchanged in what it may do: it
-- only touches the organizations of the rows the statement wrote, which the files policy has
-- already checked (under RLS that is the tenant's own organization).
create or replace function app.files_track_usage() returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  if tg_op = 'INSERT' then
    update app.organizations o
       set storage_used_bytes = storage_used_bytes + d.bytes,
           files_pending = files_pending + d.pending,
           files_ready   = files_ready   + d.ready,
           files_failed  = files_failed  + d.failed
      from (select organization_id,
                   sum(file_size_bytes) as bytes,
                   count(*) filter (where status = 'pending') as pending,
                   count(*) filter (where status = 'ready') as ready,
                   count(*) filter (where status = 'failed') as failed
              from inserted_files
             group by organization_id) d
     where o.id = d.organization_id;
  else
    -- A row counts while it is live: a soft delete gives back its bytes and its status count;
    -- a status change of a live row moves one count (rows are never undeleted: V1's
    -- files_deleted_are_final).
    update app.organizations o
       set storage_used_bytes = storage_used_bytes - d.freed_bytes,
           files_pending = files_pending + d.pending,
           files_ready   = files_ready   + d.ready,
           files_failed  = files_failed  + d.failed
      from (select b.organization_id,
                   coalesce(sum(b.file_size_bytes) filter (where a.deleted_at is not null), 0) as freed_bytes,
                   sum((a.deleted_at is null and a.status = 'pending')::int - (b.status = 'pending')::int) as pending,
                   sum((a.deleted_at is null and a.status = 'ready')::int   - (b.status = 'ready')::int)   as ready,
                   sum((a.deleted_at is null and a.status = 'failed')::int  - (b.status = 'failed')::int)  as failed
              from changed_files_before b
              join changed_files_after a on a.id = b.id
             where b.deleted_at is null
               and (a.deleted_at is not null or a.status is distinct from b.status)
             group by b.organization_id) d
     where o.id = d.organization_id;
  end if;
  return null;
end
$$;

drop trigger files_track_usage on app.files;
create trigger files_track_usage_insert after insert on app.files
  referencing new table as inserted_files
  for each statement execute function app.files_track_usage();
create trigger files_track_usage_update after update on app.files
  referencing old table as changed_files_before new table as changed_files_after
  for each statement execute function app.files_track_usage();

-- The same statement passes every row of a batch through the BEFORE UPDATE triggers; the guard
-- that deleted files stay deleted (V1) now runs its function only for a row that is deleted, the
-- one case in which it refuses (a WHEN condition is evaluated without calling PL/pgSQL).
drop trigger files_deleted_are_final on app.files;
create trigger files_deleted_are_final before update on app.files
  for each row when (old.deleted_at is not null) execute function app.files_deleted_are_final();
