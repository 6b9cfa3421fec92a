//! Share links of a file. Under the `share_links_by_uploader_or_manager` policy a member sees
//! and manages the links of their own files, owners and admins those of any file; opening a
//! link without a session is in the registry (`system::share_link_open`).

use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use super::{decode, DbError, TenantRead, TenantWrite};
use crate::domain::{FileId, LinkId, Paging, UserId};

pub struct LinkRow {
    pub id: LinkId,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_by_email: String,
}

impl LinkRow {
    fn from_row(row: &Row) -> Result<Self, DbError> {
        Ok(Self {
            id: LinkId::from_uuid(decode(row.try_get("id"))?),
            created_at: decode(row.try_get("created_at"))?,
            expires_at: decode(row.try_get("expires_at"))?,
            revoked_at: decode(row.try_get("revoked_at"))?,
            created_by_email: decode(row.try_get("created_by_email"))?,
        })
    }
}

/// A new link to `file` by the signed-in user; the caller has checked that the file is ready.
#[tracing::instrument(name = "db.share_links.insert", skip_all, fields(file_id = %file))]
pub async fn insert(
    tx: impl TenantWrite,
    id: LinkId,
    file: FileId,
    secret_hash: &[u8],
    expires_at: DateTime<Utc>,
) -> Result<LinkRow, DbError> {
    let ctx = *tx.ctx();
    let row = tx
        .query_one(
            r#"
            with link as (
              insert into app.share_links (id, organization_id, file_id, created_by, secret_hash, expires_at)
              values ($1, $2, $3, $4, $5, $6)
              returning id, organization_id, created_by, created_at, expires_at, revoked_at
            )
            select link.id, link.created_at, link.expires_at, link.revoked_at, u.email as created_by_email
              from link
              join app.users u on u.organization_id = link.organization_id and u.id = link.created_by
            "#,
            &[id.as_uuid(), ctx.org_id.as_uuid(), file.as_uuid(), ctx.user_id.as_uuid(), &secret_hash, &expires_at],
        )
        .await?;
    LinkRow::from_row(&row)
}

/// The file's links the caller may see, newest first, revoked and expired ones included (an
/// owner reviewing what was shared wants the whole history).
#[tracing::instrument(name = "db.share_links.list", skip_all, fields(file_id = %file))]
pub async fn list(tx: impl TenantRead, file: FileId) -> Result<Vec<LinkRow>, DbError> {
    let rows = tx
        .query(
            concat!(
                r#"
            select l.id, l.created_at, l.expires_at, l.revoked_at, u.email as created_by_email
              from app.share_links l
              join app.users u on u.organization_id = l.organization_id and u.id = l.created_by
             where l.organization_id = "#,
                tenant_org!(),
                r#"
               and l.file_id = $1
             order by l.created_at desc, l.id desc
            "#
            ),
            &[file.as_uuid()],
        )
        .await?;
    rows.iter().map(LinkRow::from_row).collect()
}

/// Revokes one of the file's links (again is fine); `false` when the caller sees no such link.
#[tracing::instrument(name = "db.share_links.revoke", skip_all, fields(file_id = %file))]
pub async fn revoke(tx: impl TenantWrite, file: FileId, id: LinkId) -> Result<bool, DbError> {
    let revoked = tx
        .execute(
            r#"
            update app.share_links
               set revoked_at = coalesce(revoked_at, now())
             where id = $1
               and file_id = $2
            "#,
            &[id.as_uuid(), file.as_uuid()],
        )
        .await?;
    Ok(revoked == 1)
}

/// A link as an owner or admin reviews them across the organization.
pub struct OrgLinkRow {
    pub id: LinkId,
    pub file_id: FileId,
    pub filename: String,
    pub created_by: UserId,
    pub created_by_email: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// Whether opening it would hand out the file now: the rule of `app.share_link_open`.
    pub works: bool,
}

impl OrgLinkRow {
    fn from_row(row: &Row) -> Result<Self, DbError> {
        Ok(Self {
            id: LinkId::from_uuid(decode(row.try_get("id"))?),
            file_id: FileId::from_uuid(decode(row.try_get("file_id"))?),
            filename: decode(row.try_get("filename"))?,
            created_by: UserId::from_uuid(decode(row.try_get("created_by"))?),
            created_by_email: decode(row.try_get("created_by_email"))?,
            created_at: decode(row.try_get("created_at"))?,
            expires_at: decode(row.try_get("expires_at"))?,
            revoked_at: decode(row.try_get("revoked_at"))?,
            works: decode(row.try_get("works"))?,
        })
    }
}

/// One page of the organization's links the caller may see (all of them for an owner or admin,
/// under the `share_links_by_uploader_or_manager` policy), newest first, with their file and
/// creator, and the total. `works` repeats the opening rule of `app.share_link_open` (V17), so
/// an administrator sees which links still hand out their file.
#[tracing::instrument(name = "db.share_links.list_page", skip_all)]
pub async fn list_page(tx: impl TenantRead, paging: Paging) -> Result<(Vec<OrgLinkRow>, i64), DbError> {
    let (rows, total) = tx
        .query_page(
            concat!(
                r#"
            select l.id, l.file_id, f.filename, l.created_by, u.email as created_by_email,
                   l.created_at, l.expires_at, l.revoked_at,
                   (l.revoked_at is null
                    and l.expires_at > now()
                    and f.deleted_at is null
                    and f.status = 'ready'
                    and u.is_active
                    and (u.role in ('owner', 'admin') or f.uploaded_by = u.id)) as works
              from (select * from app.share_links l
                     where l.organization_id = "#,
                tenant_org!(),
                r#"
                     order by l.created_at desc, l.id desc
                     limit $1
                    offset $2) l
              join app.files f on f.organization_id = l.organization_id and f.id = l.file_id
              join app.users u on u.organization_id = l.organization_id and u.id = l.created_by
             order by l.created_at desc, l.id desc
            "#
            ),
            &[&paging.limit(), &paging.offset()],
            concat!("select count(*) from app.share_links where organization_id = ", tenant_org!()),
            &[],
        )
        .await?;
    Ok((rows.iter().map(OrgLinkRow::from_row).collect::<Result<_, _>>()?, total))
}

/// Revokes any link the caller may manage, by its id alone (again is fine); the link's file,
/// or `None` when the caller sees no such link.
#[tracing::instrument(name = "db.share_links.revoke_by_id", skip_all)]
pub async fn revoke_by_id(tx: impl TenantWrite, id: LinkId) -> Result<Option<FileId>, DbError> {
    let rows = tx
        .query(
            r#"
            update app.share_links
               set revoked_at = coalesce(revoked_at, now())
             where id = $1
            returning file_id
            "#,
            &[id.as_uuid()],
        )
        .await?;
    rows.first().map(|row| decode(row.try_get("file_id")).map(FileId::from_uuid)).transpose()
}
