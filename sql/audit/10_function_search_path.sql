-- Every function of schema app pins its search_path (SET search_path = pg_catalog, pg_temp),
-- not only the SECURITY DEFINER ones: a policy helper or trigger that resolves names through
-- the caller's search_path could be redirected to a look-alike object (a temp table, a public
-- function). Our functions name every object schema-qualified, so pinning costs nothing.
\if :{?app_role} \else \set app_role tenant_files_app \endif
\if :{?definer_role} \else \set definer_role tenant_files_definer \endif
with params as (select :'app_role'::name as app_role, :'definer_role'::name as definer_role)
select 'function_search_path' as check_name, format('function %s', p.oid::regprocedure) as object,
       'does not pin search_path' as reason
  from params, pg_proc p
  join pg_namespace n on n.oid = p.pronamespace
 where n.nspname = 'app'
   and p.prokind in ('f', 'p')
   and not exists (select from unnest(p.proconfig) c where c like 'search_path=%')
 order by 2;
