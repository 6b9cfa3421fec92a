//! The worker's queries, run in a tenant transaction built from the job message: under RLS a
//! forged organization, a user of another organization or a deleted file simply find nothing.

use super::{decode, DbError, TenantTx};
use crate::domain::{FileId, FileStatus};

/// What validation needs to know about a file that is still waiting for it.
pub struct PendingFile {
    pub filename: String,
    pub size: i64,
    pub sha256: String,
    pub org_within_quota: bool,
}

/// The file, if it is live and pending and the job's user is still an active member of the
/// job's organization; `None` for every stale or forged job.
#[tracing::instrument(name = "db.jobs.find_pending", skip_all, fields(file_id = %file_id))]
pub async fn find_pending(tx: &TenantTx, file_id: FileId) -> Result<Option<PendingFile>, DbError> {
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
            &[file_id.as_uuid(), tx.ctx().user_id.as_uuid()],
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
#[tracing::instrument(name = "db.jobs.record_outcome", skip_all, fields(file_id = %file_id, status = status.as_str()))]
pub async fn record_outcome(
    tx: &TenantTx,
    file_id: FileId,
    status: FileStatus,
    mime_type: Option<&str>,
    error_message: Option<&str>,
) -> Result<bool, DbError> {
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
            &[file_id.as_uuid(), &status.as_str(), &mime_type, &error_message, tx.ctx().user_id.as_uuid()],
        )
        .await?;
    Ok(updated == 1)
}

/// Adds the validation job for a just-inserted file (same transaction as the file row).
#[tracing::instrument(name = "db.jobs.enqueue", skip_all, fields(file_id = %file_id))]
pub async fn enqueue(tx: &TenantTx, job_id: uuid::Uuid, file_id: FileId) -> Result<(), DbError> {
    let ctx = tx.ctx();
    tx.execute(
        r#"
        insert into app.outbox (id, organization_id, file_id, user_id)
        values ($1, $2, $3, $4)
        "#,
        &[&job_id, ctx.org_id.as_uuid(), file_id.as_uuid(), ctx.user_id.as_uuid()],
    )
    .await?;
    Ok(())
}
