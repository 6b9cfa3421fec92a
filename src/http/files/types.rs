//! Request and response bodies of `/api/files`, as the OpenAPI document shows them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{
    db::files::{Direction, FileRow, Listing, Position, SortKey, Start},
    domain::{FileId, FileStatus},
    error::ApiError,
    http::Paging,
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
    pub(super) fn parse(self) -> Result<(Listing, Option<u32>), ApiError> {
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
            Some(cursor) => (Start::After(Cursor::decode(&cursor, sort, direction)?), None),
        };
        Ok((Listing { status, search, sort, direction, start, limit: paging.limit() }, page))
    }
}

/// An opaque `cursor`: where a page ended, in which order. Hex of a small JSON document; a
/// cursor is only valid for the order it was made in.
#[derive(Serialize, Deserialize)]
pub(super) struct Cursor {
    sort: String,
    order: String,
    key: String,
    id: uuid::Uuid,
}

impl Cursor {
    pub(super) fn encode(next: Position, sort: SortKey, direction: Direction) -> String {
        let cursor =
            Cursor { sort: sort_name(sort).into(), order: order_name(direction).into(), key: next.key, id: next.id };
        hex::encode(serde_json::to_vec(&cursor).unwrap_or_default())
    }

    fn decode(text: &str, sort: SortKey, direction: Direction) -> Result<Position, ApiError> {
        let invalid = || ApiError::invalid("invalid_cursor", "cursor is not one this list gave out");
        let bytes = hex::decode(text).map_err(|_| invalid())?;
        let cursor: Cursor = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
        if cursor.sort != sort_name(sort) || cursor.order != order_name(direction) {
            return Err(ApiError::invalid("invalid_cursor", "cursor was made for another sort or order"));
        }
        let valid_key = match sort {
            SortKey::UploadedAt => DateTime::parse_from_rfc3339(&cursor.key).is_ok(),
            SortKey::Size => cursor.key.parse::<i64>().is_ok(),
            SortKey::Filename => true,
        };
        if !valid_key {
            return Err(invalid());
        }
        Ok(Position { key: cursor.key, id: cursor.id })
    }
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
