//! Request and response bodies of `/api/files`, as the OpenAPI document shows them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{
    db::files::FileRow,
    domain::{FileId, FileStatus},
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
    pub(super) total: i64,
    pub(super) page: u32,
    pub(super) limit: u32,
}

/// Unknown parameters are refused (400), never silently ignored: a client asking for `sort` or
/// `q` must learn that this server does not do it, not get an unsorted page.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    /// Page number, from 1 (default 1).
    #[param(minimum = 1)]
    pub(super) page: Option<u32>,
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub(super) limit: Option<u32>,
    /// Only files with this status (`pending`, `ready`, `failed`); empty means all.
    #[param(pattern = "^(pending|ready|failed)?$")]
    pub(super) status: Option<String>,
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
