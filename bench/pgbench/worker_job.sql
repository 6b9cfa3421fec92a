-- One validation job's statements (src/worker/job.rs), per job: the re-check read, then the
-- outcome write (here on a file that stays pending, so the statement does the same work every
-- time: the update finds and re-checks the row; rolled back so the file stays pending).
\startpipeline
begin;
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
\startpipeline
begin;
select set_config('app.org_id', :org, true), set_config('app.user_id', :usr, true),
       set_config('plan_cache_mode', 'force_generic_plan', true);
update app.files f
   set status = 'ready',
       mime_type = 'text/plain',
       error_message = null,
       processed_at = now()
 where f.id = :file::uuid
   and f.status = 'pending'
   and f.deleted_at is null
   and exists (select from app.users u
                where u.id = :usr::uuid
                  and u.organization_id = f.organization_id
                  and u.is_active);
rollback;
\endpipeline
