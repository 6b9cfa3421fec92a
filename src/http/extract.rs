//! `Authed` and `Reader`: the only ways a handler learns who is calling, and where CSRF is
//! enforced.

use std::future::Future;

use actix_session::SessionExt;
use actix_web::{
    dev::Payload,
    http::{header, Method},
    web, FromRequest, HttpMessage, HttpRequest,
};
use futures_util::future::LocalBoxFuture;
use subtle::ConstantTimeEq;
use tracing::Span;
use tracing_actix_web::RootSpan;

use super::{AppState, RequestId, Standing};
use crate::{
    auth::{session, token},
    db::{
        audit::{Action, Event},
        system, Caller, Db, DbError, Plans, ReadTx, TenantCtx,
    },
    domain::{OrgId, Role},
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
            record_caller(&root_span(&req), &authed.ctx);
            spend_budget(&req, authed.ctx.org_id)?;
            Ok(authed)
        })
    }
}

/// The caller of a read-only handler, whose credential the handler's read resolves in its own
/// transaction ([`Reader::read`]): the session cookie's key or the bearer token goes out with
/// the read, and the database answers both in one round trip (migrations/V20). A credential
/// that is not valid fails the read with 401 before its statement runs, exactly like
/// [`Authed`]. Nothing about the caller is known before that read, so a handler taking a
/// `Reader` makes no decision on role or identity before its first read; those that must take
/// [`Authed`].
///
/// For a state-changing method it is resolved as [`Authed`] is, CSRF check included.
#[derive(Debug, Clone)]
pub struct Reader {
    caller: Caller,
    csrf_token: Option<String>,
    /// The request's root span, which names the caller once the read has resolved them.
    span: Span,
    /// The request, whose organization's budget a credential's first read spends once it
    /// learns whose the credential is.
    req: HttpRequest,
}

impl Reader {
    /// The session's CSRF token; `None` for a bearer token.
    pub fn csrf_token(&self) -> Option<String> {
        self.csrf_token.clone()
    }

    /// Runs `read` for this caller (one statement, see [`Db::read_as`]), and names the caller
    /// on the request's log line.
    pub async fn read<T, Fut>(&self, db: &Db, read: impl FnOnce(ReadTx) -> Fut) -> Result<T, ApiError>
    where
        Fut: Future<Output = Result<T, DbError>>,
    {
        self.read_planned(db, Plans::Generic, read).await
    }

    /// [`Reader::read`], planned as `plans` says.
    pub async fn read_planned<T, Fut>(
        &self,
        db: &Db,
        plans: Plans,
        read: impl FnOnce(ReadTx) -> Fut,
    ) -> Result<T, ApiError>
    where
        Fut: Future<Output = Result<T, DbError>>,
    {
        let (value, caller) = db.read_as(&self.caller, plans, read).await?;
        record_caller(&self.span, &caller);
        spend_budget(&self.req, caller.org_id)?;
        Ok(value)
    }
}

impl FromRequest for Reader {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let span = root_span(&req);
            if !is_safe(req.method()) {
                let authed = resolve(&req).await?;
                record_caller(&span, &authed.ctx);
                spend_budget(&req, authed.ctx.org_id)?;
                return Ok(Reader { caller: Caller::Known(authed.ctx), csrf_token: authed.csrf_token, span, req });
            }
            let (caller, csrf_token) = match bearer(&req)? {
                Some(secret) => (Caller::Token(token::presented(secret)), None),
                None => {
                    let key = session::credential_of(&req.get_session()).ok_or(ApiError::Unauthenticated)?;
                    let csrf_token = Some(session::csrf_token(&state(&req)?.csrf_key, key.hash()));
                    (Caller::Session(key), csrf_token)
                }
            };
            // The organization is known before the read when this credential was seen before:
            // a request over budget then costs no read at all.
            if let Some(org) = state(&req)?.db.organization_of(&caller) {
                spend_budget(&req, org)?;
            }
            Ok(Reader { caller, csrf_token, span, req })
        })
    }
}

/// The request's organization budget, spent once per request (429 past it). Whose request it
/// was and how the budget then stood are kept for the answer (`http::budget_accounting`).
fn spend_budget(req: &HttpRequest, org: OrgId) -> Result<(), ApiError> {
    if req.extensions().contains::<Spent>() {
        return Ok(());
    }
    let spent = state(req)?.budgets.spend(org);
    // A request refused here is never read for its caller: its log line names the organization.
    root_span(req).record("org_id", tracing::field::display(org));
    let standing = spent.as_ref().ok().copied().flatten();
    req.extensions_mut().insert(Spent { org, standing });
    spent.map(|_| ())
}

/// The request has spent its organization's budget, which then stood as `standing` says (`None`:
/// no budget applies, or it was spent).
#[derive(Debug, Clone, Copy)]
pub struct Spent {
    pub org: OrgId,
    pub standing: Option<Standing>,
}

/// This request's id (see `http::request_id`).
pub fn request_id(req: &HttpRequest) -> String {
    req.extensions().get::<RequestId>().map(|id| id.0.clone()).unwrap_or_default()
}

/// The request's root span (`ApiRootSpan`), whose one line names the caller once known.
fn root_span(req: &HttpRequest) -> Span {
    req.extensions().get::<RootSpan>().cloned().map(Span::from).unwrap_or_else(Span::none)
}

/// Puts who the request is for on its root span.
fn record_caller(span: &Span, ctx: &TenantCtx) {
    span.record("org_id", tracing::field::display(ctx.org_id));
    span.record("user_id", tracing::field::display(ctx.user_id));
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
    let (request_id, state) = (request_id(req), state(req)?);
    if let Some(secret) = bearer(req)? {
        let conn = state.db.system_conn().await?;
        let (user_id, org_id, role) =
            system::token_load(&conn, &token::presented(secret)).await?.ok_or(ApiError::Unauthenticated)?;
        return Ok(Authed { ctx: TenantCtx { org_id, user_id }, role, csrf_token: None, request_id });
    }

    let key = session::credential_of(&req.get_session()).ok_or(ApiError::Unauthenticated)?;
    let user = session::current(&state.db, &key).await?.ok_or(ApiError::Unauthenticated)?;
    let csrf_token = session::csrf_token(&state.csrf_key, key.hash());
    if !is_safe(req.method()) {
        let sent = req.headers().get(CSRF_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
        if !bool::from(sent.ct_eq(csrf_token.as_bytes())) {
            return Err(ApiError::CsrfFailed);
        }
    }
    Ok(Authed { ctx: user.ctx, role: user.role, csrf_token: Some(csrf_token), request_id })
}
