-- The role the service connects as: LOGIN, not superuser, no BYPASSRLS, CREATEROLE or CREATEDB,
-- owns nothing, is a member of no role (so it can SET ROLE to none), and holds no privilege on
-- a schema, table, column or sequence beyond the explicit grants listed here (migrations V1-V3, V9, V11, V13, V18, V19, V23, V27-V30).
\if :{?app_role} \else \set app_role tenant_files_app \endif
\if :{?definer_role} \else \set definer_role tenant_files_definer \endif
with params as (select :'app_role'::name as app_role, :'definer_role'::name as definer_role),
app as (select r.* from pg_roles r, params where r.rolname = params.app_role),
expected (object, privilege) as (values
  ('schema app', 'USAGE'),
  ('table app.organizations', 'SELECT'), ('table app.organizations', 'INSERT'),
  ('column app.organizations.max_file_bytes', 'UPDATE'), ('column app.organizations.allowed_types', 'UPDATE'),
  ('table app.users', 'SELECT'), ('table app.users', 'INSERT'),
  ('column app.users.role', 'UPDATE'), ('column app.users.is_active', 'UPDATE'),
  ('table app.files', 'SELECT'), ('table app.files', 'INSERT'),
  ('column app.files.filename', 'UPDATE'), ('column app.files.status', 'UPDATE'),
  ('column app.files.mime_type', 'UPDATE'), ('column app.files.error_message', 'UPDATE'),
  ('column app.files.processed_at', 'UPDATE'), ('column app.files.deleted_at', 'UPDATE'),
  ('table app.outbox', 'INSERT'),
  ('table app.purge_queue', 'INSERT'),
  ('table app.invitations', 'SELECT'), ('table app.invitations', 'INSERT'),
  ('table app.api_tokens', 'SELECT'), ('table app.api_tokens', 'INSERT'),
  ('column app.api_tokens.revoked_at', 'UPDATE'),
  ('table app.share_links', 'SELECT'), ('table app.share_links', 'INSERT'),
  ('column app.share_links.revoked_at', 'UPDATE'),
  ('table app.file_name_suffixes', 'SELECT'), ('table app.file_name_suffixes', 'INSERT'),
  ('table app.file_name_suffixes', 'DELETE'),
  ('table app.tus_uploads', 'SELECT'), ('table app.tus_uploads', 'INSERT'), ('table app.tus_uploads', 'DELETE'),
  ('column app.tus_uploads.upload_offset', 'UPDATE'), ('column app.tus_uploads.chunks', 'UPDATE'),
  ('column app.tus_uploads.file_id', 'UPDATE'), ('column app.tus_uploads.lease_holder', 'UPDATE'),
  ('column app.tus_uploads.lease_until', 'UPDATE'), ('column app.tus_uploads.expires_at', 'UPDATE'),
  ('table app.audit_log', 'SELECT'), ('table app.audit_log', 'INSERT'),
  ('table app.upload_reservations', 'SELECT'), ('table app.upload_reservations', 'INSERT'),
  ('table app.upload_reservations', 'DELETE'),
  ('column app.upload_reservations.receiving_until', 'UPDATE'), ('column app.upload_reservations.expires_at', 'UPDATE'),
  ('table app.budget_refusals', 'SELECT'),
  ('table app.user_emails', 'INSERT'), ('table app.organization_names', 'INSERT'),
  ('table app.events', 'SELECT'), ('table app.events', 'INSERT'),
  -- Webhooks (V30): secrets are written, never read back (the worker signs through the registry).
  ('column app.webhooks.organization_id', 'SELECT'), ('column app.webhooks.id', 'SELECT'),
  ('column app.webhooks.url', 'SELECT'), ('column app.webhooks.description', 'SELECT'),
  ('column app.webhooks.events', 'SELECT'), ('column app.webhooks.enabled', 'SELECT'),
  ('column app.webhooks.failing_since', 'SELECT'), ('column app.webhooks.disabled_at', 'SELECT'),
  ('column app.webhooks.created_by', 'SELECT'), ('column app.webhooks.created_at', 'SELECT'),
  ('column app.webhooks.organization_id', 'INSERT'), ('column app.webhooks.id', 'INSERT'),
  ('column app.webhooks.url', 'INSERT'), ('column app.webhooks.description', 'INSERT'),
  ('column app.webhooks.events', 'INSERT'), ('column app.webhooks.secret', 'INSERT'),
  ('column app.webhooks.created_by', 'INSERT'),
  ('column app.webhooks.secret', 'UPDATE'), ('column app.webhooks.previous_secret_until', 'UPDATE'),
  ('table app.webhooks', 'DELETE'),
  ('table app.webhook_deliveries', 'SELECT'),
  ('column app.webhook_deliveries.state', 'UPDATE'), ('column app.webhook_deliveries.queued', 'UPDATE'),
  ('column app.webhook_deliveries.due_at', 'UPDATE'), ('column app.webhook_deliveries.finished_at', 'UPDATE')
),
granted (object, privilege) as (
  select format('schema %s', n.nspname), g.privilege_type
    from pg_namespace n, app, aclexplode(n.nspacl) g
   where g.grantee = app.oid
  union all
  select format('%s %s.%s', case c.relkind when 'S' then 'sequence' else 'table' end, n.nspname, c.relname), g.privilege_type
    from pg_class c join pg_namespace n on n.oid = c.relnamespace, app, aclexplode(c.relacl) g
   where g.grantee = app.oid
  union all
  select format('column %s.%s.%s', n.nspname, c.relname, a.attname), g.privilege_type
    from pg_attribute a join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace,
         app, aclexplode(a.attacl) g
   where g.grantee = app.oid
)
select 'app_role' as check_name, format('role %I', params.app_role) as object, 'role does not exist' as reason
  from params where not exists (select from app)
union all
select 'app_role', format('role %I', rolname), reason
  from app
 cross join lateral (values
   (case when not rolcanlogin then 'cannot LOGIN' end),
   (case when rolsuper then 'is a superuser' end),
   (case when rolbypassrls then 'has BYPASSRLS' end),
   (case when rolcreaterole then 'has CREATEROLE' end),
   (case when rolcreatedb then 'has CREATEDB' end)) as attrs (reason)
 where reason is not null
union all
select 'app_role', format('role %I', app.rolname), format('is a member of role %I', m.rolname)
  from app
  join pg_auth_members am on am.member = app.oid
  join pg_roles m on m.oid = am.roleid
union all
select 'app_role', format('role %I', app.rolname), format('owns %s', o.what)
  from app
  join lateral (
    select format('relation %I.%I', n.nspname, c.relname) as what
      from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.relowner = app.oid
    union all
    select format('function %s', p.oid::regprocedure) from pg_proc p where p.proowner = app.oid
    union all
    select format('schema %I', n.nspname) from pg_namespace n where n.nspowner = app.oid
    union all
    select format('type %s', t.oid::regtype) from pg_type t where t.typowner = app.oid
  ) o on true
union all
select 'app_role', format('role %I', params.app_role),
       format('unexpected privilege %s on %s', g.privilege, g.object)
  from params, granted g
 where (g.object, g.privilege) not in (select object, privilege from expected)
 order by 2, 3;
