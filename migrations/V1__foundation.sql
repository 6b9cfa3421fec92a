-- tenant-files foundation: schema, tenant tables under forced RLS, and the cross-tenant registry.
--
-- Runs as tenant_files_owner (sql/bootstrap.sql creates the roles). Lowercase SQL, one clause
-- per line where it helps reading. Every choice that matters for isolation carries its "why";
-- docs/rls.md is the handbook that explains the whole.
--
-- Applied migrations are hashed by refinery: never edit this file, add V2, V3, ...

------------------------------------------------------------------------------------------------
-- 0. Nothing for PUBLIC.
------------------------------------------------------------------------------------------------
-- TEMPORARY matters: a role that can create temp tables can create `pg_temp.files`, which
-- shadows app.files for every later statement on that pooled connection that does not
-- schema-qualify. CONNECT is granted back to the app role alone.
do $$
begin
  execute format('revoke all on database %I from public', current_database());
  execute format('grant connect on database %I to tenant_files_app', current_database());
end
$$;

revoke all on schema public from public;

-- Functions are executable by PUBLIC by default; ours are granted one by one instead.
alter default privileges revoke execute on functions from public;

create schema app;
revoke all on schema app from public;
grant usage on schema app to tenant_files_app;
-- Needed so that ownership of the registry functions can be handed to the definer role.
grant usage, create on schema app to tenant_files_definer;

------------------------------------------------------------------------------------------------
-- 1. The tenant context.
------------------------------------------------------------------------------------------------
-- STABLE, never IMMUTABLE: an immutable function may be folded into a cached plan and answer
-- with the previous tenant's id on a reused connection. NULLIF: once a pooled session has had
-- the setting transaction-locally, current_setting(..., true) returns '' (not NULL) afterwards,
-- and ''::uuid would raise instead of matching nothing. Policies call it as
-- `(select app.current_org_id())` so it is evaluated once per statement, not once per row.
create function app.current_org_id() returns uuid
language sql stable parallel safe
as $$ select nullif(current_setting('app.org_id', true), '')::uuid $$;

create function app.current_user_id() returns uuid
language sql stable parallel safe
as $$ select nullif(current_setting('app.user_id', true), '')::uuid $$;

grant execute on function app.current_org_id(), app.current_user_id() to tenant_files_app;

create function app.touch_updated_at() returns trigger
language plpgsql
as $$
begin
  new.updated_at := now();
  return new;
end
$$;
grant execute on function app.touch_updated_at() to tenant_files_app;

------------------------------------------------------------------------------------------------
-- 2. Organizations: the tenants themselves.
------------------------------------------------------------------------------------------------
-- No organization_id column: the row IS the organization, and its policy compares `id`.
create table app.organizations (
  id                 uuid primary key,
  name               text not null
                     check (length(name) between 1 and 200 and name = btrim(name)),
  storage_quota_mb   bigint not null default 1000 check (storage_quota_mb >= 0),
  storage_used_bytes bigint not null default 0 check (storage_used_bytes >= 0),
  created_at         timestamptz not null default now(),
  updated_at         timestamptz not null default now(),
  -- Quota is a database fact: usage is kept by the files trigger below under the row lock of
  -- this organization, so concurrent uploads serialize here and none can push usage past it.
  constraint organizations_within_quota
    check (storage_used_bytes <= storage_quota_mb * 1048576)
);
-- Names are unique case-insensitively; nobody joins an organization by naming it.
create unique index organizations_name_key on app.organizations (lower(name));

create trigger organizations_updated_at before update on app.organizations
  for each row execute function app.touch_updated_at();

alter table app.organizations enable row level security;
alter table app.organizations force row level security;
-- Registration inserts the new organization inside a tenant transaction whose app.org_id is
-- the new id, so WITH CHECK admits exactly that row and no other.
create policy tenant_isolation on app.organizations
  using (id = (select app.current_org_id()))
  with check (id = (select app.current_org_id()));

grant select, insert on app.organizations to tenant_files_app;

------------------------------------------------------------------------------------------------
-- 3. Users.
------------------------------------------------------------------------------------------------
create table app.users (
  id              uuid primary key,
  organization_id uuid not null references app.organizations (id),
  email           text not null check (length(email) between 3 and 254),
  password_hash   text not null,
  role            text not null check (role in ('owner', 'admin', 'member')),
  is_active       boolean not null default true,
  created_at      timestamptz not null default now(),
  updated_at      timestamptz not null default now(),
  -- Target of the composite foreign key from files: an uploader is always of the file's org.
  constraint users_organization_id_id_key unique (organization_id, id)
);
-- Login is by email alone, so emails are unique across organizations (case-insensitively).
create unique index users_email_key on app.users (lower(email));

create trigger users_updated_at before update on app.users
  for each row execute function app.touch_updated_at();

alter table app.users enable row level security;
alter table app.users force row level security;
create policy tenant_isolation on app.users
  using (organization_id = (select app.current_org_id()))
  with check (organization_id = (select app.current_org_id()));

grant select, insert on app.users to tenant_files_app;

------------------------------------------------------------------------------------------------
-- 4. Files.
------------------------------------------------------------------------------------------------
create table app.files (
  id              uuid primary key,
  organization_id uuid not null references app.organizations (id),
  filename        text not null check (length(filename) between 1 and 255),
  file_path       text not null,
  file_size_bytes bigint not null check (file_size_bytes >= 0),
  mime_type       text,
  sha256          text not null check (sha256 ~ '^[0-9a-f]{64}$'),
  status          text not null default 'pending' check (status in ('pending', 'ready', 'failed')),
  error_message   text,
  uploaded_by     uuid not null,
  uploaded_at     timestamptz not null default now(),
  processed_at    timestamptz,
  deleted_at      timestamptz,
  updated_at      timestamptz not null default now(),
  constraint files_uploaded_by_fkey foreign key (organization_id, uploaded_by)
    references app.users (organization_id, id)
);
-- Led by organization_id like every tenant index; serves the list page (newest first) and
-- keeps deleted rows out of it.
create index files_organization_id_uploaded_at_idx
  on app.files (organization_id, uploaded_at desc, id desc)
  where deleted_at is null;

create trigger files_updated_at before update on app.files
  for each row execute function app.touch_updated_at();

-- A soft-deleted file stays deleted: nothing (API, worker, a bug) can bring it back or change
-- it. Enforced here rather than in every query that could forget.
create function app.files_deleted_are_final() returns trigger
language plpgsql
as $$
begin
  if old.deleted_at is not null then
    raise exception 'file % is deleted', old.id
      using errcode = 'P0002', constraint = 'files_deleted_are_final';
  end if;
  return new;
end
$$;
grant execute on function app.files_deleted_are_final() to tenant_files_app;
create trigger files_deleted_are_final before update on app.files
  for each row execute function app.files_deleted_are_final();

alter table app.files enable row level security;
alter table app.files force row level security;
create policy tenant_isolation on app.files
  using (organization_id = (select app.current_org_id()))
  with check (organization_id = (select app.current_org_id()));

-- Ownership, size, hash and path are never writable by the service after insert: column grants.
grant select, insert on app.files to tenant_files_app;
grant update (filename, status, mime_type, error_message, processed_at, deleted_at)
  on app.files to tenant_files_app;

------------------------------------------------------------------------------------------------
-- 5. Storage usage, kept by the database.
------------------------------------------------------------------------------------------------
-- REGISTRY: app.files_track_usage (SECURITY DEFINER trigger). Adds a new file's size to its
-- organization's usage and gives it back on soft delete. Definer because the app role has no
-- UPDATE on organizations (it must not be able to lower its own usage). Safe: it only touches
-- the organization of the row being written, which the files policy has already checked.
create function app.files_track_usage() returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  if tg_op = 'INSERT' then
    update app.organizations
       set storage_used_bytes = storage_used_bytes + new.file_size_bytes
     where id = new.organization_id;
  elsif old.deleted_at is null and new.deleted_at is not null then
    update app.organizations
       set storage_used_bytes = storage_used_bytes - old.file_size_bytes
     where id = old.organization_id;
  end if;
  return null;
end
$$;
alter function app.files_track_usage() owner to tenant_files_definer;
grant select, update (storage_used_bytes) on app.organizations to tenant_files_definer;
create trigger files_track_usage after insert or update of deleted_at on app.files
  for each row execute function app.files_track_usage();

------------------------------------------------------------------------------------------------
-- 6. Server-side sessions (not tenant data; reachable only through the registry).
------------------------------------------------------------------------------------------------
-- The cookie carries a random key; only its SHA-256 is stored, so a database read does not
-- yield usable cookies. RLS is enabled and forced with no policy and the app role has no
-- grant: every access goes through the definer functions below.
create table app.sessions (
  key_hash   bytea primary key,
  user_id    uuid not null references app.users (id) on delete cascade,
  state      jsonb not null,
  expires_at timestamptz not null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create index sessions_user_id_idx on app.sessions (user_id);
create index sessions_expires_at_idx on app.sessions (expires_at);
create trigger sessions_updated_at before update on app.sessions
  for each row execute function app.touch_updated_at();
alter table app.sessions enable row level security;
alter table app.sessions force row level security;
grant select, insert, update, delete on app.sessions to tenant_files_definer;
grant select on app.users to tenant_files_definer;

-- REGISTRY: app.session_load. Returns the session's state plus the user's CURRENT organization
-- and role, and nothing at all once the session expired or the user was deactivated, so those
-- end at once. Safe: the caller must present the key (a 256-bit secret); it learns only about
-- the user that key belongs to.
create function app.session_load(p_key_hash bytea)
returns table (state jsonb, user_id uuid, organization_id uuid, role text)
language sql stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select s.state, u.id, u.organization_id, u.role
    from app.sessions s
    join app.users u on u.id = s.user_id
   where s.key_hash = p_key_hash
     and s.expires_at > now()
     and u.is_active
$$;

-- REGISTRY: app.session_save. Creates or replaces a session. Safe: a session can only be
-- created for an active user, and the caller (the login/register handlers) has just proved
-- who that user is; it cannot read anything.
create function app.session_save(p_key_hash bytea, p_user_id uuid, p_state jsonb, p_ttl_seconds bigint)
returns boolean
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
  insert into app.sessions (key_hash, user_id, state, expires_at)
  select p_key_hash, u.id, p_state, now() + make_interval(secs => p_ttl_seconds)
    from app.users u
   where u.id = p_user_id
     and u.is_active
  on conflict (key_hash) do update
     set state = excluded.state,
         expires_at = excluded.expires_at
   where app.sessions.user_id = excluded.user_id
  returning true
$$;

-- REGISTRY: app.session_touch. Extends a live session. Safe: needs the key; changes only its expiry.
create function app.session_touch(p_key_hash bytea, p_ttl_seconds bigint)
returns boolean
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
  update app.sessions
     set expires_at = now() + make_interval(secs => p_ttl_seconds)
   where key_hash = p_key_hash
     and expires_at > now()
  returning true
$$;

-- REGISTRY: app.session_delete. Logout and key rotation. Safe: needs the key; deletes only it.
create function app.session_delete(p_key_hash bytea)
returns void
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
  delete from app.sessions where key_hash = p_key_hash
$$;

------------------------------------------------------------------------------------------------
-- 7. Login by email, with throttling kept in the database (shared by every api process).
------------------------------------------------------------------------------------------------
create table app.login_failures (
  email_key       text primary key,   -- lower(email) as typed, known or not
  failures        integer not null,
  window_started  timestamptz not null,
  created_at      timestamptz not null default now(),
  updated_at      timestamptz not null default now()
);
create trigger login_failures_updated_at before update on app.login_failures
  for each row execute function app.touch_updated_at();
alter table app.login_failures enable row level security;
alter table app.login_failures force row level security;
grant select, insert, update, delete on app.login_failures to tenant_files_definer;

-- REGISTRY: app.login_lookup. Login happens before any tenant is known, by email alone.
-- Returns exactly one row whether or not the email exists (user columns NULL when unknown) with
-- the recent failure count, so the caller can throttle and spend the same bcrypt time either
-- way. Safe: it reveals a password hash only to the service, which only compares it; it never
-- lists users.
create function app.login_lookup(p_email text, p_window_seconds bigint)
returns table (user_id uuid, organization_id uuid, password_hash text, role text,
               is_active boolean, recent_failures integer)
language sql stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select u.id, u.organization_id, u.password_hash, u.role, u.is_active,
         coalesce((select f.failures
                     from app.login_failures f
                    where f.email_key = lower(p_email)
                      and f.window_started > now() - make_interval(secs => p_window_seconds)), 0)
    from (values (1)) as one (x)
    left join app.users u on lower(u.email) = lower(p_email)
$$;

-- REGISTRY: app.login_record. Counts a failed attempt (a new window once the old one expired)
-- or clears the count on success. Safe: touches only the throttling row of the given email.
create function app.login_record(p_email text, p_success boolean, p_window_seconds bigint)
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
end
$$;

alter function app.session_load(bytea) owner to tenant_files_definer;
alter function app.session_save(bytea, uuid, jsonb, bigint) owner to tenant_files_definer;
alter function app.session_touch(bytea, bigint) owner to tenant_files_definer;
alter function app.session_delete(bytea) owner to tenant_files_definer;
alter function app.login_lookup(text, bigint) owner to tenant_files_definer;
alter function app.login_record(text, boolean, bigint) owner to tenant_files_definer;

grant execute on function
  app.session_load(bytea),
  app.session_save(bytea, uuid, jsonb, bigint),
  app.session_touch(bytea, bigint),
  app.session_delete(bytea),
  app.login_lookup(text, bigint),
  app.login_record(text, boolean, bigint)
to tenant_files_app;
