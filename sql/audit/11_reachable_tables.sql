-- Every table the app role can reach (in a schema it has USAGE on, whatever the schema) has
-- row-level security enabled and forced, so that a grant added later still shows no row
-- without a policy that admits it. Tenant tables (with organization_id) in schema app are
-- 01's; this covers the rest: the other tables of app, and any other schema opened to the role.
\if :{?app_role} \else \set app_role tenant_files_app \endif
\if :{?definer_role} \else \set definer_role tenant_files_definer \endif
with params as (select :'app_role'::name as app_role, :'definer_role'::name as definer_role)
select 'reachable_tables' as check_name,
       format('table %I.%I', n.nspname, c.relname) as object,
       concat_ws(' and ',
                 case when not c.relrowsecurity then 'row level security is not enabled' end,
                 case when not c.relforcerowsecurity then 'row level security is not forced' end)
         || format(', and role %I can reach it', params.app_role) as reason
  from params, pg_class c
  join pg_namespace n on n.oid = c.relnamespace
 where c.relkind in ('r', 'p')
   and n.nspname not in ('pg_catalog', 'information_schema')
   and n.nspname not like 'pg\_%'
   and exists (select from pg_roles r where r.rolname = params.app_role)
   and has_schema_privilege(params.app_role, n.oid, 'USAGE')
   and not (c.relrowsecurity and c.relforcerowsecurity)
   and not (n.nspname = 'app'
            and exists (select from pg_attribute a
                         where a.attrelid = c.oid and a.attname = 'organization_id' and not a.attisdropped))
 order by 2;
