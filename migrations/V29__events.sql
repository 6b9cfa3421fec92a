-- Events (#27, second part): what happened in an organization, written in the same transaction
-- as the change it describes, read back by `GET /api/events` (and, later, delivered to the
-- organization's webhooks). Kept for EVENT_RETENTION_DAYS (the maintenance loop prunes them).
--
-- Order: each organization numbers its events (`seq`) under its own row's lock, which every
-- writer of an event already holds or takes until its commit, so an organization's events
-- commit in the order of their numbers: a reader that has seen n never later finds a smaller
-- one (a cursor of "the last number seen" misses nothing). The numbers are the organization's
-- own: they say nothing about the others.
--
-- Who sees what (a restrictive policy: the database, not the handler): every member sees
-- `file.*` events (every member reads every file); `member.*` events are for owners and admins
-- (who manage members); `link.*` events for owners and admins, and for the uploader of the
-- link's file (who may share it).

alter table app.organizations add column events_seq bigint not null default 0;
grant update (events_seq) on app.organizations to tenant_files_definer;

create table app.events (
  organization_id uuid not null,
  seq             bigint not null,
  id              uuid not null default gen_random_uuid(),
  type            text not null constraint events_type_known check (type in (
                    'file.uploaded', 'file.ready', 'file.failed', 'file.deleted',
                    'member.joined', 'member.role_changed', 'member.deactivated',
                    'link.created', 'link.revoked')),
  file_id         uuid,
  data            jsonb not null,
  created_at      timestamptz not null default now(),
  constraint events_pkey primary key (organization_id, seq),
  constraint events_id_key unique (organization_id, id)
);
-- The retention prune, across organizations (the registry's prune_expired).
create index events_created_at_idx on app.events (created_at);

alter table app.events enable row level security, force row level security;
create policy tenant_isolation on app.events as permissive for all to tenant_files_app, tenant_files_owner
  using (organization_id = (select nullif(s.setting, '')::uuid from (select current_setting('app.org_id', true)) s (setting)))
  with check (organization_id = (select nullif(s.setting, '')::uuid from (select current_setting('app.org_id', true)) s (setting)));
create policy registry on app.events as permissive for all to tenant_files_definer
  using (current_user = 'tenant_files_definer') with check (current_user = 'tenant_files_definer');
create policy events_seen_by_role on app.events as restrictive for select to tenant_files_app
  using (type like 'file.%'
         or (select app.current_member_role()) in ('owner', 'admin')
         or (type like 'link.%'
             and exists (select from app.files f
                          where f.organization_id = events.organization_id
                            and f.id = events.file_id
                            and f.uploaded_by = (select nullif(s.setting, '')::uuid
                                                   from (select current_setting('app.user_id', true)) s (setting)))));
grant select, insert on app.events to tenant_files_app;
grant select, insert, delete on app.events to tenant_files_definer;

-- The number, under the organization's row lock (held to the commit). A registry trigger: the
-- app role may not write the counter itself.
create function app.events_number()
returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  update app.organizations o set events_seq = o.events_seq + 1 where o.id = new.organization_id
  returning o.events_seq into new.seq;
  if new.seq is null then
    raise exception 'no organization % for an event', new.organization_id using errcode = 'foreign_key_violation';
  end if;
  return new;
end
$$;
alter function app.events_number() owner to tenant_files_definer;
revoke execute on function app.events_number() from public;
create trigger events_number before insert on app.events for each row execute function app.events_number();

-- The events of files: uploaded, validated (ready or failed, with the reason), deleted.
create function app.files_emit_events()
returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  kind text;
begin
  if tg_op = 'INSERT' then
    kind := 'file.uploaded';
  elsif old.deleted_at is null and new.deleted_at is not null then
    kind := 'file.deleted';
  elsif old.status = 'pending' and new.status in ('ready', 'failed') then
    kind := 'file.' || new.status;
  else
    return null;
  end if;
  insert into app.events (organization_id, type, file_id, data)
  values (new.organization_id, kind, new.id,
          jsonb_strip_nulls(jsonb_build_object(
            'file_id', new.id, 'filename', new.filename, 'size', new.file_size_bytes, 'sha256', new.sha256,
            'status', new.status, 'mime_type', new.mime_type,
            'reason', case when kind = 'file.failed' then new.error_message end)));
  return null;
end
$$;
create trigger files_emit_events after insert or update of status, deleted_at on app.files
  for each row execute function app.files_emit_events();

-- The events of members: joined (registration, invitation), role changed, deactivated.
create function app.users_emit_events()
returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  if tg_op = 'INSERT' then
    insert into app.events (organization_id, type, data)
    values (new.organization_id, 'member.joined', jsonb_build_object('user_id', new.id, 'role', new.role));
  else
    if new.role is distinct from old.role then
      insert into app.events (organization_id, type, data)
      values (new.organization_id, 'member.role_changed',
              jsonb_build_object('user_id', new.id, 'from', old.role, 'to', new.role));
    end if;
    if old.is_active and not new.is_active then
      insert into app.events (organization_id, type, data)
      values (new.organization_id, 'member.deactivated', jsonb_build_object('user_id', new.id));
    end if;
  end if;
  return null;
end
$$;
create trigger users_emit_events after insert or update of role, is_active on app.users
  for each row execute function app.users_emit_events();

-- The events of share links: created, revoked (never the secret or its hash).
create function app.share_links_emit_events()
returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  if tg_op = 'INSERT' or (old.revoked_at is null and new.revoked_at is not null) then
    insert into app.events (organization_id, type, file_id, data)
    values (new.organization_id, case when tg_op = 'INSERT' then 'link.created' else 'link.revoked' end, new.file_id,
            jsonb_build_object('link_id', new.id, 'file_id', new.file_id, 'expires_at', new.expires_at));
  end if;
  return null;
end
$$;
create trigger share_links_emit_events after insert or update of revoked_at on app.share_links
  for each row execute function app.share_links_emit_events();

-- The maintenance loop's prune takes the events past their retention too.
drop function app.prune_expired(bigint, integer);
create function app.prune_expired(p_login_window_seconds bigint, p_event_retention_seconds bigint, p_limit integer)
returns integer
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  sessions integer;
  windows integer;
  reservations integer;
  events integer;
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
   where (organization_id, id) in (select organization_id, id from app.upload_reservations
                                    where expires_at <= now()
                                    order by expires_at
                                    limit p_limit);
  get diagnostics reservations = row_count;
  delete from app.events
   where (organization_id, seq) in (select organization_id, seq from app.events
                                     where created_at < now() - make_interval(secs => p_event_retention_seconds)
                                     order by created_at
                                     limit p_limit);
  get diagnostics events = row_count;
  return sessions + windows + reservations + events;
end
$$;
alter function app.prune_expired(bigint, bigint, integer) owner to tenant_files_definer;
revoke execute on function app.prune_expired(bigint, bigint, integer) from public;
grant execute on function app.prune_expired(bigint, bigint, integer) to tenant_files_app;
