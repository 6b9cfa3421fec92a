//! Request and response bodies of `/api/org`, as the OpenAPI document shows them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    db::{audit::AuditRow, invitations::InvitationRow, users::UserRow},
    domain::{InvitationId, OrgId, Role, UserId},
};

#[derive(Serialize, ToSchema)]
pub(super) struct OrgResponse {
    pub(super) id: OrgId,
    pub(super) name: String,
    pub(super) storage_quota_mb: i64,
    pub(super) storage_used_bytes: i64,
    pub(super) member_count: i64,
}

#[derive(Serialize, ToSchema)]
pub(super) struct UserResponse {
    pub(super) id: UserId,
    pub(super) email: String,
    pub(super) role: Role,
    pub(super) is_active: bool,
    pub(super) created_at: DateTime<Utc>,
}

impl From<UserRow> for UserResponse {
    fn from(u: UserRow) -> Self {
        Self { id: u.id, email: u.email, role: u.role, is_active: u.is_active, created_at: u.created_at }
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct InvitationResponse {
    pub(super) id: InvitationId,
    pub(super) email: String,
    pub(super) role: Role,
    pub(super) expires_at: DateTime<Utc>,
    pub(super) accepted_at: Option<DateTime<Utc>>,
    pub(super) created_at: DateTime<Utc>,
}

impl From<InvitationRow> for InvitationResponse {
    fn from(i: InvitationRow) -> Self {
        Self {
            id: i.id,
            email: i.email,
            role: i.role,
            expires_at: i.expires_at,
            accepted_at: i.accepted_at,
            created_at: i.created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct CreatedInvitation {
    pub(super) id: InvitationId,
    /// Shown once; only its SHA-256 is stored.
    pub(super) invitation_token: String,
    pub(super) email: String,
    pub(super) role: Role,
    pub(super) expires_at: DateTime<Utc>,
}

/// Only the role may change; any other field (is_active, email, organization_id, id) is refused.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ChangeRoleRequest {
    pub(super) role: Role,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct InviteRequest {
    pub(super) email: String,
    pub(super) role: Role,
}

#[derive(Serialize, ToSchema)]
pub(super) struct UserList {
    pub(super) users: Vec<UserResponse>,
    pub(super) total: i64,
    pub(super) page: u32,
    pub(super) limit: u32,
}

#[derive(Serialize, ToSchema)]
pub(super) struct InvitationList {
    pub(super) invitations: Vec<InvitationResponse>,
    pub(super) total: i64,
    pub(super) page: u32,
    pub(super) limit: u32,
}

#[derive(Serialize, ToSchema)]
pub(super) struct AuditList {
    pub(super) entries: Vec<AuditRow>,
    pub(super) total: i64,
    pub(super) page: u32,
    pub(super) limit: u32,
}
