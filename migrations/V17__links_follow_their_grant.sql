-- A share link works only while its creator still holds the right that allowed it (#21): the
-- file's uploader, or an owner or admin of its organization. Before, a link made by an admin to
-- another member's file kept working after the admin was demoted; deactivation already ended
-- links, demotion now does too. The rule is the one the `share_links_by_uploader_or_manager`
-- policy applies when a link is created, re-checked at every opening.

-- REGISTRY: app.share_link_open, as in V11, plus the grant check (docs/rls.md).
create or replace function app.share_link_open(p_secret_hash bytea, p_request_id text)
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
     and u.is_active
     and (u.role in ('owner', 'admin') or f.uploaded_by = u.id);
  if not found then
    return;
  end if;
  insert into app.audit_log (organization_id, actor_user_id, action, target_type, target_id, details, request_id)
  values (organization_id, null, 'share_link_used', 'share_link', v_link_id,
          jsonb_build_object('file_id', file_id), p_request_id);
  return next;
end
$$;

-- Owners and admins list every link of their organization, newest first (GET /api/org/links).
create index share_links_organization_id_created_at_idx
  on app.share_links (organization_id, created_at desc, id desc);
