-- The per-request registry calls in PL/pgSQL instead of SQL: PostgreSQL (before 18) plans a
-- SQL-language function body on every call when it cannot inline it (SECURITY DEFINER
-- functions never are), while PL/pgSQL keeps the plan for the session. Measured on the bench:
-- session_load went from ~0.35 ms to a fraction of it (docs/performance.md). Same queries,
-- same guarantees; see V1 and V3 for why each is safe.

-- REGISTRY: app.session_load (unchanged contract; see V1).
create or replace function app.session_load(p_key_hash bytea)
returns table (state jsonb, user_id uuid, organization_id uuid, role text)
language plpgsql stable
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  return query
  select s.state, u.id, u.organization_id, u.role
    from app.sessions s
    join app.users u on u.id = s.user_id
   where s.key_hash = p_key_hash
     and s.expires_at > now()
     and u.is_active;
end
$$;

-- REGISTRY: app.token_load (unchanged contract; see V3).
create or replace function app.token_load(p_token_hash bytea)
returns table (user_id uuid, organization_id uuid, role text)
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  return query
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
  select hit.user_id, hit.organization_id, hit.role from hit;
end
$$;
