-- Search and sort on the file list (docs/decisions.md, "Listing files"): every combination of
-- sort key and direction walks an index led by organization_id, and a filename search uses a
-- trigram index led by it too. pg_trgm (trigram matching for ILIKE) and btree_gin (so a GIN
-- index can lead with the uuid organization_id) are contrib extensions that PostgreSQL trusts:
-- the database owner may create them. They live in a schema of their own, so schema app holds
-- only our objects (rls-audit checks every function there), and nobody is granted anything on it.
create schema if not exists extensions;
revoke all on schema extensions from public;
create extension if not exists pg_trgm with schema extensions;
create extension if not exists btree_gin with schema extensions;

-- Sorted pages (either direction: a btree is walked both ways), the id as the tie-breaker that
-- makes keyset cursors exact. Newest-first already has files_organization_id_uploaded_at_idx.
create index files_organization_id_filename_idx
  on app.files (organization_id, filename, id)
  where deleted_at is null;
create index files_organization_id_size_idx
  on app.files (organization_id, file_size_bytes, id)
  where deleted_at is null;
-- Case-insensitive substring search (filename ILIKE '%…%') within one organization.
create index files_organization_id_filename_trgm_idx
  on app.files using gin (organization_id, filename extensions.gin_trgm_ops)
  where deleted_at is null;
