-- GET /api/files/{id}: exactly what the service sends, in the same round trip: BEGIN, the
-- session resolved as the tenant context (read-only), the query and COMMIT, pipelined.
\startpipeline
begin;
select c.organization_id, c.user_id,
       set_config('plan_cache_mode', 'force_generic_plan', true),
       set_config('transaction_read_only', 'on', true)
  from app.credential_context('session', :org::uuid, :keyhash::bytea) c;
select f.id, f.organization_id, f.filename, f.file_size_bytes, f.mime_type, f.sha256,
       f.status, f.error_message, f.uploaded_at, f.processed_at, u.email as uploaded_by_email
  from app.files f
  join app.users u on u.organization_id = f.organization_id and u.id = f.uploaded_by
 where f.id = :file::uuid
   and f.deleted_at is null;
commit;
\endpipeline
