//! Queries on `app.files`, always inside a tenant transaction. Every read skips soft-deleted
//! rows; the organization filter is a courtesy to the planner (RLS is the guarantee).

use chrono::{DateTime, Utc};
use tokio_postgres::Row;

mod list;
mod search;

pub use list::{list_page, Direction, Listing, Page, Position, SortKey, Start, SEARCH_COUNT_LIMIT};

use super::{audit::Event, decode, DbError, Param, TenantRead, TenantWrite};
use crate::domain::{FileId, FileStatus, Filename, JobId, OrgId, UserId};

/// A stored file: where its bytes are and what they are — what serving them needs, whether
/// the caller reached it as a tenant (inside [`FileRow`]) or through a share link
/// (`system::share_link_open`).
pub struct StoredFile {
    pub id: FileId,
    /// Where its bytes are kept (`{organization}/{file}`).
    pub organization_id: OrgId,
    pub filename: String,
    pub size: i64,
    pub mime_type: Option<String>,
    pub sha256: String,
    pub uploaded_at: DateTime<Utc>,
}

impl StoredFile {
    /// From a row with the columns `id`, `organization_id`, `filename`, `file_size_bytes`,
    /// `mime_type`, `sha256` and `uploaded_at`.
    pub(super) fn from_row(row: &Row) -> Result<Self, DbError> {
        Ok(Self {
            id: FileId::from_uuid(decode(row.try_get("id"))?),
            organization_id: OrgId::from_uuid(decode(row.try_get("organization_id"))?),
            filename: decode(row.try_get("filename"))?,
            size: decode(row.try_get("file_size_bytes"))?,
            mime_type: decode(row.try_get("mime_type"))?,
            sha256: decode(row.try_get("sha256"))?,
            uploaded_at: decode(row.try_get("uploaded_at"))?,
        })
    }
}

/// A file as the API shows it (detail and list): the stored file, and where validation stands.
pub struct FileRow {
    pub file: StoredFile,
    pub status: FileStatus,
    pub error_message: Option<String>,
    pub processed_at: Option<DateTime<Utc>>,
    pub uploaded_by_email: String,
}

impl FileRow {
    fn from_row(row: &Row) -> Result<Self, DbError> {
        let status: String = decode(row.try_get("status"))?;
        Ok(Self {
            file: StoredFile::from_row(row)?,
            status: FileStatus::from_db(&status)
                .ok_or_else(|| DbError::Decode(anyhow::anyhow!("unknown file status {status:?}")))?,
            error_message: decode(row.try_get("error_message"))?,
            processed_at: decode(row.try_get("processed_at"))?,
            uploaded_by_email: decode(row.try_get("uploaded_by_email"))?,
        })
    }
}

/// What an upload records once the bytes are safely on disk.
pub struct NewFile<'a> {
    pub id: FileId,
    pub filename: &'a Filename,
    pub size: i64,
    pub sha256: &'a str,
}

/// Records a completely received upload and commits `tx`, in one statement sent with its
/// `COMMIT`: the file row (pending), its validation job (transactional outbox: the job commits
/// with the row or not at all), the release of its reservation (from the commit on, its bytes
/// count as stored instead) and the audit entry. Every upload of an organization updates that
/// organization's row (usage, counters, reservations) and holds it until commit; one statement
/// with its commit holds it for the server's own work only (docs/performance.md, "Small
/// uploads"). A refusal (`organizations_within_quota`) leaves nothing.
#[tracing::instrument(name = "db.files.record_upload", skip_all, fields(file_id = %file.id))]
pub async fn record_upload(
    tx: impl TenantWrite,
    file: &NewFile<'_>,
    job_id: JobId,
    event: Event<'_>,
) -> Result<(), DbError> {
    let ctx = *tx.ctx();
    let (target_type, target_id) = event.target.unzip();
    tx.execute(
        r#"
        with file as (
          insert into app.files (id, organization_id, filename, file_size_bytes, sha256, uploaded_by)
          values ($1, $2, $3, $4, $5, $6)
        ), job as (
          insert into app.outbox (id, organization_id, file_id, user_id)
          values ($7, $2, $1, $6)
        ), released as (
          delete from app.upload_reservations where id = $1
        )
        insert into app.audit_log (organization_id, actor_user_id, action, target_type, target_id, details, request_id)
        values ($2, $6, $8, $9, $10, $11, $12)
        "#,
        &[
            file.id.as_uuid(),
            ctx.org_id.as_uuid(),
            &file.filename.as_str(),
            &file.size,
            &file.sha256,
            ctx.user_id.as_uuid(),
            job_id.as_uuid(),
            &event.action.as_str(),
            &target_type,
            &target_id,
            &event.details,
            &event.request_id,
        ],
    )
    .await?;
    Ok(())
}

/// The columns of [`FileRow`], of files `f` joined with their uploaders `u`.
macro_rules! file_columns {
    () => {
        "f.id, f.organization_id, f.filename, f.file_size_bytes, f.mime_type, f.sha256, f.status, \
         f.error_message, f.uploaded_at, f.processed_at, u.email as uploaded_by_email"
    };
}

pub(super) use file_columns;

/// The columns of [`FileRow`] followed by the given filter: constant SQL, built at compile time.
macro_rules! select_files {
    ($filter:literal) => {
        concat!(
            "select ",
            file_columns!(),
            " from app.files f join app.users u on u.organization_id = f.organization_id and u.id = f.uploaded_by ",
            $filter
        )
    };
}

#[tracing::instrument(name = "db.files.find", skip_all, fields(file_id = %id))]
pub async fn find(tx: impl TenantRead, id: FileId) -> Result<Option<FileRow>, DbError> {
    let sql = select_files!(
        r#"
        where f.id = $1
          and f.deleted_at is null
        "#
    );
    tx.query_opt(sql, &[id.as_uuid()]).await?.as_ref().map(FileRow::from_row).transpose()
}

/// Who uploaded each of the live files among `ids`, so the caller can decide (all or nothing)
/// whether the acting user may change them. Ids that are foreign, deleted or unknown are simply
/// absent. (Not `FOR UPDATE`: that would apply the UPDATE policy and hide the files the caller
/// may see but not change, turning a clear 403 into a 404. The changing statement re-checks.)
#[tracing::instrument(name = "db.files.uploaders", skip_all, fields(count = ids.len()))]
pub async fn uploaders(tx: impl TenantRead, ids: &[FileId]) -> Result<Vec<(FileId, UserId)>, DbError> {
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
pub async fn rename(tx: impl TenantWrite, id: FileId, filename: &Filename) -> Result<bool, DbError> {
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
pub async fn mark_deleted(tx: impl TenantWrite, ids: &[FileId]) -> Result<u64, DbError> {
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
    /// The MIME patterns the organization accepts (V28), if it says.
    pub allowed_types: Option<Vec<String>>,
}

const FIND_PENDING: &str = concat!(
    r#"
    select f.filename, f.file_size_bytes, f.sha256, o.allowed_types,
           o.storage_used_bytes <= o.storage_quota_mb * 1048576 as org_within_quota
      from app.files f
      join app.organizations o on o.id = f.organization_id
      join app.users u on u.id = "#,
    tenant_user!(),
    r#" and u.organization_id = f.organization_id
     where f.id = $1
       and f.status = $2
       and f.deleted_at is null
       and u.is_active
"#
);

/// The file, if it is live and pending and the job's user is still an active member of the
/// job's organization; `None` for every stale or forged job.
///
/// Here and in [`record_outcomes`] the status is a parameter, not the literal `'pending'`: with
/// the literal, the partial index of pending files (V2, for the sweep) matches the statement, and
/// after a burst of uploads that statistics have not caught up with, that index looks empty and
/// the cached plan walks every pending file to find one id (0.01 ms became 9 ms per job at
/// 20,000 pending; docs/performance.md). A parameter keeps both statements on the primary key
/// (`tests::the_workers_lookups_stay_on_the_primary_key_after_a_burst_of_uploads`).
#[tracing::instrument(name = "db.files.find_pending", skip_all, fields(file_id = %file_id))]
pub async fn find_pending(tx: impl TenantRead, file_id: FileId) -> Result<Option<PendingFile>, DbError> {
    let row = tx.query_opt(FIND_PENDING, &[file_id.as_uuid(), &FileStatus::Pending.as_str()]).await?;
    row.map(|row| {
        Ok(PendingFile {
            filename: decode(row.try_get("filename"))?,
            size: decode(row.try_get("file_size_bytes"))?,
            sha256: decode(row.try_get("sha256"))?,
            org_within_quota: decode(row.try_get("org_within_quota"))?,
            allowed_types: decode(row.try_get("allowed_types"))?,
        })
    })
    .transpose()
}

/// What validating one pending file concluded, as recorded on its row.
#[derive(Debug, Clone)]
pub struct Validation {
    pub file_id: FileId,
    pub status: FileStatus,
    pub mime_type: Option<String>,
    pub error_message: Option<String>,
}

const RECORD_OUTCOMES: &str = r#"
    update app.files f
       set status = v.status,
           mime_type = v.mime_type,
           error_message = v.error_message,
           processed_at = now()
      from unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) as v (id, status, mime_type, error_message)
     where f.id = v.id
       and f.status = $6
       and f.deleted_at is null
       and exists (select from app.users u
                    where u.id = $5
                      and u.organization_id = f.organization_id
                      and u.is_active)
    returning f.id
"#;

/// Records validation verdicts of one tenant in one statement, re-checking in it that each file
/// is still pending and live and the user still active; returns the files it changed. A file
/// missing from the answer changed under the worker (another delivery got there first, or the
/// job went stale): nothing happened to it (processing is idempotent). The counters follow in
/// the same statement, once for the whole batch (V14).
#[tracing::instrument(name = "db.files.record_outcomes", skip_all, fields(files = verdicts.len()))]
pub async fn record_outcomes(tx: impl TenantWrite, verdicts: &[Validation]) -> Result<Vec<FileId>, DbError> {
    let ctx = *tx.ctx();
    let ids: Vec<uuid::Uuid> = verdicts.iter().map(|v| *v.file_id.as_uuid()).collect();
    let statuses: Vec<&str> = verdicts.iter().map(|v| v.status.as_str()).collect();
    let mime_types: Vec<Option<&str>> = verdicts.iter().map(|v| v.mime_type.as_deref()).collect();
    let errors: Vec<Option<&str>> = verdicts.iter().map(|v| v.error_message.as_deref()).collect();
    let rows = tx
        .query(
            RECORD_OUTCOMES,
            &[&ids, &statuses, &mime_types, &errors, ctx.user_id.as_uuid(), &FileStatus::Pending.as_str()],
        )
        .await?;
    rows.iter().map(|row| decode(row.try_get::<_, uuid::Uuid>(0)).map(FileId::from_uuid)).collect()
}

#[cfg(test)]
mod tests;
