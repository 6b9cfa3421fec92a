//! `/api/auth`: register, login, logout, me.

use actix_session::Session;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_actix_web::{scope, service_config::ServiceConfig};

use super::{extract::request_id, ApiResult, AppState, Authed, BodyErrors, Reader};
use crate::{
    auth::{password, session, token},
    db::{self, audit::Action, system, Credential, TenantCtx},
    domain::{Email, OrgId, OrgName, Password, Role, UserId},
    error::{ApiError, ErrorBody},
};

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(scope("/auth").service(register).service(login).service(logout).service(me));
}

/// Either `organization_name` (a new organization, with the caller as owner) or
/// `invitation_token` (join the inviting organization with the invited role).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RegisterRequest {
    email: String,
    password: String,
    organization_name: Option<String>,
    invitation_token: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    email: String,
    password: String,
}

/// Register and login answer the same shape.
#[derive(Serialize, ToSchema)]
struct SignedInResponse {
    user_id: UserId,
    email: String,
    organization_id: OrgId,
    role: Role,
    csrf_token: String,
}

#[derive(Serialize, ToSchema)]
struct MeResponse {
    user_id: UserId,
    email: String,
    organization_id: OrgId,
    organization_name: String,
    role: Role,
    /// `null` when authenticated by bearer token (no CSRF token applies).
    csrf_token: Option<String>,
}

/// Creates a new organization with the caller as its owner, or joins one by invitation; either
/// way the caller is signed in. A bad invitation (unknown, used, expired, for another email)
/// answers 400 `invalid_invitation`.
#[utoipa::path(
    tag = "auth",
    request_body = RegisterRequest,
    responses(
        BodyErrors,
        (status = 201, description = "Signed in (session cookie set)", body = SignedInResponse),
        (status = 409, description = "`organization_name_taken` or `email_taken`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many sign-ins from this address", body = ErrorBody),
    )
)]
#[post("/register")]
#[tracing::instrument(skip_all)]
async fn register(
    state: web::Data<AppState>,
    session: Session,
    req: HttpRequest,
    body: web::Json<RegisterRequest>,
) -> ApiResult {
    state.sign_in_limiter.check(state.client_address(&req))?;
    let body = body.into_inner();
    let email = Email::parse(&body.email)?;
    let target = match (body.organization_name, body.invitation_token) {
        (Some(name), None) => Join::NewOrganization(OrgName::parse(&name)?),
        (None, Some(token)) => Join::Invitation(token::presented(token.trim())),
        _ => {
            return Err(ApiError::invalid("invalid_body", "give either organization_name or invitation_token"));
        }
    };
    let password = Password::parse(body.password)?;
    if let Join::Invitation(invitation) = &target {
        // Before the password is hashed: a bad token costs no bcrypt time.
        let conn = state.db.system_conn().await?;
        if !system::invitation_valid(&conn, invitation, email.as_str()).await? {
            return Err(invalid_invitation());
        }
    }
    let password_hash = password::hash(password, state.config.auth.bcrypt_cost).await?;
    let user_id = UserId::new();
    let (org_id, role) = match target {
        Join::NewOrganization(name) => {
            // Created inside its own tenant context: the policies' WITH CHECK admits exactly
            // this organization and this user, and nothing else.
            let ctx = TenantCtx { org_id: OrgId::new(), user_id };
            let tx = state.db.begin(&ctx).await?;
            db::orgs::insert(&tx, &name).await?;
            db::users::insert(&tx, &email, &password_hash, Role::Owner).await?;
            tx.commit().await?;
            (ctx.org_id, Role::Owner)
        }
        Join::Invitation(invitation) => {
            let conn = state.db.system_conn().await?;
            // Checked again as it is consumed: another registration may have taken it meanwhile.
            system::invitation_accept(&conn, &invitation, email.as_str(), user_id, &password_hash, &request_id(&req))
                .await?
                .ok_or_else(invalid_invitation)?
        }
    };

    let csrf_token = session::start(&session, TenantCtx { org_id, user_id }, &state.csrf_key)?;
    Ok(HttpResponse::Created().json(SignedInResponse {
        user_id,
        email: email.to_string(),
        organization_id: org_id,
        role,
        csrf_token,
    }))
}

#[derive(Serialize, ToSchema)]
struct SuccessResponse {
    success: bool,
}

enum Join {
    NewOrganization(OrgName),
    /// The invitation token, as presented.
    Invitation(Credential),
}

fn invalid_invitation() -> ApiError {
    ApiError::invalid("invalid_invitation", "the invitation is unknown, used, expired or for another email")
}

/// Unknown email, wrong password and deactivated user answer the same 401 after the same
/// bcrypt work. Every attempt is counted before the password is checked: once an email has
/// used its attempts in the window without a success, 429 before any work (`too_many_attempts`);
/// too many sign-ins from one address, 429 `rate_limited`.
#[utoipa::path(
    tag = "auth",
    request_body = LoginRequest,
    responses(
        BodyErrors,
        (status = 200, description = "Signed in (a new session cookie)", body = SignedInResponse),
        (status = 401, description = "`invalid_credentials`", body = ErrorBody),
        (status = 429, description = "`too_many_attempts` (this email) or `rate_limited` (this address)", body = ErrorBody),
    )
)]
#[post("/login")]
#[tracing::instrument(skip_all)]
async fn login(
    state: web::Data<AppState>,
    session: Session,
    req: HttpRequest,
    body: web::Json<LoginRequest>,
) -> ApiResult {
    state.sign_in_limiter.check(state.client_address(&req))?;
    let LoginRequest { email, password } = body.into_inner();
    let email = email.trim().to_owned();
    let window = i64::from(state.config.auth.login_window_seconds);
    let max_attempts = i32::try_from(state.config.auth.login_max_failures).unwrap_or(i32::MAX);

    let attempt = {
        let conn = state.db.system_conn().await?;
        system::login_attempt(&conn, &email, window, max_attempts).await?
    }; // the connection goes back to the pool before the slow hash check
    if !attempt.allowed {
        return Err(ApiError::TooManyAttempts);
    }
    let stored_hash = attempt.user.as_ref().map_or(&state.decoy_hash, |u| &u.password_hash);
    let password_matches = password::verify(password, stored_hash.clone()).await?;

    let signed_in = attempt.user.filter(|user| password_matches && user.is_active);
    let conn = state.db.system_conn().await?;
    system::login_finish(&conn, &email, signed_in.is_some(), &request_id(&req)).await?;
    let user = signed_in.ok_or(ApiError::InvalidCredentials)?;

    let csrf_token =
        session::start(&session, TenantCtx { org_id: user.org_id, user_id: user.user_id }, &state.csrf_key)?;
    tracing::info!(user_id = %user.user_id, org_id = %user.org_id, "login");
    Ok(HttpResponse::Ok().json(SignedInResponse {
        user_id: user.user_id,
        email,
        organization_id: user.org_id,
        role: user.role,
        csrf_token,
    }))
}

/// End the session, server-side.
#[utoipa::path(
    tag = "auth",
    responses((status = 200, body = SuccessResponse), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("session" = []), ("bearer" = []))
)]
#[post("/logout")]
#[tracing::instrument(skip_all, fields(user_id = %authed.ctx.user_id))]
async fn logout(state: web::Data<AppState>, authed: Authed, session: Session) -> ApiResult {
    let tx = state.db.begin(&authed.ctx).await?;
    db::audit::record(&tx, authed.event(Action::Logout, Some(("user", authed.ctx.user_id.into())), json!({}))).await?;
    tx.commit().await?;
    session::end(&session);
    Ok(HttpResponse::Ok().json(SuccessResponse { success: true }))
}

/// The caller, their organization, role and CSRF token.
#[utoipa::path(
    tag = "auth",
    responses((status = 200, body = MeResponse), (status = 401, body = ErrorBody)),
    security(("session" = []), ("bearer" = []))
)]
#[get("/me")]
#[tracing::instrument(skip_all)]
async fn me(state: web::Data<AppState>, reader: Reader) -> ApiResult {
    let me = reader.read(&state.db, db::users::find_me).await?.ok_or(ApiError::Unauthenticated)?;
    Ok(HttpResponse::Ok().json(MeResponse {
        user_id: me.user_id,
        email: me.email,
        organization_id: me.org_id,
        organization_name: me.org_name,
        role: me.role,
        csrf_token: reader.csrf_token(),
    }))
}
