//! THE way to reach tenant rows.
//!
//! [`Db::begin`](super::Db::begin) hands out a [`TenantTx`]: a pooled connection with a
//! tenant context, and nothing else. Its first query is sent together with `BEGIN` and
//! `select set_config('app.org_id', $1, true), set_config('app.user_id', $2, true)` (bound
//! parameters, transaction scope) in one pipelined round trip, so every query runs inside the
//! transaction, under the RLS policies for that organization, and a read costs one round trip.
//! The settings die with the transaction: a pooled connection never carries one request's
//! tenant into the next.
//!
//! Ending: [`TenantTx::commit`] for writes (waits for COMMIT). A transaction dropped without
//! commit — a read that is done, or a handler returning early with `?` — is rolled back in the
//! background and only then returns to the pool: nothing half-written, and no reader waits for
//! the end of a transaction that wrote nothing.

use std::sync::atomic::{AtomicBool, Ordering};

use deadpool_postgres::{GenericClient, Object};
use tokio_postgres::{types::ToSql, Row, Statement};

use super::DbError;
use crate::domain::{OrgId, UserId};

/// Who is acting: built by the HTTP extractor from the server-side session or a bearer token
/// (or by the worker from a message), never from request parameters.
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

/// A transaction bound to one tenant. Queries go through `db::*` functions.
pub struct TenantTx {
    /// `None` only once handed to the background rollback.
    conn: Option<Object>,
    ctx: TenantCtx,
    ctx_params: [String; 2],
    set_context: Statement,
    /// BEGIN and the context have been sent (with the first query).
    started: AtomicBool,
    /// COMMIT succeeded; nothing to roll back.
    finished: bool,
}

impl TenantTx {
    pub(super) async fn new(conn: Object, ctx: &TenantCtx) -> Result<Self, DbError> {
        // Prepared once per pooled connection (cached), so that from then on it is sent
        // without a round trip of its own.
        let set_context = conn.prepare_cached(SET_TENANT_CONTEXT).await?;
        Ok(Self {
            conn: Some(conn),
            ctx: *ctx,
            ctx_params: [ctx.org_id.to_string(), ctx.user_id.to_string()],
            set_context,
            started: AtomicBool::new(false),
            finished: false,
        })
    }

    pub fn ctx(&self) -> &TenantCtx {
        &self.ctx
    }

    fn conn(&self) -> &Object {
        self.conn.as_ref().expect("the connection is only taken when the transaction is dropped")
    }

    async fn prepare(&self, sql: &str) -> Result<Statement, DbError> {
        Ok(self.conn().prepare_cached(sql).await?)
    }

    /// Runs `statement`, preceded — the first time — by BEGIN and the context, all sent in
    /// the same write. `biased` polls in order, and each future sends its message on its first
    /// poll, so BEGIN and the context always reach the server before the first query; any
    /// query started later finds `started` set and follows them.
    async fn run<T>(
        &self,
        statement: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, DbError> {
        if self.started.swap(true, Ordering::SeqCst) {
            return Ok(statement.await?);
        }
        let conn = self.conn();
        let params: [&(dyn ToSql + Sync); 2] = [&self.ctx_params[0], &self.ctx_params[1]];
        let (_, _, result) = tokio::try_join!(
            biased;
            conn.batch_execute("BEGIN"),
            conn.execute(&self.set_context, &params),
            statement,
        )?;
        Ok(result)
    }

    pub async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, DbError> {
        let statement = self.prepare(sql).await?;
        self.run(self.conn().query(&statement, params)).await
    }

    pub async fn query_opt(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>, DbError> {
        let statement = self.prepare(sql).await?;
        self.run(self.conn().query_opt(&statement, params)).await
    }

    pub async fn query_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, DbError> {
        self.query_opt(sql, params).await?.ok_or_else(|| DbError::Decode(anyhow::anyhow!("query returned no row")))
    }

    pub async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, DbError> {
        let statement = self.prepare(sql).await?;
        self.run(self.conn().execute(&statement, params)).await
    }

    /// A page of rows and the total for the same filter, sent together: one round trip.
    pub async fn query_page(
        &self,
        page_sql: &str,
        page_params: &[&(dyn ToSql + Sync)],
        count_sql: &str,
        count_params: &[&(dyn ToSql + Sync)],
    ) -> Result<(Vec<Row>, i64), DbError> {
        let (page, count) = tokio::try_join!(self.prepare(page_sql), self.prepare(count_sql))?;
        let conn = self.conn();
        let (rows, total) = tokio::try_join!(biased; self.run(conn.query(&page, page_params)), self.run(conn.query_one(&count, count_params)))?;
        Ok((rows, super::decode(total.try_get(0))?))
    }

    /// Commits and waits for it: what was written is durable and visible once this returns.
    pub async fn commit(mut self) -> Result<(), DbError> {
        if self.started.load(Ordering::SeqCst) {
            self.conn().batch_execute("COMMIT").await?;
        }
        self.finished = true;
        Ok(())
    }

    /// Ends a transaction that only read: it is rolled back in the background, so the answer
    /// does not wait for it. (What it wrote, if anything, is discarded.)
    pub fn end_read(self) {}
}

impl Drop for TenantTx {
    fn drop(&mut self) {
        if self.finished || !self.started.load(Ordering::SeqCst) {
            return;
        }
        let Some(conn) = self.conn.take() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(e) = conn.batch_execute("ROLLBACK").await {
                        // Never return a connection in an unknown state to the pool.
                        tracing::warn!(error = %e, "rollback failed; discarding the connection");
                        let _ = Object::take(conn);
                    }
                });
            }
            // No runtime to roll back on: close the connection instead (the server rolls back).
            Err(_) => drop(Object::take(conn)),
        }
    }
}
