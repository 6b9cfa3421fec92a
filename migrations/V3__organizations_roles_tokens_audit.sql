-- Organizations with several users: roles enforced by the database, invitations, personal API
-- tokens and an append-only audit log. See docs/security.md and docs/rls.md.

------------------------------------------------------------------------------------------------
-- 1. The caller's role, from the database itself.
------------------------------------------------------------------------------------------------
-- The tenant transaction sets app.org_id and app.user_id; the caller's role is read from
-- app.users under those (RLS applies: only the caller's own organization is visible), so a
-- handler can neither forget nor overstate it, and a deactivated user has no role at all.
create function app.current_member_role() returns text
language sql stable parallel safe
as $$
  select u.role
    from app.users u
   where u.id = app.current_user_id()
     and u.organization_id = app.current_org_id()
     and u.is_active
$$;
grant execute on function app.current_member_role() to tenant_files_app;

------------------------------------------------------------------------------------------------
-- 2. Files: who may change what (restrictive policies: ANDed with tenant_isolation).
------------------------------------------------------------------------------------------------
-- Members rename and delete their own files; owners and admins any file of the organization.
-- (Deleting is an UPDATE of deleted_at; the worker records outcomes as the uploader.)
create policy files_change_by_uploader_or_manager on app.files
  as restrictive
  for update
  using (uploaded_by = (select app.current_user_id())
         or (select app.current_member_role()) in ('owner', 'admin'))
  with check (uploaded_by = (select app.current_user_id())
              or (select app.current_member_role()) in ('owner', 'admin'));

-- An upload is always attributed to the user making it.
create policy files_insert_as_self on app.files
  as restrictive
  for insert
  with check (uploaded_by = (select app.current_user_id()));

------------------------------------------------------------------------------------------------
-- 3. Users: admins and owners manage members; the transition rules live in a trigger.
------------------------------------------------------------------------------------------------
grant update (role, is_active) on app.users to tenant_files_app;

create policy users_managed_by_admins on app.users
  as restrictive
  for update
  using ((select app.current_member_role()) in ('owner', 'admin'))
  with check ((select app.current_member_role()) in ('owner', 'admin'));

-- Role and activation rules, enforced whatever the caller's code does:
--   nobody changes their own role or deactivates themselves;
--   only owners change roles, and only owners deactivate or reactivate an owner;
--   an organization always keeps at least one active owner.
create function app.users_guard_changes() returns trigger
language plpgsql
as $$
declare
  actor_role text := app.current_member_role();
begin
  if new.role is not distinct from old.role and new.is_active is not distinct from old.is_active then
    return new;
  end if;
  if old.id = app.current_user_id() then
    raise exception 'users may not change their own role or activation'
      using errcode = 'P0001', constraint = 'users_no_self_change';
  end if;
  if new.role is distinct from old.role and actor_role is distinct from 'owner' then
    raise exception 'only owners change roles'
      using errcode = 'P0001', constraint = 'users_role_change_by_owner';
  end if;
  if new.is_active is distinct from old.is_active and old.role = 'owner' and actor_role is distinct from 'owner' then
    raise exception 'only owners deactivate or reactivate owners'
      using errcode = 'P0001', constraint = 'users_owner_managed_by_owner';
  end if;
  if old.role = 'owner' and old.is_active and not (new.role = 'owner' and new.is_active) then
    -- Serialize owner changes per organization (a transaction-scoped advisory lock needs no
    -- privilege on the organizations row), so two concurrent demotions cannot both pass.
    perform pg_advisory_xact_lock(hashtextextended(old.organization_id::text, 0));
    if not exists (select from app.users u
                    where u.organization_id = old.organization_id
                      and u.id <> old.id
                      and u.role = 'owner'
                      and u.is_active) then
      raise exception 'an organization keeps at least one active owner'
        using errcode = 'P0001', constraint = 'users_last_owner';
    end if;
  end if;
  return new;
end
$$;
grant execute on function app.users_guard_changes() to tenant_files_app;
create trigger users_guard_changes before update of role, is_active on app.users
  for each row execute function app.users_guard_changes();

-- REGISTRY: app.users_end_sessions (trigger). A deactivated user's sessions end at once
-- (session_load also refuses them). Definer because the app role has no access to sessions.
-- Safe: runs only as a trigger on app.users, after an update the policies and the guard
-- trigger allowed, and deletes only the sessions of that very user.
create function app.users_end_sessions() returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  if old.is_active and not new.is_active then
    delete from app.sessions where user_id = new.id;
  end if;
  return null;
end
$$;
alter function app.users_end_sessions() owner to tenant_files_definer;
create trigger users_end_sessions after update of is_active on app.users
  for each row execute function app.users_end_sessions();

------------------------------------------------------------------------------------------------
-- 4. Invitations.
------------------------------------------------------------------------------------------------
create table app.invitations (
  id              uuid primary key,
  organization_id uuid not null references app.organizations (id),
  email           text not null check (length(email) between 3 and 254),
  role            text not null check (role in ('owner', 'admin', 'member')),
  token_hash      bytea not null unique,           -- SHA-256 of the token; the token is shown once
  invited_by      uuid not null,
  expires_at      timestamptz not null,
  accepted_at     timestamptz,
  accepted_by     uuid,
  created_at      timestamptz not null default now(),
  updated_at      timestamptz not null default now(),
  constraint invitations_invited_by_fkey foreign key (organization_id, invited_by)
    references app.users (organization_id, id)
);
create index invitations_organization_id_created_at_idx on app.invitations (organization_id, created_at desc);
create trigger invitations_updated_at before update on app.invitations
  for each row execute function app.touch_updated_at();
alter table app.invitations enable row level security;
alter table app.invitations force row level security;
create policy tenant_isolation on app.invitations
  using (organization_id = (select app.current_org_id()))
  with check (organization_id = (select app.current_org_id()));
-- Only owners and admins invite; only owners invite owners.
create policy invitations_by_admins on app.invitations
  as restrictive
  for insert
  with check ((select app.current_member_role()) = 'owner'
              or ((select app.current_member_role()) = 'admin' and role <> 'owner'));
grant select, insert on app.invitations to tenant_files_app;
grant select, update (accepted_at, accepted_by) on app.invitations to tenant_files_definer;
grant insert on app.users to tenant_files_definer;

------------------------------------------------------------------------------------------------
-- 5. Personal API tokens.
------------------------------------------------------------------------------------------------
create table app.api_tokens (
  id              uuid primary key,
  organization_id uuid not null,
  user_id         uuid not null,
  name            text not null check (length(name) between 1 and 100),
  token_hash      bytea not null unique,
  expires_at      timestamptz not null,
  revoked_at      timestamptz,
  last_used_at    timestamptz,
  created_at      timestamptz not null default now(),
  updated_at      timestamptz not null default now(),
  constraint api_tokens_user_fkey foreign key (organization_id, user_id)
    references app.users (organization_id, id)
);
create index api_tokens_organization_id_user_id_idx on app.api_tokens (organization_id, user_id, created_at desc);
create trigger api_tokens_updated_at before update on app.api_tokens
  for each row execute function app.touch_updated_at();
alter table app.api_tokens enable row level security;
alter table app.api_tokens force row level security;
create policy tenant_isolation on app.api_tokens
  using (organization_id = (select app.current_org_id()))
  with check (organization_id = (select app.current_org_id()));
-- A token is its owner's alone: nobody else, not even an owner, sees or revokes it.
create policy api_tokens_own on app.api_tokens
  as restrictive
  using (user_id = (select app.current_user_id()))
  with check (user_id = (select app.current_user_id()));
grant select, insert, update (revoked_at) on app.api_tokens to tenant_files_app;
grant select, update (last_used_at) on app.api_tokens to tenant_files_definer;

-- REGISTRY: app.token_load. Bearer authentication happens before the tenant is known. Returns
-- the token's user, organization and current role only while the token is unexpired and
-- unrevoked and its user active (so a token dies with its owner's deactivation), and stamps
-- last_used_at. Safe: needs the SHA-256 of a 256-bit secret; reveals only that token's owner.
create function app.token_load(p_token_hash bytea)
returns table (user_id uuid, organization_id uuid, role text)
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
  with hit as (
    select t.id, t.last_used_at, u.id as user_id, u.organization_id, u.role
      from app.api_tokens t
      join app.users u on u.id = t.user_id and u.organization_id = t.organization_id
     where t.token_hash = p_token_hash
       and t.revoked_at is null
       and t.expires_at > now()
       and u.is_active
  ), touched as (
    -- At most once a minute, so a busy script does not queue on its token's row lock.
    update app.api_tokens t
       set last_used_at = now()
      from hit
     where t.id = hit.id
       and (hit.last_used_at is null or hit.last_used_at < now() - interval '1 minute')
  )
  select user_id, organization_id, role from hit
$$;

------------------------------------------------------------------------------------------------
-- 6. Audit log: append-only.
------------------------------------------------------------------------------------------------
create table app.audit_log (
  id              uuid primary key default gen_random_uuid(),
  organization_id uuid not null references app.organizations (id),
  actor_user_id   uuid,                             -- null when nobody was signed in
  action          text not null,
  target_type     text,
  target_id       uuid,
  details         jsonb not null default '{}',
  request_id      text,
  created_at      timestamptz not null default now(),
  updated_at      timestamptz not null default now()
);
create index audit_log_organization_id_created_at_idx on app.audit_log (organization_id, created_at desc, id desc);
alter table app.audit_log enable row level security;
alter table app.audit_log force row level security;
create policy tenant_isolation on app.audit_log
  using (organization_id = (select app.current_org_id()))
  with check (organization_id = (select app.current_org_id()));
-- Reading the log is for owners and admins.
create policy audit_log_read_by_admins on app.audit_log
  as restrictive
  for select
  using ((select app.current_member_role()) in ('owner', 'admin'));
grant select, insert on app.audit_log to tenant_files_app;
grant insert on app.audit_log to tenant_files_definer;

-- Append-only even for roles that could otherwise change it (the owner).
create function app.audit_log_append_only() returns trigger
language plpgsql
as $$
begin
  raise exception 'the audit log is append-only'
    using errcode = 'P0001', constraint = 'audit_log_append_only';
end
$$;
create trigger audit_log_append_only before update or delete on app.audit_log
  for each row execute function app.audit_log_append_only();

------------------------------------------------------------------------------------------------
-- 7. Login and invitation acceptance record themselves in the audit log.
------------------------------------------------------------------------------------------------
drop function app.login_record(text, boolean, bigint);

-- REGISTRY: app.login_record. Counts a failed attempt (a new window once the old one expired)
-- or clears the count on success, and writes login_succeeded / login_failed into the audit log
-- of the organization the email belongs to (nothing is logged for unknown emails: there is no
-- organization to log into). Safe: touches only that email's throttling row and appends one
-- audit entry about that email's own user.
create function app.login_record(p_email text, p_success boolean, p_window_seconds bigint, p_request_id text)
returns void
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  if p_success then
    delete from app.login_failures where email_key = lower(p_email);
  else
    insert into app.login_failures as f (email_key, failures, window_started)
    values (lower(p_email), 1, now())
    on conflict (email_key) do update
       set failures = case when f.window_started > now() - make_interval(secs => p_window_seconds)
                           then f.failures + 1 else 1 end,
           window_started = case when f.window_started > now() - make_interval(secs => p_window_seconds)
                                 then f.window_started else now() end;
  end if;
  insert into app.audit_log (organization_id, actor_user_id, action, target_type, target_id, request_id)
  select u.organization_id, case when p_success then u.id end,
         case when p_success then 'login_succeeded' else 'login_failed' end, 'user', u.id, p_request_id
    from app.users u
   where lower(u.email) = lower(p_email);
end
$$;

-- REGISTRY: app.invitation_accept. Joining by invitation happens before the new user has any
-- tenant context. In one statement it consumes the invitation (unexpired, unused, for exactly
-- this email: single use even under concurrency), creates the user in the inviting
-- organization with the invited role, and logs it. Safe: needs the SHA-256 of a 256-bit token
-- that was shown once to an admin of that organization; returns only the new membership.
create function app.invitation_accept(p_token_hash bytea, p_email text, p_user_id uuid,
                                      p_password_hash text, p_request_id text)
returns table (organization_id uuid, role text)
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
  with accepted as (
    update app.invitations i
       set accepted_at = now(), accepted_by = p_user_id
     where i.token_hash = p_token_hash
       and i.accepted_at is null
       and i.expires_at > now()
       and lower(i.email) = lower(p_email)
    returning i.id, i.organization_id, i.role
  ), created as (
    insert into app.users (id, organization_id, email, password_hash, role)
    select p_user_id, a.organization_id, p_email, p_password_hash, a.role from accepted a
    returning organization_id, role
  ), logged as (
    insert into app.audit_log (organization_id, actor_user_id, action, target_type, target_id, details, request_id)
    select a.organization_id, p_user_id, 'invitation_accepted', 'invitation', a.id,
           jsonb_build_object('role', a.role), p_request_id
      from accepted a
  )
  select organization_id, role from created
$$;

alter function app.login_record(text, boolean, bigint, text) owner to tenant_files_definer;
alter function app.invitation_accept(bytea, text, uuid, text, text) owner to tenant_files_definer;
alter function app.token_load(bytea) owner to tenant_files_definer;
grant select on app.organizations to tenant_files_definer;
grant execute on function
  app.login_record(text, boolean, bigint, text),
  app.invitation_accept(bytea, text, uuid, text, text),
  app.token_load(bytea)
to tenant_files_app;
