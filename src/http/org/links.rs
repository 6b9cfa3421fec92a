//! `/api/org/links`: every share link of the organization, for owners and admins to review and
//! revoke (links are otherwise listed file by file, `http::files::links`). A link works only
//! while its creator may still share its file (V17): `works` says whether it does now.

use actix_web::{delete, get, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::{
    db::{self, audit::Action, share_links::OrgLinkRow},
    domain::{FileId, LinkId, UserId},
    error::{ApiError, ErrorBody},
    http::{ApiResult, AppState, Authed, PageQuery},
};

#[derive(Serialize, ToSchema)]
pub(super) struct OrgLink {
    id: LinkId,
    file_id: FileId,
    filename: String,
    created_by: UserId,
    created_by_email: String,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
    /// Whether the link hands out its file now: unrevoked, unexpired, the file live and ready,
    /// and its creator active and still allowed to share it (its uploader, an owner or admin).
    works: bool,
}

impl From<OrgLinkRow> for OrgLink {
    fn from(link: OrgLinkRow) -> Self {
        Self {
            id: link.id,
            file_id: link.file_id,
            filename: link.filename,
            created_by: link.created_by,
            created_by_email: link.created_by_email,
            created_at: link.created_at,
            expires_at: link.expires_at,
            revoked_at: link.revoked_at,
            works: link.works,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct OrgLinkList {
    links: Vec<OrgLink>,
    total: i64,
    page: u32,
    limit: u32,
}

/// Every share link of the organization, newest first, revoked and expired ones included
/// (never their secrets). Owners and admins only.
#[utoipa::path(tag = "org", params(PageQuery), responses((status = 200, body = OrgLinkList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)), security(("session" = []), ("bearer" = [])))]
#[get("/links")]
#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id))]
pub(super) async fn list_org_links(
    state: web::Data<AppState>,
    authed: Authed,
    query: web::Query<PageQuery>,
) -> ApiResult {
    authed.require_manager()?;
    let paging = query.into_inner().paging()?;
    let tx = state.db.read(&authed.ctx).await?;
    let (links, total) = db::share_links::list_page(tx, paging).await?;
    let links = links.into_iter().map(OrgLink::from).collect();
    Ok(HttpResponse::Ok().json(OrgLinkList { links, total, page: paging.page, limit: paging.limit }))
}

/// Revoke any share link of the organization: it stops working at once (revoking it again
/// changes nothing). Owners and admins only.
#[utoipa::path(tag = "org", params(("id" = Uuid, Path, description = "Link id")), responses((status = 204, description = "Revoked"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("session" = []), ("bearer" = [])))]
#[delete("/links/{id}")]
#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id))]
pub(super) async fn revoke_org_link(state: web::Data<AppState>, authed: Authed, id: web::Path<LinkId>) -> ApiResult {
    authed.require_manager()?;
    let link_id = id.into_inner();
    let tx = state.db.begin(&authed.ctx).await?;
    let file_id = db::share_links::revoke_by_id(&tx, link_id).await?.ok_or(ApiError::NotFound)?;
    let details = json!({ "file_id": file_id });
    db::audit::record(&tx, authed.event(Action::ShareLinkRevoked, Some(("share_link", link_id.into())), details))
        .await?;
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}
