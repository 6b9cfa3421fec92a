//! `/api/files/tus`: resumable uploads with the tus 1.0 protocol (core, creation, termination,
//! expiration), so existing tus clients work unchanged.
//!
//! `POST` declares the length (reserved against the quota at once, like a multipart upload's)
//! and the filename (`Upload-Metadata: filename <base64>`); `PATCH` appends at the current
//! offset (409 otherwise), storing the bytes in chunks of at most 8 MiB and recording the offset
//! in the database after each, so an upload survives a broken connection (what arrived is kept)
//! and the api process itself (any api host takes the next `PATCH`); `HEAD` tells the offset;
//! `DELETE` terminates. The `PATCH` that reaches the length turns the chunks into an ordinary
//! file (`pending`, its validation job in the outbox, its SHA-256 recorded), with nothing left
//! over. Uploads that expire unfinished are removed by the worker.

use std::time::{Duration, SystemTime};

use actix_web::{
    delete, get,
    http::header::{self, HeaderMap, HeaderValue, HttpDate},
    options, patch, post, web, HttpRequest, HttpResponse, HttpResponseBuilder,
};
use base64::Engine;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::upload::commit_file;
use crate::{
    db::{self, tus::TusRow},
    domain::{FileId, Filename},
    error::{ApiError, ErrorBody},
    http::{ApiResult, AppState, Authed},
    storage::Chunk,
};

const TUS_VERSION: &str = "1.0.0";
const TUS_EXTENSIONS: &str = "creation,termination,expiration";
/// Bytes held before they are stored as a chunk: what a crash of the api process may cost a
/// client (it resumes from the last stored chunk), and the memory one `PATCH` holds.
const CHUNK_BYTES: usize = 8 * 1024 * 1024;
/// `Upload-Metadata` is a few names and values; anything longer is not a client's metadata.
const MAX_METADATA_BYTES: usize = 4096;
const OFFSET_CONTENT_TYPE: &str = "application/offset+octet-stream";

#[derive(Serialize, ToSchema)]
struct UploadStatus {
    offset: u64,
    length: u64,
    expires_at: DateTime<Utc>,
}

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
        .insert_header(("Tus-Max-Size", state.config.max_file_size_bytes().to_string()))
        .finish()
}

/// Create a resumable upload (tus creation): `Upload-Length` and `Upload-Metadata` with a
/// `filename`; the length counts against the quota from now on.
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
        (status = 429, description = "`too_many_uploads`", body = ErrorBody),
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
    let limit = state.config.max_file_size_bytes();
    if length > limit {
        return Err(crate::storage::StorageError::TooLarge { limit_bytes: limit }.into());
    }
    let filename = metadata_filename(headers)?;

    let id = FileId::new();
    tracing::Span::current().record("upload_id", tracing::field::display(id));
    let expiry = state.config.tus_expiry_seconds;
    let expires_at = Utc::now() + chrono::Duration::seconds(i64::try_from(expiry).unwrap_or(i64::MAX));
    let length = i64::try_from(length).unwrap_or(i64::MAX);
    let tx = state.db.begin(&authed.ctx).await?;
    // The reservation shares the upload's id and expiry: the quota is held until the upload
    // becomes a file, is terminated, or expires.
    db::uploads::reserve(&tx, id, length, i64::try_from(expiry).unwrap_or(i64::MAX)).await?;
    db::tus::create(&tx, id, &filename, length, expires_at).await?;
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
        (status = 200, description = "`Upload-Offset`, `Upload-Length`, `Upload-Expires`", body = UploadStatus),
        (status = 401, body = ErrorBody),
        (status = 404, description = "Unknown, another's, expired, terminated or completed", body = ErrorBody),
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
    Ok(tus_response(HttpResponse::Ok())
        .insert_header(("Upload-Offset", upload.offset.to_string()))
        .insert_header(("Upload-Length", upload.length.to_string()))
        .insert_header(("Upload-Expires", http_date(upload.expires_at)))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(UploadStatus { offset: upload.offset, length: upload.length, expires_at: upload.expires_at }))
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
        (status = 408, description = "`request_timeout`: what arrived in time is kept", body = ErrorBody),
        (status = 409, description = "`offset_mismatch`: ask HEAD for the offset", body = ErrorBody),
        (status = 412, body = ErrorBody),
        (status = 413, description = "`file_too_large`: more bytes than Upload-Length", body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 503, description = "`unavailable`", body = ErrorBody),
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
    mut body: web::Payload,
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
        return Err(offset_mismatch());
    }

    let mut appending = Appending {
        state: &state,
        authed: &authed,
        upload: &upload,
        at: offset,
        chunks: upload.chunks.clone(),
        held: Vec::new(),
        held_bytes: 0,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(state.config.upload_timeout_seconds);
    let broken = appending.receive(&mut body, deadline).await?;
    // What arrived whole is kept even when the body broke off: that is what resuming is for.
    appending.store_held().await?;
    if let Some(broken) = broken {
        return Err(broken);
    }
    let at = appending.at;
    if at == upload.length {
        complete(&state, &authed, &upload, appending.chunks).await?;
    }
    Ok(tus_response(HttpResponse::NoContent()).insert_header(("Upload-Offset", at.to_string())).finish())
}

/// Terminate an upload (tus termination): its bytes and its quota reservation are released.
#[utoipa::path(
    tag = "files",
    params(("id" = Uuid, Path, description = "Upload id"), ("Tus-Resumable" = String, Header, description = "1.0.0")),
    responses(
        (status = 204, description = "Terminated"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 412, body = ErrorBody),
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
    let id = FileId::from_uuid(id.into_inner());
    let tx = state.db.begin(&authed.ctx).await?;
    let chunks = db::tus::remove(&tx, id).await?.ok_or(ApiError::NotFound)?;
    db::uploads::release(&tx, id).await?;
    tx.commit().await?;
    remove_chunks(&state, &authed, id, &chunks).await;
    Ok(tus_response(HttpResponse::NoContent()).finish())
}

/// Bytes of one `PATCH` on their way to the store, stored as a chunk whenever enough are held.
struct Appending<'a> {
    state: &'a AppState,
    authed: &'a Authed,
    upload: &'a TusRow,
    /// The upload's offset: everything before it is stored and recorded.
    at: u64,
    /// The stored chunks up to `at`, as recorded.
    chunks: Vec<Chunk>,
    held: Vec<Bytes>,
    held_bytes: usize,
}

impl Appending<'_> {
    /// Takes the body until it ends, storing chunks as they fill; how it ended, if not well
    /// (broken off, too long, too slow), for the caller to answer once what arrived is stored.
    async fn receive(
        &mut self,
        body: &mut web::Payload,
        deadline: tokio::time::Instant,
    ) -> Result<Option<ApiError>, ApiError> {
        loop {
            let bytes = match tokio::time::timeout_at(deadline, body.next()).await {
                Err(_) => return Ok(Some(ApiError::Http(actix_web::http::StatusCode::REQUEST_TIMEOUT))),
                Ok(None) => return Ok(None),
                Ok(Some(Err(e))) => {
                    return Ok(Some(ApiError::invalid("invalid_body", format!("upload body broke off: {e}"))));
                }
                Ok(Some(Ok(bytes))) => bytes,
            };
            if self.at + self.held_bytes as u64 + bytes.len() as u64 > self.upload.length {
                return Ok(Some(ApiError::TooLarge {
                    code: "file_too_large",
                    message: format!("the upload is {} bytes long, as declared in Upload-Length", self.upload.length),
                }));
            }
            self.hold(bytes).await?;
        }
    }

    async fn hold(&mut self, bytes: Bytes) -> Result<(), ApiError> {
        self.held_bytes += bytes.len();
        self.held.push(bytes);
        if self.held_bytes >= CHUNK_BYTES {
            self.store_held().await?;
        }
        Ok(())
    }

    /// Stores what is held as one chunk, then records it, if the upload is still where this
    /// `PATCH` found it (409 otherwise: another `PATCH` got there first, and this chunk goes).
    async fn store_held(&mut self) -> Result<(), ApiError> {
        if self.held_bytes == 0 {
            return Ok(());
        }
        let chunk = Chunk { offset: self.at, size: self.held_bytes as u64, nonce: Uuid::new_v4() };
        let (org, id) = (self.authed.ctx.org_id, self.upload.id);
        self.state.store.put_chunk(org, id, &chunk, std::mem::take(&mut self.held)).await?;
        self.held_bytes = 0;
        if !db::tus::advance(self.state.db.write(&self.authed.ctx).await?, id, &chunk).await? {
            remove_chunks(self.state, self.authed, id, &[chunk]).await;
            return Err(offset_mismatch());
        }
        self.at += chunk.size;
        self.chunks.push(chunk);
        Ok(())
    }
}

/// The upload is whole: its chunks become the file, streamed into place and hashed, and the
/// file row replaces the upload's in one commit (which also releases the reservation).
async fn complete(state: &AppState, authed: &Authed, upload: &TusRow, chunks: Vec<Chunk>) -> Result<(), ApiError> {
    let (id, org) = (upload.id, authed.ctx.org_id);
    let filename = Filename::parse(&upload.filename)?;
    let limit = state.config.max_file_size_bytes();
    let whole = state.store.read_chunks(org, id, chunks.clone());
    let (staged, received) = state.store.receive(org, id, whole, limit).await?;
    if received.size != upload.length {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "upload {id}: {} bytes stored, {} declared",
            received.size,
            upload.length
        )));
    }
    let tx = state.db.begin(&authed.ctx).await?;
    db::tus::remove(&tx, id).await?.ok_or(ApiError::NotFound)?;
    commit_file(state, Some(tx), authed, id, &filename, staged, &received).await?;
    remove_chunks(state, authed, id, &chunks).await;
    Ok(())
}

async fn find(state: &AppState, authed: &Authed, id: FileId) -> Result<TusRow, ApiError> {
    db::tus::find(state.db.read(&authed.ctx).await?, id).await?.ok_or(ApiError::NotFound)
}

/// Chunks nothing refers to any more; a failure leaves them to nobody, so it is logged.
async fn remove_chunks(state: &AppState, authed: &Authed, id: FileId, chunks: &[Chunk]) {
    if let Err(e) = state.store.remove_chunks(authed.ctx.org_id, id, chunks).await {
        tracing::warn!(upload_id = %id, error = %e, "chunks of a finished upload were not removed");
    }
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

fn offset_mismatch() -> ApiError {
    ApiError::Conflict { code: "offset_mismatch", message: "Upload-Offset is not the upload's offset; ask HEAD for it" }
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
