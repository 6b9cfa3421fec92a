//! `/api/auth`: register, login, logout, me.

use actix_session::Session;
use actix_web::{web, HttpResponse, Scope};
use serde::{Deserialize, Serialize};

use super::{ApiResult, AppState, Authed};
use crate::{
    auth::{password, session},
    db::{self, system, TenantCtx},
    domain::{Email, OrgId, OrgName, Password, Role, UserId},
    error::ApiError,
};

pub fn scope() -> Scope {
    web::scope("/auth")
        .route("/register", web::post().to(register))
        .route("/login", web::post().to(login))
        .route("/logout", web::post().to(logout))
        .route("/me", web::get().to(me))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterRequest {
    email: String,
    password: String,
    organization_name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    email: String,
    password: String,
}

/// Register and login answer the same shape.
#[derive(Serialize)]
struct SignedInResponse {
    user_id: UserId,
    email: String,
    organization_id: OrgId,
    role: Role,
    csrf_token: String,
}

#[derive(Serialize)]
struct MeResponse {
    user_id: UserId,
    email: String,
    organization_id: OrgId,
    organization_name: String,
    role: Role,
    csrf_token: String,
}

/// Creates a new organization with the caller as its owner, and signs them in.
#[tracing::instrument(skip_all)]
async fn register(state: web::Data<AppState>, session: Session, body: web::Json<RegisterRequest>) -> ApiResult {
    let body = body.into_inner();
    let email = Email::parse(&body.email)?;
    let org_name = OrgName::parse(&body.organization_name)?;
    let password_hash = password::hash(Password::parse(body.password)?, state.config.bcrypt_cost).await?;

    // The new organization is created inside its own tenant context: the policies' WITH CHECK
    // admits exactly this organization and this user, and nothing else.
    let ctx = TenantCtx { org_id: OrgId::new(), user_id: UserId::new() };
    let mut conn = state.db.tenant_conn().await?;
    let tx = conn.begin(&ctx).await?;
    db::orgs::insert(&tx, &org_name).await?;
    db::users::insert(&tx, &email, &password_hash, Role::Owner).await?;
    tx.commit().await?;

    let csrf_token = session::start(&session, ctx.user_id)?;
    Ok(HttpResponse::Created().json(SignedInResponse {
        user_id: ctx.user_id,
        email: email.to_string(),
        organization_id: ctx.org_id,
        role: Role::Owner,
        csrf_token,
    }))
}

/// Unknown email, wrong password and deactivated user answer the same 401 after the same
/// bcrypt work; too many recent failures for the email answer 429 before any work.
#[tracing::instrument(skip_all)]
async fn login(state: web::Data<AppState>, session: Session, body: web::Json<LoginRequest>) -> ApiResult {
    let LoginRequest { email, password } = body.into_inner();
    let email = email.trim().to_owned();
    let window = i64::from(state.config.login_window_seconds);

    let candidate = {
        let conn = state.db.system_conn().await?;
        system::login_lookup(&conn, &email, window).await?
    }; // the connection goes back to the pool before the slow hash check
    if candidate.recent_failures >= state.config.login_max_failures as i32 {
        return Err(ApiError::TooManyAttempts);
    }
    let stored_hash = candidate.user.as_ref().map_or(&state.decoy_hash, |u| &u.password_hash);
    let password_matches = password::verify(password, stored_hash.clone()).await?;

    let signed_in = candidate.user.filter(|user| password_matches && user.is_active);
    let conn = state.db.system_conn().await?;
    system::login_record(&conn, &email, signed_in.is_some(), window).await?;
    let user = signed_in.ok_or(ApiError::InvalidCredentials)?;

    let csrf_token = session::start(&session, user.user_id)?;
    tracing::info!(user_id = %user.user_id, org_id = %user.org_id, "login");
    Ok(HttpResponse::Ok().json(SignedInResponse {
        user_id: user.user_id,
        email,
        organization_id: user.org_id,
        role: user.role,
        csrf_token,
    }))
}

#[tracing::instrument(skip_all, fields(user_id = %authed.ctx.user_id))]
async fn logout(authed: Authed, session: Session) -> ApiResult {
    session::end(&session);
    Ok(HttpResponse::Ok().json(serde_json::json!({ "success": true })))
}

#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id))]
async fn me(state: web::Data<AppState>, authed: Authed) -> ApiResult {
    let mut conn = state.db.tenant_conn().await?;
    let tx = conn.begin(&authed.ctx).await?;
    let me = db::users::find_me(&tx).await?.ok_or(ApiError::Unauthenticated)?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(MeResponse {
        user_id: me.user_id,
        email: me.email,
        organization_id: me.org_id,
        organization_name: me.org_name,
        role: me.role,
        csrf_token: authed.csrf_token,
    }))
}
