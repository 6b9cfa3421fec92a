-- A directory of the names unique across the service (#28, docs/scaling.md "Beyond one
-- database"). A user's email and an organization's name are unique case-insensitively across
-- every organization (sign-in is by email alone; registration refuses a taken name), which a
-- table distributed by organization cannot enforce: each shard sees its own rows. So the two
-- unique indexes move off the tenant tables into two directory tables, keyed by the name and
-- saying which organization (and user) it belongs to:
--   * app.user_emails (email_key → organization_id, user_id), read by sign-in to find the user;
--   * app.organization_names (name_key → organization_id).
-- Distributed, each would be a table of its own key (its own co-location group) or a reference
-- table: the audit's check 15 lists them as directory tables, exempt from "every key includes the
-- organization" and taking part in no foreign key. Their keys keep the old names
-- (`users_email_key`, `organizations_name_key`), so a taken email or name fails as before.
--
-- Rows enter the directory by triggers, in the same statement as the user or organization row:
-- registration (the app role, in the new organization's context) and invitation acceptance (the
-- registry) write them without knowing. Emails and names never change (no role may update
-- them), and users and organizations are never deleted, so nothing else writes the directory.

create table app.user_emails (
  email_key       text not null constraint user_emails_email_key_lower check (email_key = lower(email_key)),
  organization_id uuid not null,
  user_id         uuid not null,
  created_at      timestamptz not null default now()
);
create table app.organization_names (
  name_key        text not null constraint organization_names_name_key_lower check (name_key = lower(name_key)),
  organization_id uuid not null,
  created_at      timestamptz not null default now()
);

-- What is there today, read with the owner's FORCE lifted inside this transaction (the tenant
-- policies admit no organization to a migration).
alter table app.users no force row level security;
alter table app.organizations no force row level security;
insert into app.user_emails (email_key, organization_id, user_id)
  select lower(u.email), u.organization_id, u.id from app.users u;
insert into app.organization_names (name_key, organization_id)
  select lower(o.name), o.id from app.organizations o;
alter table app.users force row level security;
alter table app.organizations force row level security;

-- The keys, under the names the unique indexes had.
drop index app.users_email_key;
drop index app.organizations_name_key;
alter table app.user_emails add constraint users_email_key primary key (email_key);
alter table app.organization_names add constraint organizations_name_key primary key (name_key);
create index user_emails_organization_id_idx on app.user_emails (organization_id, user_id);
create index organization_names_organization_id_idx on app.organization_names (organization_id);

-- Like every table with organization_id: RLS enabled and forced, the tenant policy, and the
-- registry's policy for the definer (invitation acceptance writes an email; sign-in reads one).
alter table app.user_emails enable row level security, force row level security;
alter table app.organization_names enable row level security, force row level security;
create policy tenant_isolation on app.user_emails as permissive for all to tenant_files_app, tenant_files_owner
  using (organization_id = (select nullif(s.setting, '')::uuid from (select current_setting('app.org_id', true)) s (setting)))
  with check (organization_id = (select nullif(s.setting, '')::uuid from (select current_setting('app.org_id', true)) s (setting)));
create policy tenant_isolation on app.organization_names as permissive for all to tenant_files_app, tenant_files_owner
  using (organization_id = (select nullif(s.setting, '')::uuid from (select current_setting('app.org_id', true)) s (setting)))
  with check (organization_id = (select nullif(s.setting, '')::uuid from (select current_setting('app.org_id', true)) s (setting)));
create policy registry on app.user_emails as permissive for all to tenant_files_definer
  using (current_user = 'tenant_files_definer') with check (current_user = 'tenant_files_definer');
grant insert on app.user_emails, app.organization_names to tenant_files_app;
grant select, insert on app.user_emails to tenant_files_definer;

create function app.users_enter_directory()
returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  insert into app.user_emails (email_key, organization_id, user_id) values (lower(new.email), new.organization_id, new.id);
  return null;
end
$$;
create trigger users_enter_directory after insert on app.users
  for each row execute function app.users_enter_directory();

create function app.organizations_enter_directory()
returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  insert into app.organization_names (name_key, organization_id) values (lower(new.name), new.id);
  return null;
end
$$;
create trigger organizations_enter_directory after insert on app.organizations
  for each row execute function app.organizations_enter_directory();

-- Sign-in finds the user through the directory: the email's row names the organization and
-- the user, read by their primary key.
create or replace function app.login_attempt(p_email text, p_window_seconds bigint, p_max_attempts integer)
returns table (user_id uuid, organization_id uuid, password_hash text, role text, is_active boolean, allowed boolean)
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  attempts integer;
begin
  insert into app.login_attempts as a (email_key, attempts, window_started)
  values (lower(p_email), 1, now())
  on conflict (email_key) do update
     -- Capped one past the limit: a flood keeps the window closed without growing the count.
     set attempts = case when a.window_started > now() - make_interval(secs => p_window_seconds)
                         then least(a.attempts + 1, p_max_attempts + 1) else 1 end,
         window_started = case when a.window_started > now() - make_interval(secs => p_window_seconds)
                               then a.window_started else now() end
  returning a.attempts into attempts;

  return query
  select u.id, u.organization_id, u.password_hash, u.role, u.is_active, attempts <= p_max_attempts
    from (values (1)) as one (x)
    left join app.user_emails e on e.email_key = lower(p_email)
    left join app.users u on u.organization_id = e.organization_id and u.id = e.user_id;
end
$$;

create or replace function app.login_finish(p_email text, p_success boolean, p_request_id text)
returns void
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  if p_success then
    delete from app.login_attempts where email_key = lower(p_email);
  end if;
  insert into app.audit_log (organization_id, actor_user_id, action, target_type, target_id, request_id)
  select e.organization_id, case when p_success then e.user_id end,
         case when p_success then 'login_succeeded' else 'login_failed' end, 'user', e.user_id, p_request_id
    from app.user_emails e
   where e.email_key = lower(p_email);
end
$$;
