-- GET /api/auth/me: one round trip, the session resolved in the read's own transaction.
\startpipeline
begin;
select c.organization_id, c.user_id,
       set_config('plan_cache_mode', 'force_generic_plan', true),
       set_config('transaction_read_only', 'on', true)
  from app.credential_context('session', :org::uuid, :keyhash::bytea) c;
select u.id, u.email, u.role, o.id as organization_id, o.name as organization_name
  from app.users u
  join app.organizations o on o.id = u.organization_id
 where u.id = (select nullif(current_setting('app.user_id', true), '')::uuid)
   and u.is_active;
commit;
\endpipeline
