//! Request and response bodies of `/api/files`, as the OpenAPI document shows them.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{
    auth::signing::SigningKey,
    db::files::{Direction, FileRow, Listing, Position, SortKey, Start},
    domain::{FileId, FileStatus, Paging},
    error::ApiError,
};

#[derive(Serialize, ToSchema)]
pub(super) struct FileDetail {
    pub(super) id: FileId,
    pub(super) filename: String,
    pub(super) size: i64,
    pub(super) mime_type: Option<String>,
    sha256: String,
    pub(super) status: FileStatus,
    pub(super) error_message: Option<String>,
    pub(super) uploaded_at: DateTime<Utc>,
    pub(super) processed_at: Option<DateTime<Utc>>,
    pub(super) uploaded_by_email: String,
}

impl From<FileRow> for FileDetail {
    fn from(f: FileRow) -> Self {
        Self {
            id: f.file.id,
            filename: f.file.filename,
            size: f.file.size,
            mime_type: f.file.mime_type,
            sha256: f.file.sha256,
            status: f.status,
            error_message: f.error_message,
            uploaded_at: f.file.uploaded_at,
            processed_at: f.processed_at,
            uploaded_by_email: f.uploaded_by_email,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct FileSummary {
    pub(super) id: FileId,
    pub(super) filename: String,
    pub(super) size: i64,
    pub(super) status: FileStatus,
    pub(super) uploaded_at: DateTime<Utc>,
    pub(super) uploaded_by_email: String,
}

impl From<FileRow> for FileSummary {
    fn from(f: FileRow) -> Self {
        Self {
            id: f.file.id,
            filename: f.file.filename,
            size: f.file.size,
            status: f.status,
            uploaded_at: f.file.uploaded_at,
            uploaded_by_email: f.uploaded_by_email,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct ListResponse {
    pub(super) files: Vec<FileSummary>,
    /// Files matching the filters (for a search: exact up to 1,000, see `total_capped`).
    pub(super) total: i64,
    /// The search matched more than 1,000 files; `total` is 1,000.
    pub(super) total_capped: bool,
    /// The page number asked for; `null` when the page was asked for by `cursor`.
    pub(super) page: Option<u32>,
    pub(super) limit: u32,
    /// Pass as `cursor` (with the same `sort` and `order`) for the next page; `null` on the last.
    pub(super) next_cursor: Option<String>,
}

/// Unknown parameters are refused (400), never silently ignored.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    /// Page number, from 1 (default 1). Not with `cursor`.
    #[param(minimum = 1)]
    page: Option<u32>,
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// Only files with this status (`pending`, `ready`, `failed`); empty means all.
    #[param(pattern = "^(pending|ready|failed)?$")]
    status: Option<String>,
    /// Only files whose name contains this, ignoring case (1 to 100 characters; `%` and `_`
    /// match themselves).
    #[param(min_length = 1, max_length = 100)]
    q: Option<String>,
    /// Sort key: `uploaded_at` (default), `filename` or `size`; ties go by id.
    #[param(pattern = "^(uploaded_at|filename|size)$")]
    sort: Option<String>,
    /// `asc` or `desc`; default `desc` for `uploaded_at` and `size`, `asc` for `filename`.
    #[param(pattern = "^(asc|desc)$")]
    order: Option<String>,
    /// The `next_cursor` of the previous page: the page after it, stable while files are
    /// added or removed (keyset pagination).
    cursor: Option<String>,
}

/// Longest search term, in characters.
const MAX_SEARCH_CHARS: usize = 100;

impl ListQuery {
    /// The listing asked for, and the page number if it was asked for by number.
    pub(super) fn parse(self, cursor_key: &SigningKey) -> Result<(Listing, Option<u32>), ApiError> {
        let invalid = |message: &str| ApiError::invalid("invalid_query", message.to_owned());
        let paging = Paging::parse(self.page, self.limit)?;
        let status = match self.status.as_deref() {
            None | Some("") => None,
            Some(s) => Some(FileStatus::from_db(s).ok_or_else(|| invalid("status must be pending, ready or failed"))?),
        };
        let search = match self.q {
            None => None,
            Some(q)
                if q.trim().is_empty() || q.chars().count() > MAX_SEARCH_CHARS || q.chars().any(char::is_control) =>
            {
                return Err(invalid("q must be 1 to 100 characters, without control characters"));
            }
            Some(q) => Some(q.trim().to_owned()),
        };
        let sort = match self.sort.as_deref() {
            None | Some("uploaded_at") => SortKey::UploadedAt,
            Some("filename") => SortKey::Filename,
            Some("size") => SortKey::Size,
            Some(_) => return Err(invalid("sort must be uploaded_at, filename or size")),
        };
        let direction = match self.order.as_deref() {
            None if sort == SortKey::Filename => Direction::Asc,
            None => Direction::Desc,
            Some("asc") => Direction::Asc,
            Some("desc") => Direction::Desc,
            Some(_) => return Err(invalid("order must be asc or desc")),
        };
        let (start, page) = match self.cursor {
            None => (Start::Offset(paging.offset()), Some(paging.page)),
            Some(_) if self.page.is_some() => return Err(invalid("give page or cursor, not both")),
            Some(cursor) => (Start::After(Cursor::decode(&cursor, sort, direction, cursor_key)?), None),
        };
        Ok((Listing { status, search, sort, direction, start, limit: paging.limit() }, page))
    }
}

/// An opaque `cursor`: where a page ended, in which order. A small JSON document, signed with
/// the server's key ([`SigningKey`]) and base64url-encoded: a cursor this service did not hand
/// out, or one changed on the way, is a 400 `invalid_cursor` and never reaches the database.
/// Its key is range-checked all the same (a timestamp PostgreSQL can represent, a size that is
/// not negative, a name without control characters), so even a signed cursor cannot carry a
/// value the database would refuse. A cursor is only valid for the order it was made in.
#[derive(Serialize, Deserialize)]
pub(super) struct Cursor {
    sort: String,
    order: String,
    key: String,
    id: uuid::Uuid,
}

/// The longest name a cursor may carry: a file's name is at most 255 bytes.
const MAX_CURSOR_NAME_BYTES: usize = 255;

impl Cursor {
    pub(super) fn encode(next: Position, sort: SortKey, direction: Direction, key: &SigningKey) -> String {
        let cursor =
            Cursor { sort: sort_name(sort).into(), order: order_name(direction).into(), key: next.key, id: next.id };
        URL_SAFE_NO_PAD.encode(key.sign(&serde_json::to_vec(&cursor).unwrap_or_default()))
    }

    fn decode(text: &str, sort: SortKey, direction: Direction, key: &SigningKey) -> Result<Position, ApiError> {
        let invalid = || ApiError::invalid("invalid_cursor", "cursor is not one this list gave out");
        let signed = URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid())?;
        let message = key.verify(&signed).ok_or_else(invalid)?;
        let cursor: Cursor = serde_json::from_slice(message).map_err(|_| invalid())?;
        if cursor.sort != sort_name(sort) || cursor.order != order_name(direction) {
            return Err(ApiError::invalid("invalid_cursor", "cursor was made for another sort or order"));
        }
        let key = match sort {
            SortKey::UploadedAt => canonical_timestamp(&cursor.key),
            SortKey::Size => cursor.key.parse::<i64>().ok().filter(|size| *size >= 0).map(|size| size.to_string()),
            SortKey::Filename => Some(cursor.key)
                .filter(|name| name.len() <= MAX_CURSOR_NAME_BYTES && !name.chars().any(char::is_control)),
        };
        Ok(Position { key: key.ok_or_else(invalid)?, id: cursor.id })
    }
}

/// The time, if `text` is one exactly as the list writes it (RFC 3339 in UTC, microseconds)
/// and within years 1 to 9999: PostgreSQL refuses year 0 and offsets like `+20:00`, which
/// chrono parses, and no cursor of ours carries either.
fn canonical_timestamp(text: &str) -> Option<String> {
    let time = DateTime::parse_from_rfc3339(text).ok()?.with_timezone(&Utc);
    let canonical = time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    ((1..=9999).contains(&time.year()) && canonical == text).then_some(canonical)
}

fn sort_name(sort: SortKey) -> &'static str {
    match sort {
        SortKey::UploadedAt => "uploaded_at",
        SortKey::Filename => "filename",
        SortKey::Size => "size",
    }
}

fn order_name(direction: Direction) -> &'static str {
    match direction {
        Direction::Asc => "asc",
        Direction::Desc => "desc",
    }
}

/// Only the name may change; any other field is refused (`deny_unknown_fields`), so ownership,
/// status or size can never be set by a client.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RenameRequest {
    pub(super) filename: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct BulkDeleteRequest {
    /// 1 to 100 file ids.
    #[schema(min_items = 1, max_items = 100)]
    pub(super) ids: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct BulkDeleteResponse {
    pub(super) deleted: u64,
}
