//! `/api/tokens`: personal API tokens for scripts and CI clients (`Authorization: Bearer`).
//! A token acts as its owner (organization, user, current role), needs no CSRF token, and dies
//! with revocation, expiry or its owner's deactivation.

use actix_web::{web, HttpResponse, Scope};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::{ApiResult, AppState, Authed};
use crate::{
    auth::token,
    db::{self, audit::Action, tokens::TokenRow},
    error::ApiError,
};

const MAX_VALIDITY_DAYS: u32 = 365;

pub fn scope() -> Scope {
    web::scope("/tokens")
        .route("", web::post().to(create_token))
        .route("", web::get().to(list_tokens))
        .route("/{id}", web::get().to(get_token))
        .route("/{id}", web::delete().to(revoke_token))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTokenRequest {
    name: String,
    expires_in_days: u32,
}

#[derive(Serialize)]
struct TokenResponse {
    id: Uuid,
    name: String,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
}

impl From<TokenRow> for TokenResponse {
    fn from(t: TokenRow) -> Self {
        Self {
            id: t.id,
            name: t.name,
            created_at: t.created_at,
            expires_at: t.expires_at,
            last_used_at: t.last_used_at,
        }
    }
}

#[derive(Serialize)]
struct CreatedToken {
    #[serde(flatten)]
    token: TokenResponse,
    /// Shown once; only its SHA-256 is stored.
    secret: String,
}

#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id))]
async fn create_token(state: web::Data<AppState>, authed: Authed, body: web::Json<CreateTokenRequest>) -> ApiResult {
    let CreateTokenRequest { name, expires_in_days } = body.into_inner();
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid("invalid_name", "name must be 1 to 100 characters"));
    }
    if !(1..=MAX_VALIDITY_DAYS).contains(&expires_in_days) {
        return Err(ApiError::invalid("invalid_expiry", format!("expires_in_days must be 1 to {MAX_VALIDITY_DAYS}")));
    }
    let (secret, digest) = token::new_secret("tfp_");
    let expires_at = Utc::now() + Duration::days(i64::from(expires_in_days));
    let mut conn = state.db.tenant_conn().await?;
    let tx = conn.begin(&authed.ctx).await?;
    let created = db::tokens::insert(&tx, Uuid::new_v4(), name, &digest, expires_at).await?;
    let details = json!({ "name": name, "expires_at": expires_at });
    db::audit::record(&tx, authed.event(Action::TokenCreated, Some(("token", created.id)), details)).await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(CreatedToken { token: created.into(), secret }))
}

#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id))]
async fn list_tokens(state: web::Data<AppState>, authed: Authed) -> ApiResult {
    let mut conn = state.db.tenant_conn().await?;
    let tx = conn.begin(&authed.ctx).await?;
    let tokens = db::tokens::list(&tx).await?;
    tx.commit().await?;
    let tokens: Vec<TokenResponse> = tokens.into_iter().map(TokenResponse::from).collect();
    Ok(HttpResponse::Ok().json(json!({ "tokens": tokens })))
}

#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id))]
async fn get_token(state: web::Data<AppState>, authed: Authed, id: web::Path<Uuid>) -> ApiResult {
    let mut conn = state.db.tenant_conn().await?;
    let tx = conn.begin(&authed.ctx).await?;
    let found = db::tokens::find(&tx, id.into_inner()).await?.ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(TokenResponse::from(found)))
}

#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id))]
async fn revoke_token(state: web::Data<AppState>, authed: Authed, id: web::Path<Uuid>) -> ApiResult {
    let id = id.into_inner();
    let mut conn = state.db.tenant_conn().await?;
    let tx = conn.begin(&authed.ctx).await?;
    if !db::tokens::revoke(&tx, id).await? {
        return Err(ApiError::NotFound);
    }
    db::audit::record(&tx, authed.event(Action::TokenRevoked, Some(("token", id)), json!({}))).await?;
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}
