-- Sorted pages of the file list (docs/decisions.md, "Listing files"): every sort key, in either
-- direction (a btree is walked both ways), walks an index led by organization_id, with the id
-- as the tie-breaker that makes keyset cursors exact. Newest-first already has
-- files_organization_id_uploaded_at_idx.
--
-- A filename search (ILIKE '%…%') has no index here on purpose: under row-level security the
-- planner may not evaluate a non-LEAKPROOF operator such as ILIKE inside an index scan before
-- the policy's own condition, so a trigram index would never be used (docs/rls.md, "Traps").
-- A search walks the sort order's index and filters.
create index files_organization_id_filename_idx
  on app.files (organization_id, filename, id)
  where deleted_at is null;
create index files_organization_id_size_idx
  on app.files (organization_id, file_size_bytes, id)
  where deleted_at is null;
