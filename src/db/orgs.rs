//! Queries on `app.organizations`. Under RLS a tenant transaction sees exactly one: its own.

use super::{decode, DbError, TenantTx};
use crate::domain::OrgName;

/// Creates the organization named by the transaction's context (registration). A taken name
/// fails with the `organizations_name_key` constraint.
#[tracing::instrument(name = "db.orgs.insert", skip_all)]
pub async fn insert(tx: &TenantTx<'_>, name: &OrgName) -> Result<(), DbError> {
    tx.execute(
        r#"
        insert into app.organizations (id, name)
        values ($1, $2)
        "#,
        &[tx.ctx().org_id.as_uuid(), &name.as_str()],
    )
    .await?;
    Ok(())
}

pub struct OrgRow {
    pub name: String,
}

#[tracing::instrument(name = "db.orgs.find_current", skip_all)]
pub async fn find_current(tx: &TenantTx<'_>) -> Result<Option<OrgRow>, DbError> {
    let row = tx
        .query_opt(
            r#"
            select name
              from app.organizations
             where id = $1
            "#,
            &[tx.ctx().org_id.as_uuid()],
        )
        .await?;
    row.map(|row| Ok(OrgRow { name: decode(row.try_get("name"))? })).transpose()
}
