-- Quota reserved before an upload writes a byte, and a cap on an organization's uploads in
-- flight. Before, the quota was checked only once the whole body was on disk, so parallel large
-- uploads could fill the disk with bytes that were then refused. Now an upload first reserves
-- the bytes it may write (its Content-Length, or the size limit without one); the reservation is
-- refused at once when the organization's stored plus reserved bytes would pass its quota, or
-- when it already has max_concurrent_uploads uploads in flight. Both are counted on the
-- organization's row, whose lock serializes concurrent reservations, so the limits hold under
-- concurrency like the quota itself (docs/decisions.md, "Hardening").

alter table app.organizations
  add column storage_reserved_bytes bigint not null default 0 check (storage_reserved_bytes >= 0),
  add column uploads_in_flight integer not null default 0 check (uploads_in_flight >= 0),
  add column max_concurrent_uploads integer not null default 8 check (max_concurrent_uploads > 0);
grant update (storage_reserved_bytes, uploads_in_flight) on app.organizations to tenant_files_definer;

create table app.upload_reservations (
  id              uuid primary key,           -- the id the file will have
  organization_id uuid not null references app.organizations (id),
  user_id         uuid not null,
  bytes           bigint not null check (bytes >= 0),
  expires_at      timestamptz not null,       -- the upload's deadline; pruned after it
  created_at      timestamptz not null default now(),
  updated_at      timestamptz not null default now()
);
create index upload_reservations_organization_id_idx on app.upload_reservations (organization_id, expires_at);
-- Pruning looks for expired reservations across tenants.
create index upload_reservations_expires_at_idx on app.upload_reservations (expires_at);
create trigger upload_reservations_updated_at before update on app.upload_reservations
  for each row execute function app.touch_updated_at();

alter table app.upload_reservations enable row level security;
alter table app.upload_reservations force row level security;
create policy tenant_isolation on app.upload_reservations
  using (organization_id = (select app.current_org_id()))
  with check (organization_id = (select app.current_org_id()));

-- The service reserves, and releases once the file row commits or the upload failed.
grant select, insert, delete on app.upload_reservations to tenant_files_app;
-- Pruning of expired reservations (the api process that made them may be gone).
grant select, delete on app.upload_reservations to tenant_files_definer;

-- REGISTRY: app.upload_reservations_track (SECURITY DEFINER trigger). Keeps the organization's
-- reserved bytes and uploads in flight, and refuses a new reservation over the quota
-- (organizations_within_quota, as for a stored file) or over max_concurrent_uploads
-- (organizations_uploads_in_flight). Safe: runs only as a trigger on app.upload_reservations,
-- whose policy has already checked the row's organization; touches only that organization's
-- counters. (The app role must not write them itself: it could lower its own usage.)
create function app.upload_reservations_track() returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  added_uploads integer := case tg_op when 'INSERT' then 1 when 'DELETE' then -1 else 0 end;
  added_bytes bigint := case tg_op when 'INSERT' then new.bytes when 'DELETE' then -old.bytes else 0 end;
  over_quota boolean;
  over_uploads boolean;
begin
  update app.organizations o
     set storage_reserved_bytes = storage_reserved_bytes + added_bytes,
         uploads_in_flight = uploads_in_flight + added_uploads
   where o.id = coalesce(new.organization_id, old.organization_id)
  returning added_bytes > 0 and o.storage_used_bytes + o.storage_reserved_bytes > o.storage_quota_mb * 1048576,
            added_uploads > 0 and o.uploads_in_flight > o.max_concurrent_uploads
       into over_quota, over_uploads;
  if over_quota then
    raise exception 'the reservation would exceed the organization''s storage quota'
      using errcode = 'check_violation', constraint = 'organizations_within_quota';
  end if;
  if over_uploads then
    raise exception 'the organization has too many uploads in flight'
      using errcode = 'check_violation', constraint = 'organizations_uploads_in_flight';
  end if;
  return null;
end
$$;
alter function app.upload_reservations_track() owner to tenant_files_definer;
create trigger upload_reservations_track after insert or delete on app.upload_reservations
  for each row execute function app.upload_reservations_track();

-- REGISTRY: app.prune_expired. The worker's maintenance loop removes, in bounded batches, what
-- only grew before: sessions past their expiry, throttling rows whose window is over, and
-- reservations past their upload's deadline (an api process that died mid-upload cannot release
-- its own; the trigger above gives their bytes and slots back). Safe: deletes only rows that no
-- longer mean anything (an expired session cannot be loaded, an old window counts nothing, a
-- reservation past its deadline belongs to an upload that was cut off); returns a count.
create function app.prune_expired(p_login_window_seconds bigint, p_limit integer)
returns integer
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  sessions integer;
  windows integer;
  reservations integer;
begin
  delete from app.sessions
   where key_hash in (select key_hash from app.sessions
                       where expires_at <= now()
                       order by expires_at
                       limit p_limit);
  get diagnostics sessions = row_count;
  delete from app.login_attempts
   where email_key in (select email_key from app.login_attempts
                        where window_started <= now() - make_interval(secs => p_login_window_seconds)
                        limit p_limit);
  get diagnostics windows = row_count;
  delete from app.upload_reservations
   where id in (select id from app.upload_reservations
                 where expires_at <= now()
                 order by expires_at
                 limit p_limit);
  get diagnostics reservations = row_count;
  return sessions + windows + reservations;
end
$$;
alter function app.prune_expired(bigint, integer) owner to tenant_files_definer;
grant execute on function app.prune_expired(bigint, integer) to tenant_files_app;
