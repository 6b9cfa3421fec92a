-- Resumable uploads that never lose what a client was told is stored (#22).
--
-- Completion is one commit: the last chunk's record, the upload's end (offset = length) and the
-- file row it became, with its job, reservation release and audit entry. `file_id` names that
-- file, and the check below makes "offset = length" and "the file exists" one fact: no row can
-- say an upload is whole unless its file was committed with it (the foreign key is deferred to
-- the commit, which inserts the file in a later statement of the same transaction). A completed
-- upload's row stays until its expiry, so HEAD keeps answering offset = length (and the file's
-- id) to a client whose final response was lost.
--
-- One PATCH per upload at a time: a lease (holder and deadline) taken when a PATCH starts,
-- extended while it stores chunks, given back when it ends; a second PATCH meanwhile gets 423.
-- A lease left by a killed process lapses at its deadline, seconds later.

-- Rows the old code left "complete" without a file (a completion cut off after its last chunk
-- was recorded): their last chunk is forgotten, so the client resends it and the upload
-- completes the new way. (The forgotten chunk's object is an orphan, as after any cut-off write.)
update app.tus_uploads
   set upload_offset = upload_offset - (chunks -> -1 ->> 'size')::bigint,
       chunks = chunks - (jsonb_array_length(chunks) - 1)
 where upload_offset = upload_length
   and jsonb_array_length(chunks) > 0;

alter table app.tus_uploads
  add column file_id uuid,
  add column lease_holder uuid,
  add column lease_until timestamptz,
  add constraint tus_uploads_file_fkey foreign key (organization_id, file_id)
    references app.files (organization_id, id) on delete cascade
    deferrable initially deferred,
  add constraint tus_uploads_whole_only_with_its_file
    check ((upload_offset = upload_length) = (file_id is not null)),
  add constraint tus_uploads_lease_whole check ((lease_holder is null) = (lease_until is null));

grant update (file_id, lease_holder, lease_until) on app.tus_uploads to tenant_files_app;
