//! `/api/org/webhooks`: the organization's webhook endpoints and their deliveries (#27), for
//! owners and admins (the database agrees: `webhooks_managed_by_managers`). Creating an endpoint
//! and rotating its secret show the secret, once, and so need a signed-in session; the worker
//! delivers (`worker::webhooks`, docs/events.md).

use actix_web::{delete, get, post, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    db::{
        self,
        audit::Action,
        webhooks::{DeliveryRow, NewWebhook, WebhookRow},
    },
    domain::{DeliveryId, EventSelection, WebhookId, WebhookUrl},
    error::{ApiError, ErrorBody},
    http::{ApiResult, AppState, Authed, BodyErrors, PageQuery},
    webhooks::new_secret,
};

/// The most endpoints one organization has.
const MAX_WEBHOOKS: i64 = 20;

/// The most characters of a description (the database says the same).
const MAX_DESCRIPTION_CHARS: usize = 500;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateWebhookRequest {
    /// `https://…` (plain `http` only where the service allows it); must not resolve to a
    /// loopback, private, link-local or metadata address.
    url: String,
    /// Event types (`file.uploaded`, `file.ready`, `file.failed`, `file.deleted`,
    /// `member.joined`, `member.role_changed`, `member.deactivated`, `link.created`,
    /// `link.revoked`), or `["*"]` for all.
    events: Vec<String>,
    /// Up to 500 characters.
    #[serde(default)]
    description: String,
}

#[derive(Serialize, ToSchema)]
pub(super) struct WebhookResponse {
    id: WebhookId,
    url: String,
    events: Vec<String>,
    description: String,
    /// False once the endpoint was disabled after failing for `WEBHOOK_DISABLE_AFTER_SECONDS`.
    enabled: bool,
    /// Since when every attempt has failed (none after a success).
    failing_since: Option<DateTime<Utc>>,
    disabled_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

impl From<WebhookRow> for WebhookResponse {
    fn from(row: WebhookRow) -> Self {
        Self {
            id: row.id,
            url: row.url,
            events: row.events,
            description: row.description,
            enabled: row.enabled,
            failing_since: row.failing_since,
            disabled_at: row.disabled_at,
            created_at: row.created_at,
        }
    }
}

/// A new endpoint, with its secret: shown this once.
#[derive(Serialize, ToSchema)]
pub(super) struct CreatedWebhook {
    #[serde(flatten)]
    webhook: WebhookResponse,
    /// `whsec_` and the base64 of 32 random bytes: verify each delivery's `webhook-signature`
    /// with it (docs/events.md). Not shown again.
    secret: String,
}

#[derive(Serialize, ToSchema)]
pub(super) struct WebhookList {
    webhooks: Vec<WebhookResponse>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct RotatedSecret {
    /// The new secret (shown this once); it signs every delivery from now on.
    secret: String,
    /// Until then deliveries carry a second signature, by the old secret.
    previous_secret_expires_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct DeliveryResponse {
    /// Also the delivery's `webhook-id` header, as `msg_` and this id without dashes.
    id: DeliveryId,
    /// The event's id in `GET /api/events`.
    event_id: Uuid,
    #[serde(rename = "type")]
    event_type: String,
    /// `pending`, `delivered` or `failed`.
    state: String,
    attempts: i32,
    last_status_code: Option<i32>,
    last_error: Option<String>,
    /// When a pending delivery is tried next (none while an attempt is under way).
    next_attempt_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

impl From<DeliveryRow> for DeliveryResponse {
    fn from(row: DeliveryRow) -> Self {
        Self {
            id: row.id,
            event_id: row.event_id,
            event_type: row.event_type,
            state: row.state,
            attempts: row.attempts,
            last_status_code: row.last_status,
            last_error: row.last_error,
            next_attempt_at: row.next_attempt_at,
            created_at: row.created_at,
            finished_at: row.finished_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct DeliveryList {
    deliveries: Vec<DeliveryResponse>,
    total: i64,
    page: u32,
    limit: u32,
}

#[derive(Serialize, ToSchema)]
pub(super) struct RetryAccepted {
    id: DeliveryId,
    /// `pending`: the worker sends it again shortly.
    state: &'static str,
}

/// Create an endpoint (owners and admins, from a signed-in session). Its URL must be `https` and
/// resolve to public addresses only (checked now and at every delivery). The answer carries
/// the secret, once.
#[utoipa::path(tag = "webhooks", request_body = CreateWebhookRequest, responses(
        BodyErrors,
        (status = 201, body = CreatedWebhook), (status = 400, description = "`invalid_url`, `invalid_events`, `invalid_description`", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, description = "`too_many_webhooks`", body = ErrorBody)),
    security(("session" = [])))]
#[post("/webhooks")]
#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id))]
pub(super) async fn create_webhook(
    state: web::Data<AppState>,
    authed: Authed,
    body: web::Json<CreateWebhookRequest>,
) -> ApiResult {
    authed.require_session()?;
    authed.require_manager()?;
    let CreateWebhookRequest { url, events, description } = body.into_inner();
    let url = WebhookUrl::parse(&url, state.config.webhooks.webhook_allow_http)?;
    let events = EventSelection::parse(&events)?;
    if description.chars().count() > MAX_DESCRIPTION_CHARS || description.contains('\0') {
        return Err(ApiError::invalid(
            "invalid_description",
            format!("description is at most {MAX_DESCRIPTION_CHARS} characters, without NUL"),
        ));
    }
    state.webhooks.check_destination(&url).await.map_err(|why| ApiError::invalid("invalid_url", why))?;
    let (shown, secret) = new_secret();
    let tx = state.db.begin(&authed.ctx).await?;
    if db::webhooks::count(&tx).await? >= MAX_WEBHOOKS {
        return Err(ApiError::Conflict {
            code: "too_many_webhooks",
            message: "this organization has its maximum of 20 webhook endpoints; delete one first",
        });
    }
    let webhook =
        NewWebhook { id: WebhookId::new(), url: &url, description: &description, events: &events, secret: &secret.0 };
    let row = db::webhooks::insert(&tx, &webhook).await?;
    let details = json!({ "url": row.url, "events": row.events });
    db::audit::record(&tx, authed.event(Action::WebhookCreated, Some(("webhook", row.id.into())), details)).await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(CreatedWebhook { webhook: row.into(), secret: shown }))
}

/// The organization's endpoints, newest first (never their secrets).
#[utoipa::path(tag = "webhooks", responses((status = 200, body = WebhookList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("session" = []), ("bearer" = [])))]
#[get("/webhooks")]
#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id))]
pub(super) async fn list_webhooks(state: web::Data<AppState>, authed: Authed) -> ApiResult {
    authed.require_manager()?;
    let rows = db::webhooks::list(state.db.read(&authed.ctx).await?).await?;
    Ok(HttpResponse::Ok().json(WebhookList { webhooks: rows.into_iter().map(WebhookResponse::from).collect() }))
}

/// One endpoint.
#[utoipa::path(tag = "webhooks", params(("id" = Uuid, Path, description = "Webhook id")), responses((status = 200, body = WebhookResponse), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("session" = []), ("bearer" = [])))]
#[get("/webhooks/{id}")]
#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id))]
pub(super) async fn get_webhook(state: web::Data<AppState>, authed: Authed, id: web::Path<WebhookId>) -> ApiResult {
    authed.require_manager()?;
    let row =
        db::webhooks::find(state.db.read(&authed.ctx).await?, id.into_inner()).await?.ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(WebhookResponse::from(row)))
}

/// Delete an endpoint and its deliveries (owners and admins).
#[utoipa::path(tag = "webhooks", params(("id" = Uuid, Path, description = "Webhook id")), responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("session" = []), ("bearer" = [])))]
#[delete("/webhooks/{id}")]
#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id))]
pub(super) async fn delete_webhook(state: web::Data<AppState>, authed: Authed, id: web::Path<WebhookId>) -> ApiResult {
    authed.require_manager()?;
    let id = id.into_inner();
    let tx = state.db.begin(&authed.ctx).await?;
    if !db::webhooks::delete(&tx, id).await? {
        return Err(ApiError::NotFound);
    }
    db::audit::record(&tx, authed.event(Action::WebhookDeleted, Some(("webhook", id.into())), json!({}))).await?;
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Rotate an endpoint's secret (owners and admins, from a signed-in session): the new one is
/// shown once and signs from now on; the old one signs too, beside it, for
/// `WEBHOOK_SECRET_OVERLAP_SECONDS` (a day by default), so receivers can switch without losing
/// a delivery.
#[utoipa::path(tag = "webhooks", params(("id" = Uuid, Path, description = "Webhook id")), responses((status = 200, body = RotatedSecret), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("session" = [])))]
#[post("/webhooks/{id}/secret")]
#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id))]
pub(super) async fn rotate_secret(state: web::Data<AppState>, authed: Authed, id: web::Path<WebhookId>) -> ApiResult {
    authed.require_session()?;
    authed.require_manager()?;
    let id = id.into_inner();
    let overlap = state.config.webhooks.secret_overlap_seconds();
    let (shown, secret) = new_secret();
    let tx = state.db.begin(&authed.ctx).await?;
    if !db::webhooks::rotate_secret(&tx, id, &secret.0, overlap).await? {
        return Err(ApiError::NotFound);
    }
    let details = json!({ "previous_secret_overlap_seconds": overlap });
    db::audit::record(&tx, authed.event(Action::WebhookSecretRotated, Some(("webhook", id.into())), details)).await?;
    tx.commit().await?;
    let previous_secret_expires_at = Utc::now() + chrono::Duration::seconds(overlap);
    Ok(HttpResponse::Ok().json(RotatedSecret { secret: shown, previous_secret_expires_at }))
}

/// An endpoint's deliveries, newest first: what was sent, how often, what came back, and when
/// the next attempt is due.
#[utoipa::path(tag = "webhooks", params(("id" = Uuid, Path, description = "Webhook id"), PageQuery), responses((status = 200, body = DeliveryList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("session" = []), ("bearer" = [])))]
#[get("/webhooks/{id}/deliveries")]
#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id))]
pub(super) async fn list_deliveries(
    state: web::Data<AppState>,
    authed: Authed,
    id: web::Path<WebhookId>,
    query: web::Query<PageQuery>,
) -> ApiResult {
    authed.require_manager()?;
    let paging = query.into_inner().paging()?;
    let id = id.into_inner();
    let tx = state.db.begin(&authed.ctx).await?;
    db::webhooks::find(&tx, id).await?.ok_or(ApiError::NotFound)?;
    let (rows, total) = db::webhooks::deliveries_page(&tx, id, paging).await?;
    tx.commit().await?;
    let deliveries = rows.into_iter().map(DeliveryResponse::from).collect();
    Ok(HttpResponse::Ok().json(DeliveryList { deliveries, total, page: paging.page, limit: paging.limit }))
}

/// Send one delivery again (owners and admins), whatever its state: it goes back to pending,
/// due now, under the same `webhook-id`.
#[utoipa::path(tag = "webhooks", params(("id" = Uuid, Path, description = "Webhook id"), ("delivery_id" = Uuid, Path, description = "Delivery id")), responses((status = 202, body = RetryAccepted), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("session" = []), ("bearer" = [])))]
#[post("/webhooks/{id}/deliveries/{delivery_id}/retry")]
#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id))]
pub(super) async fn retry_delivery(
    state: web::Data<AppState>,
    authed: Authed,
    path: web::Path<(WebhookId, DeliveryId)>,
) -> ApiResult {
    authed.require_manager()?;
    let (webhook, delivery) = path.into_inner();
    let tx = state.db.begin(&authed.ctx).await?;
    if !db::webhooks::retry(&tx, webhook, delivery).await? {
        return Err(ApiError::NotFound);
    }
    let details = json!({ "delivery_id": delivery });
    db::audit::record(&tx, authed.event(Action::WebhookDeliveryRetried, Some(("webhook", webhook.into())), details))
        .await?;
    tx.commit().await?;
    Ok(HttpResponse::Accepted().json(RetryAccepted { id: delivery, state: "pending" }))
}
