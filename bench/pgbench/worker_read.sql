-- A validation job's re-check read (src/worker/job.rs, db::files::find_pending), one per job:
-- BEGIN, the tenant context (read-only), the read and the COMMIT in one round trip.
\startpipeline
begin;
select set_config('app.org_id', :org, true), set_config('app.user_id', :usr, true),
       set_config('plan_cache_mode', 'force_generic_plan', true),
       set_config('transaction_read_only', 'on', true);
select f.filename, f.file_size_bytes, f.sha256,
       o.storage_used_bytes <= o.storage_quota_mb * 1048576 as org_within_quota
  from app.files f
  join app.organizations o on o.id = f.organization_id
  join app.users u on u.id = (select nullif(current_setting('app.user_id', true), '')::uuid) and u.organization_id = f.organization_id
 where f.id = :file::uuid
   and f.status = 'pending'
   and f.deleted_at is null
   and u.is_active;
commit;
\endpipeline
