//! THE way to reach tenant rows.
//!
//! A [`TenantConn`] has no query methods. [`TenantConn::begin`] opens a transaction and, as its
//! first statement, sets `app.org_id` and `app.user_id` with transaction scope
//! (`set_config(..., true)`, bound parameters, both in one statement). Every query then runs
//! under the RLS policies for that organization. The settings die with the transaction, so a
//! pooled connection never carries one request's tenant into the next.
//!
//! [`TenantTx`] rolls back when dropped without [`TenantTx::commit`], so a handler that returns
//! early with `?` leaves nothing half-written.

use deadpool_postgres::{Object, Transaction};
use tokio_postgres::{types::ToSql, Row};

use super::DbError;
use crate::domain::{OrgId, UserId};

/// Who is acting: built by the HTTP extractor from the server-side session (or by the worker
/// from a message), never from request parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantCtx {
    pub org_id: OrgId,
    pub user_id: UserId,
}

/// Setting names are fixed here and in the policies' helper functions (migrations/V1).
const SET_TENANT_CONTEXT: &str = r#"
select set_config('app.org_id', $1, true),
       set_config('app.user_id', $2, true)
"#;

pub struct TenantConn(Object);

impl TenantConn {
    pub(super) fn new(object: Object) -> Self {
        Self(object)
    }

    #[tracing::instrument(name = "db.begin", skip_all, fields(org_id = %ctx.org_id))]
    pub async fn begin(&mut self, ctx: &TenantCtx) -> Result<TenantTx<'_>, DbError> {
        let tx = self.0.transaction().await?;
        let set_context = tx.prepare_cached(SET_TENANT_CONTEXT).await?;
        tx.execute(&set_context, &[&ctx.org_id.to_string(), &ctx.user_id.to_string()]).await?;
        Ok(TenantTx { tx, ctx: *ctx })
    }
}

/// An open transaction with the tenant context set. Queries go through `db::*` functions.
pub struct TenantTx<'a> {
    tx: Transaction<'a>,
    ctx: TenantCtx,
}

impl TenantTx<'_> {
    pub fn ctx(&self) -> &TenantCtx {
        &self.ctx
    }

    pub async fn commit(self) -> Result<(), DbError> {
        Ok(self.tx.commit().await?)
    }

    pub async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, DbError> {
        super::query(&self.tx, sql, params).await
    }

    pub async fn query_opt(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>, DbError> {
        super::query_opt(&self.tx, sql, params).await
    }

    pub async fn query_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, DbError> {
        self.query_opt(sql, params).await?.ok_or_else(|| DbError::Decode(anyhow::anyhow!("query returned no row")))
    }

    /// A page of rows and the total for the same filter, sent together (tokio-postgres
    /// pipelines concurrent queries on one connection: one round trip, not two).
    pub async fn query_page(
        &self,
        page_sql: &str,
        page_params: &[&(dyn ToSql + Sync)],
        count_sql: &str,
        count_params: &[&(dyn ToSql + Sync)],
    ) -> Result<(Vec<Row>, i64), DbError> {
        let (rows, total) =
            tokio::try_join!(self.query(page_sql, page_params), self.query_one(count_sql, count_params))?;
        Ok((rows, super::decode(total.try_get(0))?))
    }

    pub async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, DbError> {
        super::execute(&self.tx, sql, params).await
    }
}
