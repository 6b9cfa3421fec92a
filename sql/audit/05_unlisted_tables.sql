-- Tables without an organization_id column are allowed only when listed here with a reason.
-- Adding one is a review decision: update this list and docs/rls.md together.
\if :{?app_role} \else \set app_role tenant_files_app \endif
\if :{?definer_role} \else \set definer_role tenant_files_definer \endif
with params as (select :'app_role'::name as app_role, :'definer_role'::name as definer_role),
allowlist (table_name, reason) as (values
  ('organizations', 'the tenants themselves; the policy compares id'),
  ('login_attempts', 'throttling per typed email, before a tenant is known; no app grant, registry only')
)
select 'unlisted_table' as check_name,
       format('table %I.%I', n.nspname, c.relname) as object,
       'table has no organization_id column and is not on the allowlist' as reason
  from params, pg_class c
  join pg_namespace n on n.oid = c.relnamespace
 where n.nspname = 'app'
   and c.relkind in ('r', 'p')
   and not exists (select from pg_attribute a
                    where a.attrelid = c.oid and a.attname = 'organization_id' and not a.attisdropped)
   and c.relname not in (select table_name from allowlist)
 order by 2;
