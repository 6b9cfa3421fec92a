//! The outbox relay: publishes committed jobs to RabbitMQ with publisher confirms and deletes
//! them only once confirmed. A broker outage delays jobs; it never loses one. The claimed rows
//! stay locked (FOR UPDATE SKIP LOCKED) until the batch is done, so concurrent relays in other
//! processes never publish the same job at the same time.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use super::{pause, Backoff, JobMessage, WorkerCtx};
use crate::{
    db::system,
    domain::JobId,
    queue::{self, Publisher, VALIDATE_ROUTING_KEY},
};

const BATCH: i32 = 200;

pub async fn run(ctx: Arc<WorkerCtx>, shutdown: CancellationToken) {
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
            let batch = relay_batch(&ctx, &publisher).await;
            if batch.is_ok() {
                backoff.reset();
            }
            match batch {
                Ok(published) if published == BATCH as usize => continue,
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
                        "relay batch failed; jobs stay in the outbox"
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

/// Publishes up to one batch; returns how many jobs left the outbox.
pub async fn relay_batch(ctx: &WorkerCtx, publisher: &Publisher) -> anyhow::Result<usize> {
    let mut conn = ctx.db.system_conn().await?;
    let tx = conn.begin().await?;
    let jobs = system::outbox_claim(&tx, BATCH).await?;
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
    let ids: Vec<JobId> = jobs.iter().map(|job| job.job_id).collect();
    system::outbox_delete(&tx, &ids).await?;
    tx.commit().await?;
    ctx.metrics.jobs_published.inc_by(ids.len() as u64);
    tracing::debug!(published = ids.len(), "relayed jobs");
    Ok(ids.len())
}
