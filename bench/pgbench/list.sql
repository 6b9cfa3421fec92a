-- GET /api/files?page=1&limit=20, with its total; `-D total=0` leaves the total out (the ceiling
-- the list target compares with: the page query alone, same round trip).
\startpipeline
begin;
select c.organization_id, c.user_id,
       set_config('plan_cache_mode', 'force_generic_plan', true),
       set_config('transaction_read_only', 'on', true)
  from app.credential_context('session', :org::uuid, :keyhash::bytea) c;
select f.id, f.organization_id, f.filename, f.file_size_bytes, f.mime_type, f.sha256, f.status,
       f.error_message, f.uploaded_at, f.processed_at, u.email as uploaded_by_email
  from (select * from app.files f
         where f.organization_id = (select nullif(current_setting('app.org_id', true), '')::uuid)
           and f.deleted_at is null
         order by f.uploaded_at desc, f.id desc
         limit 21  -- one row more than the page: whether there is a next one (`next_cursor`)
        offset 0) f
  join app.users u on u.organization_id = f.organization_id and u.id = f.uploaded_by
 order by f.uploaded_at desc, f.id desc;
\if :total
select case null::text
         when 'pending' then files_pending
         when 'ready' then files_ready
         when 'failed' then files_failed
         else files_pending + files_ready + files_failed
       end
  from app.organizations
 where id = (select nullif(current_setting('app.org_id', true), '')::uuid);
\endif
commit;
\endpipeline
