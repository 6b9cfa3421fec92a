-- Credentials name their organization (#28, docs/scaling.md "Beyond one database"). A secret
-- is looked up before any tenant is known; in a database distributed by organization, a lookup
-- by its hash alone would ask every shard. So every secret the service hands out from now on
-- names its organization beside its 256 random bits — API tokens `tfp_<org>_<hex>`,
-- invitations `tfi_<org>_<hex>`, share links `tfs_<org>_<hex>`, session keys `<org>.<key>` —
-- and each lookup takes that organization: one shard's index. The organization is part of the
-- hashed secret, so a secret whose organization is changed is a secret nobody holds.
--
-- Secrets handed out before this migration name none; they keep working until they end (a
-- NULL organization looks the hash up alone: every shard, once distributed). The keys are
-- therefore (hash, organization_id): unique within an organization, which is what a shard can
-- enforce, and still led by the hash for those older secrets. Across organizations two
-- secrets collide only if 256 random bits do.

alter table app.api_tokens drop constraint api_tokens_token_hash_key,
  add constraint api_tokens_token_hash_key unique (token_hash, organization_id);
alter table app.invitations drop constraint invitations_token_hash_key,
  add constraint invitations_token_hash_key unique (token_hash, organization_id);
alter table app.share_links drop constraint share_links_secret_hash_key,
  add constraint share_links_secret_hash_key unique (secret_hash, organization_id);
alter table app.sessions drop constraint sessions_pkey,
  add constraint sessions_pkey primary key (key_hash, organization_id);

-- The registry's lookups take the organization the secret names (NULL: a secret from before).
drop function app.credential_context(text, bytea);
drop function app.credential(text, bytea);
create function app.credential(p_kind text, p_org uuid, p_hash bytea)
returns table (organization_id uuid, user_id uuid, role text, state jsonb)
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_org uuid;
  v_token uuid;
  v_last_used timestamptz;
begin
  if p_kind = 'session' then
    return query
      select u.organization_id, u.id, u.role, s.state
        from app.sessions s
        join app.users u on u.organization_id = s.organization_id and u.id = s.user_id
       where s.key_hash = p_hash
         and (p_org is null or s.organization_id = p_org)
         and s.expires_at > now()
         and u.is_active;
  elsif p_kind = 'token' then
    select t.organization_id, t.id, t.last_used_at, u.id, u.role
      into v_org, v_token, v_last_used, user_id, role
      from app.api_tokens t
      join app.users u on u.organization_id = t.organization_id and u.id = t.user_id
     where t.token_hash = p_hash
       and (p_org is null or t.organization_id = p_org)
       and t.revoked_at is null
       and t.expires_at > now()
       and u.is_active;
    if found then
      -- At most once a minute, so a busy script does not queue on its token's row lock.
      if v_last_used is null or v_last_used < now() - interval '1 minute' then
        update app.api_tokens t set last_used_at = now() where t.organization_id = v_org and t.id = v_token;
      end if;
      organization_id := v_org;
      state := null;
      return next;
    end if;
  else
    raise exception 'unknown kind of credential %', p_kind using errcode = 'invalid_parameter_value';
  end if;
end
$$;
alter function app.credential(text, uuid, bytea) owner to tenant_files_definer;
revoke execute on function app.credential(text, uuid, bytea) from public;
grant execute on function app.credential(text, uuid, bytea) to tenant_files_app;

-- A read's first statement (V20): the credential's user and organization become the
-- transaction's tenant context; an invalid credential raises invalid_authorization_specification.
create function app.credential_context(p_kind text, p_org uuid, p_hash bytea)
returns table (organization_id uuid, user_id uuid, state jsonb)
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_org uuid;
  v_user uuid;
  v_state jsonb;
begin
  select c.organization_id, c.user_id, c.state into v_org, v_user, v_state from app.credential(p_kind, p_org, p_hash) c;
  if not found then
    raise exception 'no valid %', p_kind using errcode = 'invalid_authorization_specification';
  end if;
  -- Transaction-scoped (is_local); the function's own SET clause restores only search_path.
  perform set_config('app.org_id', v_org::text, true), set_config('app.user_id', v_user::text, true);
  return query select v_org, v_user, v_state;
end
$$;
revoke execute on function app.credential_context(text, uuid, bytea) from public;
grant execute on function app.credential_context(text, uuid, bytea) to tenant_files_app;

create or replace function app.session_save(p_key_hash bytea, p_org_id uuid, p_user_id uuid, p_state jsonb, p_ttl_seconds bigint)
returns boolean
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
  insert into app.sessions (key_hash, organization_id, user_id, state, expires_at)
  select p_key_hash, u.organization_id, u.id, p_state, now() + make_interval(secs => p_ttl_seconds)
    from app.users u
   where u.organization_id = p_org_id
     and u.id = p_user_id
     and u.is_active
  on conflict (key_hash, organization_id) do update
     set state = excluded.state,
         expires_at = excluded.expires_at
   where app.sessions.user_id = excluded.user_id
  returning true
$$;

drop function app.session_touch(bytea, bigint);
create function app.session_touch(p_org uuid, p_key_hash bytea, p_ttl_seconds bigint)
returns boolean
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
  update app.sessions
     set expires_at = now() + make_interval(secs => p_ttl_seconds)
   where key_hash = p_key_hash
     and (p_org is null or organization_id = p_org)
     and expires_at > now()
  returning true
$$;
alter function app.session_touch(uuid, bytea, bigint) owner to tenant_files_definer;
revoke execute on function app.session_touch(uuid, bytea, bigint) from public;
grant execute on function app.session_touch(uuid, bytea, bigint) to tenant_files_app;

drop function app.session_delete(bytea);
create function app.session_delete(p_org uuid, p_key_hash bytea)
returns void
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
  delete from app.sessions where key_hash = p_key_hash and (p_org is null or organization_id = p_org)
$$;
alter function app.session_delete(uuid, bytea) owner to tenant_files_definer;
revoke execute on function app.session_delete(uuid, bytea) from public;
grant execute on function app.session_delete(uuid, bytea) to tenant_files_app;

drop function app.share_link_open(bytea, text);
create function app.share_link_open(p_org uuid, p_secret_hash bytea, p_request_id text)
returns table (organization_id uuid, file_id uuid, filename text, file_size_bytes bigint, mime_type text,
               sha256 text, uploaded_at timestamptz)
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_link_id uuid;
begin
  select l.id, f.organization_id, f.id, f.filename, f.file_size_bytes, f.mime_type, f.sha256, f.uploaded_at
    into v_link_id, organization_id, file_id, filename, file_size_bytes, mime_type, sha256, uploaded_at
    from app.share_links l
    join app.files f on f.organization_id = l.organization_id and f.id = l.file_id
    join app.users u on u.organization_id = l.organization_id and u.id = l.created_by
   where l.secret_hash = p_secret_hash
     and (p_org is null or l.organization_id = p_org)
     and l.revoked_at is null
     and l.expires_at > now()
     and f.deleted_at is null
     and f.status = 'ready'
     and u.is_active
     and (u.role in ('owner', 'admin') or f.uploaded_by = u.id);
  if not found then
    return;
  end if;
  insert into app.audit_log (organization_id, actor_user_id, action, target_type, target_id, details, request_id)
  values (organization_id, null, 'share_link_used', 'share_link', v_link_id,
          jsonb_build_object('file_id', file_id), p_request_id);
  return next;
end
$$;
alter function app.share_link_open(uuid, bytea, text) owner to tenant_files_definer;
revoke execute on function app.share_link_open(uuid, bytea, text) from public;
grant execute on function app.share_link_open(uuid, bytea, text) to tenant_files_app;

drop function app.invitation_valid(bytea, text);
create function app.invitation_valid(p_org uuid, p_token_hash bytea, p_email text)
returns boolean
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select exists (select from app.invitations i
                  where i.token_hash = p_token_hash
                    and (p_org is null or i.organization_id = p_org)
                    and i.accepted_at is null
                    and i.expires_at > now()
                    and lower(i.email) = lower(p_email))
$$;
alter function app.invitation_valid(uuid, bytea, text) owner to tenant_files_definer;
revoke execute on function app.invitation_valid(uuid, bytea, text) from public;
grant execute on function app.invitation_valid(uuid, bytea, text) to tenant_files_app;

drop function app.invitation_accept(bytea, text, uuid, text, text);
create function app.invitation_accept(p_org uuid, p_token_hash bytea, p_email text, p_user_id uuid,
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
       and (p_org is null or i.organization_id = p_org)
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
alter function app.invitation_accept(uuid, bytea, text, uuid, text, text) owner to tenant_files_definer;
revoke execute on function app.invitation_accept(uuid, bytea, text, uuid, text, text) from public;
grant execute on function app.invitation_accept(uuid, bytea, text, uuid, text, text) to tenant_files_app;
