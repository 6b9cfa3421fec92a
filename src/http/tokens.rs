//! `/api/tokens`: personal API tokens for scripts and CI clients (`Authorization: Bearer`).
//! A token acts as its owner (organization, user, current role), needs no CSRF token, and dies
//! with revocation, expiry or its owner's deactivation.

use actix_web::{delete, get, post, web, HttpResponse};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_actix_web::{scope, service_config::ServiceConfig};

use super::{ApiResult, AppState, Authed, BodyErrors, Reader};
use crate::{
    auth::token,
    db::{self, audit::Action, tokens::TokenRow},
    domain::TokenId,
    error::{ApiError, ErrorBody},
};

const MAX_VALIDITY_DAYS: u32 = 365;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(scope("/tokens").service(create_token).service(list_tokens).service(get_token).service(revoke_token));
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateTokenRequest {
    name: String,
    expires_in_days: u32,
}

#[derive(Serialize, ToSchema)]
struct TokenResponse {
    id: TokenId,
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

#[derive(Serialize, ToSchema)]
struct TokenList {
    tokens: Vec<TokenResponse>,
}

#[derive(Serialize, ToSchema)]
struct CreatedToken {
    #[serde(flatten)]
    token: TokenResponse,
    /// Shown once; only its SHA-256 is stored.
    secret: String,
}

/// Create a personal API token; its secret is shown once. Only from a signed-in session: a
/// token cannot create tokens (which could outlive it and survive its revocation).
#[utoipa::path(
    tag = "tokens",
    request_body = CreateTokenRequest,
    responses(
        BodyErrors,
        (status = 201, body = CreatedToken), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("session" = []), ("bearer" = []))
)]
#[post("")]
#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id))]
async fn create_token(state: web::Data<AppState>, authed: Authed, body: web::Json<CreateTokenRequest>) -> ApiResult {
    authed.require_session()?;
    let CreateTokenRequest { name, expires_in_days } = body.into_inner();
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid("invalid_name", "name must be 1 to 100 characters"));
    }
    if !(1..=MAX_VALIDITY_DAYS).contains(&expires_in_days) {
        return Err(ApiError::invalid("invalid_expiry", format!("expires_in_days must be 1 to {MAX_VALIDITY_DAYS}")));
    }
    let (secret, digest) = token::new_secret("tfp_", authed.ctx.org_id);
    let expires_at = Utc::now() + Duration::days(i64::from(expires_in_days));
    let tx = state.db.begin(&authed.ctx).await?;
    let created = db::tokens::insert(&tx, TokenId::new(), name, &digest, expires_at).await?;
    let details = json!({ "name": name, "expires_at": expires_at });
    db::audit::record(&tx, authed.event(Action::TokenCreated, Some(("token", created.id.into())), details)).await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(CreatedToken { token: created.into(), secret }))
}

/// The caller's live tokens (never their secrets).
#[utoipa::path(
    tag = "tokens",
    responses((status = 200, body = TokenList), (status = 401, body = ErrorBody)),
    security(("session" = []), ("bearer" = []))
)]
#[get("")]
#[tracing::instrument(skip_all)]
async fn list_tokens(state: web::Data<AppState>, reader: Reader) -> ApiResult {
    let tokens = reader.read(&state.db, db::tokens::list).await?;
    let tokens: Vec<TokenResponse> = tokens.into_iter().map(TokenResponse::from).collect();
    Ok(HttpResponse::Ok().json(TokenList { tokens }))
}

#[utoipa::path(
    tag = "tokens",
    params(("id" = Uuid, Path, description = "Token id")),
    responses((status = 200, body = TokenResponse), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("session" = []), ("bearer" = []))
)]
#[get("/{id}")]
#[tracing::instrument(skip_all)]
async fn get_token(state: web::Data<AppState>, reader: Reader, id: web::Path<TokenId>) -> ApiResult {
    let found = reader.read(&state.db, |tx| db::tokens::find(tx, id.into_inner())).await?.ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(TokenResponse::from(found)))
}

/// Revoke one of the caller's tokens.
#[utoipa::path(
    tag = "tokens",
    params(("id" = Uuid, Path, description = "Token id")),
    responses((status = 204, description = "Revoked"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("session" = []), ("bearer" = []))
)]
#[delete("/{id}")]
#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id))]
async fn revoke_token(state: web::Data<AppState>, authed: Authed, id: web::Path<TokenId>) -> ApiResult {
    let id = id.into_inner();
    let tx = state.db.begin(&authed.ctx).await?;
    if !db::tokens::revoke(&tx, id).await? {
        return Err(ApiError::NotFound);
    }
    db::audit::record(&tx, authed.event(Action::TokenRevoked, Some(("token", id.into())), json!({}))).await?;
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}
