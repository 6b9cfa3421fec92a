//! Periodic housekeeping: removes the bytes of soft-deleted files and of resumable uploads that
//! expired unfinished, gives files stuck in `pending` (a lost message, a crash between steps) a
//! new job, and prunes expired sessions and finished login-throttling windows so those tables
//! do not only grow.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use super::{pause, WorkerCtx};
use crate::db::system;

const BATCH: i32 = 500;

pub async fn run(ctx: Arc<WorkerCtx>, shutdown: CancellationToken) {
    let every = Duration::from_millis(ctx.config.maintenance_interval_ms);
    while pause(&shutdown, every).await {
        if let Err(e) = purge_deleted(&ctx).await {
            tracing::warn!(error = format!("{e:#}"), "purge of deleted files failed; will retry");
        }
        if let Err(e) = expire_tus_uploads(&ctx).await {
            tracing::warn!(error = format!("{e:#}"), "removal of expired resumable uploads failed; will retry");
        }
        if let Err(e) = requeue_stale(&ctx).await {
            tracing::warn!(error = format!("{e:#}"), "pending sweep failed; will retry");
        }
        if let Err(e) = prune_expired(&ctx).await {
            tracing::warn!(error = format!("{e:#}"), "pruning expired sessions failed; will retry");
        }
    }
}

/// Removes the bytes of deleted files, then forgets them (the rows stay, deleted).
pub async fn purge_deleted(ctx: &WorkerCtx) -> anyhow::Result<usize> {
    let mut conn = ctx.db.system_conn().await?;
    let tx = conn.begin().await?;
    let claimed = system::purge_claim(&tx, BATCH).await?;
    for (org_id, file_id) in &claimed {
        ctx.store.remove(*org_id, *file_id).await?;
    }
    let ids: Vec<uuid::Uuid> = claimed.iter().map(|(_, file_id)| *file_id.as_uuid()).collect();
    system::purge_done(&tx, &ids).await?;
    tx.commit().await?;
    if !ids.is_empty() {
        tracing::info!(purged = ids.len(), "removed the bytes of deleted files");
    }
    Ok(ids.len())
}

/// Removes resumable uploads that expired before completing: their chunks in the store, then
/// their rows (their quota reservations expire with them and are pruned).
pub async fn expire_tus_uploads(ctx: &WorkerCtx) -> anyhow::Result<usize> {
    let mut conn = ctx.db.system_conn().await?;
    let tx = conn.begin().await?;
    let expired = system::tus_expire(&tx, BATCH).await?;
    for (org_id, upload_id, chunks) in &expired {
        ctx.store.remove_chunks(*org_id, *upload_id, chunks).await?;
    }
    tx.commit().await?;
    if !expired.is_empty() {
        tracing::info!(expired = expired.len(), "removed expired resumable uploads");
    }
    Ok(expired.len())
}

/// Gives stuck pending files a new job, or marks them failed when their uploader was
/// deactivated (no job could be authorized for them any more); returns how many it settled.
pub async fn requeue_stale(ctx: &WorkerCtx) -> anyhow::Result<i32> {
    let conn = ctx.db.system_conn().await?;
    let after = i64::try_from(ctx.config.pending_sweep_after_seconds).unwrap_or(i64::MAX);
    let settled = system::requeue_stale_pending(&conn, after, BATCH).await?;
    if settled > 0 {
        tracing::warn!(settled, "re-enqueued (or failed, for deactivated uploaders) files stuck in pending");
    }
    Ok(settled)
}

/// One bounded batch each of expired sessions and finished throttling windows; the loop's next
/// round takes the next batch.
pub async fn prune_expired(ctx: &WorkerCtx) -> anyhow::Result<i32> {
    let conn = ctx.db.system_conn().await?;
    let pruned = system::prune_expired(&conn, i64::from(ctx.config.login_window_seconds), BATCH).await?;
    if pruned > 0 {
        tracing::info!(pruned, "pruned expired sessions and login windows");
    }
    Ok(pruned)
}
