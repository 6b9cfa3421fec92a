-- A read resolves its caller in its own transaction (docs/performance.md, "One round trip per
-- read"): the session key's or token's hash goes out with BEGIN, the read's statement and its
-- end in one write, and the first statement, one of the two functions below, makes the
-- credential's user and organization the transaction's tenant context. A credential that is
-- not (or no longer) valid raises invalid_authorization_specification (28000), which aborts the
-- transaction before the read runs: the service answers 401, exactly as when the credential
-- was loaded on its own first.
--
-- app.session_load and app.token_load stay: a state-changing request needs the session's CSRF
-- token before anything runs.

-- REGISTRY: app.session_context. Resolves a session inside a tenant transaction, before the
-- tenant is known. Safe: needs the SHA-256 of a 256-bit secret key; sets the tenant context to
-- that session's user and the user's CURRENT organization and returns them with the session's
-- state (what session_load returns, minus the role: the statements behind it read that under
-- RLS if they need it), and only while the session is unexpired and the user active; otherwise
-- raises, so nothing runs after it. Setting app.org_id is no privilege: the app role can set it for any
-- organization (that is how every tenant transaction starts); what this adds is the proof.
create function app.session_context(p_key_hash bytea)
returns table (organization_id uuid, user_id uuid, state jsonb)
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_org uuid;
  v_user uuid;
  v_state jsonb;
begin
  select u.organization_id, u.id, s.state
    into v_org, v_user, v_state
    from app.sessions s
    join app.users u on u.id = s.user_id
   where s.key_hash = p_key_hash
     and s.expires_at > now()
     and u.is_active;
  if not found then
    raise exception 'no valid session' using errcode = 'invalid_authorization_specification';
  end if;
  -- Transaction-scoped (is_local); the function's own SET clause restores only search_path.
  perform set_config('app.org_id', v_org::text, true), set_config('app.user_id', v_user::text, true);
  return query select v_org, v_user, v_state;
end
$$;

-- REGISTRY: app.token_context. Bearer authentication inside a tenant transaction. Safe: needs
-- the SHA-256 of a 256-bit token; sets the tenant context to that token's user and the user's
-- current organization only while the token is unexpired, unrevoked and its user active
-- (token_load's rules), otherwise raises; stamps last_used_at at most once a minute, like
-- token_load, so a read made with a token must commit (the service's reads do: the access mode
-- turns read-only right after this function, in the same statement).
create function app.token_context(p_token_hash bytea)
returns table (organization_id uuid, user_id uuid)
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_token uuid;
  v_last_used timestamptz;
  v_org uuid;
  v_user uuid;
begin
  select t.id, t.last_used_at, u.organization_id, u.id
    into v_token, v_last_used, v_org, v_user
    from app.api_tokens t
    join app.users u on u.id = t.user_id and u.organization_id = t.organization_id
   where t.token_hash = p_token_hash
     and t.revoked_at is null
     and t.expires_at > now()
     and u.is_active;
  if not found then
    raise exception 'no valid token' using errcode = 'invalid_authorization_specification';
  end if;
  -- At most once a minute, so a busy script does not queue on its token's row lock.
  if v_last_used is null or v_last_used < now() - interval '1 minute' then
    update app.api_tokens t set last_used_at = now() where t.id = v_token;
  end if;
  perform set_config('app.org_id', v_org::text, true), set_config('app.user_id', v_user::text, true);
  return query select v_org, v_user;
end
$$;

alter function app.session_context(bytea) owner to tenant_files_definer;
alter function app.token_context(bytea) owner to tenant_files_definer;
grant execute on function app.session_context(bytea), app.token_context(bytea) to tenant_files_app;
