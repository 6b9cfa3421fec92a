//! Webhook deliveries (#27): the relay publishes due deliveries to the webhook queue, and the
//! consumer attempts each: begins it in the database (which hands over the endpoint's secret),
//! posts it signed (Standard Webhooks), and records the outcome, which schedules the next
//! attempt (`WEBHOOK_RETRY_DELAYS_MS`) or ends the delivery, and may disable the endpoint.
//!
//! At least once, never lost: a delivery leaves the database only as delivered or failed. A
//! message lost (a failed publish, a broker that lost it), dead-lettered or taken by a killed
//! worker leaves its delivery leased, and the relay publishes it again when the lease ends
//! (3 × `WEBHOOK_TIMEOUT_MS`); a duplicate message begins nothing (only a queued delivery
//! begins). No database connection is held while an
//! endpoint answers. Order between deliveries is not kept.

use std::sync::Arc;

use lapin::{
    message::Delivery,
    options::{BasicAckOptions, BasicRejectOptions},
};
use serde::{Deserialize, Serialize};

use super::WorkerCtx;
use crate::{
    db::system::{self, WebhookAttempt, WebhookOutcome},
    domain::{DeliveryId, OrgId, WebhookUrl},
    queue::{self, Publisher, WEBHOOK_ROUTING_KEY},
    webhooks::{Attempt, Secret},
};

/// What the webhook queue carries: which delivery is due (nothing else: the database has it).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliveryMessage {
    organization_id: OrgId,
    delivery_id: DeliveryId,
}

/// Publishes up to one batch of due deliveries; returns how many went out. Like the jobs, they
/// wait in the database while the webhook queue holds `RELAY_QUEUE_DEPTH`: a backlog published
/// all at once would sit in the queue past its lease and be published again, and again.
pub async fn relay_batch(ctx: &WorkerCtx, publisher: &Publisher) -> anyhow::Result<usize> {
    let room = super::relay::room_in_queue(ctx, publisher, &ctx.topology.webhook_queue).await?;
    if room == 0 {
        return Ok(0);
    }
    // Queued and leased, committed, before any message exists: a consumer may take the message
    // before a transaction around the publish would have committed, and would find the delivery
    // not queued yet (its statement sees the last committed row and does not wait for a lock).
    // Should the publish fail, the lease brings them back.
    let per_endpoint = i32::from(ctx.config.webhooks.webhook_endpoint_concurrency);
    let conn = ctx.db.system_conn().await?;
    let due = system::webhook_deliveries_claim(&conn, room, lease_seconds(ctx), per_endpoint).await?;
    drop(conn);
    if due.is_empty() {
        return Ok(0);
    }
    let messages: Vec<(String, Vec<u8>)> = due
        .iter()
        .map(|(org, id)| {
            let message = DeliveryMessage { organization_id: *org, delivery_id: *id };
            (id.to_string(), serde_json::to_vec(&message).expect("a message serializes"))
        })
        .collect();
    let started = std::time::Instant::now();
    publisher.publish_confirmed(&ctx.topology.exchange, WEBHOOK_ROUTING_KEY, &messages).await?;
    tracing::debug!(
        published = due.len(),
        confirmed_in_ms = started.elapsed().as_secs_f64() * 1000.0,
        "relayed deliveries"
    );
    Ok(due.len())
}

/// Attempts one delivery and settles its message: acknowledged once the outcome is recorded
/// (or when there was nothing to do), dead-lettered when it is not a delivery message.
pub async fn settle(ctx: Arc<WorkerCtx>, message: Delivery) {
    let timeout = ctx.config.broker.timeout();
    let settled = match serde_json::from_slice::<DeliveryMessage>(&message.data) {
        Err(e) => {
            tracing::warn!(error = %e, "malformed webhook message; dead-lettered");
            queue::bounded(timeout, message.reject(BasicRejectOptions { requeue: false })).await
        }
        Ok(due) => {
            if let Err(e) = attempt(&ctx, &due).await {
                // Still leased: the relay publishes it again when the lease ends.
                tracing::warn!(delivery_id = %due.delivery_id, error = format!("{e:#}"),
                    "webhook attempt not recorded; it is tried again when its lease ends");
            }
            queue::bounded(timeout, message.ack(BasicAckOptions::default())).await
        }
    };
    if let Err(e) = settled {
        tracing::warn!(error = %e, "could not settle a webhook message; the broker will redeliver it");
    }
}

async fn attempt(ctx: &WorkerCtx, due: &DeliveryMessage) -> anyhow::Result<()> {
    let (org, id) = (due.organization_id, due.delivery_id);
    let begun = system::webhook_attempt_begin(&ctx.db.system_conn().await?, org, id, lease_seconds(ctx)).await?;
    let Some(begun) = begun else {
        tracing::debug!(delivery_id = %id, "nothing to attempt (a duplicate, or done)");
        return Ok(());
    };
    let config = &ctx.config.webhooks;
    let number = begun.attempt;
    // A disabled endpoint's pending deliveries end here, failed, without retries.
    let (sent, may_retry) = if begun.enabled {
        (post(ctx, id, begun).await?, true)
    } else {
        (Attempt::failed("the endpoint is disabled"), false)
    };
    let retry = if sent.delivered() || !may_retry { None } else { config.retry_delay(number.unsigned_abs()) };
    let outcome = WebhookOutcome {
        delivered: sent.delivered(),
        status: sent.status,
        error: sent.error.as_deref(),
        retry_in_seconds: retry.map(|delay| i64::try_from(delay.as_secs()).unwrap_or(i64::MAX).max(1)),
        disable_after_seconds: i64::try_from(config.webhook_disable_after_seconds).unwrap_or(i64::MAX),
    };
    let disabled = system::webhook_attempt_finish(&ctx.db.system_conn().await?, org, id, &outcome).await?;
    ctx.relay_wake.notify_one();
    let delivered = sent.delivered();
    ctx.metrics.webhook_attempts.with_label_values(&[if delivered { "delivered" } else { "failed" }]).inc();
    tracing::info!(org_id = %org, delivery_id = %id, attempt = number, delivered, status = sent.status,
        error = sent.error.as_deref(), "webhook attempt");
    if disabled {
        tracing::warn!(org_id = %org, delivery_id = %id, "webhook endpoint disabled after failing too long");
    }
    Ok(())
}

/// Posts the event, signed by the endpoint's secret (and the one before a rotation, while it
/// still signs), to the endpoint's URL as the service's rules allow it now.
async fn post(ctx: &WorkerCtx, id: DeliveryId, begun: WebhookAttempt) -> anyhow::Result<Attempt> {
    let url = match WebhookUrl::parse(&begun.url, ctx.config.webhooks.webhook_allow_http) {
        Ok(url) => url,
        // The rules changed since the endpoint was created (WEBHOOK_ALLOW_HTTP turned off).
        Err(invalid) => return Ok(Attempt::failed(invalid.message)),
    };
    let body = serde_json::to_vec(&serde_json::json!({
        "type": begun.event_type,
        "timestamp": begun.event_created_at,
        "data": begun.data,
    }))?;
    let (secret, previous) = (Secret(begun.secret), begun.previous_secret.map(Secret));
    let secrets: Vec<&Secret> = std::iter::once(&secret).chain(previous.as_ref()).collect();
    Ok(ctx.webhooks.send(&url, &secrets, &message_id(id), body).await)
}

/// The delivery's `webhook-id`: the same for every attempt, so receivers can drop repeats.
fn message_id(id: DeliveryId) -> String {
    format!("msg_{}", id.as_uuid().simple())
}

fn lease_seconds(ctx: &WorkerCtx) -> i64 {
    i64::try_from(ctx.config.webhooks.lease().as_secs()).unwrap_or(i64::MAX).max(1)
}
