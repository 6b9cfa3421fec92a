//! `POST /api/files/upload`: the multipart body is streamed to storage (memory stays flat
//! whatever the size) after the upload has reserved its quota; the file row, its validation job
//! and the audit entry commit together.

use std::time::Duration;

use actix_multipart::{Field, Multipart, MultipartError};
use actix_web::{
    http::{header, StatusCode},
    post, web, HttpRequest, HttpResponse,
};
use futures_util::StreamExt;
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    db::uploads::Reservation,
    domain::{FileId, FileStatus, Filename},
    error::{ApiError, ErrorBody},
    http::{ApiResult, AppState, Authed},
    storage::StorageError,
};

/// Form fields other than `file` are ignored, but not read without bound.
const MAX_OTHER_FIELD_BYTES: usize = 64 * 1024;

#[derive(Serialize, ToSchema)]
struct UploadResponse {
    file_id: FileId,
    filename: String,
    status: FileStatus,
}

/// The multipart form of an upload (for the OpenAPI document; the handler streams it).
#[derive(ToSchema)]
#[allow(dead_code)]
struct UploadForm {
    /// The file; its name is taken from the part's `filename`.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// Upload a file (multipart field `file`), streamed to storage; validation follows in the background.
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
        (status = 503, description = "`unavailable`: the file store or the database does not answer; nothing was kept", body = ErrorBody),
    ),
    security(("session" = []), ("bearer" = []))
)]
#[post("/upload")]
#[tracing::instrument(skip_all, fields(org_id = %authed.ctx.org_id, file_id))]
pub(super) async fn upload_file(
    state: web::Data<AppState>,
    authed: Authed,
    req: HttpRequest,
    mut multipart: Multipart,
) -> ApiResult {
    let file_id = FileId::new();
    tracing::Span::current().record("file_id", tracing::field::display(file_id));
    let limit = state.config.max_file_size_bytes();
    let (mut field, filename) = file_field(&mut multipart).await?;
    // Before the first byte is written: the file cannot be larger than the request body, nor
    // than the limit. Over the quota or the organization's uploads in flight, it is refused
    // here, with nothing written.
    let bytes = content_length(&req).map_or(limit, |length| length.min(limit));
    let deadline = state.config.upload_timeout_seconds;
    let reservation = match Reservation::take(&state.db, authed.ctx, file_id, bytes, deadline).await {
        Ok(reservation) => reservation,
        Err(err) => return Err(drained(&mut field, limit, err.into()).await),
    };
    let stored = store(&state, &authed, file_id, &filename, &mut field).await;
    // Given back before answering, so that a client's next upload finds quota and slot free.
    reservation.finish(stored.is_ok()).await;
    stored?;
    Ok(HttpResponse::Created().json(UploadResponse {
        file_id,
        filename: filename.to_string(),
        status: FileStatus::Pending,
    }))
}

/// The `file` field and its (parsed) filename; other fields are skipped, within bounds.
async fn file_field(multipart: &mut Multipart) -> Result<(Field, Filename), ApiError> {
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
        return Ok((field, filename));
    }
    Err(ApiError::invalid("missing_file", "multipart field `file` is required"))
}

/// Streams the field to storage (within the upload's deadline) and records it: the file row,
/// its validation job and the audit entry, together with the release of its reservation. On
/// any error nothing is left behind: no part file, no row.
async fn store(
    state: &AppState,
    authed: &Authed,
    file_id: FileId,
    filename: &Filename,
    field: &mut Field,
) -> Result<(), ApiError> {
    let limit = state.config.max_file_size_bytes();
    let deadline = Duration::from_secs(state.config.upload_timeout_seconds);
    let receiving = state.store.receive(authed.ctx.org_id, file_id, &mut *field, limit);
    let (staged, received) = match tokio::time::timeout(deadline, receiving).await {
        Err(_) => return Err(ApiError::Http(StatusCode::REQUEST_TIMEOUT)),
        Ok(Ok(received)) => received,
        Ok(Err(err @ StorageError::TooLarge { .. })) => return Err(drained(field, limit, err.into()).await),
        Ok(Err(err)) => return Err(err.into()),
    };
    if received.size == 0 {
        return Err(ApiError::invalid("empty_file", "the uploaded file is empty"));
    }
    state.uploads.record_file(&authed.uploader(), file_id, filename, staged, &received, None).await
}

fn content_length(req: &HttpRequest) -> Option<u64> {
    req.headers().get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Reads (and discards) a bounded remainder of the field before answering with `error`, so the
/// client gets to see the refusal instead of a connection reset mid-send.
async fn drained(field: &mut Field, limit: u64, error: ApiError) -> ApiError {
    let mut drained = 0u64;
    while let Some(Ok(chunk)) = field.next().await {
        drained += chunk.len() as u64;
        if drained > limit {
            break;
        }
    }
    error
}

async fn skip_field(field: &mut Field) -> Result<(), ApiError> {
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
