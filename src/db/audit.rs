//! The append-only audit log of security-relevant events, per organization.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{decode, DbError, TenantRead, TenantWrite};
use crate::domain::{AuditEntryId, Paging};

/// What happened, as stored in `app.audit_log.action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Logout,
    InvitationCreated,
    RoleChanged,
    UserDeactivated,
    UserReactivated,
    FileUploaded,
    FileRenamed,
    FileDeleted,
    FilesBulkDeleted,
    TokenCreated,
    TokenRevoked,
    ShareLinkCreated,
    ShareLinkRevoked,
    UploadRulesChanged,
    WebhookCreated,
    WebhookDeleted,
    WebhookSecretRotated,
    WebhookDeliveryRetried,
}

impl Action {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Action::Logout => "logout",
            Action::InvitationCreated => "invitation_created",
            Action::RoleChanged => "role_changed",
            Action::UserDeactivated => "user_deactivated",
            Action::UserReactivated => "user_reactivated",
            Action::FileUploaded => "file_uploaded",
            Action::FileRenamed => "file_renamed",
            Action::FileDeleted => "file_deleted",
            Action::FilesBulkDeleted => "files_bulk_deleted",
            Action::TokenCreated => "token_created",
            Action::TokenRevoked => "token_revoked",
            Action::ShareLinkCreated => "share_link_created",
            Action::ShareLinkRevoked => "share_link_revoked",
            Action::UploadRulesChanged => "upload_rules_changed",
            // The webhook family is named as the worker's `webhook.disabled` (V30) is.
            Action::WebhookCreated => "webhook.created",
            Action::WebhookDeleted => "webhook.deleted",
            Action::WebhookSecretRotated => "webhook.secret_rotated",
            Action::WebhookDeliveryRetried => "webhook.delivery_retried",
        }
    }
}

/// One event: the actor is the transaction's user; `target` is `(type, id)` when there is one.
pub struct Event<'a> {
    pub action: Action,
    pub target: Option<(&'static str, Uuid)>,
    pub details: serde_json::Value,
    pub request_id: &'a str,
}

#[tracing::instrument(name = "db.audit.record", skip_all, fields(action = event.action.as_str()))]
pub async fn record(tx: impl TenantWrite, event: Event<'_>) -> Result<(), DbError> {
    let ctx = *tx.ctx();
    let (target_type, target_id) = event.target.unzip();
    tx.execute(
        r#"
        insert into app.audit_log (organization_id, actor_user_id, action, target_type, target_id, details, request_id)
        values ($1, $2, $3, $4, $5, $6, $7)
        "#,
        &[
            ctx.org_id.as_uuid(),
            ctx.user_id.as_uuid(),
            &event.action.as_str(),
            &target_type,
            &target_id,
            &event.details,
            &event.request_id,
        ],
    )
    .await?;
    Ok(())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditRow {
    pub id: AuditEntryId,
    pub action: String,
    pub actor_user_id: Option<Uuid>,
    pub target_type: Option<String>,
    pub target_id: Option<Uuid>,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    pub request_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl AuditRow {
    fn from_row(row: &Row) -> Result<Self, DbError> {
        Ok(Self {
            id: AuditEntryId::from_uuid(decode(row.try_get("id"))?),
            action: decode(row.try_get("action"))?,
            actor_user_id: decode(row.try_get("actor_user_id"))?,
            target_type: decode(row.try_get("target_type"))?,
            target_id: decode(row.try_get("target_id"))?,
            details: decode(row.try_get("details"))?,
            request_id: decode(row.try_get("request_id"))?,
            created_at: decode(row.try_get("created_at"))?,
        })
    }
}

/// Newest first, with the total.
#[tracing::instrument(name = "db.audit.list_page", skip_all)]
pub async fn list_page(tx: impl TenantRead, paging: Paging) -> Result<(Vec<AuditRow>, i64), DbError> {
    let (rows, total) = tx
        .query_page(
            concat!(
                r#"
        select id, action, actor_user_id, target_type, target_id, details, request_id, created_at
          from app.audit_log
         where organization_id = "#,
                tenant_org!(),
                r#"
         order by created_at desc, id desc
         limit $1
        offset $2
        "#
            ),
            &[&paging.limit(), &paging.offset()],
            concat!("select count(*) from app.audit_log where organization_id = ", tenant_org!()),
            &[],
        )
        .await?;
    Ok((rows.iter().map(AuditRow::from_row).collect::<Result<_, _>>()?, total))
}

#[tracing::instrument(name = "db.audit.find", skip_all)]
pub async fn find(tx: impl TenantRead, id: AuditEntryId) -> Result<Option<AuditRow>, DbError> {
    tx.query_opt(
        r#"
        select id, action, actor_user_id, target_type, target_id, details, request_id, created_at
          from app.audit_log
         where id = $1
        "#,
        &[id.as_uuid()],
    )
    .await?
    .as_ref()
    .map(AuditRow::from_row)
    .transpose()
}
