-- Idle uploads hold no slot; what a user's uploads hold is theirs to see and their managers' to
-- end (#22, docs/decisions.md "Resumable uploads").
--
-- Before, a reservation took one of the organization's `max_concurrent_uploads` slots from its
-- creation to its deadline: eight `POST /api/files/tus` without a byte locked the organization
-- out of uploading for a day. Now a slot is held only while bytes are being received:
-- - a reservation's slot is live while `receiving_until` is in the future: a plain upload's is
--   its deadline (the request receives from start to end), a resumable upload's follows its
--   lease (taken by a PATCH, renewed while bytes come, given back when the PATCH ends), so a
--   killed process's slot lapses with its lease, seconds later;
-- - the slots in use are counted from the rows, not kept in a counter: a lapsed slot has no
--   one to give it back. Taking one locks the organization's row first, so concurrent takers
--   count one after another and the limit holds under concurrency;
-- - a resumable upload (and its reservation) expires TUS_EXPIRY_SECONDS after its last byte
--   (or its creation), no longer a fixed time after its creation.

alter table app.upload_reservations add column receiving_until timestamptz;
create index upload_reservations_receiving_idx
  on app.upload_reservations (organization_id, receiving_until)
  where receiving_until is not null;
grant update (receiving_until, expires_at) on app.upload_reservations to tenant_files_app;
grant update (expires_at) on app.tus_uploads to tenant_files_app;

-- Every slot is counted from the rows now (the counter could not see a lapsed slot).
alter table app.organizations drop column uploads_in_flight;

-- REGISTRY (replaces V9's): app.upload_reservations_track, SECURITY DEFINER trigger. Keeps the
-- organization's reserved bytes, refuses a reservation over the quota
-- (organizations_within_quota), and refuses a slot when the organization already receives
-- `max_concurrent_uploads` uploads (organizations_uploads_in_flight). Safe: runs only as a
-- trigger on app.upload_reservations, whose policy has already checked the row's organization;
-- touches and reads only that organization's row and reservations.
create or replace function app.upload_reservations_track() returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  org uuid := coalesce(new.organization_id, old.organization_id);
  added_bytes bigint := case tg_op when 'INSERT' then new.bytes when 'DELETE' then -old.bytes else 0 end;
  takes_slot boolean := tg_op <> 'DELETE' and new.receiving_until > now()
                        and (tg_op = 'INSERT' or old.receiving_until is null or old.receiving_until <= now());
  over_quota boolean;
  receiving integer;
  slots integer;
begin
  if added_bytes <> 0 then
    update app.organizations o
       set storage_reserved_bytes = storage_reserved_bytes + added_bytes
     where o.id = org
    returning added_bytes > 0 and o.storage_used_bytes + o.storage_reserved_bytes > o.storage_quota_mb * 1048576
         into over_quota;
    if over_quota then
      raise exception 'the reservation would exceed the organization''s storage quota'
        using errcode = 'check_violation', constraint = 'organizations_within_quota';
    end if;
  end if;
  if takes_slot then
    -- One taker at a time per organization (the row lock is held to the commit), each counting
    -- what the ones before it committed. A renewal of a live slot takes no lock.
    select o.max_concurrent_uploads into slots from app.organizations o where o.id = org for no key update;
    select count(*) into receiving
      from app.upload_reservations r
     where r.organization_id = org
       and r.receiving_until > now();
    if receiving > slots then
      raise exception 'the organization has too many uploads in flight'
        using errcode = 'check_violation', constraint = 'organizations_uploads_in_flight';
    end if;
  end if;
  return null;
end
$$;
drop trigger upload_reservations_track on app.upload_reservations;
create trigger upload_reservations_track after insert or delete or update of receiving_until on app.upload_reservations
  for each row execute function app.upload_reservations_track();

-- A resumable upload's reservation follows it: its slot is the upload's lease, its deadline the
-- upload's expiry. (Runs as the caller, under the reservations' policy.)
create function app.tus_uploads_hold_reservation() returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  update app.upload_reservations r
     set receiving_until = new.lease_until,
         expires_at = new.expires_at
   where r.id = new.id;
  return null;
end
$$;
grant execute on function app.tus_uploads_hold_reservation() to tenant_files_app;
create trigger tus_uploads_hold_reservation after update of lease_until, expires_at on app.tus_uploads
  for each row
  when (old.lease_until is distinct from new.lease_until or old.expires_at is distinct from new.expires_at)
  execute function app.tus_uploads_hold_reservation();

-- Owners and admins see and end their organization's uploads in progress; only its creator
-- writes to an upload (PATCH) or creates one in their name.
drop policy tus_uploads_own on app.tus_uploads;
create policy tus_uploads_seen_by_creator_or_manager on app.tus_uploads
  as restrictive
  for select
  to tenant_files_app
  using (created_by = (select app.current_user_id())
         or (select app.current_member_role()) in ('owner', 'admin'));
create policy tus_uploads_ended_by_creator_or_manager on app.tus_uploads
  as restrictive
  for delete
  to tenant_files_app
  using (created_by = (select app.current_user_id())
         or (select app.current_member_role()) in ('owner', 'admin'));
create policy tus_uploads_written_by_creator on app.tus_uploads
  as restrictive
  for update
  to tenant_files_app
  using (created_by = (select app.current_user_id()))
  with check (created_by = (select app.current_user_id()));
create policy tus_uploads_created_as_self on app.tus_uploads
  as restrictive
  for insert
  to tenant_files_app
  with check (created_by = (select app.current_user_id()));

-- Deactivating a user ends their unfinished uploads and gives back everything they reserved,
-- whatever code deactivates them. (Runs as the caller, a manager, under the policies above; the
-- ended uploads' chunks are left to the worker's sweep of unreferenced chunks.)
create function app.users_end_uploads() returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  delete from app.tus_uploads t where t.created_by = new.id and t.file_id is null;
  delete from app.upload_reservations r where r.user_id = new.id;
  return null;
end
$$;
grant execute on function app.users_end_uploads() to tenant_files_app;
create trigger users_end_uploads after update of is_active on app.users
  for each row
  when (old.is_active and not new.is_active)
  execute function app.users_end_uploads();

-- REGISTRY: app.tus_chunks_in_use. The worker's sweep of chunk objects asks which of the
-- uploads it found in the store still exist, which chunks they refer to, and whether a PATCH
-- holds them (its chunk may be stored and not yet recorded). Safe: reads only, and only rows
-- whose ids the caller names (it found them in the store); returns ids, chunk lists and a
-- flag, nothing a client sent.
create function app.tus_chunks_in_use(p_ids uuid[])
returns table (organization_id uuid, id uuid, chunks jsonb, leased boolean)
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select t.organization_id, t.id, t.chunks, coalesce(t.lease_until > now(), false)
    from app.tus_uploads t
   where t.id = any (p_ids)
$$;
alter function app.tus_chunks_in_use(uuid[]) owner to tenant_files_definer;
grant execute on function app.tus_chunks_in_use(uuid[]) to tenant_files_app;
