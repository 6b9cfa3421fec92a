//! Share links of a file. Under the `share_links_by_uploader_or_manager` policy a member sees
//! and manages the links of their own files, owners and admins those of any file; opening a
//! link without a session is in the registry (`system::share_link_open`).

use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use uuid::Uuid;

use super::{decode, DbError, Reading, Tx, Writing};
use crate::domain::FileId;

pub struct LinkRow {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_by_email: String,
}

impl LinkRow {
    fn from_row(row: &Row) -> Result<Self, DbError> {
        Ok(Self {
            id: decode(row.try_get("id"))?,
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
    tx: &Tx,
    id: Uuid,
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
              returning id, created_by, created_at, expires_at, revoked_at
            )
            select link.id, link.created_at, link.expires_at, link.revoked_at, u.email as created_by_email
              from link
              join app.users u on u.id = link.created_by
            "#,
            &[&id, ctx.org_id.as_uuid(), file.as_uuid(), ctx.user_id.as_uuid(), &secret_hash, &expires_at],
        )
        .await?;
    LinkRow::from_row(&row)
}

/// The file's links the caller may see, newest first, revoked and expired ones included (an
/// owner reviewing what was shared wants the whole history).
#[tracing::instrument(name = "db.share_links.list", skip_all, fields(file_id = %file))]
pub async fn list(tx: impl Into<Reading<'_>>, file: FileId) -> Result<Vec<LinkRow>, DbError> {
    let rows = tx
        .into()
        .query(
            r#"
            select l.id, l.created_at, l.expires_at, l.revoked_at, u.email as created_by_email
              from app.share_links l
              join app.users u on u.id = l.created_by
             where l.organization_id = (select nullif(current_setting('app.org_id', true), '')::uuid)
               and l.file_id = $1
             order by l.created_at desc, l.id desc
            "#,
            &[file.as_uuid()],
        )
        .await?;
    rows.iter().map(LinkRow::from_row).collect()
}

/// Revokes one of the file's links (again is fine); `false` when the caller sees no such link.
#[tracing::instrument(name = "db.share_links.revoke", skip_all, fields(file_id = %file))]
pub async fn revoke(tx: impl Into<Writing<'_>>, file: FileId, id: Uuid) -> Result<bool, DbError> {
    let tx = tx.into();
    let revoked = tx
        .execute(
            r#"
            update app.share_links
               set revoked_at = coalesce(revoked_at, now())
             where id = $1
               and file_id = $2
            "#,
            &[&id, file.as_uuid()],
        )
        .await?;
    Ok(revoked == 1)
}
