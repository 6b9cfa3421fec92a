-- Every table with an organization_id column has row-level security ENABLED and FORCED
-- (forced: the table owner is subject to the policies too).
\if :{?app_role} \else \set app_role tenant_files_app \endif
\if :{?definer_role} \else \set definer_role tenant_files_definer \endif
with params as (select :'app_role'::name as app_role, :'definer_role'::name as definer_role)
select 'rls_enabled_and_forced' as check_name,
       format('table %I.%I', n.nspname, c.relname) as object,
       concat_ws(' and ',
                 case when not c.relrowsecurity then 'row level security is not enabled' end,
                 case when not c.relforcerowsecurity then 'row level security is not forced' end) as reason
  from params, pg_class c
  join pg_namespace n on n.oid = c.relnamespace
 where n.nspname = 'app'
   and c.relkind in ('r', 'p')
   and exists (select from pg_attribute a
                where a.attrelid = c.oid and a.attname = 'organization_id' and not a.attisdropped)
   and not (c.relrowsecurity and c.relforcerowsecurity)
 order by 2;
