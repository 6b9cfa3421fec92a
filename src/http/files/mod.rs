//! `/api/files`: upload, list, detail, download, rename, delete, bulk-delete.
//!
//! Handlers read as steps: extract → parse → tenant transaction → `db::`/`storage::` → commit
//! → response. Files are shared within an organization; changing one (rename, delete) is for
//! its uploader, or any admin or owner. The upload (multipart streaming) is in `upload`, the
//! request and response bodies in `types`.

mod download;
mod links;
mod tus;
mod types;
mod upload;

pub(super) use download::serve as serve_download;

use std::collections::HashSet;

use actix_web::{delete, get, patch, post, web, HttpRequest, HttpResponse};
use serde_json::json;
use utoipa_actix_web::{scope, service_config::ServiceConfig};
use uuid::Uuid;

use super::{ApiResult, AppState, Authed, BodyErrors, Reader};
use crate::{
    db::{self, audit::Action, Plans, Tx},
    domain::{FileId, Filename, UserId},
    error::{ApiError, ErrorBody},
};

use types::{
    BulkDeleteRequest, BulkDeleteResponse, Cursor, FileDetail, FileSummary, ListQuery, ListResponse, RenameRequest,
};
use upload::upload_file;

const MAX_BULK_IDS: usize = 100;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(
        scope("/files")
            // Before `/{id}`: actix takes the first route that matches.
            .service(tus::tus_options)
            .service(tus::list_uploads)
            .service(tus::create_upload)
            .service(tus::upload_status)
            .service(tus::append)
            .service(tus::terminate)
            .service(list_files)
            .service(upload_file)
            .service(bulk_delete_files)
            .service(get_file)
            .service(rename_file)
            .service(delete_file)
            .service(download_file)
            .service(links::create_link)
            .service(links::list_links)
            .service(links::revoke_link),
    );
}

/// List the organization's files: newest first by default, or sorted by name or size; filtered
/// by status and by a filename search; by page number or by cursor.
#[utoipa::path(
    tag = "files",
    params(ListQuery),
    responses((status = 200, body = ListResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("session" = []), ("bearer" = []))
)]
#[get("")]
#[tracing::instrument(skip_all)]
async fn list_files(state: web::Data<AppState>, reader: Reader, query: web::Query<ListQuery>) -> ApiResult {
    let (listing, page) = query.into_inner().parse(&state.cursor_key)?;
    // A status filter's best plan depends on its value (docs/decisions.md, "Listing files").
    let plans = if listing.status.is_some() { Plans::PerCall } else { Plans::Generic };
    let found = reader.read_planned(&state.db, plans, |tx| db::files::list_page(tx, &listing)).await?;
    Ok(HttpResponse::Ok().json(ListResponse {
        files: found.files.into_iter().map(FileSummary::from).collect(),
        total: found.total,
        total_capped: found.total_capped,
        page,
        limit: u32::try_from(listing.limit).unwrap_or_default(),
        next_cursor: found.next.map(|next| Cursor::encode(next, listing.sort, listing.direction, &state.cursor_key)),
    }))
}

/// One file.
#[utoipa::path(
    tag = "files",
    params(("id" = Uuid, Path, description = "File id")),
    responses((status = 200, body = FileDetail), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("session" = []), ("bearer" = []))
)]
#[get("/{id}")]
#[tracing::instrument(skip_all, fields(file_id = %id))]
async fn get_file(state: web::Data<AppState>, reader: Reader, id: web::Path<Uuid>) -> ApiResult {
    let id = FileId::from_uuid(id.into_inner());
    let file = reader.read(&state.db, |tx| db::files::find(tx, id)).await?.ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(FileDetail::from(file)))
}

/// The file's bytes, as an attachment, once validation marked it ready.
#[utoipa::path(
    tag = "files",
    params(("id" = Uuid, Path, description = "File id")),
    responses(
        (status = 200, description = "The bytes, with the MIME type validation recorded", content_type = "*/*", body = Vec<u8>),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "`file_not_ready`", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = []))
)]
#[get("/{id}/download")]
#[tracing::instrument(skip_all, fields(file_id = %id))]
async fn download_file(state: web::Data<AppState>, reader: Reader, id: web::Path<Uuid>, req: HttpRequest) -> ApiResult {
    let id = FileId::from_uuid(id.into_inner());
    let file = reader.read(&state.db, |tx| db::files::find(tx, id)).await?.ok_or(ApiError::NotFound)?;
    download::serve(&req, &state.store, download::ready(&file)?).await
}

/// Rename a file (the only changeable field).
#[utoipa::path(
    tag = "files",
    params(("id" = Uuid, Path, description = "File id")),
    request_body = RenameRequest,
    responses(
        BodyErrors,
        (status = 200, body = FileDetail), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = []))
)]
#[patch("/{id}")]
#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id, file_id = %id))]
async fn rename_file(
    state: web::Data<AppState>,
    authed: Authed,
    id: web::Path<Uuid>,
    body: web::Json<RenameRequest>,
) -> ApiResult {
    let id = FileId::from_uuid(id.into_inner());
    let filename = Filename::parse(&body.filename)?;
    let tx = state.db.begin(&authed.ctx).await?;
    ensure_may_change(&tx, &authed, &[id]).await?;
    if !db::files::rename(&tx, id, &filename).await? {
        return Err(ApiError::NotFound); // gone meanwhile; the transaction rolls back
    }
    let details = json!({ "filename": filename.as_str() });
    db::audit::record(&tx, authed.event(Action::FileRenamed, Some(("file", id.into())), details)).await?;
    let file = db::files::find(&tx, id).await?.ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(FileDetail::from(file)))
}

/// Delete a file (soft delete; the bytes are purged in the background).
#[utoipa::path(
    tag = "files",
    params(("id" = Uuid, Path, description = "File id")),
    responses(
        (status = 204, description = "Deleted"), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = []))
)]
#[delete("/{id}")]
#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id, file_id = %id))]
async fn delete_file(state: web::Data<AppState>, authed: Authed, id: web::Path<Uuid>) -> ApiResult {
    let ids = [FileId::from_uuid(id.into_inner())];
    let tx = state.db.begin(&authed.ctx).await?;
    ensure_may_change(&tx, &authed, &ids).await?;
    if db::files::mark_deleted(&tx, &ids).await? != 1 {
        return Err(ApiError::NotFound); // gone meanwhile; the transaction rolls back
    }
    db::audit::record(&tx, authed.event(Action::FileDeleted, Some(("file", ids[0].into())), json!({}))).await?;
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}

/// All or nothing: one id that is foreign, deleted, malformed (404) or not the caller's to
/// delete (403) and nothing is deleted.
#[utoipa::path(
    tag = "files",
    request_body = BulkDeleteRequest,
    responses(
        BodyErrors,
        (status = 200, body = BulkDeleteResponse), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = []))
)]
#[post("/bulk-delete")]
#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id))]
async fn bulk_delete_files(
    state: web::Data<AppState>,
    authed: Authed,
    body: web::Json<BulkDeleteRequest>,
) -> ApiResult {
    let requested = &body.ids;
    if requested.is_empty() || requested.len() > MAX_BULK_IDS {
        return Err(ApiError::invalid("invalid_ids", format!("ids must hold 1 to {MAX_BULK_IDS} file ids")));
    }
    // A malformed id is just an id that does not exist: 404 like any other.
    let ids: HashSet<FileId> = requested
        .iter()
        .map(|s| Uuid::parse_str(s).map(FileId::from_uuid).map_err(|_| ApiError::NotFound))
        .collect::<Result<_, _>>()?;
    let ids: Vec<FileId> = ids.into_iter().collect();

    let tx = state.db.begin(&authed.ctx).await?;
    ensure_may_change(&tx, &authed, &ids).await?;
    let deleted = db::files::mark_deleted(&tx, &ids).await?;
    if deleted != ids.len() as u64 {
        return Err(ApiError::NotFound); // one went away meanwhile: all or nothing, roll back
    }
    let details = json!({ "file_ids": ids, "deleted": deleted });
    db::audit::record(&tx, authed.event(Action::FilesBulkDeleted, None, details)).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(BulkDeleteResponse { deleted }))
}

/// Checks that every file is visible (else 404) and the caller's to change: their own upload,
/// or any file for owners and admins (else 403). The database enforces the same rule again on
/// the change itself (`files_change_by_uploader_or_manager`).
async fn ensure_may_change(tx: &Tx, authed: &Authed, ids: &[FileId]) -> Result<(), ApiError> {
    let uploaders = db::files::uploaders(tx, ids).await?;
    if uploaders.len() != ids.len() {
        return Err(ApiError::NotFound);
    }
    let is_own = |uploader: &UserId| *uploader == authed.ctx.user_id;
    if !authed.role.is_manager() && !uploaders.iter().all(|(_, uploader)| is_own(uploader)) {
        return Err(ApiError::Forbidden("members may only change files they uploaded"));
    }
    Ok(())
}
