//! The registry's webhook functions (V30): the relay's claim, and the consumer's attempt, begun
//! and finished. Listed with why each is safe in docs/rls.md.

use super::{decode, DbError, SystemQuery};
use crate::domain::{DeliveryId, OrgId};

/// Claims up to `limit` due webhook deliveries of all organizations (`SKIP LOCKED`: two relays
/// never take the same),
/// in turns across endpoints and at most `per_endpoint` of one endpoint in flight, marking them
/// queued and leased for `lease_seconds`.
pub async fn webhook_deliveries_claim(
    conn: impl SystemQuery,
    limit: i32,
    lease_seconds: i64,
    per_endpoint: i32,
) -> Result<Vec<(OrgId, DeliveryId)>, DbError> {
    let rows = conn
        .query(
            "select organization_id, id from app.webhook_deliveries_claim($1, $2, $3)",
            &[&limit, &lease_seconds, &per_endpoint],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok((
                OrgId::from_uuid(decode(row.try_get("organization_id"))?),
                DeliveryId::from_uuid(decode(row.try_get("id"))?),
            ))
        })
        .collect()
}

/// An attempt begun: where it goes, how it is signed, and what it carries.
pub struct WebhookAttempt {
    pub url: String,
    pub secret: Vec<u8>,
    /// The secret before a rotation, while it still signs.
    pub previous_secret: Option<Vec<u8>>,
    pub enabled: bool,
    /// This attempt's number, from 1.
    pub attempt: i32,
    pub event_type: String,
    pub event_created_at: chrono::DateTime<chrono::Utc>,
    pub data: serde_json::Value,
}

/// Begins an attempt of a queued delivery, leased for `lease_seconds`; `None` when there is
/// none to begin (a duplicate message, a delivery already done or deleted).
pub async fn webhook_attempt_begin(
    conn: impl SystemQuery,
    org: OrgId,
    delivery: DeliveryId,
    lease_seconds: i64,
) -> Result<Option<WebhookAttempt>, DbError> {
    let row = conn
        .query_opt(
            "select url, secret, previous_secret, enabled, attempts, event_type, event_created_at, data
               from app.webhook_attempt_begin($1, $2, $3)",
            &[org.as_uuid(), delivery.as_uuid(), &lease_seconds],
        )
        .await?;
    row.map(|row| {
        Ok(WebhookAttempt {
            url: decode(row.try_get("url"))?,
            secret: decode(row.try_get("secret"))?,
            previous_secret: decode(row.try_get("previous_secret"))?,
            enabled: decode(row.try_get("enabled"))?,
            attempt: decode(row.try_get("attempts"))?,
            event_type: decode(row.try_get("event_type"))?,
            event_created_at: decode(row.try_get("event_created_at"))?,
            data: decode(row.try_get("data"))?,
        })
    })
    .transpose()
}

/// How an attempt ended, as the registry records it.
pub struct WebhookOutcome<'a> {
    pub delivered: bool,
    pub status: Option<u16>,
    pub error: Option<&'a str>,
    /// When a failed delivery is tried again; `None`: it is failed for good.
    pub retry_in_seconds: Option<i64>,
    /// An endpoint failing this long is disabled.
    pub disable_after_seconds: i64,
}

/// Records an attempt's outcome; `true` when it disabled the endpoint.
pub async fn webhook_attempt_finish(
    conn: impl SystemQuery,
    org: OrgId,
    delivery: DeliveryId,
    outcome: &WebhookOutcome<'_>,
) -> Result<bool, DbError> {
    let status = outcome.status.map(i32::from);
    let row = conn
        .query_opt(
            "select app.webhook_attempt_finish($1, $2, $3, $4, $5, $6, $7) as disabled",
            &[
                org.as_uuid(),
                delivery.as_uuid(),
                &outcome.delivered,
                &status,
                &outcome.error,
                &outcome.retry_in_seconds,
                &outcome.disable_after_seconds,
            ],
        )
        .await?
        .ok_or_else(|| DbError::Decode(anyhow::anyhow!("webhook_attempt_finish returned no row")))?;
    decode(row.try_get("disabled"))
}
