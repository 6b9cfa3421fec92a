-- For every table with an organization_id column: SELECT, INSERT, UPDATE and DELETE are each
-- covered by a permissive policy that applies to the app role (for that command or FOR ALL; a
-- policy for another role, like the definer's registry policy, covers nothing for the app), and
-- every policy carries USING where its command reads existing rows and WITH CHECK where it
-- writes new ones. A partition (sql/rehearsal/) is reached through its parent, whose policies
-- apply; check 11 proves the app role cannot reach it directly.
\if :{?app_role} \else \set app_role tenant_files_app \endif
\if :{?definer_role} \else \set definer_role tenant_files_definer \endif
with params as (select :'app_role'::name as app_role, :'definer_role'::name as definer_role),
tenant_tables as (
  select c.oid, format('table %I.%I', n.nspname, c.relname) as object
    from pg_class c
    join pg_namespace n on n.oid = c.relnamespace
   where n.nspname = 'app'
     and c.relkind in ('r', 'p')
     and not c.relispartition
     and exists (select from pg_attribute a
                  where a.attrelid = c.oid and a.attname = 'organization_id' and not a.attisdropped)
),
commands (cmd, name) as (values ('r', 'SELECT'), ('a', 'INSERT'), ('w', 'UPDATE'), ('d', 'DELETE'))
select 'policy_coverage' as check_name, t.object,
       format('no permissive policy covers %s', c.name) as reason
  from params, tenant_tables t
 cross join commands c
 where not exists (select from pg_policy p
                    where p.polrelid = t.oid and p.polpermissive and p.polcmd in (c.cmd, '*')
                      and (0::oid = any(p.polroles)
                           or exists (select from pg_roles r
                                       where r.rolname = params.app_role and r.oid = any(p.polroles))))
union all
select 'policy_coverage', format('policy %I on %s', p.polname, t.object),
       'policy has no USING expression'
  from tenant_tables t
  join pg_policy p on p.polrelid = t.oid
 where p.polcmd in ('r', 'w', 'd', '*') and p.polqual is null
union all
select 'policy_coverage', format('policy %I on %s', p.polname, t.object),
       'policy has no WITH CHECK expression'
  from tenant_tables t
  join pg_policy p on p.polrelid = t.oid
 where p.polcmd in ('a', 'w', '*') and p.polwithcheck is null
 order by 2, 3;
