//! The upload service: what every path that accepts file bytes shares — the plain upload's
//! reserve, receive and release ([`plain`]), recording a received file with its job,
//! reservation release and audit entry in one commit ([`record`]), the resumable (tus)
//! upload's `PATCH`, lease and completion ([`tus`]), and the process's memory budget for
//! bodies in flight ([`budget`]). Handlers keep only what their protocol says
//! (multipart parts, tus headers) and answer with what this returns.
//!
//! Two rules hold on every path: a client is told its bytes are stored (a file id, an
//! `Upload-Offset` equal to the length) only once the file row and its job are committed; and
//! no pooled connection or transaction is held while the store writes.

pub mod budget;
mod plain;
mod record;
pub mod tus;

use std::time::Duration;

use serde_json::json;

pub use budget::MemoryBudget;

use crate::{
    db::{
        audit::{Action, Event},
        Db, TenantCtx,
    },
    domain::{FileId, Filename},
    error::ApiError,
    storage::FileStore,
};

/// What bounds an upload, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_file_bytes: u64,
    /// The longest one upload, or one `PATCH`, may take.
    pub upload_timeout: Duration,
    /// The longest a body may send nothing before it is ended (what arrived is kept).
    pub idle_timeout: Duration,
    /// How long a resumable upload (and its reservation) lives after its last byte.
    pub tus_expiry: Duration,
}

/// The upload service of one process: cheap to clone.
#[derive(Clone)]
pub struct Uploads {
    db: Db,
    store: FileStore,
    budget: MemoryBudget,
    limits: Limits,
}

/// Who is uploading, in which request (for the audit entry).
#[derive(Debug, Clone)]
pub struct Uploader {
    pub ctx: TenantCtx,
    pub request_id: String,
}

impl Uploader {
    fn uploaded(&self, file_id: FileId, filename: &Filename, size: i64) -> Event<'_> {
        let details = json!({ "filename": filename.as_str(), "size": size });
        Event {
            action: Action::FileUploaded,
            target: Some(("file", file_id.into())),
            details,
            request_id: &self.request_id,
        }
    }
}

/// 409 to a `PATCH` whose `Upload-Offset` is not the upload's (any more).
pub fn offset_mismatch() -> ApiError {
    ApiError::Conflict { code: "offset_mismatch", message: "Upload-Offset is not the upload's offset; ask HEAD for it" }
}

impl Uploads {
    pub fn new(db: Db, store: FileStore, budget: MemoryBudget, limits: Limits) -> Self {
        Self { db, store, budget, limits }
    }
}
