//! An organization's webhook endpoints and their deliveries (V30). Under RLS only owners and
//! admins see or change them (`webhooks_managed_by_managers`,
//! `webhook_deliveries_seen_by_managers`), and the app role never reads a secret: it writes one
//! and the worker signs through the registry (`system::webhook_attempt_begin`).

use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use super::{decode, DbError, TenantRead, TenantWrite};
use crate::domain::{DeliveryId, EventSelection, Paging, WebhookId, WebhookUrl};

pub struct WebhookRow {
    pub id: WebhookId,
    pub url: String,
    pub description: String,
    pub events: Vec<String>,
    pub enabled: bool,
    pub failing_since: Option<DateTime<Utc>>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl WebhookRow {
    fn from_row(row: &Row) -> Result<Self, DbError> {
        Ok(Self {
            id: WebhookId::from_uuid(decode(row.try_get("id"))?),
            url: decode(row.try_get("url"))?,
            description: decode(row.try_get("description"))?,
            events: decode(row.try_get("events"))?,
            enabled: decode(row.try_get("enabled"))?,
            failing_since: decode(row.try_get("failing_since"))?,
            disabled_at: decode(row.try_get("disabled_at"))?,
            created_at: decode(row.try_get("created_at"))?,
        })
    }
}

const WEBHOOK_COLUMNS: &str = "id, url, description, events, enabled, failing_since, disabled_at, created_at";

/// What a new endpoint is.
pub struct NewWebhook<'a> {
    pub id: WebhookId,
    pub url: &'a WebhookUrl,
    pub description: &'a str,
    pub events: &'a EventSelection,
    pub secret: &'a [u8],
}

/// How many endpoints the organization has.
#[tracing::instrument(name = "db.webhooks.count", skip_all)]
pub async fn count(tx: impl TenantRead) -> Result<i64, DbError> {
    let row =
        tx.query_opt(concat!("select count(*) from app.webhooks where organization_id = ", tenant_org!()), &[]).await?;
    row.map_or(Ok(0), |row| decode(row.try_get(0)))
}

/// A new endpoint of the caller's organization, created by the caller.
#[tracing::instrument(name = "db.webhooks.insert", skip_all)]
pub async fn insert(tx: impl TenantWrite, webhook: &NewWebhook<'_>) -> Result<WebhookRow, DbError> {
    let ctx = *tx.ctx();
    let sql = format!(
        "insert into app.webhooks (organization_id, id, url, description, events, secret, created_by)
         values ($1, $2, $3, $4, $5, $6, $7)
         returning {WEBHOOK_COLUMNS}"
    );
    let row = tx
        .query_one(
            &sql,
            &[
                ctx.org_id.as_uuid(),
                webhook.id.as_uuid(),
                &webhook.url.as_str(),
                &webhook.description,
                &webhook.events.as_slice(),
                &webhook.secret,
                ctx.user_id.as_uuid(),
            ],
        )
        .await?;
    WebhookRow::from_row(&row)
}

/// The organization's endpoints, newest first.
#[tracing::instrument(name = "db.webhooks.list", skip_all)]
pub async fn list(tx: impl TenantRead) -> Result<Vec<WebhookRow>, DbError> {
    let sql = format!(
        "select {WEBHOOK_COLUMNS} from app.webhooks where organization_id = {} order by created_at desc, id desc",
        tenant_org!()
    );
    let rows = tx.query(&sql, &[]).await?;
    rows.iter().map(WebhookRow::from_row).collect()
}

/// One endpoint, `None` when the caller sees no such endpoint.
#[tracing::instrument(name = "db.webhooks.find", skip_all, fields(webhook_id = %id))]
pub async fn find(tx: impl TenantRead, id: WebhookId) -> Result<Option<WebhookRow>, DbError> {
    let sql =
        format!("select {WEBHOOK_COLUMNS} from app.webhooks where organization_id = {} and id = $1", tenant_org!());
    let row = tx.query_opt(&sql, &[id.as_uuid()]).await?;
    row.as_ref().map(WebhookRow::from_row).transpose()
}

/// Removes an endpoint and its deliveries; `false` when the caller sees no such endpoint.
#[tracing::instrument(name = "db.webhooks.delete", skip_all, fields(webhook_id = %id))]
pub async fn delete(tx: impl TenantWrite, id: WebhookId) -> Result<bool, DbError> {
    let rows = tx
        .query(
            concat!("delete from app.webhooks where organization_id = ", tenant_org!(), " and id = $1 returning id"),
            &[id.as_uuid()],
        )
        .await?;
    Ok(!rows.is_empty())
}

/// Replaces an endpoint's secret; the old one keeps signing for `overlap_seconds` (the
/// `webhooks_keep_previous_secret` trigger keeps it). `false` when the caller sees no such
/// endpoint.
#[tracing::instrument(name = "db.webhooks.rotate_secret", skip_all, fields(webhook_id = %id))]
pub async fn rotate_secret(
    tx: impl TenantWrite,
    id: WebhookId,
    secret: &[u8],
    overlap_seconds: i64,
) -> Result<bool, DbError> {
    let rows = tx
        .query(
            concat!(
                "update app.webhooks set secret = $2, previous_secret_until = now() + make_interval(secs => $3)
                  where organization_id = ",
                tenant_org!(),
                " and id = $1 returning id"
            ),
            &[id.as_uuid(), &secret, &(overlap_seconds as f64)],
        )
        .await?;
    Ok(!rows.is_empty())
}

pub struct DeliveryRow {
    pub id: DeliveryId,
    pub event_id: uuid::Uuid,
    pub event_type: String,
    pub state: String,
    pub attempts: i32,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl DeliveryRow {
    fn from_row(row: &Row) -> Result<Self, DbError> {
        Ok(Self {
            id: DeliveryId::from_uuid(decode(row.try_get("id"))?),
            event_id: decode(row.try_get("event_id"))?,
            event_type: decode(row.try_get("event_type"))?,
            state: decode(row.try_get("state"))?,
            attempts: decode(row.try_get("attempts"))?,
            last_status: decode(row.try_get("last_status"))?,
            last_error: decode(row.try_get("last_error"))?,
            next_attempt_at: decode(row.try_get("next_attempt_at"))?,
            created_at: decode(row.try_get("created_at"))?,
            finished_at: decode(row.try_get("finished_at"))?,
        })
    }
}

/// A page of an endpoint's deliveries, newest first, and how many it has. The next attempt is
/// when a pending delivery is due (none while one is queued or in progress).
#[tracing::instrument(name = "db.webhooks.deliveries_page", skip_all, fields(webhook_id = %webhook))]
pub async fn deliveries_page(
    tx: impl TenantRead,
    webhook: WebhookId,
    paging: Paging,
) -> Result<(Vec<DeliveryRow>, i64), DbError> {
    let (rows, total) = tx
        .query_page(
            concat!(
                r#"
            select d.id, e.id as event_id, d.event_type, d.state, d.attempts, d.last_status, d.last_error,
                   case when d.state = 'pending' and not d.queued then d.due_at end as next_attempt_at,
                   d.created_at, d.finished_at
              from (select * from app.webhook_deliveries d
                     where d.organization_id = "#,
                tenant_org!(),
                r#"
                       and d.webhook_id = $1
                     order by d.created_at desc, d.id desc
                     limit $2
                    offset $3) d
              join app.events e on e.organization_id = d.organization_id and e.seq = d.event_seq
             order by d.created_at desc, d.id desc
            "#
            ),
            &[webhook.as_uuid(), &paging.limit(), &paging.offset()],
            concat!(
                "select count(*) from app.webhook_deliveries where organization_id = ",
                tenant_org!(),
                " and webhook_id = $1"
            ),
            &[webhook.as_uuid()],
        )
        .await?;
    Ok((rows.iter().map(DeliveryRow::from_row).collect::<Result<_, _>>()?, total))
}

/// Puts a delivery back to pending, due now (a delivered or failed one is sent once more);
/// `false` when the caller sees no such delivery of that endpoint.
#[tracing::instrument(name = "db.webhooks.retry", skip_all, fields(webhook_id = %webhook, delivery_id = %delivery))]
pub async fn retry(tx: impl TenantWrite, webhook: WebhookId, delivery: DeliveryId) -> Result<bool, DbError> {
    let rows = tx
        .query(
            concat!(
                "update app.webhook_deliveries
                    set state = 'pending', queued = false, due_at = now(), finished_at = null
                  where organization_id = ",
                tenant_org!(),
                " and webhook_id = $1 and id = $2 returning id"
            ),
            &[webhook.as_uuid(), delivery.as_uuid()],
        )
        .await?;
    Ok(!rows.is_empty())
}
