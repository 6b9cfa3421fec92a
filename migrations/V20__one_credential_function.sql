-- One credential function (#23). A session and a bearer token were each resolved by two
-- functions with the same rules written twice: `session_load` / `token_load` (a state-changing
-- request, before its transaction) and `session_context` / `token_context` (a read, inside its
-- own transaction, V16). Now the rules live in one place, `app.credential`, and the context
-- statement of a read is `app.credential_context`, which calls it: a plain function, not a
-- registry entry (what it adds to `app.credential` is the tenant context, which any caller may
-- set for itself). The registry loses three entries.

-- REGISTRY: app.credential. Who a credential stands for, right now: a session (`'session'`, the
-- SHA-256 of its key) while unexpired and its user active, with its stored state; a bearer
-- token (`'token'`, the SHA-256 of the token) while unexpired, unrevoked and its user active,
-- stamping its `last_used_at` at most once a minute. Safe: needs the SHA-256 of a 256-bit
-- secret; returns at most one row, that credential's own user, organization, role and
-- (for a session) state; nothing for anything else.
create function app.credential(p_kind text, p_hash bytea)
returns table (organization_id uuid, user_id uuid, role text, state jsonb)
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_token uuid;
  v_last_used timestamptz;
begin
  if p_kind = 'session' then
    return query
      select u.organization_id, u.id, u.role, s.state
        from app.sessions s
        join app.users u on u.id = s.user_id
       where s.key_hash = p_hash
         and s.expires_at > now()
         and u.is_active;
  elsif p_kind = 'token' then
    select t.id, t.last_used_at, u.organization_id, u.id, u.role
      into v_token, v_last_used, organization_id, user_id, role
      from app.api_tokens t
      join app.users u on u.id = t.user_id and u.organization_id = t.organization_id
     where t.token_hash = p_hash
       and t.revoked_at is null
       and t.expires_at > now()
       and u.is_active;
    if found then
      -- At most once a minute, so a busy script does not queue on its token's row lock.
      if v_last_used is null or v_last_used < now() - interval '1 minute' then
        update app.api_tokens t set last_used_at = now() where t.id = v_token;
      end if;
      state := null;
      return next;
    end if;
  else
    raise exception 'unknown kind of credential %', p_kind using errcode = 'invalid_parameter_value';
  end if;
end
$$;
alter function app.credential(text, bytea) owner to tenant_files_definer;
grant execute on function app.credential(text, bytea) to tenant_files_app;

-- A read's first statement: makes the credential's user and organization the transaction's
-- tenant context and returns them (and a session's state); a credential that is not (or no
-- longer) valid raises invalid_authorization_specification (28000), which aborts the
-- transaction before the read runs. Runs as the caller: setting the context is no privilege,
-- the proof is `app.credential`'s.
create function app.credential_context(p_kind text, p_hash bytea)
returns table (organization_id uuid, user_id uuid, state jsonb)
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_org uuid;
  v_user uuid;
  v_state jsonb;
begin
  select c.organization_id, c.user_id, c.state into v_org, v_user, v_state from app.credential(p_kind, p_hash) c;
  if not found then
    raise exception 'no valid %', p_kind using errcode = 'invalid_authorization_specification';
  end if;
  -- Transaction-scoped (is_local); the function's own SET clause restores only search_path.
  perform set_config('app.org_id', v_org::text, true), set_config('app.user_id', v_user::text, true);
  return query select v_org, v_user, v_state;
end
$$;
grant execute on function app.credential_context(text, bytea) to tenant_files_app;

drop function app.session_load(bytea);
drop function app.token_load(bytea);
drop function app.session_context(bytea);
drop function app.token_context(bytea);
