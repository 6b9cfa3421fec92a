//! Queries on `app.users`, always inside a tenant transaction.

use super::{decode, system::role, DbError, TenantRead, TenantWrite};
use crate::domain::{Email, OrgId, Paging, Role, UserId};

/// Adds the transaction's user to its organization. A taken email fails with the
/// `users_email_key` constraint.
#[tracing::instrument(name = "db.users.insert", skip_all)]
pub async fn insert(tx: impl TenantWrite, email: &Email, password_hash: &str, role: Role) -> Result<(), DbError> {
    let ctx = *tx.ctx();
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
pub async fn find_me(tx: impl TenantRead) -> Result<Option<MeRow>, DbError> {
    let row = tx
        .query_opt(
            concat!(
                r#"
            select u.id, u.email, u.role, o.id as organization_id, o.name as organization_name
              from app.users u
              join app.organizations o on o.id = u.organization_id
             where u.id = "#,
                tenant_user!(),
                r#"
               and u.is_active
            "#
            ),
            &[],
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

/// A member as `GET /api/org/users` shows them.
pub struct UserRow {
    pub id: UserId,
    pub email: String,
    pub role: Role,
    pub is_active: bool,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl UserRow {
    fn from_row(row: &tokio_postgres::Row) -> Result<Self, DbError> {
        Ok(Self {
            id: UserId::from_uuid(decode(row.try_get("id"))?),
            email: decode(row.try_get("email"))?,
            role: role(row)?,
            is_active: decode(row.try_get("is_active"))?,
            created_at: decode(row.try_get("created_at"))?,
        })
    }
}

#[tracing::instrument(name = "db.users.list_page", skip_all)]
pub async fn list_page(tx: impl TenantRead, paging: Paging) -> Result<(Vec<UserRow>, i64), DbError> {
    let (rows, total) = tx
        .query_page(
            concat!(
                r#"
        select id, email, role, is_active, created_at
          from app.users
         where organization_id = "#,
                tenant_org!(),
                r#"
         order by created_at, id
         limit $1
        offset $2
        "#
            ),
            &[&paging.limit(), &paging.offset()],
            concat!("select count(*) from app.users where organization_id = ", tenant_org!()),
            &[],
        )
        .await?;
    Ok((rows.iter().map(UserRow::from_row).collect::<Result<_, _>>()?, total))
}

#[tracing::instrument(name = "db.users.find", skip_all, fields(user_id = %id))]
pub async fn find(tx: impl TenantRead, id: UserId) -> Result<Option<UserRow>, DbError> {
    tx.query_opt(
        r#"
        select id, email, role, is_active, created_at
          from app.users
         where id = $1
        "#,
        &[id.as_uuid()],
    )
    .await?
    .as_ref()
    .map(UserRow::from_row)
    .transpose()
}

/// Changes a member's role. The `users_guard_changes` trigger enforces who may do what; the
/// answer is `false` when the user is not visible (another organization, unknown).
#[tracing::instrument(name = "db.users.set_role", skip_all, fields(user_id = %id, role = role.as_str()))]
pub async fn set_role(tx: impl TenantWrite, id: UserId, role: Role) -> Result<bool, DbError> {
    let updated = tx.execute("update app.users set role = $2 where id = $1", &[id.as_uuid(), &role.as_str()]).await?;
    Ok(updated == 1)
}

/// Deactivates or reactivates a member (their sessions end with the deactivation, by trigger).
#[tracing::instrument(name = "db.users.set_active", skip_all, fields(user_id = %id, active))]
pub async fn set_active(tx: impl TenantWrite, id: UserId, active: bool) -> Result<bool, DbError> {
    let updated = tx.execute("update app.users set is_active = $2 where id = $1", &[id.as_uuid(), &active]).await?;
    Ok(updated == 1)
}
