//! `/api/files`: upload, list, detail, download, rename, delete, bulk-delete.
//!
//! Handlers read as steps: extract → parse → tenant transaction → `db::`/`storage::` → commit
//! → response. Files are shared within an organization; changing one (rename, delete) is for
//! its uploader, or any admin or owner.

use std::{collections::HashSet, time::Duration};

use actix_files::NamedFile;
use actix_multipart::{Multipart, MultipartError};
use actix_web::{
    delete, get,
    http::header::{self, ContentDisposition, DispositionParam, DispositionType, ExtendedValue},
    http::StatusCode,
    mime, patch, post, web, HttpRequest, HttpResponse,
};
use anyhow::Context;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::{scope, service_config::ServiceConfig};
use uuid::Uuid;

use super::{ApiResult, AppState, Authed, BodyErrors, Paging};
use crate::{
    db::{
        self,
        audit::Action,
        files::{FileRow, NewFile},
        uploads::Reservation,
        TenantTx,
    },
    domain::{FileId, FileStatus, Filename, UserId},
    error::{ApiError, ErrorBody},
    storage::{FileStore, PartFile, Received, StorageError},
};

const MAX_BULK_IDS: usize = 100;
/// Form fields other than `file` are ignored, but not read without bound.
const MAX_OTHER_FIELD_BYTES: usize = 64 * 1024;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(
        scope("/files")
            .service(list_files)
            .service(upload_file)
            .service(bulk_delete_files)
            .service(get_file)
            .service(rename_file)
            .service(delete_file)
            .service(download_file),
    );
}

#[derive(Serialize, ToSchema)]
struct UploadResponse {
    file_id: FileId,
    filename: String,
    status: FileStatus,
}

#[derive(Serialize, ToSchema)]
struct FileDetail {
    id: FileId,
    filename: String,
    size: i64,
    mime_type: Option<String>,
    sha256: String,
    status: FileStatus,
    error_message: Option<String>,
    uploaded_at: DateTime<Utc>,
    processed_at: Option<DateTime<Utc>>,
    uploaded_by_email: String,
}

impl From<FileRow> for FileDetail {
    fn from(f: FileRow) -> Self {
        Self {
            id: f.id,
            filename: f.filename,
            size: f.size,
            mime_type: f.mime_type,
            sha256: f.sha256,
            status: f.status,
            error_message: f.error_message,
            uploaded_at: f.uploaded_at,
            processed_at: f.processed_at,
            uploaded_by_email: f.uploaded_by_email,
        }
    }
}

#[derive(Serialize, ToSchema)]
struct FileSummary {
    id: FileId,
    filename: String,
    size: i64,
    status: FileStatus,
    uploaded_at: DateTime<Utc>,
    uploaded_by_email: String,
}

impl From<FileRow> for FileSummary {
    fn from(f: FileRow) -> Self {
        Self {
            id: f.id,
            filename: f.filename,
            size: f.size,
            status: f.status,
            uploaded_at: f.uploaded_at,
            uploaded_by_email: f.uploaded_by_email,
        }
    }
}

#[derive(Serialize, ToSchema)]
struct ListResponse {
    files: Vec<FileSummary>,
    total: i64,
    page: u32,
    limit: u32,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Page number, from 1 (default 1).
    #[param(minimum = 1)]
    page: Option<u32>,
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// Only files with this status (`pending`, `ready`, `failed`); empty means all.
    #[param(pattern = "^(pending|ready|failed)?$")]
    status: Option<String>,
}

/// Only the name may change; any other field is refused (`deny_unknown_fields`), so ownership,
/// status or size can never be set by a client.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RenameRequest {
    filename: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BulkDeleteRequest {
    /// 1 to 100 file ids.
    #[schema(min_items = 1, max_items = 100)]
    ids: Vec<String>,
}

#[derive(Serialize, ToSchema)]
struct BulkDeleteResponse {
    deleted: u64,
}

/// The multipart form of an upload (for the OpenAPI document; the handler streams it).
#[derive(ToSchema)]
#[allow(dead_code)]
struct UploadForm {
    /// The file; its name is taken from the part's `filename`.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// Upload a file (multipart field `file`), streamed to disk; validation follows in the background.
#[utoipa::path(
    tag = "files",
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "Stored, pending validation", body = UploadResponse),
        (status = 400, description = "No `file` part, empty file or unacceptable filename", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 408, description = "`request_timeout`: the upload took longer than UPLOAD_TIMEOUT_SECONDS", body = ErrorBody),
        (status = 413, description = "`file_too_large`, or `quota_exceeded` (checked against the request's size before anything is written, and again on the stored size)", body = ErrorBody),
        (status = 429, description = "`too_many_uploads`: the organization has its maximum of uploads in flight", body = ErrorBody),
        (status = 415, description = "Not multipart/form-data", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = []))
)]
#[post("/upload")]
#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id, file_id))]
async fn upload_file(state: web::Data<AppState>, authed: Authed, req: HttpRequest, multipart: Multipart) -> ApiResult {
    let file_id = FileId::new();
    tracing::Span::current().record("file_id", tracing::field::display(file_id));
    let (filename, part, received, reservation) = receive_upload(&state, &authed, &req, file_id, multipart).await?;
    if received.size == 0 {
        return Err(ApiError::invalid("empty_file", "the uploaded file is empty"));
    }
    let size = i64::try_from(received.size).context("file size out of range")?;
    let file_path = FileStore::relative_path(authed.ctx.org_id, file_id);

    let tx = state.db.begin(&authed.ctx).await?;
    let new_file = NewFile { id: file_id, filename: &filename, file_path: &file_path, size, sha256: &received.sha256 };
    // The file row, its validation job (transactional outbox: the job commits with the row or
    // not at all) and the audit entry are sent together in one round trip. Their order on the
    // wire does not matter for correctness (the job's foreign key is checked at commit, V8);
    // `biased` only makes a refusal of the first (quota) the error reported. The reservation
    // goes with the row: from the commit on, the bytes count as stored instead.
    let details = json!({ "filename": filename.as_str(), "size": size });
    tokio::try_join!(
        biased;
        db::files::insert_pending(&tx, &new_file),
        db::jobs::enqueue(&tx, Uuid::new_v4(), file_id),
        db::uploads::release(&tx, file_id),
        db::audit::record(&tx, authed.event(Action::FileUploaded, Some(("file", file_id.into())), details)),
    )?;
    // In place before the commit, so a committed row always has its bytes; if the commit
    // fails, dropping `placed` removes them again (and dropping `reservation` releases it).
    let placed = part.persist().await.context("cannot move upload into place")?;
    tx.commit().await?;
    placed.keep();
    reservation.released();

    Ok(HttpResponse::Created().json(UploadResponse {
        file_id,
        filename: filename.to_string(),
        status: FileStatus::Pending,
    }))
}

/// Finds the `file` field, reserves quota for it, and streams it to disk. Nothing is left
/// behind on any error: no part file, and the reservation is released when dropped.
async fn receive_upload(
    state: &AppState,
    authed: &Authed,
    req: &HttpRequest,
    file_id: FileId,
    mut multipart: Multipart,
) -> Result<(Filename, PartFile, Received, Reservation), ApiError> {
    let limit = state.config.max_file_size_bytes();
    while let Some(field) = multipart.next().await {
        let mut field = field.map_err(multipart_error)?;
        if field.name() != Some("file") {
            skip_field(&mut field).await?;
            continue;
        }
        let raw_name = field
            .content_disposition()
            .and_then(|cd| cd.get_filename())
            .ok_or_else(|| ApiError::invalid("missing_filename", "the file field must carry a filename"))?;
        let filename = Filename::parse(raw_name)?;
        // Before the first byte is written: the file cannot be larger than the request body,
        // nor than the limit. Over the quota or the organization's uploads in flight, it is
        // refused here, with nothing written.
        let bytes = content_length(req).map_or(limit, |length| length.min(limit));
        let deadline = state.config.upload_timeout_seconds;
        let reservation = match Reservation::take(&state.db, authed.ctx, file_id, bytes, deadline).await {
            Ok(reservation) => reservation,
            Err(err) => return Err(drained(&mut field, limit, err.into()).await),
        };
        let receiving = state.store.receive(authed.ctx.org_id, file_id, &mut field, limit);
        return match tokio::time::timeout(Duration::from_secs(deadline), receiving).await {
            Err(_) => Err(ApiError::Http(StatusCode::REQUEST_TIMEOUT)),
            Ok(Ok((part, received))) => Ok((filename, part, received, reservation)),
            Ok(Err(err @ StorageError::TooLarge { .. })) => Err(drained(&mut field, limit, err.into()).await),
            Ok(Err(err)) => Err(err.into()),
        };
    }
    Err(ApiError::invalid("missing_file", "multipart field `file` is required"))
}

fn content_length(req: &HttpRequest) -> Option<u64> {
    req.headers().get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Reads (and discards) a bounded remainder of the field before answering with `error`, so the
/// client gets to see the refusal instead of a connection reset mid-send.
async fn drained(field: &mut actix_multipart::Field, limit: u64, error: ApiError) -> ApiError {
    let mut drained = 0u64;
    while let Some(Ok(chunk)) = field.next().await {
        drained += chunk.len() as u64;
        if drained > limit {
            break;
        }
    }
    error
}

async fn skip_field(field: &mut actix_multipart::Field) -> Result<(), ApiError> {
    let mut seen = 0usize;
    while let Some(chunk) = field.next().await {
        seen += chunk.map_err(multipart_error)?.len();
        if seen > MAX_OTHER_FIELD_BYTES {
            return Err(ApiError::TooLarge {
                code: "body_too_large",
                message: format!("form fields other than `file` must be at most {MAX_OTHER_FIELD_BYTES} bytes"),
            });
        }
    }
    Ok(())
}

fn multipart_error(err: MultipartError) -> ApiError {
    match err {
        MultipartError::ContentTypeMissing
        | MultipartError::ContentTypeParse
        | MultipartError::ContentTypeIncompatible
        | MultipartError::BoundaryMissing => ApiError::UnsupportedMediaType("multipart/form-data"),
        other => ApiError::invalid("invalid_multipart", other.to_string()),
    }
}

/// List the organization's files, newest first.
#[utoipa::path(
    tag = "files",
    params(ListQuery),
    responses((status = 200, body = ListResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("session" = []), ("bearer" = []))
)]
#[get("")]
#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id))]
async fn list_files(state: web::Data<AppState>, authed: Authed, query: web::Query<ListQuery>) -> ApiResult {
    let ListQuery { page, limit, status } = query.into_inner();
    let paging = Paging::parse(page, limit)?;
    let status = match status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(
            FileStatus::from_db(s)
                .ok_or_else(|| ApiError::invalid("invalid_query", "status must be pending, ready or failed"))?,
        ),
    };

    let tx = state.db.read(&authed.ctx).await?;
    let found = db::files::list_page(&tx, status, paging.limit(), paging.offset()).await?;

    Ok(HttpResponse::Ok().json(ListResponse {
        files: found.files.into_iter().map(FileSummary::from).collect(),
        total: found.total,
        page: paging.page,
        limit: paging.limit,
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
#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id, file_id = %id))]
async fn get_file(state: web::Data<AppState>, authed: Authed, id: web::Path<Uuid>) -> ApiResult {
    let id = FileId::from_uuid(id.into_inner());
    let tx = state.db.read(&authed.ctx).await?;
    let file = db::files::find(&tx, id).await?.ok_or(ApiError::NotFound)?;
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
#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id, file_id = %id))]
async fn download_file(state: web::Data<AppState>, authed: Authed, id: web::Path<Uuid>, req: HttpRequest) -> ApiResult {
    let id = FileId::from_uuid(id.into_inner());
    let file = {
        let tx = state.db.read(&authed.ctx).await?;
        let file = db::files::find(&tx, id).await?.ok_or(ApiError::NotFound)?;
        file
    };
    if file.status != FileStatus::Ready {
        return Err(ApiError::Conflict {
            code: "file_not_ready",
            message: "the file can be downloaded once validation has marked it ready",
        });
    }
    let content_type = file.mime_type.as_deref().and_then(|m| m.parse().ok()).unwrap_or(mime::APPLICATION_OCTET_STREAM);
    let bytes = NamedFile::open_async(state.store.path(authed.ctx.org_id, id))
        .await
        .context("stored bytes of a ready file are missing")?
        .set_content_type(content_type)
        .set_content_disposition(attachment(&file.filename));
    let mut response = bytes.into_response(&req);
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    // Even opened directly, a stored HTML or SVG file must not run script on our origin.
    headers.insert(header::CONTENT_SECURITY_POLICY, header::HeaderValue::from_static("default-src 'none'; sandbox"));
    Ok(response)
}

/// `attachment; filename="ascii fallback"; filename*=UTF-8''percent-encoded`, so every client
/// gets a name and none can be tricked by quotes, separators or non-ASCII.
fn attachment(filename: &str) -> ContentDisposition {
    let fallback: String = filename
        .chars()
        .map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' })
        .collect();
    ContentDisposition {
        disposition: DispositionType::Attachment,
        parameters: vec![
            DispositionParam::Filename(fallback),
            DispositionParam::FilenameExt(ExtendedValue {
                charset: header::Charset::Ext("UTF-8".into()),
                language_tag: None,
                value: filename.as_bytes().to_vec(),
            }),
        ],
    }
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
async fn ensure_may_change(tx: &TenantTx, authed: &Authed, ids: &[FileId]) -> Result<(), ApiError> {
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
