//! The consumers: each takes messages from its lane's queue (validation jobs from the work
//! queue, at most `WORKER_PREFETCH` unacknowledged at once; webhook deliveries, at most
//! `WEBHOOK_CONCURRENCY`), which also bounds the work in progress, processes each, and settles
//! it only after its outcome is committed (at-least-once; processing is idempotent).

use std::sync::Arc;

use futures_util::StreamExt;
use lapin::{
    message::Delivery,
    options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions},
    types::FieldTable,
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{job, pause, webhooks, Backoff, JobMessage, Lane, Outcome, WorkerCtx};
use crate::queue::{self, Publisher};

pub async fn run(ctx: Arc<WorkerCtx>, shutdown: CancellationToken, lane: Lane) {
    let mut backoff = Backoff::new();
    while !shutdown.is_cancelled() {
        match consume(&ctx, &shutdown, &mut backoff, lane).await {
            Ok(()) => return,
            Err(e) => {
                let wait = backoff.next();
                tracing::warn!(
                    error = format!("{e:#}"),
                    retry_in_ms = wait.as_millis() as u64,
                    "consumer lost the broker; reconnecting"
                );
                if !pause(&shutdown, wait).await {
                    return;
                }
            }
        }
    }
}

/// Consumes until shutdown (`Ok`) or until the connection fails (`Err`, the caller reconnects).
/// Either way the jobs already in progress finish first.
async fn consume(
    ctx: &Arc<WorkerCtx>,
    shutdown: &CancellationToken,
    backoff: &mut Backoff,
    lane: Lane,
) -> anyhow::Result<()> {
    let timeout = ctx.config.broker.timeout();
    let (connection, channel) =
        queue::connect(&ctx.config.broker.amqp_url, &ctx.topology, "tenant-files worker", timeout).await?;
    // basic.qos: the broker sends at most this many unacknowledged deliveries to this channel
    // (https://www.rabbitmq.com/amqp-0-9-1-reference.html#basic.qos). Small, so a busy worker
    // leaves the rest of the queue to other workers.
    queue::bounded(timeout, channel.basic_qos(lane.prefetch(ctx), BasicQosOptions::default())).await?;
    // Job retries are published on their own confirming channel (a delivery's retry is
    // scheduled in the database instead: `webhooks`).
    let retries = match lane {
        Lane::Validation => {
            Some(Arc::new(Publisher::new(queue::bounded(timeout, connection.create_channel()).await?, timeout).await?))
        }
        Lane::Webhooks => None,
    };
    let tag = format!("tenant-files-worker-{}", uuid::Uuid::new_v4());
    // no_ack: false (the default): a delivery stays ours until we ack or reject it, and is
    // redelivered to another consumer if this connection dies first.
    let mut deliveries = channel
        .basic_consume(
            lane.queue(ctx).into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    backoff.reset();
    tracing::info!(queue = %lane.queue(ctx), consumer = %tag, "consuming");
    lane.set_consuming(ctx, true);

    let mut in_flight = JoinSet::new();
    let ended = loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break Ok(()),
            Some(finished) = in_flight.join_next(), if !in_flight.is_empty() => {
                if let Err(e) = finished {
                    tracing::error!(error = %e, "a job task panicked; its delivery will be redelivered");
                }
            }
            delivery = deliveries.next() => match delivery {
                Some(Ok(delivery)) => match &retries {
                    Some(retries) => { in_flight.spawn(settle(ctx.clone(), retries.clone(), delivery)); }
                    None => { in_flight.spawn(webhooks::settle(ctx.clone(), delivery)); }
                },
                Some(Err(e)) => break Err(anyhow::Error::new(e).context("consumer stream failed")),
                None => break Err(anyhow::anyhow!("the broker cancelled the consumer")),
            },
        }
    };
    lane.set_consuming(ctx, false);
    // Finish the jobs in hand (their acks need this channel), then close it. Deliveries the
    // broker sent but we did not start go back to the queue when the channel closes.
    while let Some(finished) = in_flight.join_next().await {
        if let Err(e) = finished {
            tracing::error!(error = %e, "a job task panicked; its delivery will be redelivered");
        }
    }
    if ended.is_ok() {
        let _ = channel.close(200, "worker shutting down".into()).await;
        let _ = connection.close(200, "worker shutting down".into()).await;
    }
    ended
}

/// Processes one delivery and settles it according to its outcome; the one place where acks,
/// retries and dead-lettering are decided.
pub(super) async fn settle(ctx: Arc<WorkerCtx>, retries: Arc<Publisher>, delivery: Delivery) {
    let outcome = job::process(&ctx, &delivery.data).await;
    let timeout = ctx.config.broker.timeout();
    let ack = || queue::bounded(timeout, delivery.ack(BasicAckOptions::default()));
    let dead_letter = || queue::bounded(timeout, delivery.reject(BasicRejectOptions { requeue: false }));
    let settled = match &outcome {
        Outcome::Validated { .. } | Outcome::Refused { .. } => ack().await,
        Outcome::Retry { job, .. } => {
            let next = JobMessage { attempt: job.attempt + 1, ..job.clone() };
            let retry_queue = ctx.topology.retry_queue(ctx.retry_delay_ms(job.attempt));
            // Publish the retry first, then ack: a crash in between duplicates the job (harmless)
            // rather than losing it.
            match retries.publish_confirmed("", retry_queue, &[(next.job_id.to_string(), next.encode())]).await {
                Ok(()) => ack().await,
                Err(e) => {
                    tracing::warn!(job_id = %job.job_id, error = %e,
                        "cannot schedule the retry; dead-lettering (the pending sweep re-enqueues the file)");
                    dead_letter().await
                }
            }
        }
        Outcome::Exhausted { .. } | Outcome::Permanent { .. } | Outcome::Malformed { .. } => dead_letter().await,
    };
    if let Err(e) = settled {
        tracing::warn!(error = %e, outcome = outcome.label(), "could not settle the delivery; the broker will redeliver it");
    }
}
