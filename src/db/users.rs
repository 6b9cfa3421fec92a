//! Queries on `app.users`, always inside a tenant transaction.

use super::{decode, system::role, DbError, TenantTx};
use crate::domain::{Email, OrgId, Role, UserId};

/// Adds the transaction's user to its organization. A taken email fails with the
/// `users_email_key` constraint.
#[tracing::instrument(name = "db.users.insert", skip_all)]
pub async fn insert(tx: &TenantTx<'_>, email: &Email, password_hash: &str, role: Role) -> Result<(), DbError> {
    let ctx = tx.ctx();
    tx.execute(
        r#"
        insert into app.users (id, organization_id, email, password_hash, role)
        values ($1, $2, $3, $4, $5)
        "#,
        &[ctx.user_id.as_uuid(), ctx.org_id.as_uuid(), &email.as_str(), &password_hash, &role.as_str()],
    )
    .await?;
    Ok(())
}

/// The acting user with their organization, as `GET /api/auth/me` shows them.
pub struct MeRow {
    pub user_id: UserId,
    pub email: String,
    pub role: Role,
    pub org_id: OrgId,
    pub org_name: String,
}

#[tracing::instrument(name = "db.users.find_me", skip_all)]
pub async fn find_me(tx: &TenantTx<'_>) -> Result<Option<MeRow>, DbError> {
    let row = tx
        .query_opt(
            r#"
            select u.id, u.email, u.role, o.id as organization_id, o.name as organization_name
              from app.users u
              join app.organizations o on o.id = u.organization_id
             where u.id = $1
               and u.is_active
            "#,
            &[tx.ctx().user_id.as_uuid()],
        )
        .await?;
    row.map(|row| {
        Ok(MeRow {
            user_id: UserId::from_uuid(decode(row.try_get("id"))?),
            email: decode(row.try_get("email"))?,
            role: role(&row)?,
            org_id: OrgId::from_uuid(decode(row.try_get("organization_id"))?),
            org_name: decode(row.try_get("organization_name"))?,
        })
    })
    .transpose()
}
