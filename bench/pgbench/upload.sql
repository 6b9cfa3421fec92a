-- POST /api/files/upload of a 4 KB file: exactly what the service sends, in the same round
-- trips (the bytes themselves go to the store between round trips 2 and 3).
\set n random(1, 9000000000000000)
-- Round trip 1: the session load.
select user_id, organization_id, role from app.credential('session', :org::uuid, :keyhash::bytea);
-- Round trip 2: the upload's reservation (quota and slot), a write of its own.
\startpipeline
begin;
select set_config('app.org_id', :org, true), set_config('app.user_id', :usr, true),
       set_config('plan_cache_mode', 'force_generic_plan', true),
       set_config('transaction_read_only', 'off', true);
with rules as (select o.max_file_bytes from app.organizations o where o.id = :org::uuid),
reserved as (
  insert into app.upload_reservations (id, organization_id, user_id, bytes, expires_at, receiving_until)
  select md5('f' || :n)::uuid, :org::uuid, :usr::uuid, least(4300, coalesce(r.max_file_bytes, 4300)),
         now() + make_interval(secs => 3600::float8), now() + make_interval(secs => 40::float8)
    from rules r
  returning 1
)
select r.max_file_bytes, (select count(*) from reserved) as reserved from rules r;
commit;
\endpipeline
-- Round trip 3 (once the bytes are in place): the file row, its job, the reservation's release
-- and the audit entry in one statement, sent with BEGIN, the context and COMMIT.
\startpipeline
begin;
select set_config('app.org_id', :org, true), set_config('app.user_id', :usr, true),
       set_config('plan_cache_mode', 'force_generic_plan', true),
       set_config('transaction_read_only', 'off', true);
with file as (
  insert into app.files (id, organization_id, filename, file_size_bytes, sha256, uploaded_by)
  values (md5('f' || :n)::uuid, :org::uuid, 'small.txt', 4096,
          repeat('a', 64), :usr::uuid)
), job as (
  insert into app.outbox (id, organization_id, file_id, user_id)
  values (md5('j' || :n)::uuid, :org::uuid, md5('f' || :n)::uuid, :usr::uuid)
), released as (
  delete from app.upload_reservations where id = md5('f' || :n)::uuid
)
insert into app.audit_log (organization_id, actor_user_id, action, target_type, target_id, details, request_id)
values (:org::uuid, :usr::uuid, 'file_uploaded', 'file', md5('f' || :n)::uuid,
        '{"filename": "small.txt", "size": 4096}'::jsonb, 'bench');
commit;
\endpipeline
