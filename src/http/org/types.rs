//! Request and response bodies of `/api/org`, as the OpenAPI document shows them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    db::{audit::AuditRow, invitations::InvitationRow, orgs::OrgRow, refusals::Budget, users::UserRow},
    domain::{InvitationId, OrgId, Role, UserId},
};

#[derive(Serialize, ToSchema)]
pub(super) struct OrgResponse {
    pub(super) id: OrgId,
    pub(super) name: String,
    pub(super) storage_quota_mb: i64,
    pub(super) storage_used_bytes: i64,
    pub(super) member_count: i64,
    /// The largest file the organization accepts, in bytes; null: the service's limit alone.
    pub(super) max_file_bytes: Option<i64>,
    /// The MIME patterns (`image/*`, `application/pdf`) a file's sniffed type must match;
    /// null: every type.
    pub(super) allowed_types: Option<Vec<String>>,
}

impl From<OrgRow> for OrgResponse {
    fn from(org: OrgRow) -> Self {
        Self {
            id: org.id,
            name: org.name,
            storage_quota_mb: org.storage_quota_mb,
            storage_used_bytes: org.storage_used_bytes,
            member_count: org.member_count,
            max_file_bytes: org.max_file_bytes,
            allowed_types: org.allowed_types,
        }
    }
}

/// `PATCH /api/org`: the organization's upload rules. A field left out stays as it is; `null`
/// removes that rule.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ChangeRulesRequest {
    /// The largest file accepted, 1 byte to the service's own limit (`MAX_FILE_SIZE_MB`).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, minimum = 1)]
    pub(super) max_file_bytes: Option<Option<i64>>,
    /// 1 to 50 MIME patterns: `type/subtype`, `type/*` or `*/*`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<String>>)]
    pub(super) allowed_types: Option<Option<Vec<String>>>,
}

/// A field that is present, `null` or not: `Some(None)` for `null`, `None` (by `default`) when
/// left out.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
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

/// What the organization uses of what it shares with the other organizations, and what its
/// budgets refused it (docs/scaling.md, "Fair share between organizations").
#[derive(Serialize, ToSchema)]
pub(super) struct UsageResponse {
    pub(super) storage: StorageUsage,
    pub(super) uploads: UploadUsage,
    pub(super) jobs: JobUsage,
    pub(super) requests: RequestBudget,
    pub(super) refused: Refused,
}

#[derive(Serialize, ToSchema)]
pub(super) struct StorageUsage {
    pub(super) quota_bytes: i64,
    /// Bytes of the organization's stored files.
    pub(super) used_bytes: i64,
    /// Bytes held against the quota by uploads not finished yet.
    pub(super) reserved_bytes: i64,
}

#[derive(Serialize, ToSchema)]
pub(super) struct UploadUsage {
    /// Uploads receiving bytes now, each holding one of the organization's slots.
    pub(super) receiving: i64,
    pub(super) max_concurrent: i32,
    /// Uploads begun and not finished: those receiving and the resumable ones waiting for
    /// their next `PATCH`.
    pub(super) unfinished: i64,
}

/// The organization's files by validation state.
#[derive(Serialize, ToSchema)]
pub(super) struct JobUsage {
    /// Files waiting for their validation job.
    pub(super) pending: i64,
    /// Files validated (ready or failed), deleted ones not counted.
    pub(super) processed: i64,
}

#[derive(Serialize, ToSchema)]
pub(super) struct RequestBudget {
    /// Authenticated requests per minute, across the api processes; `null`: no budget.
    pub(super) per_minute: Option<u32>,
    /// Whether the rate is the organization's plan's own rather than the deployment's default.
    pub(super) from_plan: bool,
}

/// Requests refused by each of the organization's budgets, since it began, as the api
/// processes last added them (every `BUDGET_BOOKKEEPING_MS`).
#[derive(Serialize, ToSchema, Default)]
pub(super) struct Refused {
    /// 429 `request_budget_exceeded`.
    pub(super) requests: i64,
    /// 429 `organization_busy`: its share of a process's database connections.
    pub(super) connections: i64,
    /// 429 `too_many_uploads`: all its upload slots were taken.
    pub(super) upload_slots: i64,
    /// Upload bodies that had to wait for the organization's share of a process's upload memory.
    pub(super) upload_memory: i64,
}

impl Refused {
    pub(super) fn from_counts(counts: Vec<(String, i64)>) -> Self {
        let mut refused = Refused::default();
        for (name, count) in counts {
            let slot = match Budget::from_name(&name) {
                Some(Budget::Requests) => &mut refused.requests,
                Some(Budget::Connections) => &mut refused.connections,
                Some(Budget::UploadSlots) => &mut refused.upload_slots,
                Some(Budget::UploadMemory) => &mut refused.upload_memory,
                None => continue,
            };
            *slot += count;
        }
        refused
    }
}
