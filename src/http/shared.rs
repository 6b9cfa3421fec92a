//! `GET /api/shared/{secret}`: a share link opened by anyone holding it, without a session.
//! The secret resolves through one registry function (`app.share_link_open`) that returns the
//! link's own file and nothing else, and only while the link works; every other case (unknown,
//! expired, revoked, file deleted, creator deactivated) is the same 404. Per client address the
//! requests are rate-limited, so secrets cannot be guessed at speed (they have 256 bits anyway).

use actix_web::{get, http::header, web, HttpRequest};
use utoipa_actix_web::service_config::ServiceConfig;

use super::{extract::request_id, files::serve_download, ApiResult, AppState};
use crate::{
    auth::token,
    db::system,
    error::{ApiError, ErrorBody},
};

/// Far longer than any secret we hand out: anything longer is not one of ours.
const MAX_SECRET_CHARS: usize = 128;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(open_shared);
}

/// Download a shared file, without a session: Range, ETag and the safe download headers as for
/// the normal download.
#[utoipa::path(
    tag = "files",
    params(("secret" = String, Path, description = "The secret of the link's URL")),
    responses(
        (status = 200, description = "The bytes, as an attachment", content_type = "*/*", body = Vec<u8>),
        (status = 206, description = "The requested range"),
        (status = 304, description = "Not modified (If-None-Match, If-Modified-Since)"),
        (status = 404, description = "No such link, or it expired, was revoked, or its file is gone", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many requests from this address", body = ErrorBody),
    ),
    security(())
)]
#[get("/shared/{secret}")]
#[tracing::instrument(skip_all, fields(org_id))]
async fn open_shared(state: web::Data<AppState>, secret: web::Path<String>, req: HttpRequest) -> ApiResult {
    state.share_limiter.check(state.client_address(&req))?;
    if secret.len() > MAX_SECRET_CHARS {
        return Err(ApiError::NotFound);
    }
    let conn = state.db.system_conn().await?;
    let shared = system::share_link_open(&conn, &token::presented(&secret), &request_id(&req))
        .await?
        .ok_or(ApiError::NotFound)?;
    drop(conn);
    tracing::Span::current().record("org_id", tracing::field::display(shared.organization_id));
    let mut response = serve_download(&req, &state.store, &shared).await?;
    // The secret is in this URL: no page opened from the file may learn it from a Referer.
    response.headers_mut().insert(header::REFERRER_POLICY, header::HeaderValue::from_static("no-referrer"));
    Ok(response)
}
