//! Queries on `app.organizations`. Under RLS a tenant transaction sees exactly one: its own.

use super::{decode, DbError, TenantRead, TenantWrite};
use crate::domain::{OrgId, OrgName};

/// Creates the organization named by the transaction's context (registration). A taken name
/// fails with the `organizations_name_key` constraint.
#[tracing::instrument(name = "db.orgs.insert", skip_all)]
pub async fn insert(tx: impl TenantWrite, name: &OrgName) -> Result<(), DbError> {
    let ctx = *tx.ctx();
    tx.execute(
        r#"
        insert into app.organizations (id, name)
        values ($1, $2)
        "#,
        &[ctx.org_id.as_uuid(), &name.as_str()],
    )
    .await?;
    Ok(())
}

pub struct OrgRow {
    pub id: OrgId,
    pub name: String,
    pub storage_quota_mb: i64,
    pub storage_used_bytes: i64,
    pub member_count: i64,
    /// The organization's own upload rules (V28): the largest file, the MIME patterns accepted.
    pub max_file_bytes: Option<i64>,
    pub allowed_types: Option<Vec<String>>,
}

/// The caller's organization with its active member count.
#[tracing::instrument(name = "db.orgs.find_current", skip_all)]
pub async fn find_current(tx: impl TenantRead) -> Result<Option<OrgRow>, DbError> {
    let row = tx
        .query_opt(
            concat!(
                r#"
            select o.id, o.name, o.storage_quota_mb, o.storage_used_bytes, o.max_file_bytes, o.allowed_types,
                   (select count(*) from app.users u where u.organization_id = o.id and u.is_active) as member_count
              from app.organizations o
             where o.id = "#,
                tenant_org!(),
                r#"
            "#
            ),
            &[],
        )
        .await?;
    row.map(|row| {
        Ok(OrgRow {
            id: OrgId::from_uuid(decode(row.try_get("id"))?),
            name: decode(row.try_get("name"))?,
            storage_quota_mb: decode(row.try_get("storage_quota_mb"))?,
            storage_used_bytes: decode(row.try_get("storage_used_bytes"))?,
            member_count: decode(row.try_get("member_count"))?,
            max_file_bytes: decode(row.try_get("max_file_bytes"))?,
            allowed_types: decode(row.try_get("allowed_types"))?,
        })
    })
    .transpose()
}

/// A change to the organization's upload rules: each `Some` replaces that rule (`Some(None)`
/// removes it), each `None` leaves it as it is.
pub struct RulesChange {
    pub max_file_bytes: Option<Option<i64>>,
    pub allowed_types: Option<Option<Vec<String>>>,
}

/// Applies `change` to the caller's organization; `false` when the database refused (only an
/// owner or admin may: the `organizations_changed_by_managers` policy).
#[tracing::instrument(name = "db.orgs.change_rules", skip_all)]
pub async fn change_rules(tx: impl TenantWrite, change: &RulesChange) -> Result<bool, DbError> {
    let row = tx
        .query_opt(
            concat!(
                r#"
            update app.organizations o
               set max_file_bytes = case when $1 then $2 else o.max_file_bytes end,
                   allowed_types = case when $3 then $4 else o.allowed_types end
             where o.id = "#,
                tenant_org!(),
                r#"
            returning o.id
            "#
            ),
            &[
                &change.max_file_bytes.is_some(),
                &change.max_file_bytes.flatten(),
                &change.allowed_types.is_some(),
                &change.allowed_types.clone().flatten(),
            ],
        )
        .await?;
    Ok(row.is_some())
}

/// What the caller's organization uses of what it shares with the others (`GET /api/org/usage`).
pub struct UsageRow {
    pub storage_quota_mb: i64,
    pub storage_used_bytes: i64,
    pub storage_reserved_bytes: i64,
    pub max_concurrent_uploads: i32,
    /// Uploads holding a slot now (receiving bytes).
    pub uploads_receiving: i64,
    /// Uploads with a reservation: receiving, or resumable and unfinished.
    pub uploads_unfinished: i64,
    pub files_pending: i64,
    pub files_processed: i64,
    /// The plan's own request rate, if it has one.
    pub requests_per_minute: Option<i32>,
    /// Refusals by budget name (`app.budget_refusals`), as the api processes last added them.
    pub refused: Vec<(String, i64)>,
}

/// The caller's organization's usage: its row's counters, its reservations and its refusals,
/// in one statement.
#[tracing::instrument(name = "db.orgs.usage", skip_all)]
pub async fn usage(tx: impl TenantRead) -> Result<Option<UsageRow>, DbError> {
    let row = tx
        .query_opt(
            concat!(
                r#"
            select o.storage_quota_mb, o.storage_used_bytes, o.storage_reserved_bytes, o.max_concurrent_uploads,
                   o.files_pending, o.files_ready + o.files_failed as files_processed, o.requests_per_minute,
                   (select count(*) from app.upload_reservations r
                     where r.organization_id = o.id and r.receiving_until > now()) as uploads_receiving,
                   (select count(*) from app.upload_reservations r where r.organization_id = o.id) as uploads_unfinished,
                   array(select b.budget from app.budget_refusals b where b.organization_id = o.id order by b.budget)
                     as refused_budgets,
                   array(select b.refused from app.budget_refusals b where b.organization_id = o.id order by b.budget)
                     as refused_counts
              from app.organizations o
             where o.id = "#,
                tenant_org!(),
                r#"
            "#
            ),
            &[],
        )
        .await?;
    row.map(|row| {
        let budgets: Vec<String> = decode(row.try_get("refused_budgets"))?;
        let counts: Vec<i64> = decode(row.try_get("refused_counts"))?;
        Ok(UsageRow {
            storage_quota_mb: decode(row.try_get("storage_quota_mb"))?,
            storage_used_bytes: decode(row.try_get("storage_used_bytes"))?,
            storage_reserved_bytes: decode(row.try_get("storage_reserved_bytes"))?,
            max_concurrent_uploads: decode(row.try_get("max_concurrent_uploads"))?,
            uploads_receiving: decode(row.try_get("uploads_receiving"))?,
            uploads_unfinished: decode(row.try_get("uploads_unfinished"))?,
            files_pending: decode(row.try_get("files_pending"))?,
            files_processed: decode(row.try_get("files_processed"))?,
            requests_per_minute: decode(row.try_get("requests_per_minute"))?,
            refused: budgets.into_iter().zip(counts).collect(),
        })
    })
    .transpose()
}
