-- Nothing is granted to PUBLIC (every role, present and future): not the database (CONNECT,
-- TEMPORARY), not schemas app or public, not any table, sequence or function in app.
\if :{?app_role} \else \set app_role tenant_files_app \endif
\if :{?definer_role} \else \set definer_role tenant_files_definer \endif
with params as (select :'app_role'::name as app_role, :'definer_role'::name as definer_role),
acls (object, acl) as (
  select format('database %I', d.datname), coalesce(d.datacl, acldefault('d', d.datdba))
    from pg_database d where d.datname = current_database()
  union all
  select format('schema %I', n.nspname), coalesce(n.nspacl, acldefault('n', n.nspowner))
    from pg_namespace n where n.nspname in ('app', 'public')
  union all
  select format('%s %I.%I', case c.relkind when 'S' then 'sequence' else 'table' end, n.nspname, c.relname),
         coalesce(c.relacl, acldefault((case c.relkind when 'S' then 's' else 'r' end)::"char", c.relowner))
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
   where n.nspname = 'app' and c.relkind in ('r', 'p', 'v', 'm', 'S', 'f')
  union all
  select format('function %s', p.oid::regprocedure), coalesce(p.proacl, acldefault('f', p.proowner))
    from pg_proc p join pg_namespace n on n.oid = p.pronamespace
   where n.nspname = 'app'
)
select 'public_grants' as check_name, object,
       format('%s is granted to PUBLIC', g.privilege_type) as reason
  from params, acls, aclexplode(acl) g
 where g.grantee = 0
 order by 2, 3;
