-- Keys carry the organization (#28, docs/scaling.md "Beyond one database"). A table
-- distributed by organization (Citus, or PostgreSQL's own hash partitioning) can enforce a
-- primary key only within one shard, and can join or reference rows only on the same shard; so
-- every tenant table's primary key now leads with organization_id, and the two references that
-- did not carry it do:
--   * the primary keys of users, files, outbox, invitations, api_tokens, audit_log,
--     upload_reservations, share_links and tus_uploads become (organization_id, id); for users
--     and files they replace the (organization_id, id) unique constraints the composite foreign
--     keys referenced, and those keys now reference the primary keys;
--   * purge_queue is keyed by (organization_id, file_id) and references files by both;
--   * sessions carry their user's organization (set at sign-in) and reference users by both,
--     so that authenticating a session reads the user by its primary key.
-- A lookup by id alone would no longer find an index, so the registry functions that named rows
-- by id alone now name them by (organization_id, id) as well: outbox_delete, purge_done and
-- tus_chunks_in_use take the organizations beside the ids; session_save takes the organization.
-- Ids stay random UUIDs, unique in practice; the database now promises it per organization.
--
-- `shard-audit` lists what remains: the secrets' hashes and the two global names.

-- 1. References that must move off the old keys first.
alter table app.sessions drop constraint sessions_user_id_fkey;
alter table app.purge_queue drop constraint purge_queue_file_id_fkey;
alter table app.files drop constraint files_uploaded_by_fkey;
alter table app.invitations drop constraint invitations_invited_by_fkey;
alter table app.api_tokens drop constraint api_tokens_user_fkey;
alter table app.upload_reservations drop constraint upload_reservations_user_fkey;
alter table app.share_links drop constraint share_links_created_by_fkey;
alter table app.tus_uploads drop constraint tus_uploads_created_by_fkey;
alter table app.outbox drop constraint outbox_file_fkey;
alter table app.share_links drop constraint share_links_file_fkey;
alter table app.tus_uploads drop constraint tus_uploads_file_fkey;

-- 2. The primary keys.
alter table app.users drop constraint users_pkey, drop constraint users_organization_id_id_key,
  add constraint users_pkey primary key (organization_id, id);
alter table app.files drop constraint files_pkey, drop constraint files_organization_id_id_key,
  add constraint files_pkey primary key (organization_id, id);
alter table app.outbox drop constraint outbox_pkey, add constraint outbox_pkey primary key (organization_id, id);
alter table app.invitations drop constraint invitations_pkey,
  add constraint invitations_pkey primary key (organization_id, id);
alter table app.api_tokens drop constraint api_tokens_pkey,
  add constraint api_tokens_pkey primary key (organization_id, id);
alter table app.audit_log drop constraint audit_log_pkey, add constraint audit_log_pkey primary key (organization_id, id);
alter table app.upload_reservations drop constraint upload_reservations_pkey,
  add constraint upload_reservations_pkey primary key (organization_id, id);
alter table app.share_links drop constraint share_links_pkey,
  add constraint share_links_pkey primary key (organization_id, id);
alter table app.tus_uploads drop constraint tus_uploads_pkey,
  add constraint tus_uploads_pkey primary key (organization_id, id);
-- The queue's own (organization_id, created_at) index serves the claim's order.
alter table app.purge_queue drop constraint purge_queue_pkey,
  add constraint purge_queue_pkey primary key (organization_id, file_id);

-- 3. Sessions carry their user's organization. RLS is forced on sessions and, until now, only
-- the definer's registry policy admitted rows: the owner running this migration reads them
-- for the backfill with the force lifted inside this transaction.
alter table app.sessions add column organization_id uuid;
alter table app.sessions no force row level security;
update app.sessions s set organization_id = u.organization_id from app.users u where u.id = s.user_id;
delete from app.sessions where organization_id is null;
alter table app.sessions force row level security;
alter table app.sessions alter column organization_id set not null;
drop index app.sessions_user_id_idx;
create index sessions_organization_id_user_id_idx on app.sessions (organization_id, user_id);
-- A table with organization_id gets the tenant policy every such table has (the app role still
-- has no grant on sessions: only the registry reaches them).
create policy tenant_isolation on app.sessions as permissive for all to tenant_files_app, tenant_files_owner
  using (organization_id = (select nullif(s.setting, '')::uuid from (select current_setting('app.org_id', true)) s (setting)))
  with check (organization_id = (select nullif(s.setting, '')::uuid from (select current_setting('app.org_id', true)) s (setting)));

-- 4. The references, by the new keys.
alter table app.sessions add constraint sessions_user_fkey
  foreign key (organization_id, user_id) references app.users (organization_id, id) on delete cascade;
alter table app.purge_queue add constraint purge_queue_file_fkey
  foreign key (organization_id, file_id) references app.files (organization_id, id);
alter table app.files add constraint files_uploaded_by_fkey
  foreign key (organization_id, uploaded_by) references app.users (organization_id, id);
alter table app.invitations add constraint invitations_invited_by_fkey
  foreign key (organization_id, invited_by) references app.users (organization_id, id);
alter table app.api_tokens add constraint api_tokens_user_fkey
  foreign key (organization_id, user_id) references app.users (organization_id, id);
alter table app.upload_reservations add constraint upload_reservations_user_fkey
  foreign key (organization_id, user_id) references app.users (organization_id, id);
alter table app.share_links add constraint share_links_created_by_fkey
  foreign key (organization_id, created_by) references app.users (organization_id, id);
alter table app.tus_uploads add constraint tus_uploads_created_by_fkey
  foreign key (organization_id, created_by) references app.users (organization_id, id);
alter table app.outbox add constraint outbox_file_fkey
  foreign key (organization_id, file_id) references app.files (organization_id, id) deferrable initially deferred;
alter table app.share_links add constraint share_links_file_fkey
  foreign key (organization_id, file_id) references app.files (organization_id, id);
alter table app.tus_uploads add constraint tus_uploads_file_fkey
  foreign key (organization_id, file_id) references app.files (organization_id, id)
  on delete cascade deferrable initially deferred;

-- 5. The registry and the triggers name rows by (organization_id, id).
create or replace function app.credential(p_kind text, p_hash bytea)
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
         and s.expires_at > now()
         and u.is_active;
  elsif p_kind = 'token' then
    select t.organization_id, t.id, t.last_used_at, u.id, u.role
      into v_org, v_token, v_last_used, user_id, role
      from app.api_tokens t
      join app.users u on u.organization_id = t.organization_id and u.id = t.user_id
     where t.token_hash = p_hash
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

drop function app.session_save(bytea, uuid, jsonb, bigint);
create function app.session_save(p_key_hash bytea, p_org_id uuid, p_user_id uuid, p_state jsonb, p_ttl_seconds bigint)
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
  on conflict (key_hash) do update
     set state = excluded.state,
         expires_at = excluded.expires_at
   where app.sessions.organization_id = excluded.organization_id
     and app.sessions.user_id = excluded.user_id
  returning true
$$;
alter function app.session_save(bytea, uuid, uuid, jsonb, bigint) owner to tenant_files_definer;
revoke execute on function app.session_save(bytea, uuid, uuid, jsonb, bigint) from public;
grant execute on function app.session_save(bytea, uuid, uuid, jsonb, bigint) to tenant_files_app;

create or replace function app.users_end_sessions()
returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  if old.is_active and not new.is_active then
    delete from app.sessions where organization_id = new.organization_id and user_id = new.id;
  end if;
  return null;
end
$$;

create or replace function app.users_end_uploads()
returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  delete from app.tus_uploads t
   where t.organization_id = new.organization_id and t.created_by = new.id and t.file_id is null;
  delete from app.upload_reservations r where r.organization_id = new.organization_id and r.user_id = new.id;
  return null;
end
$$;

create or replace function app.tus_uploads_hold_reservation()
returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  update app.upload_reservations r
     set receiving_until = new.lease_until,
         expires_at = new.expires_at
   where r.organization_id = new.organization_id and r.id = new.id;
  return null;
end
$$;

create or replace function app.outbox_claim(p_limit integer)
returns table (id uuid, organization_id uuid, file_id uuid, user_id uuid)
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
  with recursive waiting (organization_id) as (
    (select o.organization_id from app.outbox o order by o.organization_id limit 1)
    union all
    select (select o.organization_id
              from app.outbox o
             where o.organization_id > w.organization_id
             order by o.organization_id
             limit 1)
      from waiting w
     where w.organization_id is not null
  ), turns as (
    select w.organization_id, j.id, j.created_at,
           row_number() over (partition by w.organization_id order by j.created_at) as turn
      from waiting w
      cross join lateral (
        select o.id, o.created_at
          from app.outbox o
         where o.organization_id = w.organization_id
         order by o.created_at
         limit p_limit
      ) j
     where w.organization_id is not null
  ), batch as (
    select t.organization_id, t.id, t.turn, t.created_at from turns t order by t.turn, t.created_at limit p_limit
  )
  select o.id, o.organization_id, o.file_id, o.user_id
    from batch b
    join app.outbox o on o.organization_id = b.organization_id and o.id = b.id
   order by b.turn, b.created_at
     for update of o skip locked
$$;

drop function app.outbox_delete(uuid[]);
create function app.outbox_delete(p_orgs uuid[], p_ids uuid[])
returns void
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
  delete from app.outbox o
   using unnest(p_orgs, p_ids) as j (organization_id, id)
   where o.organization_id = j.organization_id and o.id = j.id
$$;
alter function app.outbox_delete(uuid[], uuid[]) owner to tenant_files_definer;
revoke execute on function app.outbox_delete(uuid[], uuid[]) from public;
grant execute on function app.outbox_delete(uuid[], uuid[]) to tenant_files_app;

drop function app.purge_done(uuid[]);
create function app.purge_done(p_orgs uuid[], p_file_ids uuid[])
returns void
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
  delete from app.purge_queue q
   using unnest(p_orgs, p_file_ids) as d (organization_id, file_id)
   where q.organization_id = d.organization_id and q.file_id = d.file_id
$$;
alter function app.purge_done(uuid[], uuid[]) owner to tenant_files_definer;
revoke execute on function app.purge_done(uuid[], uuid[]) from public;
grant execute on function app.purge_done(uuid[], uuid[]) to tenant_files_app;

drop function app.tus_chunks_in_use(uuid[]);
create function app.tus_chunks_in_use(p_orgs uuid[], p_ids uuid[])
returns table (organization_id uuid, id uuid, chunks jsonb, leased boolean)
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select t.organization_id, t.id, t.chunks, coalesce(t.lease_until > now(), false)
    from unnest(p_orgs, p_ids) as u (organization_id, id)
    join app.tus_uploads t on t.organization_id = u.organization_id and t.id = u.id
$$;
alter function app.tus_chunks_in_use(uuid[], uuid[]) owner to tenant_files_definer;
revoke execute on function app.tus_chunks_in_use(uuid[], uuid[]) from public;
grant execute on function app.tus_chunks_in_use(uuid[], uuid[]) to tenant_files_app;

create or replace function app.tus_expire(p_limit integer)
returns table (organization_id uuid, id uuid, chunks jsonb)
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
  delete from app.tus_uploads t
   where (t.organization_id, t.id) in (select e.organization_id, e.id from app.tus_uploads e
                                        where e.expires_at < now()
                                        order by e.expires_at
                                        limit p_limit
                                        for update skip locked)
  returning t.organization_id, t.id, t.chunks
$$;

create or replace function app.prune_expired(p_login_window_seconds bigint, p_limit integer)
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
   where (organization_id, id) in (select organization_id, id from app.upload_reservations
                                    where expires_at <= now()
                                    order by expires_at
                                    limit p_limit);
  get diagnostics reservations = row_count;
  return sessions + windows + reservations;
end
$$;

create or replace function app.requeue_stale_pending(p_older_than_seconds bigint, p_limit integer)
returns integer
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
  with stale as (
    select f.id, f.organization_id, f.uploaded_by, u.is_active as uploader_active
      from app.files f
      join app.users u on u.organization_id = f.organization_id and u.id = f.uploaded_by
     where f.status = 'pending'
       and f.deleted_at is null
       and f.enqueued_at < now() - make_interval(secs => p_older_than_seconds)
       and not exists (select from app.outbox o where o.organization_id = f.organization_id and o.file_id = f.id)
     order by f.enqueued_at
     limit p_limit
       for update of f skip locked
  ), orphaned as (
    update app.files f
       set status = 'failed',
           error_message = 'the uploader was deactivated before validation finished',
           processed_at = now()
      from stale
     where f.organization_id = stale.organization_id
       and f.id = stale.id
       and not stale.uploader_active
    returning f.id
  ), restamped as (
    update app.files f
       set enqueued_at = now()
      from stale
     where f.organization_id = stale.organization_id
       and f.id = stale.id
       and stale.uploader_active
    returning f.id, f.organization_id, f.uploaded_by
  ), queued as (
    insert into app.outbox (id, organization_id, file_id, user_id)
    select gen_random_uuid(), organization_id, id, uploaded_by
      from restamped
    returning 1
  )
  select ((select count(*) from queued) + (select count(*) from orphaned))::integer
$$;

-- 6. The share-link policy's look at the file names it by both keys too (a co-located join
-- once distributed; today the files policy adds the organization anyway).
alter policy share_links_by_uploader_or_manager on app.share_links
  using ((select app.current_member_role()) in ('owner', 'admin')
         or exists (select from app.files f
                     where f.organization_id = share_links.organization_id
                       and f.id = share_links.file_id
                       and f.uploaded_by = (select nullif(s.setting, '')::uuid
                                              from (select current_setting('app.user_id', true)) s (setting))))
  with check ((select app.current_member_role()) in ('owner', 'admin')
              or exists (select from app.files f
                          where f.organization_id = share_links.organization_id
                            and f.id = share_links.file_id
                            and f.uploaded_by = (select nullif(s.setting, '')::uuid
                                                   from (select current_setting('app.user_id', true)) s (setting))));
