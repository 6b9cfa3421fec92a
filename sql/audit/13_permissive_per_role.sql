-- For every table of schema app: each role has at most one permissive policy per command (SELECT,
-- INSERT, UPDATE, DELETE; FOR ALL counts for each). Permissive policies are ORed, so a second
-- one is evaluated for every row too, and it widens what the role may see: two are either
-- redundant or a hole. A policy TO PUBLIC applies to every role (the advisor's rule,
-- splinter's multiple_permissive_policies); roles that bypass RLS and PostgreSQL's own are not
-- counted.
\if :{?app_role} \else \set app_role tenant_files_app \endif
\if :{?definer_role} \else \set definer_role tenant_files_definer \endif
with params as (select :'app_role'::name as app_role, :'definer_role'::name as definer_role),
permissive as (
  select c.oid as relid, format('table %I.%I', n.nspname, c.relname) as object, p.polname, r.rolname, cmd.name
    from pg_policy p
    join pg_class c on c.oid = p.polrelid
    join pg_namespace n on n.oid = c.relnamespace
    join pg_roles r on r.oid = any(p.polroles) or p.polroles = array[0::oid]
   cross join lateral (values ('r', 'SELECT'), ('a', 'INSERT'), ('w', 'UPDATE'), ('d', 'DELETE')) as cmd (code, name)
   where n.nspname = 'app'
     and p.polpermissive
     and p.polcmd in (cmd.code, '*')
     and r.rolname !~ '^pg_'
     and not r.rolbypassrls
)
select 'permissive_per_role' as check_name, object,
       format('role %I has %s permissive policies for %s: %s', rolname, count(*), name,
              string_agg(polname, ', ' order by polname)) as reason
  from params, permissive
 group by object, rolname, name
having count(*) > 1
 order by 2, 3;
