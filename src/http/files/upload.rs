//! `POST /api/files/upload`: the multipart form's `file` part, streamed to storage (memory
//! stays flat whatever the size) by the upload service (`uploads::plain`), which reserves the
//! quota first and commits the file row, its validation job and the audit entry together.

use actix_multipart::{Field, Multipart, MultipartError};
use actix_web::{http::header, post, web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    domain::{FileId, FileStatus, Filename},
    error::{ApiError, ErrorBody},
    http::{ApiResult, AppState, Authed},
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
    let (mut field, filename) = file_field(&mut multipart).await?;
    let file_id = state.uploads.receive_file(&authed.uploader(), &filename, &mut field, content_length(&req)).await?;
    tracing::Span::current().record("file_id", tracing::field::display(file_id));
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

fn content_length(req: &HttpRequest) -> Option<u64> {
    req.headers().get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
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
