//! Queries on `app.files`, always inside a tenant transaction. Every read skips soft-deleted
//! rows; the organization filter is a courtesy to the planner (RLS is the guarantee).

use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use super::{decode, DbError, Params, ReadTx, Reading, Writing};
use crate::domain::{FileId, FileStatus, Filename, UserId};

/// A file as the API shows it (detail and list).
pub struct FileRow {
    pub id: FileId,
    pub filename: String,
    pub size: i64,
    pub mime_type: Option<String>,
    pub sha256: String,
    pub status: FileStatus,
    pub error_message: Option<String>,
    pub uploaded_at: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
    pub uploaded_by_email: String,
}

impl FileRow {
    fn from_row(row: &Row) -> Result<Self, DbError> {
        let status: String = decode(row.try_get("status"))?;
        Ok(Self {
            id: FileId::from_uuid(decode(row.try_get("id"))?),
            filename: decode(row.try_get("filename"))?,
            size: decode(row.try_get("file_size_bytes"))?,
            mime_type: decode(row.try_get("mime_type"))?,
            sha256: decode(row.try_get("sha256"))?,
            status: FileStatus::from_db(&status)
                .ok_or_else(|| DbError::Decode(anyhow::anyhow!("unknown file status {status:?}")))?,
            error_message: decode(row.try_get("error_message"))?,
            uploaded_at: decode(row.try_get("uploaded_at"))?,
            processed_at: decode(row.try_get("processed_at"))?,
            uploaded_by_email: decode(row.try_get("uploaded_by_email"))?,
        })
    }
}

/// What an upload records once the bytes are safely on disk.
pub struct NewFile<'a> {
    pub id: FileId,
    pub filename: &'a Filename,
    pub file_path: &'a str,
    pub size: i64,
    pub sha256: &'a str,
}

/// Records a pending upload. The usage trigger adds its size to the organization in the same
/// statement; over quota it fails with `organizations_within_quota`.
#[tracing::instrument(name = "db.files.insert_pending", skip_all, fields(file_id = %file.id))]
pub async fn insert_pending(tx: impl Into<Writing<'_>>, file: &NewFile<'_>) -> Result<(), DbError> {
    let tx = tx.into();
    let ctx = *tx.ctx();
    tx.execute(
        r#"
        insert into app.files (id, organization_id, filename, file_path, file_size_bytes, sha256, uploaded_by)
        values ($1, $2, $3, $4, $5, $6, $7)
        "#,
        &[
            file.id.as_uuid(),
            ctx.org_id.as_uuid(),
            &file.filename.as_str(),
            &file.file_path,
            &file.size,
            &file.sha256,
            ctx.user_id.as_uuid(),
        ],
    )
    .await?;
    Ok(())
}

/// The columns of [`FileRow`] followed by the given filter: constant SQL, built at compile time.
macro_rules! select_files {
    ($filter:literal) => {
        concat!(
            r#"
            select f.id, f.filename, f.file_size_bytes, f.mime_type, f.sha256, f.status,
                   f.error_message, f.uploaded_at, f.processed_at, u.email as uploaded_by_email
              from app.files f
              join app.users u on u.id = f.uploaded_by
            "#,
            $filter
        )
    };
}

#[tracing::instrument(name = "db.files.find", skip_all, fields(file_id = %id))]
pub async fn find(tx: impl Into<Reading<'_>>, id: FileId) -> Result<Option<FileRow>, DbError> {
    let tx = tx.into();
    let sql = select_files!(
        r#"
        where f.id = $1
          and f.deleted_at is null
        "#
    );
    tx.query_opt(sql, &[id.as_uuid()]).await?.as_ref().map(FileRow::from_row).transpose()
}

pub struct Page {
    pub files: Vec<FileRow>,
    pub total: i64,
}

/// One page, newest first, plus the total for the same filter (kept by the database, O(1)).
#[tracing::instrument(name = "db.files.list_page", skip_all)]
pub async fn list_page(tx: ReadTx, status: Option<FileStatus>, limit: i64, offset: i64) -> Result<Page, DbError> {
    let ctx = *tx.ctx();
    let org_id = ctx.org_id;
    let status = status.map(FileStatus::as_str);
    // Two texts, not `($4 is null or f.status = $4)`: the plan is generic (see `db::tenant`),
    // and a generic plan for that OR cannot use the (organization, status, uploaded_at) index,
    // so a filtered page in a large organization would scan all its files.
    let (page_sql, page_params): (&str, Params<'_>) = match &status {
        None => (
            select_files!(
                r#"
                where f.organization_id = $1
                  and f.deleted_at is null
                order by f.uploaded_at desc, f.id desc
                limit $2
                offset $3
                "#
            ),
            &[org_id.as_uuid(), &limit, &offset],
        ),
        Some(status) => (
            select_files!(
                r#"
                where f.organization_id = $1
                  and f.deleted_at is null
                  and f.status = $4
                order by f.uploaded_at desc, f.id desc
                limit $2
                offset $3
                "#
            ),
            &[org_id.as_uuid(), &limit, &offset, status],
        ),
    };
    let (rows, total) = tx
        .query_page(
            page_sql,
            page_params,
            // O(1): the counters the database keeps per organization and status (V5), not a
            // count over the organization's files.
            r#"
            select case $2::text
                     when 'pending' then files_pending
                     when 'ready' then files_ready
                     when 'failed' then files_failed
                     else files_pending + files_ready + files_failed
                   end
              from app.organizations
             where id = $1
            "#,
            &[org_id.as_uuid(), &status],
        )
        .await?;
    Ok(Page { files: rows.iter().map(FileRow::from_row).collect::<Result<_, _>>()?, total })
}

/// Who uploaded each of the live files among `ids`, so the caller can decide (all or nothing)
/// whether the acting user may change them. Ids that are foreign, deleted or unknown are simply
/// absent. (Not `FOR UPDATE`: that would apply the UPDATE policy and hide the files the caller
/// may see but not change, turning a clear 403 into a 404. The changing statement re-checks.)
#[tracing::instrument(name = "db.files.uploaders", skip_all, fields(count = ids.len()))]
pub async fn uploaders(tx: impl Into<Reading<'_>>, ids: &[FileId]) -> Result<Vec<(FileId, UserId)>, DbError> {
    let tx = tx.into();
    let ids: Vec<uuid::Uuid> = ids.iter().map(|id| *id.as_uuid()).collect();
    let rows = tx
        .query(
            r#"
            select id, uploaded_by
              from app.files
             where id = any($1)
               and deleted_at is null
            "#,
            &[&ids],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok((FileId::from_uuid(decode(row.try_get("id"))?), UserId::from_uuid(decode(row.try_get("uploaded_by"))?)))
        })
        .collect()
}

/// Renames a live file; `false` if it is not there (or the policies do not let the caller
/// change it).
#[tracing::instrument(name = "db.files.rename", skip_all, fields(file_id = %id))]
pub async fn rename(tx: impl Into<Writing<'_>>, id: FileId, filename: &Filename) -> Result<bool, DbError> {
    let tx = tx.into();
    let renamed = tx
        .execute(
            r#"
        update app.files
           set filename = $2
         where id = $1
           and deleted_at is null
        "#,
            &[id.as_uuid(), &filename.as_str()],
        )
        .await?;
    Ok(renamed == 1)
}

/// Soft-deletes and returns how many were deleted; the usage trigger gives the bytes back to
/// the quota in the same statement.
#[tracing::instrument(name = "db.files.mark_deleted", skip_all, fields(count = ids.len()))]
pub async fn mark_deleted(tx: impl Into<Writing<'_>>, ids: &[FileId]) -> Result<u64, DbError> {
    let tx = tx.into();
    let ids: Vec<uuid::Uuid> = ids.iter().map(|id| *id.as_uuid()).collect();
    tx.execute(
        r#"
        update app.files
           set deleted_at = now()
         where id = any($1)
           and deleted_at is null
        "#,
        &[&ids],
    )
    .await
}

// The worker's queries, run in a tenant transaction built from the job message: under RLS a
// forged organization, a user of another organization or a deleted file simply find nothing.

/// What validation needs to know about a file that is still waiting for it.
pub struct PendingFile {
    pub filename: String,
    pub size: i64,
    pub sha256: String,
    pub org_within_quota: bool,
}

/// The file, if it is live and pending and the job's user is still an active member of the
/// job's organization; `None` for every stale or forged job.
#[tracing::instrument(name = "db.files.find_pending", skip_all, fields(file_id = %file_id))]
pub async fn find_pending(tx: impl Into<Reading<'_>>, file_id: FileId) -> Result<Option<PendingFile>, DbError> {
    let tx = tx.into();
    let ctx = *tx.ctx();
    let row = tx
        .query_opt(
            r#"
            select f.filename, f.file_size_bytes, f.sha256,
                   o.storage_used_bytes <= o.storage_quota_mb * 1048576 as org_within_quota
              from app.files f
              join app.organizations o on o.id = f.organization_id
              join app.users u on u.id = $2 and u.organization_id = f.organization_id
             where f.id = $1
               and f.status = 'pending'
               and f.deleted_at is null
               and u.is_active
            "#,
            &[file_id.as_uuid(), ctx.user_id.as_uuid()],
        )
        .await?;
    row.map(|row| {
        Ok(PendingFile {
            filename: decode(row.try_get("filename"))?,
            size: decode(row.try_get("file_size_bytes"))?,
            sha256: decode(row.try_get("sha256"))?,
            org_within_quota: decode(row.try_get("org_within_quota"))?,
        })
    })
    .transpose()
}

/// Records a validation outcome, re-checking in the same statement that the file is still
/// pending and live and the user still active. `false` means another delivery got there first
/// or the job went stale meanwhile; nothing changed (processing is idempotent).
#[tracing::instrument(name = "db.files.record_outcome", skip_all, fields(file_id = %file_id, status = status.as_str()))]
pub async fn record_outcome(
    tx: impl Into<Writing<'_>>,
    file_id: FileId,
    status: FileStatus,
    mime_type: Option<&str>,
    error_message: Option<&str>,
) -> Result<bool, DbError> {
    let tx = tx.into();
    let ctx = *tx.ctx();
    let updated = tx
        .execute(
            r#"
            update app.files f
               set status = $2,
                   mime_type = $3,
                   error_message = $4,
                   processed_at = now()
             where f.id = $1
               and f.status = 'pending'
               and f.deleted_at is null
               and exists (select from app.users u
                            where u.id = $5
                              and u.organization_id = f.organization_id
                              and u.is_active)
            "#,
            &[file_id.as_uuid(), &status.as_str(), &mime_type, &error_message, ctx.user_id.as_uuid()],
        )
        .await?;
    Ok(updated == 1)
}
