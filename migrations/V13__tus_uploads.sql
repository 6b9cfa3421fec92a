-- Resumable uploads with the tus 1.0 protocol (docs/decisions.md, "Resumable uploads"). An
-- upload in progress is a tenant row like every other: its declared length is reserved against
-- the quota (app.upload_reservations, under the same id, until the upload's expiry), its bytes
-- so far are chunk objects in the store, and its offset lives here, so it survives the api
-- process and any api host can take the next PATCH.

create table app.tus_uploads (
  id              uuid primary key,                 -- the id the file will have
  organization_id uuid not null references app.organizations (id),
  created_by      uuid not null,
  filename        text not null check (length(filename) between 1 and 255),
  upload_length   bigint not null check (upload_length > 0),
  upload_offset   bigint not null default 0,
  -- The stored chunks, in offset order: [{"offset": n, "size": n, "nonce": uuid}]. A chunk's
  -- key carries its nonce, so a PATCH that lost a race never overwrites the winner's bytes.
  chunks          jsonb not null default '[]',
  expires_at      timestamptz not null,
  created_at      timestamptz not null default now(),
  updated_at      timestamptz not null default now(),
  constraint tus_uploads_offset_within_length check (upload_offset between 0 and upload_length),
  constraint tus_uploads_created_by_fkey foreign key (organization_id, created_by)
    references app.users (organization_id, id)
);
create index tus_uploads_organization_id_idx on app.tus_uploads (organization_id, created_at);
-- The worker looks for expired uploads across tenants.
create index tus_uploads_expires_at_idx on app.tus_uploads (expires_at);
create trigger tus_uploads_updated_at before update on app.tus_uploads
  for each row execute function app.touch_updated_at();

alter table app.tus_uploads enable row level security;
alter table app.tus_uploads force row level security;
create policy tenant_isolation on app.tus_uploads
  using (organization_id = (select nullif(current_setting('app.org_id', true), '')::uuid))
  with check (organization_id = (select nullif(current_setting('app.org_id', true), '')::uuid));
-- An upload in progress is its creator's alone, like a multipart upload's request.
create policy tus_uploads_own on app.tus_uploads
  as restrictive
  to tenant_files_app
  using (created_by = (select nullif(current_setting('app.user_id', true), '')::uuid))
  with check (created_by = (select nullif(current_setting('app.user_id', true), '')::uuid));
create policy registry on app.tus_uploads to tenant_files_definer
  using (current_user = 'tenant_files_definer') with check (current_user = 'tenant_files_definer');

grant select, insert, delete, update (upload_offset, chunks) on app.tus_uploads to tenant_files_app;
-- (UPDATE of one column only because FOR UPDATE, which keeps two workers apart, requires it.)
grant select, delete, update (upload_offset) on app.tus_uploads to tenant_files_definer;

-- REGISTRY: app.tus_expire. The worker removes uploads that expired before completing, across
-- tenants. Safe: deletes at most `limit` rows, only of uploads past their expiry (which no
-- PATCH can continue: the service refuses expired uploads), returning what the worker needs to
-- delete their chunk objects: organization, id and chunks. The rows are deleted in the
-- caller's transaction, which commits only once the objects are gone. Their quota
-- reservations expire at the same moment and are pruned by app.prune_expired.
create function app.tus_expire(p_limit integer)
returns table (organization_id uuid, id uuid, chunks jsonb)
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
  delete from app.tus_uploads t
   where t.id in (select e.id from app.tus_uploads e
                   where e.expires_at < now()
                   order by e.expires_at
                   limit p_limit
                   for update skip locked)
  returning t.organization_id, t.id, t.chunks
$$;

alter function app.tus_expire(integer) owner to tenant_files_definer;
grant execute on function app.tus_expire(integer) to tenant_files_app;
