-- Per-organization upload rules (#27): owners and admins say which types of file their
-- organization accepts and how large one may be, within the service's own limit.
--   * max_file_bytes: no upload larger; a reservation for more is refused by the reservation
--     trigger (`organizations_max_file_bytes`, 413), so a declared size over it fails at once,
--     whatever path declared it (a resumable upload's Upload-Length, a plain upload's length).
--   * allowed_types: MIME patterns (`image/*`, `application/pdf`); the worker fails a file whose
--     type, as sniffed from its content, matches none, with a reason.
-- NULL is "no rule of the organization's own" for both. The app role may change these two
-- columns only, and only an owner or admin (a restrictive policy: the database refuses a
-- member's UPDATE whatever the handler did).

alter table app.organizations
  add column max_file_bytes bigint constraint organizations_max_file_bytes_positive check (max_file_bytes > 0),
  add column allowed_types text[]
    constraint organizations_allowed_types_shape
    check (cardinality(allowed_types) between 1 and 50 and array_position(allowed_types, null) is null);

grant update (max_file_bytes, allowed_types) on app.organizations to tenant_files_app;
create policy organizations_changed_by_managers on app.organizations as restrictive for update to tenant_files_app
  using ((select app.current_member_role()) in ('owner', 'admin'))
  with check ((select app.current_member_role()) in ('owner', 'admin'));

create or replace function app.upload_reservations_track()
returns trigger
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
  largest bigint;
  receiving integer;
  slots integer;
begin
  if added_bytes <> 0 then
    update app.organizations o
       set storage_reserved_bytes = storage_reserved_bytes + added_bytes
     where o.id = org
    returning added_bytes > 0 and o.storage_used_bytes + o.storage_reserved_bytes > o.storage_quota_mb * 1048576,
              o.max_file_bytes
         into over_quota, largest;
    if tg_op = 'INSERT' and new.bytes > largest then
      raise exception 'the upload is larger than the organization accepts'
        using errcode = 'check_violation', constraint = 'organizations_max_file_bytes';
    end if;
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
