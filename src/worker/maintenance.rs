//! Periodic housekeeping: removes the bytes of soft-deleted files and of resumable uploads that
//! expired unfinished, and chunk objects no upload refers to; gives files stuck in `pending` (a
//! lost message, a crash between steps) a new job; and prunes expired sessions and finished
//! login-throttling windows so those tables do not only grow.

use std::{sync::Arc, time::Duration};

use tokio::time::Instant;

use tokio_util::sync::CancellationToken;

use super::{pause, WorkerCtx};
use crate::{
    db::system,
    domain::{FileId, OrgId},
};

const BATCH: i32 = 500;
/// Chunk objects one sweep checks at most (the next sweep takes the rest).
const SWEEP_BATCH: usize = 10_000;
/// At most this many prune batches a round (with BATCH, 50,000 rows of each kind).
const MAX_PRUNE_ROUNDS: usize = 100;

pub async fn run(ctx: Arc<WorkerCtx>, shutdown: CancellationToken) {
    let every = Duration::from_millis(ctx.config.worker.maintenance_interval_ms);
    let sweep_every = Duration::from_secs(ctx.config.worker.chunk_sweep_grace_seconds);
    let mut swept: Option<Instant> = None;
    while pause(&shutdown, every).await {
        // Lists the store: once per grace period, not every round.
        if swept.is_none_or(|at| at.elapsed() >= sweep_every) {
            swept = Some(Instant::now());
            if let Err(e) = sweep_orphan_chunks(&ctx).await {
                tracing::warn!(error = format!("{e:#}"), "sweep of unreferenced upload chunks failed; will retry");
            }
        }
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
    system::purge_done(&tx, &claimed).await?;
    tx.commit().await?;
    if !claimed.is_empty() {
        tracing::info!(purged = claimed.len(), "removed the bytes of deleted files");
    }
    Ok(claimed.len())
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

/// Removes chunk objects that no upload refers to, once older than CHUNK_SWEEP_GRACE_SECONDS:
/// left by a process killed between storing a chunk and recording it, by a failed removal, or
/// by uploads ended in the database alone (a deactivated user's). A chunk of an upload a
/// `PATCH` holds is left alone (it may be stored and not yet recorded), as is any chunk
/// younger than the grace period.
pub async fn sweep_orphan_chunks(ctx: &WorkerCtx) -> anyhow::Result<usize> {
    let grace =
        chrono::Duration::seconds(i64::try_from(ctx.config.worker.chunk_sweep_grace_seconds).unwrap_or(i64::MAX));
    let before = chrono::Utc::now() - grace;
    let cut_off = ctx.store.remove_cut_off_writes(before).await?;
    let found = ctx.store.chunks_written_before(before, SWEEP_BATCH).await?;
    if found.is_empty() {
        return Ok(cut_off);
    }
    let uploads: std::collections::HashSet<(OrgId, FileId)> =
        found.iter().map(|chunk| (chunk.org, chunk.upload)).collect();
    let uploads: Vec<(OrgId, FileId)> = uploads.into_iter().collect();
    let in_use = system::tus_chunks_in_use(&ctx.db.system_conn().await?, &uploads).await?;
    let mut removed = cut_off;
    for chunk in &found {
        let referred = in_use
            .get(&chunk.upload)
            .is_some_and(|upload| upload.org == chunk.org && (upload.leased || upload.nonces.contains(&chunk.nonce)));
        if !referred {
            ctx.store.remove_stored_chunk(chunk).await?;
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::info!(removed, "removed upload chunks no upload refers to");
    }
    Ok(removed)
}

/// Gives stuck pending files a new job, or marks them failed when their uploader was
/// deactivated (no job could be authorized for them any more); returns how many it settled.
pub async fn requeue_stale(ctx: &WorkerCtx) -> anyhow::Result<i32> {
    let conn = ctx.db.system_conn().await?;
    let after = i64::try_from(ctx.config.worker.pending_sweep_after_seconds).unwrap_or(i64::MAX);
    let settled = system::requeue_stale_pending(&conn, after, BATCH).await?;
    if settled > 0 {
        tracing::warn!(settled, "re-enqueued (or failed, for deactivated uploaders) files stuck in pending");
    }
    Ok(settled)
}

/// Expired sessions, finished throttling windows, lapsed reservations and events past their
/// retention, a bounded batch of each at a time, until a batch comes back short (or
/// [`MAX_PRUNE_ROUNDS`] batches): one busy organization writes events faster than one batch a
/// round would remove them, and the table would grow past its retention without bound.
pub async fn prune_expired(ctx: &WorkerCtx) -> anyhow::Result<i32> {
    let conn = ctx.db.system_conn().await?;
    let retention = i64::from(ctx.config.worker.event_retention_days) * 86_400;
    let window = i64::from(ctx.config.auth.login_window_seconds);
    let mut pruned = 0;
    for _ in 0..MAX_PRUNE_ROUNDS {
        let batch = system::prune_expired(&conn, window, retention, BATCH).await?;
        pruned += batch;
        if batch < BATCH {
            break;
        }
    }
    if pruned > 0 {
        tracing::info!(pruned, "pruned expired sessions, login windows, reservations and events");
    }
    Ok(pruned)
}
