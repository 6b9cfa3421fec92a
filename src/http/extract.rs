//! `Authed`: the only way a handler learns who is calling, and where CSRF is enforced.

use std::future::{ready, Ready};

use actix_session::SessionExt;
use actix_web::{dev::Payload, http::Method, FromRequest, HttpRequest};
use subtle::ConstantTimeEq;

use crate::{auth::session, db::TenantCtx, domain::Role, error::ApiError};

pub const CSRF_HEADER: &str = "X-CSRF-Token";

/// An authenticated caller, resolved from the server-side session on this very request
/// (organization and role are read fresh from the database by the session store).
///
/// State-changing methods also require `X-CSRF-Token` to equal the session's token: a cookie
/// is sent by browsers on cross-site form posts (multipart uploads included), a custom header
/// is not.
#[derive(Debug, Clone)]
pub struct Authed {
    pub ctx: TenantCtx,
    pub role: Role,
    pub csrf_token: String,
}

impl FromRequest for Authed {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req))
    }
}

fn authenticate(req: &HttpRequest) -> Result<Authed, ApiError> {
    let user = session::current(&req.get_session()).ok_or(ApiError::Unauthenticated)?;
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        let sent = req.headers().get(CSRF_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
        if !bool::from(sent.ct_eq(user.csrf_token.as_bytes())) {
            return Err(ApiError::CsrfFailed);
        }
    }
    Ok(Authed { ctx: user.ctx, role: user.role, csrf_token: user.csrf_token })
}
