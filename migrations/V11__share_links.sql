-- Expiring share links: a member hands one ready file to someone outside the organization for
-- a while (docs/decisions.md, "Share links"). A tenant table like every other; the one way in
-- without a session is the registry function app.share_link_open, which returns that link's
-- file and nothing else.

-- A link's file must be of the link's organization, whoever inserts it.
alter table app.files add constraint files_organization_id_id_key unique (organization_id, id);

create table app.share_links (
  id              uuid primary key,
  organization_id uuid not null references app.organizations (id),
  file_id         uuid not null,
  created_by      uuid not null,
  -- SHA-256 of the secret in the link's URL, which is shown once and never stored.
  secret_hash     bytea not null unique check (length(secret_hash) = 32),
  expires_at      timestamptz not null,
  revoked_at      timestamptz,
  created_at      timestamptz not null default now(),
  updated_at      timestamptz not null default now(),
  constraint share_links_file_fkey foreign key (organization_id, file_id)
    references app.files (organization_id, id),
  constraint share_links_created_by_fkey foreign key (organization_id, created_by)
    references app.users (organization_id, id),
  constraint share_links_expires_after_creation check (expires_at > created_at)
);
-- Led by organization_id like every tenant index: a file's links, newest first.
create index share_links_organization_id_file_id_idx
  on app.share_links (organization_id, file_id, created_at desc);
create trigger share_links_updated_at before update on app.share_links
  for each row execute function app.touch_updated_at();

alter table app.share_links enable row level security;
alter table app.share_links force row level security;
create policy tenant_isolation on app.share_links
  using (organization_id = (select nullif(current_setting('app.org_id', true), '')::uuid))
  with check (organization_id = (select nullif(current_setting('app.org_id', true), '')::uuid));
-- A file's links are for whoever may change the file: its uploader, or an owner or admin
-- (the same rule as rename and delete). Members see and manage the links of their own files.
create policy share_links_by_uploader_or_manager on app.share_links
  as restrictive
  to tenant_files_app
  using ((select app.current_member_role()) in ('owner', 'admin')
         or exists (select from app.files f
                     where f.id = file_id
                       and f.uploaded_by = (select nullif(current_setting('app.user_id', true), '')::uuid)))
  with check ((select app.current_member_role()) in ('owner', 'admin')
              or exists (select from app.files f
                          where f.id = file_id
                            and f.uploaded_by = (select nullif(current_setting('app.user_id', true), '')::uuid)));
-- A link is created by the signed-in user, in their name.
create policy share_links_created_as_self on app.share_links
  as restrictive
  for insert
  to tenant_files_app
  with check (created_by = (select nullif(current_setting('app.user_id', true), '')::uuid));
create policy registry on app.share_links to tenant_files_definer
  using (current_user = 'tenant_files_definer') with check (current_user = 'tenant_files_definer');

grant select, insert, update (revoked_at) on app.share_links to tenant_files_app;
grant select on app.share_links to tenant_files_definer;
grant select on app.files, app.users to tenant_files_definer;

-- REGISTRY: app.share_link_open. Someone without a session opens a share link: before any
-- tenant is known. Safe: needs the SHA-256 of a 256-bit secret; returns at most one row, the
-- link's own file, and only while the link is unexpired and unrevoked, the file live and ready,
-- and the link's creator still active (a link dies with its creator's deactivation, like a
-- token). Each successful opening is appended to that organization's audit log.
create function app.share_link_open(p_secret_hash bytea, p_request_id text)
returns table (organization_id uuid, file_id uuid, filename text, file_size_bytes bigint,
               mime_type text, sha256 text, uploaded_at timestamptz)
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
    join app.files f on f.id = l.file_id and f.organization_id = l.organization_id
    join app.users u on u.id = l.created_by and u.organization_id = l.organization_id
   where l.secret_hash = p_secret_hash
     and l.revoked_at is null
     and l.expires_at > now()
     and f.deleted_at is null
     and f.status = 'ready'
     and u.is_active;
  if not found then
    return;
  end if;
  insert into app.audit_log (organization_id, actor_user_id, action, target_type, target_id, details, request_id)
  values (organization_id, null, 'share_link_used', 'share_link', v_link_id,
          jsonb_build_object('file_id', file_id), p_request_id);
  return next;
end
$$;

alter function app.share_link_open(bytea, text) owner to tenant_files_definer;
grant execute on function app.share_link_open(bytea, text) to tenant_files_app;
