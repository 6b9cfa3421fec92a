-- Sorted pages and filename search on the file list (docs/decisions.md, "Listing files").
--
-- Every sort key, in either direction (a btree is walked both ways), walks an index led by
-- organization_id, with the id as the tie-breaker that makes keyset cursors exact.
-- Newest-first already has files_organization_id_uploaded_at_idx.
create index files_organization_id_filename_idx
  on app.files (organization_id, filename, id)
  where deleted_at is null;
create index files_organization_id_size_idx
  on app.files (organization_id, file_size_bytes, id)
  where deleted_at is null;
-- The same with a status filter (beside V7's files_organization_id_status_uploaded_at_idx), so
-- a rare status in a large organization never walks all of its files.
create index files_organization_id_status_filename_idx
  on app.files (organization_id, status, filename, id)
  where deleted_at is null;
create index files_organization_id_status_size_idx
  on app.files (organization_id, status, file_size_bytes, id)
  where deleted_at is null;

-- A search (a case-insensitive substring of the name) cannot use a trigram index: under
-- row-level security the planner keeps a non-LEAKPROOF operator such as ILIKE out of index
-- scans (docs/rls.md, "Traps"). Comparisons of text are leakproof, so the search reads this
-- instead: every suffix of each live file's name, lowercased and cut to 24 characters, in which
-- a substring of the name is a prefix of some suffix, found by a range scan. ILIKE then checks
-- the few candidates. A tenant table like the others; kept by a trigger as names change.
create table app.file_name_suffixes (
  organization_id uuid not null references app.organizations (id),
  suffix          text collate "C" not null,
  file_id         uuid not null,
  primary key (organization_id, suffix, file_id)
);
alter table app.file_name_suffixes enable row level security;
alter table app.file_name_suffixes force row level security;
create policy tenant_isolation on app.file_name_suffixes
  using (organization_id = (select nullif(current_setting('app.org_id', true), '')::uuid))
  with check (organization_id = (select nullif(current_setting('app.org_id', true), '')::uuid));
grant select, insert, delete on app.file_name_suffixes to tenant_files_app;

-- The suffixes a name is found by; the search cuts its term the same way.
create function app.name_suffixes(p_name text) returns text[]
language sql immutable parallel safe
set search_path = pg_catalog, pg_temp
as $$
  select array_agg(distinct left(lower(substr(p_name, i)), 24) collate "C")
    from generate_series(1, length(p_name)) i
$$;

-- Runs as whoever changes the file (the app role, inside its tenant transaction), so the
-- suffix table's own policy checks every row it writes.
create function app.files_index_name() returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  if tg_op = 'UPDATE' then
    delete from app.file_name_suffixes s
     where s.organization_id = old.organization_id
       and s.suffix = any (app.name_suffixes(old.filename))
       and s.file_id = old.id;
  end if;
  if new.deleted_at is null then
    insert into app.file_name_suffixes (organization_id, suffix, file_id)
    select new.organization_id, suffix, new.id from unnest(app.name_suffixes(new.filename)) suffix;
  end if;
  return null;
end
$$;
create trigger files_index_name after insert or update of filename, deleted_at on app.files
  for each row execute function app.files_index_name();

grant execute on function app.name_suffixes(text) to tenant_files_app;
