//! Serving a ready file's bytes, from whichever store holds them, with what clients of file
//! services rely on: `Range` (resuming, seeking), validators (`ETag`, `Last-Modified`) and the
//! conditional requests built on them, and headers that keep a stored file from acting on our
//! origin.
//!
//! Validators come from the database row, not the store: the ETag is the file's SHA-256 and
//! `Last-Modified` its upload time. Stored bytes never change, so these are strong validators,
//! the same on every api host and for every backend, and a conditional request that ends in
//! 304 or 412 never reaches the store.

use std::{ops::Range, time::SystemTime};

use actix_files::HttpRange;
use actix_web::{
    http::{
        header::{
            self, ContentDisposition, ContentRange, ContentRangeSpec, DispositionParam, DispositionType, ETag,
            EntityTag, ExtendedValue, Header, HttpDate, IfMatch, IfModifiedSince, IfNoneMatch, IfRange,
            IfUnmodifiedSince, LastModified,
        },
        StatusCode,
    },
    mime, HttpRequest, HttpResponse,
};
use anyhow::Context;
use chrono::{DateTime, Utc};

use crate::{
    db::files::{FileRow, StoredFile},
    domain::FileStatus,
    error::ApiError,
    http::ApiResult,
    storage::FileStore,
};

/// A file the caller may see, once validation has marked it ready (409 before).
pub(crate) fn ready(row: &FileRow) -> Result<&StoredFile, ApiError> {
    if row.status != FileStatus::Ready {
        return Err(ApiError::Conflict {
            code: "file_not_ready",
            message: "the file can be downloaded once validation has marked it ready",
        });
    }
    Ok(&row.file)
}

/// The response to a download of `file`: 200 or 206 with the bytes, 304, 412 or 416.
pub(crate) async fn serve(req: &HttpRequest, store: &FileStore, file: &StoredFile) -> ApiResult {
    let size = u64::try_from(file.size).context("negative file size")?;
    let validators = Validators::of(file);
    match validators.evaluate(req) {
        Precondition::Failed => return Err(ApiError::Http(StatusCode::PRECONDITION_FAILED)),
        Precondition::NotModified => return Ok(validators.apply(&mut HttpResponse::NotModified()).finish()),
        Precondition::Passed => {}
    }
    let range = match requested_range(req, &validators, size) {
        Ok(range) => range,
        Err(Unsatisfiable) => {
            return Ok(HttpResponse::RangeNotSatisfiable()
                .insert_header(ContentRange(ContentRangeSpec::Bytes { range: None, instance_length: Some(size) }))
                .finish());
        }
    };
    let body = store
        .read(file.organization_id, file.id, range.clone())
        .await
        .context("cannot read the stored bytes of a ready file")?;

    let mut response = match &range {
        Some(range) => {
            let mut partial = HttpResponse::PartialContent();
            partial.insert_header(ContentRange(ContentRangeSpec::Bytes {
                range: Some((range.start, range.end - 1)),
                instance_length: Some(size),
            }));
            partial
        }
        None => HttpResponse::Ok(),
    };
    let content_type = file.mime_type.as_deref().and_then(|m| m.parse().ok()).unwrap_or(mime::APPLICATION_OCTET_STREAM);
    validators
        .apply(&mut response)
        .insert_header(header::ContentType(content_type))
        .insert_header(attachment(&file.filename))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        // Even opened directly, a stored HTML or SVG file must not run script on our origin.
        .insert_header((header::CONTENT_SECURITY_POLICY, "default-src 'none'; sandbox"));
    let length = range.map_or(size, |range| range.end - range.start);
    Ok(response.no_chunking(length).streaming(body))
}

struct Validators {
    etag: EntityTag,
    /// HTTP dates have whole seconds; comparisons use these.
    modified_secs: i64,
}

enum Precondition {
    Passed,
    NotModified,
    Failed,
}

impl Validators {
    fn of(file: &StoredFile) -> Self {
        Self { etag: EntityTag::new_strong(file.sha256.to_owned()), modified_secs: file.uploaded_at.timestamp() }
    }

    fn last_modified(&self) -> HttpDate {
        let modified = DateTime::<Utc>::from_timestamp(self.modified_secs, 0).unwrap_or_default();
        HttpDate::from(SystemTime::from(modified))
    }

    fn apply<'a>(&self, response: &'a mut actix_web::HttpResponseBuilder) -> &'a mut actix_web::HttpResponseBuilder {
        response.insert_header(ETag(self.etag.clone())).insert_header(LastModified(self.last_modified()))
    }

    fn modified_after(&self, date: HttpDate) -> bool {
        self.modified_secs > seconds(date)
    }

    /// RFC 9110 §13.2.2: `If-Match`, else `If-Unmodified-Since`; then `If-None-Match`, else
    /// `If-Modified-Since`. A header that does not parse is ignored, as the RFC asks.
    fn evaluate(&self, req: &HttpRequest) -> Precondition {
        let failed = match header_of::<IfMatch>(req) {
            Some(IfMatch::Items(tags)) => !tags.iter().any(|tag| tag.strong_eq(&self.etag)),
            Some(IfMatch::Any) => false,
            None => header_of::<IfUnmodifiedSince>(req).is_some_and(|since| self.modified_after(since.0)),
        };
        let not_modified = match header_of::<IfNoneMatch>(req) {
            Some(IfNoneMatch::Items(tags)) => tags.iter().any(|tag| tag.weak_eq(&self.etag)),
            Some(IfNoneMatch::Any) => true,
            None => header_of::<IfModifiedSince>(req).is_some_and(|since| !self.modified_after(since.0)),
        };
        match (failed, not_modified) {
            (true, _) => Precondition::Failed,
            (false, true) => Precondition::NotModified,
            (false, false) => Precondition::Passed,
        }
    }
}

/// A conditional header, if the request has one that parses (absent list headers would
/// otherwise parse as empty lists).
fn header_of<H: Header>(req: &HttpRequest) -> Option<H> {
    if req.headers().contains_key(H::name()) {
        H::parse(req).ok()
    } else {
        None
    }
}

fn seconds(date: HttpDate) -> i64 {
    DateTime::<Utc>::from(SystemTime::from(date)).timestamp()
}

struct Unsatisfiable;

/// The one byte range to send, if the request asks for one that still applies (`If-Range`).
/// Several ranges are answered with the first, as most file servers do.
fn requested_range(req: &HttpRequest, validators: &Validators, size: u64) -> Result<Option<Range<u64>>, Unsatisfiable> {
    let Some(range) = req.headers().get(header::RANGE) else { return Ok(None) };
    let still_current = match header_of::<IfRange>(req) {
        Some(IfRange::EntityTag(tag)) => tag.strong_eq(&validators.etag),
        Some(IfRange::Date(date)) => seconds(date) == validators.modified_secs,
        None => true,
    };
    if !still_current {
        return Ok(None);
    }
    let range = range.to_str().map_err(|_| Unsatisfiable)?;
    let ranges = HttpRange::parse(range, size).map_err(|_| Unsatisfiable)?;
    let first = ranges.first().ok_or(Unsatisfiable)?;
    Ok(Some(first.start..first.start + first.length))
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
