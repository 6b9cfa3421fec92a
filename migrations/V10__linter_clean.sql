-- What the RLS linters DBAs run found (docs/rls.md, "What the linters say"), fixed:
-- 1. every function of schema app pins its search_path, not only the SECURITY DEFINER ones;
-- 2. the migration history table has row-level security, forced (and, as before, no grant);
-- 3. the registry no longer needs BYPASSRLS: the definer role reads across tenants through a
--    `registry` policy on exactly the tables its functions use (sql/bootstrap.sql takes the
--    attribute away), and the restrictive policies that narrow what a member may do apply to
--    the app role, whose requests they are about;
-- 4. the policies read the tenant settings themselves (in their sub-select) rather than through
--    the now pinned helpers, whose SET clause measurably slowed every statement.

------------------------------------------------------------------------------------------------
-- 1. A pinned search_path on every function.
------------------------------------------------------------------------------------------------
-- Each already names every object schema-qualified; pinned, none can be redirected by a
-- caller's search_path (a temp or public object named like ours). A function with a SET clause
-- is never inlined and saves and restores the setting on every call, and that cost the read
-- path a third of its throughput when every policy called a helper; section 4 takes the hot
-- helpers out of the policies.
alter function app.current_org_id() set search_path = pg_catalog, pg_temp;
alter function app.current_user_id() set search_path = pg_catalog, pg_temp;
alter function app.current_member_role() set search_path = pg_catalog, pg_temp;
alter function app.touch_updated_at() set search_path = pg_catalog, pg_temp;
alter function app.files_deleted_are_final() set search_path = pg_catalog, pg_temp;
alter function app.files_enqueue_purge() set search_path = pg_catalog, pg_temp;
alter function app.users_guard_changes() set search_path = pg_catalog, pg_temp;
alter function app.audit_log_append_only() set search_path = pg_catalog, pg_temp;

------------------------------------------------------------------------------------------------
-- 2. The migration history table.
------------------------------------------------------------------------------------------------
-- refinery keeps it in schema public, owned by the owner role, which alone uses it. Nobody else
-- has a grant, and the app role has no USAGE on schema public (V1). Like every table, it is
-- guarded by RLS, forced, with one policy: the owner, while it is the current user (as when
-- migrating), and nobody else, even with a grant added by mistake.
alter table public.app_schema_history enable row level security;
alter table public.app_schema_history force row level security;
create policy migrations on public.app_schema_history to tenant_files_owner
  using (current_user = 'tenant_files_owner') with check (current_user = 'tenant_files_owner');

------------------------------------------------------------------------------------------------
-- 3. The registry without BYPASSRLS.
------------------------------------------------------------------------------------------------
-- BYPASSRLS skips every policy of every table in every database of the cluster. The registry
-- needs far less: its functions read and write a known set of tables, each with only the
-- privileges granted to the definer role (V1-V9). A permissive policy for that role alone on
-- each of those tables gives it exactly that reach, and nothing anywhere else. Policies are
-- OR-ed, so the tenant policies still bind every other role. Each admits rows only while the
-- definer is the current user, i.e. inside a registry function: the owner, a member of the
-- definer role so that migrations can give it function ownership, inherits the policies but
-- not their rows (current_user is checked, not role membership).
create policy registry on app.organizations to tenant_files_definer
  using (current_user = 'tenant_files_definer') with check (current_user = 'tenant_files_definer');
create policy registry on app.users to tenant_files_definer
  using (current_user = 'tenant_files_definer') with check (current_user = 'tenant_files_definer');
create policy registry on app.files to tenant_files_definer
  using (current_user = 'tenant_files_definer') with check (current_user = 'tenant_files_definer');
create policy registry on app.sessions to tenant_files_definer
  using (current_user = 'tenant_files_definer') with check (current_user = 'tenant_files_definer');
create policy registry on app.login_attempts to tenant_files_definer
  using (current_user = 'tenant_files_definer') with check (current_user = 'tenant_files_definer');
create policy registry on app.outbox to tenant_files_definer
  using (current_user = 'tenant_files_definer') with check (current_user = 'tenant_files_definer');
create policy registry on app.purge_queue to tenant_files_definer
  using (current_user = 'tenant_files_definer') with check (current_user = 'tenant_files_definer');
create policy registry on app.invitations to tenant_files_definer
  using (current_user = 'tenant_files_definer') with check (current_user = 'tenant_files_definer');
create policy registry on app.api_tokens to tenant_files_definer
  using (current_user = 'tenant_files_definer') with check (current_user = 'tenant_files_definer');
create policy registry on app.audit_log to tenant_files_definer
  using (current_user = 'tenant_files_definer') with check (current_user = 'tenant_files_definer');
create policy registry on app.upload_reservations to tenant_files_definer
  using (current_user = 'tenant_files_definer') with check (current_user = 'tenant_files_definer');

-- Subject to RLS now, the definer role evaluates every policy that applies to it, the tenant
-- policies (TO PUBLIC) included: it may call their helpers, which only read the transaction's
-- own settings. Without a tenant context they answer NULL, and its registry policy admits the
-- row instead.
grant execute on function app.current_org_id(), app.current_user_id(), app.current_member_role()
  to tenant_files_definer;

-- The restrictive policies narrow what a member may do within their organization (their own
-- tokens, admins read the audit log, uploaders change their files, ...): rules about the
-- service's requests, i.e. the app role. Applied to PUBLIC they also bound the registry, which
-- acts for nobody in particular (a token's last-use stamp, the sweep's status change), and
-- only BYPASSRLS used to lift them.
alter policy api_tokens_own on app.api_tokens to tenant_files_app;
alter policy audit_log_read_by_admins on app.audit_log to tenant_files_app;
alter policy files_change_by_uploader_or_manager on app.files to tenant_files_app;
alter policy files_insert_as_self on app.files to tenant_files_app;
alter policy invitations_by_admins on app.invitations to tenant_files_app;
alter policy users_managed_by_admins on app.users to tenant_files_app;

------------------------------------------------------------------------------------------------
-- 4. Policies read the tenant settings in their own sub-select.
------------------------------------------------------------------------------------------------
-- The expression app.current_org_id() and app.current_user_id() hold, written out: still a
-- sub-select (an InitPlan, once per statement: tests/api/rls_audit.rs,
-- the_policy_helpers_run_once_per_statement), still the same text in every tenant policy, but
-- no function call. Measured on the detail request's statements (pgbench, 2 clients): about
-- 18,000 transactions/s written out against 11,000 through the pinned helper
-- (docs/performance.md). app.current_member_role() reads app.users and stays a function; only
-- the restrictive policies of write paths and the audit log call it.
alter policy tenant_isolation on app.organizations
  using (id = (select nullif(current_setting('app.org_id', true), '')::uuid))
  with check (id = (select nullif(current_setting('app.org_id', true), '')::uuid));
alter policy tenant_isolation on app.users
  using (organization_id = (select nullif(current_setting('app.org_id', true), '')::uuid))
  with check (organization_id = (select nullif(current_setting('app.org_id', true), '')::uuid));
alter policy tenant_isolation on app.files
  using (organization_id = (select nullif(current_setting('app.org_id', true), '')::uuid))
  with check (organization_id = (select nullif(current_setting('app.org_id', true), '')::uuid));
alter policy tenant_isolation on app.outbox
  using (organization_id = (select nullif(current_setting('app.org_id', true), '')::uuid))
  with check (organization_id = (select nullif(current_setting('app.org_id', true), '')::uuid));
alter policy tenant_isolation on app.purge_queue
  using (organization_id = (select nullif(current_setting('app.org_id', true), '')::uuid))
  with check (organization_id = (select nullif(current_setting('app.org_id', true), '')::uuid));
alter policy tenant_isolation on app.invitations
  using (organization_id = (select nullif(current_setting('app.org_id', true), '')::uuid))
  with check (organization_id = (select nullif(current_setting('app.org_id', true), '')::uuid));
alter policy tenant_isolation on app.api_tokens
  using (organization_id = (select nullif(current_setting('app.org_id', true), '')::uuid))
  with check (organization_id = (select nullif(current_setting('app.org_id', true), '')::uuid));
alter policy tenant_isolation on app.audit_log
  using (organization_id = (select nullif(current_setting('app.org_id', true), '')::uuid))
  with check (organization_id = (select nullif(current_setting('app.org_id', true), '')::uuid));
alter policy tenant_isolation on app.upload_reservations
  using (organization_id = (select nullif(current_setting('app.org_id', true), '')::uuid))
  with check (organization_id = (select nullif(current_setting('app.org_id', true), '')::uuid));

alter policy api_tokens_own on app.api_tokens
  using (user_id = (select nullif(current_setting('app.user_id', true), '')::uuid))
  with check (user_id = (select nullif(current_setting('app.user_id', true), '')::uuid));
alter policy files_insert_as_self on app.files
  with check (uploaded_by = (select nullif(current_setting('app.user_id', true), '')::uuid));
alter policy files_change_by_uploader_or_manager on app.files
  using (uploaded_by = (select nullif(current_setting('app.user_id', true), '')::uuid)
         or (select app.current_member_role()) in ('owner', 'admin'))
  with check (uploaded_by = (select nullif(current_setting('app.user_id', true), '')::uuid)
              or (select app.current_member_role()) in ('owner', 'admin'));
