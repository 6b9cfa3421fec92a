//! Domain types. Parse, don't validate: once a value of these types exists, its invariant holds,
//! so handlers and queries never re-check it.

mod chunk;
mod email;
mod file_status;
mod filename;
mod ids;
mod mime_pattern;
mod org_name;
mod paging;
mod password;
mod role;
mod webhook;

pub use chunk::Chunk;
pub use email::Email;
pub use file_status::FileStatus;
pub use filename::Filename;
pub use ids::{AuditEntryId, DeliveryId, FileId, InvitationId, JobId, LinkId, OrgId, TokenId, UserId, WebhookId};
pub use mime_pattern::{MimePattern, MAX_ALLOWED_TYPES};
pub use org_name::OrgName;
pub use paging::Paging;
pub use password::Password;
pub use role::Role;
pub use webhook::{is_public, EventSelection, WebhookUrl, EVENT_TYPES};

/// Why a value was refused; becomes a 400 with this code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    pub code: &'static str,
    pub message: String,
}

impl Invalid {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}
