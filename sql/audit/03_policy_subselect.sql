-- Policies must read the tenant setting through a sub-select, e.g.
-- "organization_id = (select app.current_org_id())": the sub-select is an InitPlan evaluated
-- once per statement. A bare current_setting(...) or app.current_org_id() is evaluated per row.
-- Method: peel the deparsed expression from the innermost parentheses outwards, dropping every
-- "( SELECT ... )" whole and keeping the content of any other group; whatever still mentions the
-- setting at the end is evaluated per row.
\if :{?app_role} \else \set app_role tenant_files_app \endif
\if :{?definer_role} \else \set definer_role tenant_files_definer \endif
with recursive params as (select :'app_role'::name as app_role, :'definer_role'::name as definer_role),
exprs as (
  select format('policy %I on table %I.%I', p.polname, n.nspname, c.relname) as object,
         kind, expr
    from pg_policy p
    join pg_class c on c.oid = p.polrelid
    join pg_namespace n on n.oid = c.relnamespace
   cross join lateral (values ('USING', pg_get_expr(p.polqual, p.polrelid)),
                              ('WITH CHECK', pg_get_expr(p.polwithcheck, p.polrelid))) as e (kind, expr)
   where n.nspname = 'app' and expr is not null
),
peeled as (
  select object, kind, expr, expr as rest, 0 as rounds from exprs
  union all
  select object, kind, expr,
         regexp_replace(regexp_replace(rest, '\(\s*SELECT\s[^()]*\)', '', 'gi'), '\(([^()]*)\)', '[\1]', 'g'),
         rounds + 1
    from peeled
   where rest like '%(%' and rounds < 64
)
select 'policy_subselect' as check_name, object,
       format('%s evaluates the tenant setting per row: %s', kind, expr) as reason
  from params, peeled
 where rest not like '%(%'
   and rest ~* '(current_setting|current_org_id|current_user_id|current_member_role)'
 order by 2, 3;
