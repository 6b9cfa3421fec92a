-- Every table with an organization_id column has an index whose first column is
-- organization_id, so every policy-filtered scan can use it.
\if :{?app_role} \else \set app_role tenant_files_app \endif
\if :{?definer_role} \else \set definer_role tenant_files_definer \endif
with params as (select :'app_role'::name as app_role, :'definer_role'::name as definer_role)
select 'organization_index' as check_name,
       format('table %I.%I', n.nspname, c.relname) as object,
       'no index has organization_id as its first column' as reason
  from params, pg_class c
  join pg_namespace n on n.oid = c.relnamespace
  join pg_attribute a on a.attrelid = c.oid and a.attname = 'organization_id' and not a.attisdropped
 where n.nspname = 'app'
   and c.relkind in ('r', 'p')
   and not exists (select from pg_index i where i.indrelid = c.oid and i.indkey[0] = a.attnum)
 order by 2;
