//! The outbox relay: publishes committed jobs to RabbitMQ with publisher confirms and deletes
//! them only once confirmed; a second loop of it publishes the webhook deliveries that are due
//! (`webhooks::relay_batch`), so neither backlog slows the other's rounds. A broker outage delays jobs; it never loses one. The claimed rows
//! stay locked (FOR UPDATE SKIP LOCKED) until the batch is done, so concurrent relays in other
//! processes never publish the same job at the same time.
//!
//! Fair share: the relay keeps the work queue shallow (`RELAY_QUEUE_DEPTH` jobs ready at most)
//! and claims jobs in turns across organizations (migrations/V22), so a backlog waits in the
//! outbox, and another organization's next job goes out in the next batch instead of behind
//! the whole backlog.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use super::{pause, webhooks, Backoff, JobMessage, Lane, WorkerCtx};
use crate::{
    db::system,
    domain::{JobId, OrgId},
    queue::{self, Publisher, VALIDATE_ROUTING_KEY},
};

/// Jobs (or deliveries) the relay publishes at most in one transaction.
pub(super) const BATCH: i32 = 200;

pub async fn run(ctx: Arc<WorkerCtx>, shutdown: CancellationToken, lane: Lane) {
    let idle = Duration::from_millis(ctx.config.worker.relay_interval_ms);
    let mut backoff = Backoff::new();
    while !shutdown.is_cancelled() {
        let (_connection, publisher) = match connect(&ctx).await {
            Ok(connected) => connected,
            Err(e) => {
                let wait = backoff.next();
                tracing::warn!(
                    error = format!("{e:#}"),
                    retry_in_ms = wait.as_millis() as u64,
                    "relay cannot reach the broker"
                );
                if !pause(&shutdown, wait).await {
                    return;
                }
                continue;
            }
        };
        loop {
            let batch = match lane {
                Lane::Validation => relay_batch(&ctx, &publisher).await,
                Lane::Webhooks => webhooks::relay_batch(&ctx, &publisher).await,
            };
            if batch.is_ok() {
                backoff.reset();
            }
            match batch {
                Ok(published) if published == BATCH as usize => continue,
                Ok(_) if lane == Lane::Webhooks => {
                    // A finished delivery frees a slot of its endpoint: claim again at once.
                    tokio::select! {
                        _ = ctx.relay_wake.notified() => {}
                        going_on = pause(&shutdown, idle) => if !going_on { return },
                    }
                }
                Ok(_) => {
                    if !pause(&shutdown, idle).await {
                        return;
                    }
                }
                Err(e) => {
                    let wait = backoff.next();
                    tracing::warn!(
                        error = format!("{e:#}"),
                        retry_in_ms = wait.as_millis() as u64,
                        "relay batch failed; what was due stays in the database"
                    );
                    if !pause(&shutdown, wait).await {
                        return;
                    }
                    break; // reconnect: the channel may be gone
                }
            }
        }
    }
}

async fn connect(ctx: &WorkerCtx) -> anyhow::Result<(lapin::Connection, Publisher)> {
    let timeout = ctx.config.broker.timeout();
    let (connection, channel) =
        queue::connect(&ctx.config.broker.amqp_url, &ctx.topology, "tenant-files relay", timeout).await?;
    Ok((connection, Publisher::new(channel, timeout).await?))
}

/// Publishes up to one batch (fewer while the work queue is full); returns how many jobs left
/// the outbox.
pub async fn relay_batch(ctx: &WorkerCtx, publisher: &Publisher) -> anyhow::Result<usize> {
    let room = room_in_queue(ctx, publisher, &ctx.topology.work_queue).await?;
    if room == 0 {
        return Ok(0);
    }
    let mut conn = ctx.db.system_conn().await?;
    let tx = conn.begin().await?;
    let jobs = system::outbox_claim(&tx, room).await?;
    if jobs.is_empty() {
        return Ok(0);
    }
    let messages: Vec<(String, Vec<u8>)> = jobs
        .iter()
        .map(|job| {
            let message = JobMessage {
                job_id: job.job_id,
                file_id: job.file_id,
                organization_id: job.org_id,
                user_id: job.user_id,
                attempt: 1,
            };
            (job.job_id.to_string(), message.encode())
        })
        .collect();
    publisher.publish_confirmed(&ctx.topology.exchange, VALIDATE_ROUTING_KEY, &messages).await?;
    // Confirmed: now the jobs may leave the outbox. Should this commit fail, they are published
    // again later; the worker's processing is idempotent.
    let published: Vec<(OrgId, JobId)> = jobs.iter().map(|job| (job.org_id, job.job_id)).collect();
    system::outbox_delete(&tx, &published).await?;
    tx.commit().await?;
    ctx.metrics.jobs_published.inc_by(published.len() as u64);
    tracing::debug!(published = published.len(), "relayed jobs");
    Ok(published.len())
}

/// How many messages the next batch may publish to `queue`: a whole batch, or what keeps it
/// within `RELAY_QUEUE_DEPTH`.
pub(super) async fn room_in_queue(ctx: &WorkerCtx, publisher: &Publisher, queue: &str) -> anyhow::Result<i32> {
    let depth = ctx.config.worker.relay_queue_depth;
    if depth == 0 {
        return Ok(BATCH);
    }
    let ready = publisher.ready(queue).await?;
    Ok(i32::try_from(depth.saturating_sub(ready)).unwrap_or(BATCH).min(BATCH))
}
