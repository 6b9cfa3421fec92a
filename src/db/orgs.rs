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
}

/// The caller's organization with its active member count.
#[tracing::instrument(name = "db.orgs.find_current", skip_all)]
pub async fn find_current(tx: impl TenantRead) -> Result<Option<OrgRow>, DbError> {
    let row = tx
        .query_opt(
            concat!(
                r#"
            select o.id, o.name, o.storage_quota_mb, o.storage_used_bytes,
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
        })
    })
    .transpose()
}
