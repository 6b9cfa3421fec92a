-- SECURITY DEFINER functions run with their owner's rights: the cross-tenant registry. Each must
-- be owned by the definer role, be listed below, with docs/rls.md saying why it is safe, and not
-- be executable by PUBLIC outside schema app (07 checks app; a definer function anywhere else is
-- a registry entry nobody reviewed). Its pinned search_path is 10's, as for every function.
\if :{?app_role} \else \set app_role tenant_files_app \endif
\if :{?definer_role} \else \set definer_role tenant_files_definer \endif
with params as (select :'app_role'::name as app_role, :'definer_role'::name as definer_role),
registry (signature) as (values
  ('app.credential(text,uuid,bytea)'),
  ('app.session_save(bytea,uuid,uuid,jsonb,bigint)'),
  ('app.session_touch(uuid,bytea,bigint)'),
  ('app.session_delete(uuid,bytea)'),
  ('app.login_attempt(text,bigint,integer)'),
  ('app.login_finish(text,boolean,text)'),
  ('app.prune_expired(bigint,bigint,integer)'),
  ('app.events_number()'),
  ('app.invitation_accept(uuid,bytea,text,uuid,text,text)'),
  ('app.invitation_valid(uuid,bytea,text)'),
  ('app.share_link_open(uuid,bytea,text)'),
  ('app.users_end_sessions()'),
  ('app.files_track_usage()'),
  ('app.upload_reservations_track()'),
  ('app.outbox_claim(integer)'),
  ('app.outbox_delete(uuid[],uuid[])'),
  ('app.requeue_stale_pending(bigint,integer)'),
  ('app.purge_claim(integer)'),
  ('app.purge_done(uuid[],uuid[])'),
  ('app.tus_expire(integer)'),
  ('app.tus_chunks_in_use(uuid[],uuid[])'),
  ('app.outbox_backlog()'),
  ('app.request_budgets()'),
  ('app.budget_refusals_add(uuid[],text[],bigint[])'),
  ('app.webhook_deliveries_fan_out()'),
  ('app.webhook_deliveries_claim(integer,bigint,integer)'),
  ('app.webhook_attempt_begin(uuid,uuid,bigint)'),
  ('app.webhook_attempt_finish(uuid,uuid,boolean,integer,text,bigint,bigint)')
),
definers as (
  select p.oid, p.oid::regprocedure::text as signature, p.proowner, p.proacl, n.nspname as schema
    from pg_proc p
    join pg_namespace n on n.oid = p.pronamespace
   where p.prosecdef
     and n.nspname not in ('pg_catalog', 'information_schema')
)
select 'definer_functions' as check_name, format('function %s', d.signature) as object, reason
  from params, definers d
 cross join lateral (values
   (case when d.schema <> 'app'
          and exists (select from aclexplode(coalesce(d.proacl, acldefault('f', d.proowner))) g
                       where g.grantee = 0 and g.privilege_type = 'EXECUTE')
         then 'is executable by PUBLIC' end),
   (case when pg_get_userbyid(d.proowner) <> params.definer_role
         then format('is owned by %I, not %I', pg_get_userbyid(d.proowner), params.definer_role) end),
   (case when replace(d.signature, ' ', '') not in (select signature from registry)
         then 'is not in the cross-tenant registry' end)) as checks (reason)
 where reason is not null
 order by 2, 3;
