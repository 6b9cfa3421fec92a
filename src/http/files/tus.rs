//! `/api/files/tus`: resumable uploads with the tus 1.0 protocol (core, creation, termination,
//! expiration), so existing tus clients work unchanged.
//!
//! `POST` declares the length (reserved against the quota at once, like a multipart upload's)
//! and the filename (`Upload-Metadata: filename <base64>`); `PATCH` appends at the current
//! offset (409 otherwise), storing the bytes in chunks of at most 8 MiB and recording the offset
//! in the database after each, so an upload survives a broken connection (what arrived is kept)
//! and the api process itself (any api host takes the next `PATCH`); `HEAD` tells the offset;
//! `DELETE` terminates. The `PATCH` that reaches the length turns the chunks into an ordinary
//! file (`pending`, its validation job in the outbox, its SHA-256 recorded) in the commit that
//! records the upload's end; `HEAD` then answers offset = length and the file's id until the
//! upload expires. Uploads that expire unfinished are removed by the worker. The `PATCH` itself
//! (lease, memory budget, idle timeout, completion) is the upload service's (`uploads::tus`).

use std::time::SystemTime;

use actix_web::{
    delete, get,
    http::header::{self, HeaderMap, HeaderValue, HttpDate},
    options, patch, post, web, HttpRequest, HttpResponse, HttpResponseBuilder,
};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    db::{self, tus::TusRow},
    domain::{FileId, Filename, UserId},
    error::{ApiError, ErrorBody},
    http::{ApiResult, AppState, Authed},
    uploads,
};

const TUS_VERSION: &str = "1.0.0";
const TUS_EXTENSIONS: &str = "creation,termination,expiration";
/// `Upload-Metadata` is a few names and values; anything longer is not a client's metadata.
const MAX_METADATA_BYTES: usize = 4096;
const OFFSET_CONTENT_TYPE: &str = "application/offset+octet-stream";

#[derive(Serialize, ToSchema)]
struct UploadStatus {
    offset: u64,
    length: u64,
    expires_at: DateTime<Utc>,
    /// Once the upload is whole: the file it became (committed with it).
    file_id: Option<FileId>,
}

/// Names the file a whole upload became, on `HEAD` and `GET` of the upload (its id is the
/// upload's own).
const FILE_ID_HEADER: &str = "Upload-File-Id";

/// What this server speaks of tus (no authentication needed).
#[utoipa::path(
    tag = "files",
    responses((status = 204, description = "`Tus-Version`, `Tus-Extension`, `Tus-Max-Size`")),
    security(())
)]
#[options("/tus")]
pub(super) async fn tus_options(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header(("Tus-Resumable", TUS_VERSION))
        .insert_header(("Tus-Version", TUS_VERSION))
        .insert_header(("Tus-Extension", TUS_EXTENSIONS))
        .insert_header(("Tus-Max-Size", state.config.limits.max_file_size_bytes().to_string()))
        .finish()
}

/// An upload in progress (unfinished, unexpired).
#[derive(Serialize, ToSchema)]
struct UploadInProgress {
    id: FileId,
    /// Who created it (only they send its bytes).
    user_id: UserId,
    user_email: String,
    filename: String,
    length: i64,
    offset: i64,
    /// A `PATCH` is receiving its bytes now: it holds one of the organization's
    /// `max_concurrent_uploads` slots (an idle upload holds none).
    receiving: bool,
    created_at: DateTime<Utc>,
    /// When its last bytes were stored (or it was created): it expires TUS_EXPIRY_SECONDS later.
    last_activity_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

impl From<db::tus::InProgress> for UploadInProgress {
    fn from(row: db::tus::InProgress) -> Self {
        Self {
            id: row.id,
            user_id: row.created_by,
            user_email: row.created_by_email,
            filename: row.filename,
            length: row.length,
            offset: row.offset,
            receiving: row.receiving,
            created_at: row.created_at,
            last_activity_at: row.last_activity,
            expires_at: row.expires_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
struct UploadsInProgress {
    /// The most recently active first, at most 1,000.
    items: Vec<UploadInProgress>,
}

/// Uploads in progress: an owner's or admin's list holds every member's (each can be
/// terminated with `DELETE /api/files/tus/{id}`), a member's their own.
#[utoipa::path(
    tag = "files",
    responses((status = 200, body = UploadsInProgress), (status = 401, body = ErrorBody)),
    security(("session" = []), ("bearer" = []))
)]
#[get("/tus")]
#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id))]
pub(super) async fn list_uploads(state: web::Data<AppState>, authed: Authed) -> ApiResult {
    let rows = db::tus::list_in_progress(state.db.read(&authed.ctx).await?).await?;
    let items = rows.into_iter().map(UploadInProgress::from).collect();
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(UploadsInProgress { items }))
}

/// Create a resumable upload (tus creation): `Upload-Length` and `Upload-Metadata` with a
/// `filename`; the length counts against the quota from now on (until the upload becomes a
/// file, is terminated, or expires TUS_EXPIRY_SECONDS after its last byte). It holds no upload
/// slot until a `PATCH` sends bytes.
#[utoipa::path(
    tag = "files",
    params(
        ("Tus-Resumable" = String, Header, description = "1.0.0"),
        ("Upload-Length" = u64, Header, description = "The file's size in bytes"),
        ("Upload-Metadata" = String, Header, description = "`filename <base64>`, other keys ignored"),
    ),
    responses(
        (status = 201, description = "Created: `Location` is the upload's URL; `Upload-Expires` when it must be complete"),
        (status = 400, description = "`invalid_upload_length`, `invalid_metadata`, `missing_filename`, `invalid_filename`, `empty_file`, `defer_length_unsupported`, `body_not_allowed`", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 412, description = "Not tus 1.0.0 (`Tus-Version` says what is)", body = ErrorBody),
        (status = 413, description = "`file_too_large` or `quota_exceeded`", body = ErrorBody),
        (status = 429, description = "`too_many_open_uploads`: the caller has TUS_MAX_OPEN_UPLOADS unfinished uploads", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = []))
)]
#[post("/tus")]
#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id, upload_id))]
pub(super) async fn create_upload(state: web::Data<AppState>, authed: Authed, req: HttpRequest) -> ApiResult {
    tus_request(&req)?;
    let headers = req.headers();
    if headers.contains_key("Upload-Defer-Length") {
        return Err(ApiError::invalid("defer_length_unsupported", "give Upload-Length when creating the upload"));
    }
    if header_number(headers, header::CONTENT_LENGTH).is_some_and(|length| length > 0) {
        return Err(ApiError::invalid("body_not_allowed", "send the bytes with PATCH once the upload is created"));
    }
    let length = header_number(headers, "Upload-Length")
        .ok_or_else(|| ApiError::invalid("invalid_upload_length", "Upload-Length must be a number of bytes"))?;
    if length == 0 {
        return Err(ApiError::invalid("empty_file", "the uploaded file is empty"));
    }
    let limit = state.config.limits.max_file_size_bytes();
    if length > limit {
        return Err(crate::storage::StorageError::TooLarge { limit_bytes: limit }.into());
    }
    let filename = metadata_filename(headers)?;

    let id = FileId::new();
    tracing::Span::current().record("upload_id", tracing::field::display(id));
    let expiry = state.config.limits.tus_expiry_seconds;
    let expires_at = Utc::now() + chrono::Duration::seconds(i64::try_from(expiry).unwrap_or(i64::MAX));
    let length = i64::try_from(length).unwrap_or(i64::MAX);
    let tx = state.db.begin(&authed.ctx).await?;
    // The reservation shares the upload's id and expiry: the quota is held until the upload
    // becomes a file, is terminated, or expires (TUS_EXPIRY_SECONDS after its last byte).
    // (No slot yet: one is held only while a PATCH receives bytes.)
    db::uploads::reserve(&tx, id, db::uploads::Size::Exactly(length), i64::try_from(expiry).unwrap_or(i64::MAX), None)
        .await?;
    let max_open = i64::from(state.config.limits.tus_max_open_uploads);
    if !db::tus::create(&tx, id, &filename, length, expires_at, max_open).await? {
        return Err(ApiError::TooManyOpenUploads);
    }
    tx.commit().await?;

    Ok(tus_response(HttpResponse::Created())
        .insert_header((header::LOCATION, state.public_url.join(&format!("/api/files/tus/{id}"))))
        .insert_header(("Upload-Expires", http_date(expires_at)))
        .finish())
}

/// Where an upload stands (tus `HEAD`; `GET` also has it as JSON).
#[utoipa::path(
    tag = "files",
    params(("id" = Uuid, Path, description = "Upload id"), ("Tus-Resumable" = String, Header, description = "1.0.0")),
    responses(
        (status = 200, description = "`Upload-Offset`, `Upload-Length`, `Upload-Expires`; once whole, `Upload-Offset` = `Upload-Length` and `Upload-File-Id` names the file (until the upload's expiry)", body = UploadStatus),
        (status = 401, body = ErrorBody),
        (status = 404, description = "Unknown, another's, expired or terminated", body = ErrorBody),
        (status = 412, body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = []))
)]
#[get("/tus/{id}")]
#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id, upload_id = %id))]
pub(super) async fn upload_status(
    state: web::Data<AppState>,
    authed: Authed,
    id: web::Path<Uuid>,
    req: HttpRequest,
) -> ApiResult {
    tus_request(&req)?;
    let upload = find(&state, &authed, FileId::from_uuid(id.into_inner())).await?;
    let mut response = tus_response(HttpResponse::Ok());
    response
        .insert_header(("Upload-Offset", upload.offset.to_string()))
        .insert_header(("Upload-Length", upload.length.to_string()))
        .insert_header(("Upload-Expires", http_date(upload.expires_at)))
        .insert_header((header::CACHE_CONTROL, "no-store"));
    if let Some(file_id) = upload.file_id {
        response.insert_header((FILE_ID_HEADER, file_id.to_string()));
    }
    let status = UploadStatus {
        offset: upload.offset,
        length: upload.length,
        expires_at: upload.expires_at,
        file_id: upload.file_id,
    };
    Ok(response.json(status))
}

/// Append bytes at `Upload-Offset` (tus core). The last `PATCH` turns the upload into a file.
#[utoipa::path(
    tag = "files",
    params(
        ("id" = Uuid, Path, description = "Upload id"),
        ("Tus-Resumable" = String, Header, description = "1.0.0"),
        ("Upload-Offset" = u64, Header, description = "Where these bytes start: the upload's current offset"),
    ),
    request_body(content = Vec<u8>, content_type = "application/offset+octet-stream"),
    responses(
        (status = 204, description = "Stored: `Upload-Offset` is the new offset"),
        (status = 400, description = "`invalid_upload_offset`", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 408, description = "`request_timeout`: the body sent nothing for UPLOAD_IDLE_TIMEOUT_SECONDS, or took longer than UPLOAD_TIMEOUT_SECONDS; what arrived is kept", body = ErrorBody),
        (status = 409, description = "`offset_mismatch`: ask HEAD for the offset", body = ErrorBody),
        (status = 412, body = ErrorBody),
        (status = 413, description = "`file_too_large`: more bytes than Upload-Length", body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 423, description = "`upload_locked`: another PATCH is writing to this upload (`Retry-After`)", body = ErrorBody),
        (status = 429, description = "`too_many_uploads`: the organization receives its maximum of uploads at once (an idle upload holds no slot); nothing was read", body = ErrorBody),
        (status = 503, description = "`unavailable`: the store or the database failed; what was stored is kept (`Retry-After`)", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = []))
)]
#[patch("/tus/{id}")]
#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id, upload_id = %id))]
pub(super) async fn append(
    state: web::Data<AppState>,
    authed: Authed,
    id: web::Path<Uuid>,
    req: HttpRequest,
    body: web::Payload,
) -> ApiResult {
    tus_request(&req)?;
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    if content_type != Some(OFFSET_CONTENT_TYPE) {
        return Err(ApiError::UnsupportedMediaType(OFFSET_CONTENT_TYPE));
    }
    let offset = header_number(req.headers(), "Upload-Offset")
        .ok_or_else(|| ApiError::invalid("invalid_upload_offset", "Upload-Offset must be a number of bytes"))?;
    let id = FileId::from_uuid(id.into_inner());
    let upload = find(&state, &authed, id).await?;
    if offset != upload.offset {
        return Err(uploads::offset_mismatch());
    }
    if upload.file_id.is_some() {
        // Whole already (the client's last answer was lost): nothing more to send.
        return Ok(tus_response(HttpResponse::NoContent())
            .insert_header(("Upload-Offset", offset.to_string()))
            .finish());
    }
    let at = state.uploads.append(authed.uploader(), upload, body).await?;
    Ok(tus_response(HttpResponse::NoContent()).insert_header(("Upload-Offset", at.to_string())).finish())
}

/// Terminate an upload (tus termination): its bytes and its quota reservation are released.
/// Its creator, or an owner or admin of the organization (any member's upload).
#[utoipa::path(
    tag = "files",
    params(("id" = Uuid, Path, description = "Upload id"), ("Tus-Resumable" = String, Header, description = "1.0.0")),
    responses(
        (status = 204, description = "Terminated"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "`upload_complete`: the upload is a file now", body = ErrorBody),
        (status = 412, body = ErrorBody),
        (status = 423, description = "`upload_locked`: a PATCH is writing to it", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = []))
)]
#[delete("/tus/{id}")]
#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id, upload_id = %id))]
pub(super) async fn terminate(
    state: web::Data<AppState>,
    authed: Authed,
    id: web::Path<Uuid>,
    req: HttpRequest,
) -> ApiResult {
    tus_request(&req)?;
    state.uploads.terminate(&authed.uploader(), FileId::from_uuid(id.into_inner())).await?;
    Ok(tus_response(HttpResponse::NoContent()).finish())
}

async fn find(state: &AppState, authed: &Authed, id: FileId) -> Result<TusRow, ApiError> {
    db::tus::find(state.db.read(&authed.ctx).await?, id).await?.ok_or(ApiError::NotFound)
}

/// Every request but `OPTIONS` names the protocol version it speaks.
fn tus_request(req: &HttpRequest) -> Result<(), ApiError> {
    match req.headers().get("Tus-Resumable").map(HeaderValue::as_bytes) {
        Some(version) if version == TUS_VERSION.as_bytes() => Ok(()),
        _ => Err(ApiError::Http(actix_web::http::StatusCode::PRECONDITION_FAILED)),
    }
}

fn tus_response(mut builder: HttpResponseBuilder) -> HttpResponseBuilder {
    builder.insert_header(("Tus-Resumable", TUS_VERSION));
    builder
}

fn header_number(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<u64> {
    let value = headers.get(name)?.to_str().ok()?;
    // Digits only: no sign, no spaces, as tus requires.
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// The `filename` of `Upload-Metadata` (`key base64value` pairs, comma-separated), under the
/// same rules as a multipart upload's.
fn metadata_filename(headers: &HeaderMap) -> Result<Filename, ApiError> {
    let invalid = || ApiError::invalid("invalid_metadata", "Upload-Metadata must be `key base64value` pairs");
    let metadata = match headers.get("Upload-Metadata") {
        None => "",
        Some(value) if value.len() > MAX_METADATA_BYTES => return Err(invalid()),
        Some(value) => value.to_str().map_err(|_| invalid())?,
    };
    for pair in metadata.split(',').map(str::trim).filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once(' ').unwrap_or((pair, ""));
        if key != "filename" {
            continue;
        }
        let decoded = base64::engine::general_purpose::STANDARD.decode(value.trim()).map_err(|_| invalid())?;
        let name = String::from_utf8(decoded)
            .map_err(|_| ApiError::invalid("invalid_filename", "the filename must be UTF-8"))?;
        return Ok(Filename::parse(&name)?);
    }
    Err(ApiError::invalid("missing_filename", "Upload-Metadata must carry a filename"))
}

fn http_date(at: DateTime<Utc>) -> String {
    HttpDate::from(SystemTime::from(at)).to_string()
}
