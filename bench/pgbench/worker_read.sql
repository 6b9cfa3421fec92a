-- A validation job's re-check read (src/worker/job.rs, db::files::find_pending), one per job:
-- BEGIN READ ONLY, the tenant context, the read and the ROLLBACK in one round trip.
\startpipeline
begin read only;
select set_config('app.org_id', :org, true), set_config('app.user_id', :usr, true),
       set_config('plan_cache_mode', 'force_generic_plan', true);
select f.filename, f.file_size_bytes, f.sha256,
       o.storage_used_bytes <= o.storage_quota_mb * 1048576 as org_within_quota
  from app.files f
  join app.organizations o on o.id = f.organization_id
  join app.users u on u.id = :usr::uuid and u.organization_id = f.organization_id
 where f.id = :file::uuid
   and f.status = 'pending'
   and f.deleted_at is null
   and u.is_active;
rollback;
\endpipeline
