//! Invitations to join an organization. Accepting one is in the registry
//! (`system::invitation_accept`): the invited person has no tenant context yet.

use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use super::{decode, system::role, DbError, TenantRead, TenantWrite};
use crate::domain::{Email, InvitationId, Paging, Role};

pub struct InvitationRow {
    pub id: InvitationId,
    pub email: String,
    pub role: Role,
    pub expires_at: DateTime<Utc>,
    pub accepted_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl InvitationRow {
    fn from_row(row: &Row) -> Result<Self, DbError> {
        Ok(Self {
            id: InvitationId::from_uuid(decode(row.try_get("id"))?),
            email: decode(row.try_get("email"))?,
            role: role(row)?,
            expires_at: decode(row.try_get("expires_at"))?,
            accepted_at: decode(row.try_get("accepted_at"))?,
            created_at: decode(row.try_get("created_at"))?,
        })
    }
}

/// Records an invitation (by the transaction's user). Only owners and admins may, and only
/// owners may invite an owner: the `invitations_by_admins` policy refuses anything else.
#[tracing::instrument(name = "db.invitations.insert", skip_all)]
pub async fn insert(
    tx: impl TenantWrite,
    id: InvitationId,
    email: &Email,
    role: Role,
    token_hash: &[u8],
    expires_at: DateTime<Utc>,
) -> Result<(), DbError> {
    let ctx = *tx.ctx();
    tx.execute(
        r#"
        insert into app.invitations (id, organization_id, email, role, token_hash, invited_by, expires_at)
        values ($1, $2, $3, $4, $5, $6, $7)
        "#,
        &[
            id.as_uuid(),
            ctx.org_id.as_uuid(),
            &email.as_str(),
            &role.as_str(),
            &token_hash,
            ctx.user_id.as_uuid(),
            &expires_at,
        ],
    )
    .await?;
    Ok(())
}

#[tracing::instrument(name = "db.invitations.list_page", skip_all)]
pub async fn list_page(tx: impl TenantRead, paging: Paging) -> Result<(Vec<InvitationRow>, i64), DbError> {
    let (rows, total) = tx
        .query_page(
            concat!(
                r#"
        select id, email, role, expires_at, accepted_at, created_at
          from app.invitations
         where organization_id = "#,
                tenant_org!(),
                r#"
         order by created_at desc, id desc
         limit $1
        offset $2
        "#
            ),
            &[&paging.limit(), &paging.offset()],
            concat!("select count(*) from app.invitations where organization_id = ", tenant_org!()),
            &[],
        )
        .await?;
    Ok((rows.iter().map(InvitationRow::from_row).collect::<Result<_, _>>()?, total))
}

#[tracing::instrument(name = "db.invitations.find", skip_all)]
pub async fn find(tx: impl TenantRead, id: InvitationId) -> Result<Option<InvitationRow>, DbError> {
    tx.query_opt(
        r#"
        select id, email, role, expires_at, accepted_at, created_at
          from app.invitations
         where id = $1
        "#,
        &[id.as_uuid()],
    )
    .await?
    .as_ref()
    .map(InvitationRow::from_row)
    .transpose()
}
