-- `files.file_path` was written by every upload and read by nothing: the object store's key is
-- `<organization_id>/<id>`, which the service computes from the ids it already has
-- (`FileStore::key`). The column stays (DESIGN's schema names it, and a DBA holding a row
-- wants to know where its bytes are), but as what it always was, a function of the row's ids:
-- generated, so that it cannot disagree with where the bytes are, and nothing sends it.
--
-- Every existing row holds exactly this value (both backends used the same key). Adding a
-- stored generated column rewrites the table under an ACCESS EXCLUSIVE lock: on a large
-- deployment, run it in a maintenance window (docs/deploy.md, "Migrations that lock").
alter table app.files drop column file_path;
alter table app.files
  add column file_path text not null
  generated always as (organization_id::text || '/' || id::text) stored;
comment on column app.files.file_path is
  'The object store key of the file''s bytes (generated from the ids; FileStore::key).';
