//! `Authed` and `Reader`: the only ways a handler learns who is calling, and where CSRF is
//! enforced.

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
        system, Caller, Credential, TenantCtx,
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

    /// This caller as the upload service names them.
    pub fn uploader(&self) -> crate::uploads::Uploader {
        crate::uploads::Uploader { ctx: self.ctx, request_id: self.request_id.clone() }
    }

    /// Signed in with a password (a session), not a bearer token: for every action that
    /// creates a credential or a member (tokens, invitations, share links, role changes,
    /// reactivations), which would otherwise outlive the token that made it and survive its
    /// revocation (docs/security.md, "What a token may do").
    pub fn require_session(&self) -> Result<(), ApiError> {
        match self.csrf_token {
            Some(_) => Ok(()),
            None => Err(ApiError::SessionRequired),
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
        Box::pin(async move {
            let authed = resolve(&req).await?;
            remember(&req, Caller::Known(authed.ctx));
            Ok(authed)
        })
    }
}

/// The caller of a read-only handler, whose credential the handler's read resolves in its own
/// transaction (`Db::read(&reader)`): the session cookie's key or the bearer token goes out
/// with the read, and the database answers both in one round trip (migrations/V16). A
/// credential that is not valid fails the read with 401 before its statement runs, exactly
/// like [`Authed`]. Nothing about the caller is known before that read, so a handler taking a
/// `Reader` makes no decision on role or identity before its first read; those that must take
/// [`Authed`].
///
/// For a state-changing method it is resolved as [`Authed`] is, CSRF check included.
#[derive(Debug, Clone)]
pub struct Reader {
    caller: Caller,
}

impl Reader {
    /// The session's CSRF token, once the read has resolved the session; `None` for a bearer
    /// token.
    pub fn csrf_token(&self) -> Option<String> {
        self.caller.session_state().and_then(session::csrf_token)
    }
}

impl From<&Reader> for Caller {
    fn from(reader: &Reader) -> Self {
        reader.caller.clone()
    }
}

impl FromRequest for Reader {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let caller = if is_safe(req.method()) {
                match bearer(&req)? {
                    Some(secret) => Caller::Token(Credential::new(token::digest(secret))),
                    None => {
                        let key_hash = session::key_hash_of(&req.get_session()).ok_or(ApiError::Unauthenticated)?;
                        Caller::Session(Credential::new(key_hash))
                    }
                }
            } else {
                Caller::Known(resolve(&req).await?.ctx)
            };
            remember(&req, caller.clone());
            Ok(Reader { caller })
        })
    }
}

/// This request's id (see `http::request_id`).
pub fn request_id(req: &HttpRequest) -> String {
    req.extensions().get::<RequestId>().map(|id| id.0.clone()).unwrap_or_default()
}

/// Who the request is for, on its log lines: at once when known (the lines the handler logs
/// carry it too), and when the request ends (`ApiRootSpan`: a reader's identity is known only
/// after its read).
fn remember(req: &HttpRequest, caller: Caller) {
    super::middleware::record_caller(&tracing::Span::current(), &caller);
    req.extensions_mut().insert(caller);
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The bearer secret, if the request carries an `Authorization` header; 401 if the header is
/// not a bearer one.
fn bearer(req: &HttpRequest) -> Result<Option<&str>, ApiError> {
    let Some(authorization) = req.headers().get(header::AUTHORIZATION) else { return Ok(None) };
    let secret =
        authorization.to_str().ok().and_then(|value| value.strip_prefix("Bearer ")).ok_or(ApiError::Unauthenticated)?;
    Ok(Some(secret.trim()))
}

fn state(req: &HttpRequest) -> Result<&web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("application state is not registered")))
}

async fn resolve(req: &HttpRequest) -> Result<Authed, ApiError> {
    let request_id = request_id(req);
    if let Some(secret) = bearer(req)? {
        let conn = state(req)?.db.system_conn().await?;
        let (user_id, org_id, role) =
            system::token_load(&conn, &token::digest(secret)).await?.ok_or(ApiError::Unauthenticated)?;
        return Ok(Authed { ctx: TenantCtx { org_id, user_id }, role, csrf_token: None, request_id });
    }

    let user = session::current(&state(req)?.db, &req.get_session()).await?.ok_or(ApiError::Unauthenticated)?;
    if !is_safe(req.method()) {
        let sent = req.headers().get(CSRF_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
        if !bool::from(sent.ct_eq(user.csrf_token.as_bytes())) {
            return Err(ApiError::CsrfFailed);
        }
    }
    Ok(Authed { ctx: user.ctx, role: user.role, csrf_token: Some(user.csrf_token), request_id })
}
