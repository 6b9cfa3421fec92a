//! A pooled connection bound to a tenant context: how its transaction's own statements go out,
//! how the first statement travels with `BEGIN` and the context in one write, and the rule
//! that a transaction started and not finished is rolled back before the connection is reused.

use std::{
    future::Future,
    sync::atomic::{AtomicBool, Ordering},
};

use deadpool_postgres::{GenericClient, Object};
use tokio_postgres::{Row, Statement};

use super::{caller::Context, TenantCtx};
use crate::{
    db::{
        decode,
        param::{self, Param, Params},
        share::Share,
        DbError, Statements,
    },
    domain::{OrgId, UserId},
};

/// How PostgreSQL plans a transaction's statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plans {
    /// One plan per statement, made once: without it PostgreSQL re-plans a tenant's list page on
    /// every call, because a custom plan for one organization's id always looks cheaper than the
    /// generic one (docs/performance.md). Every transaction but the one below.
    Generic,
    /// A plan for each call's values, where the best plan depends on them: a list filtered by a
    /// status (a generic plan cannot tell a status no file has from one they all have, and may
    /// walk all of the organization's files). Planning costs about as much as running such a
    /// page; a search decides between its two ways inside the statement instead.
    PerCall,
}

impl Plans {
    pub(super) fn setting(self) -> &'static str {
        match self {
            Plans::Generic => "force_generic_plan",
            Plans::PerCall => "force_custom_plan",
        }
    }
}

/// How a transaction's own statements go out: prepared once per connection (direct
/// connections), or unnamed each time (behind a transaction-mode pooler; see `db::param`).
enum Framing {
    Prepared { begin: Statement, set_context: Statement, end: Statement },
    Unnamed,
}

/// A pooled connection bound to a tenant context, with its transaction's framing statements.
/// Shared by the three kinds; owns the rule that a transaction that was started and not
/// finished is rolled back before the connection is reused.
pub(super) struct Bound {
    /// `None` only once handed to the background rollback.
    conn: Option<Object>,
    context: Context,
    plans: Plans,
    read_only: bool,
    /// BEGIN, the context and COMMIT.
    framing: Framing,
    /// BEGIN and the context have been sent (with the first statement).
    pub(super) started: AtomicBool,
    /// The transaction is over (committed, or a read's rollback answered): the connection goes
    /// back to the pool as it is.
    pub(super) finished: AtomicBool,
    /// The connection of its organization's share it holds (api processes), given back with
    /// the connection.
    share: Option<Share>,
}

impl Bound {
    pub(super) async fn new(
        conn: Object,
        statements: Statements,
        context: Context,
        plans: Plans,
        read_only: bool,
        share: Option<Share>,
    ) -> Result<Self, DbError> {
        let framing = match statements {
            // Prepared once per pooled connection (cached, the three together on first use), so
            // that from then on they are sent without a round trip of their own.
            Statements::Prepared => {
                let (begin, set_context, end) = tokio::try_join!(
                    conn.prepare_cached("BEGIN"),
                    conn.prepare_cached(context.sql()),
                    conn.prepare_cached("COMMIT")
                )?;
                Framing::Prepared { begin, set_context, end }
            }
            Statements::Unnamed => Framing::Unnamed,
        };
        Ok(Self {
            conn: Some(conn),
            context,
            plans,
            read_only,
            framing,
            started: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            share,
        })
    }

    /// Bound to known ids, for writing (a [`WriteTx`](super::WriteTx) or a [`Tx`](super::Tx)):
    /// generic plans, not read-only.
    pub(super) async fn writing(
        conn: Object,
        statements: Statements,
        ctx: &TenantCtx,
        share: Option<Share>,
    ) -> Result<Self, DbError> {
        Self::new(conn, statements, Context::known(ctx), Plans::Generic, false, share).await
    }

    fn conn(&self) -> &Object {
        self.conn.as_ref().expect("the connection is only taken when the transaction is dropped")
    }

    async fn begin(&self) -> Result<u64, tokio_postgres::Error> {
        match &self.framing {
            Framing::Prepared { begin, .. } => self.conn().execute(begin, &[]).await,
            Framing::Unnamed => self.conn().execute_typed("BEGIN", &[]).await,
        }
    }

    /// Sets the context; for a credential, also records who it turned out to be.
    async fn set_context(&self) -> Result<(), tokio_postgres::Error> {
        let plans = self.plans.setting();
        let read_only = if self.read_only { "on" } else { "off" };
        let params: &[&dyn Param] = match &self.context {
            Context::Known { ids: [org, user] } => &[org, user, &plans, &read_only],
            Context::Credential { hash, org, .. } => &[hash, &plans, &read_only, org],
        };
        let rows = match &self.framing {
            Framing::Prepared { set_context, .. } => self.conn().query(set_context, &param::untyped(params)).await?,
            Framing::Unnamed => self.conn().query_typed(self.context.sql(), &param::typed(params)).await?,
        };
        if let (Context::Credential { resolved, .. }, Some(row)) = (&self.context, rows.first()) {
            resolved.set(TenantCtx {
                org_id: OrgId::from_uuid(row.try_get("organization_id")?),
                user_id: UserId::from_uuid(row.try_get("user_id")?),
            });
        }
        Ok(())
    }

    pub(super) async fn end(&self) -> Result<u64, tokio_postgres::Error> {
        match &self.framing {
            Framing::Prepared { end, .. } => self.conn().execute(end, &[]).await,
            Framing::Unnamed => self.conn().execute_typed("COMMIT", &[]).await,
        }
    }

    fn unnamed(&self) -> bool {
        matches!(self.framing, Framing::Unnamed)
    }

    async fn prepare(&self, sql: &str) -> Result<Statement, DbError> {
        Ok(self.conn().prepare_cached(sql).await?)
    }

    /// Sends `statement` preceded, the first time, by BEGIN and the context, all in the same
    /// write; with `end`, followed by the transaction's end too (a one-shot kind, or a `Tx`'s
    /// last statement). `biased` polls in order, and each future sends its message on its
    /// first poll, so the order on the wire is fixed; a transaction's later statements find
    /// `started` set and follow them.
    async fn run<T>(
        &self,
        statement: impl Future<Output = Result<T, tokio_postgres::Error>>,
        end: bool,
    ) -> Result<T, DbError> {
        // Polled in order (`biased`): each statement is sent in the order written. Every one is
        // awaited to its answer, and the first error *in that order* is the one returned: the
        // context's refusal of a credential (28000, a 401) must win over the "transaction is
        // aborted" the statement after it gets. Taking whichever error was seen first (`try_join!`) answered a revoked token 500
        // now and then behind PgBouncer, where the later error could be seen first.
        if self.started.swap(true, Ordering::SeqCst) {
            if !end {
                return Ok(statement.await?);
            }
            // A transaction's last statement, with its end in the same write.
            let (result, ended) = tokio::join!(biased; statement, self.end());
            let result = result?;
            ended?;
            self.finished.store(true, Ordering::SeqCst);
            return Ok(result);
        }
        if !end {
            let (begun, context, result) = tokio::join!(biased; self.begin(), self.set_context(), statement);
            begun?;
            context?;
            return Ok(result?);
        }
        let (begun, context, result, ended) =
            tokio::join!(biased; self.begin(), self.set_context(), statement, self.end());
        begun?;
        context?;
        let result = result?;
        ended?;
        self.finished.store(true, Ordering::SeqCst);
        Ok(result)
    }

    pub(super) async fn query(&self, sql: &str, params: Params<'_>, end: bool) -> Result<Vec<Row>, DbError> {
        if self.unnamed() {
            return self.run(self.conn().query_typed(sql, &param::typed(params)), end).await;
        }
        let statement = self.prepare(sql).await?;
        self.run(self.conn().query(&statement, &param::untyped(params)), end).await
    }

    pub(super) async fn query_opt(&self, sql: &str, params: Params<'_>, end: bool) -> Result<Option<Row>, DbError> {
        if self.unnamed() {
            return self.run(self.conn().query_typed_opt(sql, &param::typed(params)), end).await;
        }
        let statement = self.prepare(sql).await?;
        self.run(self.conn().query_opt(&statement, &param::untyped(params)), end).await
    }

    pub(super) async fn execute(&self, sql: &str, params: Params<'_>, end: bool) -> Result<u64, DbError> {
        if self.unnamed() {
            return self.run(self.conn().execute_typed(sql, &param::typed(params)), end).await;
        }
        let statement = self.prepare(sql).await?;
        self.run(self.conn().execute(&statement, &param::untyped(params)), end).await
    }

    /// A page of rows and the total for the same filter, sent together: one round trip.
    pub(super) async fn query_page(
        &self,
        page_sql: &str,
        page_params: Params<'_>,
        count_sql: &str,
        count_params: Params<'_>,
        end: bool,
    ) -> Result<(Vec<Row>, i64), DbError> {
        let conn = self.conn();
        let (rows, total) = if self.unnamed() {
            let (page, count) = (param::typed(page_params), param::typed(count_params));
            let both = async {
                tokio::try_join!(biased; conn.query_typed(page_sql, &page), conn.query_typed_one(count_sql, &count))
            };
            self.run(both, end).await?
        } else {
            let (page, count) = tokio::try_join!(self.prepare(page_sql), self.prepare(count_sql))?;
            let (page_params, count_params) = (param::untyped(page_params), param::untyped(count_params));
            let both = async {
                tokio::try_join!(biased; conn.query(&page, &page_params), conn.query_one(&count, &count_params))
            };
            self.run(both, end).await?
        };
        Ok((rows, decode(total.try_get(0))?))
    }
}

impl Drop for Bound {
    fn drop(&mut self) {
        if self.finished.load(Ordering::SeqCst) || !self.started.load(Ordering::SeqCst) {
            return;
        }
        let Some(conn) = self.conn.take() else { return };
        // The share is the organization's until its connection is back in the pool.
        let share = self.share.take();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    let _share = share;
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
