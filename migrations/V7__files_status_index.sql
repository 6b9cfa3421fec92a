-- The list filtered by status (`GET /api/files?status=failed`) walked the organization's whole
-- index and filtered: ~400 ms for a rare status in an organization of 1,000,000 files. Led by
-- organization_id like every tenant index; same order and same partial predicate as the list's
-- own index, so a filtered page reads as few entries as an unfiltered one.
create index files_organization_id_status_uploaded_at_idx
  on app.files (organization_id, status, uploaded_at desc, id desc)
  where deleted_at is null;
