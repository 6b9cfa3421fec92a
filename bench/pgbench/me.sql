-- GET /api/auth/me.
select state, user_id, organization_id, role from app.session_load(:keyhash::bytea);
\startpipeline
begin;
select set_config('app.org_id', :org, true), set_config('app.user_id', :usr, true),
       set_config('plan_cache_mode', 'force_generic_plan', true);
select u.id, u.email, u.role, o.id as organization_id, o.name as organization_name
  from app.users u
  join app.organizations o on o.id = u.organization_id
 where u.id = :usr::uuid
   and u.is_active;
rollback;
\endpipeline
