-- No role of this database has BYPASSRLS, and no LOGIN role can reach one through membership
-- (SET ROLE to it, and every policy of every table is skipped). "Of this database": a role
-- that may connect to it, or owns an object in it, or is reachable from such a LOGIN role.
-- Superusers are left out: they bypass everything by definition, and every cluster has one.
\if :{?app_role} \else \set app_role tenant_files_app \endif
\if :{?definer_role} \else \set definer_role tenant_files_definer \endif
with params as (select :'app_role'::name as app_role, :'definer_role'::name as definer_role),
bypassing as (
  select r.oid, r.rolname from pg_roles r where r.rolbypassrls and not r.rolsuper
),
connecting as (
  select r.oid, r.rolname, r.rolcanlogin from pg_roles r
   where not r.rolsuper and has_database_privilege(r.oid, current_database(), 'CONNECT')
),
owning as (
  select distinct c.relowner as oid from pg_class c
  union select p.proowner from pg_proc p
  union select n.nspowner from pg_namespace n
)
select 'bypassrls_roles' as check_name, format('role %I', b.rolname) as object,
       'has BYPASSRLS: every row-level security policy is skipped for it' as reason
  from params, bypassing b
 where b.oid in (select oid from connecting)
    or b.oid in (select oid from owning)
    or exists (select from connecting l where l.rolcanlogin and l.oid <> b.oid and pg_has_role(l.oid, b.oid, 'MEMBER'))
union all
select 'bypassrls_roles', format('role %I', l.rolname),
       format('LOGIN role can SET ROLE to %I, which has BYPASSRLS', b.rolname)
  from params, connecting l
  join bypassing b on b.oid <> l.oid and pg_has_role(l.oid, b.oid, 'MEMBER')
 where l.rolcanlogin
 order by 2, 3;
