-- A batch of validation outcomes (src/worker/outcomes.rs, db::files::record_outcomes): BEGIN,
-- the tenant context, the batch's UPDATE and COMMIT in one round trip, committed like the
-- service's. Each pgbench client has its own files (bench.batches, seeded by bench/jobs.sh with
-- as many files as the service's mean batch); to do the same work every time, each run marks
-- them ready and then pending again, both with the service's statement (whose expected status
-- is a parameter): two batches per run.
select ids, ready, pending, mime_types, errors, expect_pending, expect_ready
  from bench.batches where client = :client_id \gset
\startpipeline
begin;
select set_config('app.org_id', :org, true), set_config('app.user_id', :usr, true),
       set_config('plan_cache_mode', 'force_generic_plan', true),
       set_config('transaction_read_only', 'off', true);
update app.files f
   set status = v.status,
       mime_type = v.mime_type,
       error_message = v.error_message,
       processed_at = now()
  from unnest(:ids::uuid[], :ready::text[], :mime_types::text[], :errors::text[]) as v (id, status, mime_type, error_message)
 where f.id = v.id
   and f.status = :expect_pending
   and f.deleted_at is null
   and exists (select from app.users u
                where u.id = :usr::uuid
                  and u.organization_id = f.organization_id
                  and u.is_active)
returning f.id;
commit;
\endpipeline
\startpipeline
begin;
select set_config('app.org_id', :org, true), set_config('app.user_id', :usr, true),
       set_config('plan_cache_mode', 'force_generic_plan', true),
       set_config('transaction_read_only', 'off', true);
update app.files f
   set status = v.status,
       mime_type = v.mime_type,
       error_message = v.error_message,
       processed_at = now()
  from unnest(:ids::uuid[], :pending::text[], :mime_types::text[], :errors::text[]) as v (id, status, mime_type, error_message)
 where f.id = v.id
   and f.status = :expect_ready
   and f.deleted_at is null
   and exists (select from app.users u
                where u.id = :usr::uuid
                  and u.organization_id = f.organization_id
                  and u.is_active)
returning f.id;
commit;
\endpipeline
