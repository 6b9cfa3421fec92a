//! Periodic housekeeping: removes the bytes of soft-deleted files, and gives files stuck in
//! `pending` (a lost message, a crash between steps) a new job.

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
        if let Err(e) = requeue_stale(&ctx).await {
            tracing::warn!(error = format!("{e:#}"), "pending sweep failed; will retry");
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

pub async fn requeue_stale(ctx: &WorkerCtx) -> anyhow::Result<i32> {
    let conn = ctx.db.system_conn().await?;
    let after = i64::try_from(ctx.config.pending_sweep_after_seconds).unwrap_or(i64::MAX);
    let queued = system::requeue_stale_pending(&conn, after, BATCH).await?;
    if queued > 0 {
        tracing::warn!(queued, "re-enqueued files stuck in pending");
    }
    Ok(queued)
}
