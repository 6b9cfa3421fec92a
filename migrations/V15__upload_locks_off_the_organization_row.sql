-- Every upload locks its organization's row: the reservation and the file's record update the
-- usage and status counters kept there (V1, V5, V9). A foreign key to that row adds a
-- FOR KEY SHARE lock per referencing row inserted, and a row that is being updated while others
-- hold such locks gets its locks recorded as multixacts, which every later locker must copy
-- and extend: with 32 uploads of one organization in flight, the replay of an upload's
-- statements fell from ~1,000 transactions/s (4 at once) to ~150 (docs/performance.md, "Small
-- uploads"). An upload inserted up to 13 such references (its file row, its outbox job, its
-- audit entry, its reservation and one row per character of its name in the search table).
--
-- Those references now point at rows that carry the organization and are not hot, or are
-- dropped where the row is derived data; the file row keeps its own foreign key to its
-- organization. Integrity stays with the database:
-- - an outbox job references its file *with* the file's organization (organization_id, file_id)
--   -> files (organization_id, id), still checked at commit (V8): a job can no longer name
--   another organization's file id either (foreign keys are checked without RLS);
-- - a reservation references its user with the user's organization
--   (organization_id, user_id) -> users (organization_id, id), which exists only in an
--   existing organization;
-- - audit entries are written under the policy's WITH CHECK, organization = the tenant's own
--   (registry functions write them for the organization they just read); organizations are
--   never deleted;
-- - search suffixes are kept by the files_index_name trigger from the file row itself (V12).

alter table app.outbox drop constraint outbox_organization_id_fkey;
alter table app.outbox drop constraint outbox_file_fkey;
alter table app.outbox add constraint outbox_file_fkey
  foreign key (organization_id, file_id) references app.files (organization_id, id)
  deferrable initially deferred;

alter table app.upload_reservations drop constraint upload_reservations_organization_id_fkey;
alter table app.upload_reservations add constraint upload_reservations_user_fkey
  foreign key (organization_id, user_id) references app.users (organization_id, id);

alter table app.audit_log drop constraint audit_log_organization_id_fkey;

alter table app.file_name_suffixes drop constraint file_name_suffixes_organization_id_fkey;
