//! `/api/files/{id}/links`: expiring share links. A link hands one ready file to someone
//! without an account until it expires or is revoked; its secret is shown once (only its
//! SHA-256 is stored) and opened at `/api/shared/{secret}` (`http::shared`). Links are managed
//! by whoever may change the file: its uploader, or an owner or admin.

use actix_web::{delete, get, post, web, HttpResponse};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::ensure_may_change;
use crate::{
    auth::token,
    db::{self, audit::Action, share_links::LinkRow},
    domain::{FileId, FileStatus, LinkId},
    error::{ApiError, ErrorBody},
    http::{ApiResult, AppState, Authed, BodyErrors},
};

/// The longest a link may live: 7 days.
const MAX_EXPIRY_SECONDS: u32 = 7 * 24 * 3600;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateLinkRequest {
    /// How long the link works, 1 second to 7 days (604,800).
    expires_in_seconds: u32,
}

#[derive(Serialize, ToSchema)]
struct CreatedLink {
    id: LinkId,
    /// The link itself; shown once, never again (only its SHA-256 is stored).
    url: String,
    expires_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
struct LinkSummary {
    id: LinkId,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
    created_by_email: String,
}

impl From<LinkRow> for LinkSummary {
    fn from(link: LinkRow) -> Self {
        Self {
            id: link.id,
            created_at: link.created_at,
            expires_at: link.expires_at,
            revoked_at: link.revoked_at,
            created_by_email: link.created_by_email,
        }
    }
}

#[derive(Serialize, ToSchema)]
struct LinkList {
    links: Vec<LinkSummary>,
}

/// Create a share link to a ready file; its URL is shown once. Only from a signed-in session
/// (403 `session_required` for an API token).
#[utoipa::path(
    tag = "files",
    params(("id" = Uuid, Path, description = "File id")),
    request_body = CreateLinkRequest,
    responses(
        BodyErrors,
        (status = 201, body = CreatedLink), (status = 401, body = ErrorBody),
        (status = 403, description = "Members share only files they uploaded", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "`file_not_ready`", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = []))
)]
#[post("/{id}/links")]
#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id, file_id = %id))]
pub(super) async fn create_link(
    state: web::Data<AppState>,
    authed: Authed,
    id: web::Path<Uuid>,
    body: web::Json<CreateLinkRequest>,
) -> ApiResult {
    // A link is a credential: one made by a token would outlive the token (docs/security.md).
    authed.require_session()?;
    let id = FileId::from_uuid(id.into_inner());
    let expires_in = body.into_inner().expires_in_seconds;
    if !(1..=MAX_EXPIRY_SECONDS).contains(&expires_in) {
        return Err(ApiError::invalid(
            "invalid_expiry",
            format!("expires_in_seconds must be 1 to {MAX_EXPIRY_SECONDS} (7 days)"),
        ));
    }
    let (secret, digest) = token::new_secret("tfs_", authed.ctx.org_id);
    let expires_at = Utc::now() + Duration::seconds(i64::from(expires_in));
    let tx = state.db.begin(&authed.ctx).await?;
    ensure_may_change(&tx, &authed, &[id]).await?;
    let file = db::files::find(&tx, id).await?.ok_or(ApiError::NotFound)?;
    if file.status != FileStatus::Ready {
        return Err(ApiError::Conflict { code: "file_not_ready", message: "only a ready file can be shared" });
    }
    let link = db::share_links::insert(&tx, LinkId::new(), id, &digest, expires_at).await?;
    let details = json!({ "file_id": id, "expires_at": expires_at });
    db::audit::record(&tx, authed.event(Action::ShareLinkCreated, Some(("share_link", link.id.into())), details))
        .await?;
    tx.commit().await?;
    let url = state.public_url.join(&format!("/api/shared/{secret}"));
    Ok(HttpResponse::Created().json(CreatedLink { id: link.id, url, expires_at: link.expires_at }))
}

/// The file's share links, revoked and expired ones included (never their secrets).
#[utoipa::path(
    tag = "files",
    params(("id" = Uuid, Path, description = "File id")),
    responses(
        (status = 200, body = LinkList), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = []))
)]
#[get("/{id}/links")]
#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id, file_id = %id))]
pub(super) async fn list_links(state: web::Data<AppState>, authed: Authed, id: web::Path<Uuid>) -> ApiResult {
    let id = FileId::from_uuid(id.into_inner());
    let tx = state.db.begin(&authed.ctx).await?;
    ensure_may_change(&tx, &authed, &[id]).await?;
    let links = db::share_links::list(&tx, id).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(LinkList { links: links.into_iter().map(LinkSummary::from).collect() }))
}

/// Revoke a share link: it stops working at once (revoking it again changes nothing).
#[utoipa::path(
    tag = "files",
    params(("id" = Uuid, Path, description = "File id"), ("link_id" = Uuid, Path, description = "Link id")),
    responses(
        (status = 204, description = "Revoked"), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = []))
)]
#[delete("/{id}/links/{link_id}")]
#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id))]
pub(super) async fn revoke_link(
    state: web::Data<AppState>,
    authed: Authed,
    path: web::Path<(Uuid, LinkId)>,
) -> ApiResult {
    let (id, link_id) = path.into_inner();
    let id = FileId::from_uuid(id);
    let tx = state.db.begin(&authed.ctx).await?;
    ensure_may_change(&tx, &authed, &[id]).await?;
    if !db::share_links::revoke(&tx, id, link_id).await? {
        return Err(ApiError::NotFound);
    }
    let details = json!({ "file_id": id });
    db::audit::record(&tx, authed.event(Action::ShareLinkRevoked, Some(("share_link", link_id.into())), details))
        .await?;
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}
