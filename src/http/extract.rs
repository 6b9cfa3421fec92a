//! `Authed`: the only way a handler learns who is calling, and where CSRF is enforced.

use actix_session::SessionExt;
use actix_web::{
    dev::Payload,
    http::{header, Method},
    web, FromRequest, HttpMessage, HttpRequest,
};
use futures_util::future::LocalBoxFuture;
use subtle::ConstantTimeEq;

use super::{AppState, RequestId};
use crate::{
    auth::{session, token},
    db::{
        audit::{Action, Event},
        system, TenantCtx,
    },
    domain::Role,
    error::ApiError,
};

pub const CSRF_HEADER: &str = "X-CSRF-Token";

/// An authenticated caller, resolved on this very request: from `Authorization: Bearer` (a
/// personal API token) or else from the server-side session. Either way organization and role
/// are read fresh from the database, so a deactivation or role change takes effect at once.
///
/// Session requests with a state-changing method must also send `X-CSRF-Token` equal to the
/// session's token: browsers attach cookies to cross-site form posts (multipart uploads
/// included), never custom headers. Bearer requests need no CSRF token: a browser never adds
/// an `Authorization` header on its own.
#[derive(Debug, Clone)]
pub struct Authed {
    pub ctx: TenantCtx,
    pub role: Role,
    /// The session's CSRF token; `None` for bearer requests.
    pub csrf_token: Option<String>,
    /// This request's id, recorded with audit events.
    pub request_id: String,
}

impl Authed {
    /// An audit event by this caller in this request.
    pub fn event(
        &self,
        action: Action,
        target: Option<(&'static str, uuid::Uuid)>,
        details: serde_json::Value,
    ) -> Event<'_> {
        Event { action, target, details, request_id: &self.request_id }
    }

    /// Signed in with a password (a session), not a bearer token: for what a token must not be
    /// able to do on its own, like minting tokens that would outlive it.
    pub fn require_session(&self) -> Result<(), ApiError> {
        match self.csrf_token {
            Some(_) => Ok(()),
            None => Err(ApiError::Forbidden("this needs a signed-in session, not an API token")),
        }
    }

    /// Owners and admins only.
    pub fn require_manager(&self) -> Result<(), ApiError> {
        if self.role.is_manager() {
            Ok(())
        } else {
            Err(ApiError::Forbidden("only owners and admins may do this"))
        }
    }
}

impl FromRequest for Authed {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { authenticate(&req).await })
    }
}

/// This request's id (see `http::request_id`).
pub fn request_id(req: &HttpRequest) -> String {
    req.extensions().get::<RequestId>().map(|id| id.0.clone()).unwrap_or_default()
}

async fn authenticate(req: &HttpRequest) -> Result<Authed, ApiError> {
    let authed = resolve(req).await?;
    // The request's log line carries who it was for.
    let span = tracing::Span::current();
    span.record("org_id", tracing::field::display(authed.ctx.org_id));
    span.record("user_id", tracing::field::display(authed.ctx.user_id));
    Ok(authed)
}

async fn resolve(req: &HttpRequest) -> Result<Authed, ApiError> {
    let request_id = request_id(req);
    if let Some(authorization) = req.headers().get(header::AUTHORIZATION) {
        let secret = authorization
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or(ApiError::Unauthenticated)?;
        let state = req
            .app_data::<web::Data<AppState>>()
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("application state is not registered")))?;
        let conn = state.db.system_conn().await?;
        let (user_id, org_id, role) =
            system::token_load(&conn, &token::digest(secret.trim())).await?.ok_or(ApiError::Unauthenticated)?;
        return Ok(Authed { ctx: TenantCtx { org_id, user_id }, role, csrf_token: None, request_id });
    }

    let user = session::current(&req.get_session()).ok_or(ApiError::Unauthenticated)?;
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        let sent = req.headers().get(CSRF_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
        if !bool::from(sent.ct_eq(user.csrf_token.as_bytes())) {
            return Err(ApiError::CsrfFailed);
        }
    }
    Ok(Authed { ctx: user.ctx, role: user.role, csrf_token: Some(user.csrf_token), request_id })
}
