-- GET /api/files/{id}: exactly what the service sends, in the same round trips.
-- Round trip 1: the session load (actix-session -> app.session_load).
select state, user_id, organization_id, role from app.session_load(:keyhash::bytea);
-- Round trip 2: BEGIN, the tenant context and the query, pipelined; the read ends with a
-- ROLLBACK the response does not wait for (sent here in the same pipeline).
\startpipeline
begin;
select set_config('app.org_id', :org, true), set_config('app.user_id', :usr, true),
       set_config('plan_cache_mode', 'force_generic_plan', true);
select f.id, f.filename, f.file_size_bytes, f.mime_type, f.sha256, f.status,
       f.error_message, f.uploaded_at, f.processed_at, u.email as uploaded_by_email
  from app.files f
  join app.users u on u.id = f.uploaded_by
 where f.id = :file::uuid
   and f.deleted_at is null;
rollback;
\endpipeline
