-- Policies read a setting with current_setting() in a sub-select of its own, so that the
-- deparsed text says `select current_setting(`: the form RLS advisors recognise as evaluated once
-- per statement (splinter's auth_rls_initplan reads the text, not the plan). An expression like
-- "(select nullif(current_setting('app.org_id', true), '')::uuid)" is an InitPlan too (check 03
-- passes it) but an advisor reports it on every policy, so a DBA cannot tell it from a real
-- per-row read without EXPLAIN. The form V24 uses:
-- "(select nullif(s.setting, '')::uuid from (select current_setting('app.org_id', true)) s (setting))".
\if :{?app_role} \else \set app_role tenant_files_app \endif
\if :{?definer_role} \else \set definer_role tenant_files_definer \endif
with params as (select :'app_role'::name as app_role, :'definer_role'::name as definer_role),
exprs as (
  select format('policy %I on table %I.%I', p.polname, n.nspname, c.relname) as object, kind, expr
    from pg_policy p
    join pg_class c on c.oid = p.polrelid
    join pg_namespace n on n.oid = c.relnamespace
   cross join lateral (values ('USING', pg_get_expr(p.polqual, p.polrelid)),
                              ('WITH CHECK', pg_get_expr(p.polwithcheck, p.polrelid))) as e (kind, expr)
   where n.nspname = 'app' and expr is not null
)
select 'setting_in_own_subselect' as check_name, object,
       format('%s calls current_setting() outside a sub-select of its own: %s', kind, expr) as reason
  from params, exprs
 where expr ~* 'current_setting\('
   and expr !~* 'select\s+current_setting\('
 order by 2, 3;
