-- A view runs with its owner's rights unless security_invoker is set, which would let it read
-- tenant tables past the policies. Views in app must set security_invoker (there are none yet).
\if :{?app_role} \else \set app_role tenant_files_app \endif
\if :{?definer_role} \else \set definer_role tenant_files_definer \endif
with params as (select :'app_role'::name as app_role, :'definer_role'::name as definer_role)
select 'views_security_invoker' as check_name,
       format('view %I.%I', n.nspname, c.relname) as object,
       'view does not set security_invoker' as reason
  from params, pg_class c
  join pg_namespace n on n.oid = c.relnamespace
 where n.nspname = 'app'
   and c.relkind in ('v', 'm')
   and not coalesce(c.reloptions @> array['security_invoker=true']
                    or c.reloptions @> array['security_invoker=on'], false)
 order by 2;
