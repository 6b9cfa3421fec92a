//! THE way to reach tenant rows.
//!
//! [`Db::read`](super::Db::read), [`Db::write`](super::Db::write) and
//! [`Db::begin`](super::Db::begin) hand out a [`TenantTx`]: a pooled connection with a tenant
//! context, and nothing else. Its first query is sent together with `BEGIN` and the context
//! ([`SET_TENANT_CONTEXT`]: bound parameters, transaction scope) in one write, so every query
//! runs inside the transaction, under the RLS policies for that organization. The settings die with the
//! transaction: a pooled connection never carries one request's tenant into the next.
//!
//! Three kinds, so that what can be sent at once costs one round trip and one wake-up of the
//! server:
//! - a **read** sends `ROLLBACK` in the same write, right behind its one query (or a page and
//!   its total): `BEGIN · context · query · ROLLBACK`. Nothing more can be sent through it.
//! - a **write** likewise sends `COMMIT` right behind its one statement: row locks (the
//!   organization's counters row, say) are held for the server's work only, not for a round
//!   trip to the client and back. Should the statement fail, PostgreSQL turns that COMMIT into
//!   a rollback.
//! - a **transaction** runs any number of statements and ends with [`TenantTx::commit`]
//!   (awaited). One dropped without commit — a handler returning early with `?` — is rolled
//!   back in the background and only then returns to the pool: nothing half-written.
//!
//! `BEGIN`, `COMMIT` and `ROLLBACK` are prepared statements like the rest (cached per pooled
//! connection), so the server never parses them again.

use std::{
    future::Future,
    sync::atomic::{AtomicBool, Ordering},
};

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
///
/// `plan_cache_mode` rides along only to save a statement: it is a performance setting, not part
/// of the security context (the policies hold under any plan). Without it PostgreSQL re-plans
/// a tenant's list page on every call, because a custom plan for one organization's id always
/// looks cheaper than the generic one (docs/decisions.md). Transaction-scoped like the rest.
const SET_TENANT_CONTEXT: &str = r#"
select set_config('app.org_id', $1, true),
       set_config('app.user_id', $2, true),
       set_config('plan_cache_mode', 'force_generic_plan', true)
"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Read,
    Write,
    Transaction,
}

/// A transaction bound to one tenant. Queries go through `db::*` functions.
pub struct TenantTx {
    /// `None` only once handed to the background rollback.
    conn: Option<Object>,
    kind: Kind,
    ctx: TenantCtx,
    ctx_params: [String; 2],
    begin: Statement,
    set_context: Statement,
    /// `ROLLBACK` for a read, `COMMIT` otherwise.
    end: Statement,
    /// BEGIN and the context have been sent (with the first query).
    started: AtomicBool,
    /// The transaction is over (committed, or a read's rollback answered): the connection
    /// goes back to the pool as it is.
    finished: AtomicBool,
}

impl TenantTx {
    pub(super) async fn new(conn: Object, ctx: &TenantCtx, kind: Kind) -> Result<Self, DbError> {
        // Prepared once per pooled connection (cached, the three together on first use), so
        // that from then on they are sent without a round trip of their own.
        let end = match kind {
            Kind::Read => "ROLLBACK",
            Kind::Write | Kind::Transaction => "COMMIT",
        };
        let (begin, set_context, end) = tokio::try_join!(
            conn.prepare_cached("BEGIN"),
            conn.prepare_cached(SET_TENANT_CONTEXT),
            conn.prepare_cached(end)
        )?;
        Ok(Self {
            conn: Some(conn),
            kind,
            ctx: *ctx,
            ctx_params: [ctx.org_id.to_string(), ctx.user_id.to_string()],
            begin,
            set_context,
            end,
            started: AtomicBool::new(false),
            finished: AtomicBool::new(false),
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

    /// Runs `statement`, preceded — the first time — by BEGIN and the context (and, for a read
    /// or a write, followed by its end), all sent in the same write. `biased` polls in order,
    /// and each future sends its message on its first poll, so the order on the wire is fixed;
    /// a transaction's later statements find `started` set and follow them.
    async fn run<T>(&self, statement: impl Future<Output = Result<T, tokio_postgres::Error>>) -> Result<T, DbError> {
        if self.started.swap(true, Ordering::SeqCst) {
            if self.kind != Kind::Transaction {
                return Err(DbError::Misuse("a read or write sends one statement (or several at once)"));
            }
            return Ok(statement.await?);
        }
        let conn = self.conn();
        let params: [&(dyn ToSql + Sync); 2] = [&self.ctx_params[0], &self.ctx_params[1]];
        match self.kind {
            Kind::Transaction => {
                let (_, _, result) = tokio::try_join!(
                    biased;
                    conn.execute(&self.begin, &[]),
                    conn.execute(&self.set_context, &params),
                    statement,
                )?;
                Ok(result)
            }
            Kind::Read | Kind::Write => {
                let (_, _, result, _) = tokio::try_join!(
                    biased;
                    conn.execute(&self.begin, &[]),
                    conn.execute(&self.set_context, &params),
                    statement,
                    conn.execute(&self.end, &[]),
                )?;
                self.finished.store(true, Ordering::SeqCst);
                Ok(result)
            }
        }
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
        let both =
            async { tokio::try_join!(biased; conn.query(&page, page_params), conn.query_one(&count, count_params)) };
        let (rows, total) = self.run(both).await?;
        Ok((rows, super::decode(total.try_get(0))?))
    }

    /// Commits and waits for it: what was written is durable and visible once this returns.
    pub async fn commit(self) -> Result<(), DbError> {
        if self.kind != Kind::Transaction {
            return Err(DbError::Misuse("reads and writes end by themselves; only a transaction commits"));
        }
        if self.started.load(Ordering::SeqCst) {
            self.conn().execute(&self.end, &[]).await?;
        }
        self.finished.store(true, Ordering::SeqCst);
        Ok(())
    }
}

impl Drop for TenantTx {
    fn drop(&mut self) {
        if self.finished.load(Ordering::SeqCst) || !self.started.load(Ordering::SeqCst) {
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
