//! Personal API tokens. Under the `api_tokens_own` policy a user sees and revokes only their
//! own; authenticating with one is in the registry (`app.credential`, `system::token_load`).

use super::{decode, DbError, TenantRead, TenantWrite};
use crate::domain::TokenId;
use chrono::{DateTime, Utc};
use tokio_postgres::Row;

pub struct TokenRow {
    pub id: TokenId,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl TokenRow {
    fn from_row(row: &Row) -> Result<Self, DbError> {
        Ok(Self {
            id: TokenId::from_uuid(decode(row.try_get("id"))?),
            name: decode(row.try_get("name"))?,
            created_at: decode(row.try_get("created_at"))?,
            expires_at: decode(row.try_get("expires_at"))?,
            last_used_at: decode(row.try_get("last_used_at"))?,
        })
    }
}

#[tracing::instrument(name = "db.tokens.insert", skip_all)]
pub async fn insert(
    tx: impl TenantWrite,
    id: TokenId,
    name: &str,
    token_hash: &[u8],
    expires_at: DateTime<Utc>,
) -> Result<TokenRow, DbError> {
    let ctx = *tx.ctx();
    let row = tx
        .query_one(
            r#"
            insert into app.api_tokens (id, organization_id, user_id, name, token_hash, expires_at)
            values ($1, $2, $3, $4, $5, $6)
            returning id, name, created_at, expires_at, last_used_at
            "#,
            &[id.as_uuid(), ctx.org_id.as_uuid(), ctx.user_id.as_uuid(), &name, &token_hash, &expires_at],
        )
        .await?;
    TokenRow::from_row(&row)
}

/// The caller's live tokens (not revoked), newest first.
#[tracing::instrument(name = "db.tokens.list", skip_all)]
pub async fn list(tx: impl TenantRead) -> Result<Vec<TokenRow>, DbError> {
    let rows = tx
        .query(
            concat!(
                r#"
            select id, name, created_at, expires_at, last_used_at
              from app.api_tokens
             where organization_id = "#,
                tenant_org!(),
                r#"
               and user_id = "#,
                tenant_user!(),
                r#"
               and revoked_at is null
             order by created_at desc, id desc
            "#
            ),
            &[],
        )
        .await?;
    rows.iter().map(TokenRow::from_row).collect()
}

#[tracing::instrument(name = "db.tokens.find", skip_all)]
pub async fn find(tx: impl TenantRead, id: TokenId) -> Result<Option<TokenRow>, DbError> {
    tx.query_opt(
        r#"
        select id, name, created_at, expires_at, last_used_at
          from app.api_tokens
         where id = $1
           and revoked_at is null
        "#,
        &[id.as_uuid()],
    )
    .await?
    .as_ref()
    .map(TokenRow::from_row)
    .transpose()
}

/// Revokes one of the caller's tokens; `false` when there is no such live token.
#[tracing::instrument(name = "db.tokens.revoke", skip_all)]
pub async fn revoke(tx: impl TenantWrite, id: TokenId) -> Result<bool, DbError> {
    let revoked = tx
        .execute(
            r#"
            update app.api_tokens
               set revoked_at = now()
             where id = $1
               and revoked_at is null
            "#,
            &[id.as_uuid()],
        )
        .await?;
    Ok(revoked == 1)
}
