//! The three kinds of tenant transaction, and the two shapes query functions take them in.

use deadpool_postgres::Object;
use tokio_postgres::Row;

use super::{
    wire::{Bound, Plans},
    Caller, TenantCtx,
};
use std::sync::atomic::Ordering;

use crate::db::{
    decode,
    param::{self, Params},
    DbError, Statements,
};

/// One read of tenant data: one statement (or a page and its total), sent with its `BEGIN`,
/// read-only context and `COMMIT` in one round trip. Consumed by it. It names its tenant only
/// through the context (`app.current_org_id()` in SQL), which for a credential is known only
/// once the database has answered.
pub struct ReadTx(Bound);

impl ReadTx {
    pub(in crate::db) async fn new(
        conn: Object,
        statements: Statements,
        caller: Caller,
        plans: Plans,
    ) -> Result<Self, DbError> {
        Ok(Self(Bound::new(conn, statements, caller, plans, true).await?))
    }

    pub(crate) async fn query(self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, DbError> {
        self.0.query(sql, params, true).await
    }

    pub(crate) async fn query_opt(self, sql: &str, params: Params<'_>) -> Result<Option<Row>, DbError> {
        self.0.query_opt(sql, params, true).await
    }

    /// A page of rows and the total for the same filter, sent together: one round trip.
    pub(crate) async fn query_page(
        self,
        page_sql: &str,
        page_params: Params<'_>,
        count_sql: &str,
        count_params: Params<'_>,
    ) -> Result<(Vec<Row>, i64), DbError> {
        let conn = self.0.conn();
        let (rows, total) = if self.0.unnamed() {
            let (page, count) = (param::typed(page_params), param::typed(count_params));
            let both = async {
                tokio::try_join!(biased; conn.query_typed(page_sql, &page), conn.query_typed_one(count_sql, &count))
            };
            self.0.run(both, true).await?
        } else {
            let (page, count) = tokio::try_join!(self.0.prepare(page_sql), self.0.prepare(count_sql))?;
            let (page_params, count_params) = (param::untyped(page_params), param::untyped(count_params));
            let both = async {
                tokio::try_join!(biased; conn.query(&page, &page_params), conn.query_one(&count, &count_params))
            };
            self.0.run(both, true).await?
        };
        Ok((rows, decode(total.try_get(0))?))
    }
}

/// One write of tenant data: one statement, sent with its `BEGIN`, context and `COMMIT` in one
/// round trip. Committed once it returns `Ok`; consumed by it.
pub struct WriteTx(Bound, TenantCtx);

impl WriteTx {
    pub(in crate::db) async fn new(conn: Object, statements: Statements, ctx: &TenantCtx) -> Result<Self, DbError> {
        Ok(Self(Bound::new(conn, statements, ctx.into(), Plans::Generic, false).await?, *ctx))
    }

    pub fn ctx(&self) -> &TenantCtx {
        &self.1
    }

    pub(crate) async fn execute(self, sql: &str, params: Params<'_>) -> Result<u64, DbError> {
        self.0.execute(sql, params, true).await
    }

    /// The statement's rows (`RETURNING`), committed once it returns `Ok`.
    pub(crate) async fn query(self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, DbError> {
        self.0.query(sql, params, true).await
    }
}

/// A transaction of any number of statements (sent as they come, or several at once with
/// `try_join!`), ending with [`Tx::commit`].
pub struct Tx(Bound, TenantCtx);

impl Tx {
    pub(in crate::db) async fn new(conn: Object, statements: Statements, ctx: &TenantCtx) -> Result<Self, DbError> {
        Ok(Self(Bound::new(conn, statements, ctx.into(), Plans::Generic, false).await?, *ctx))
    }

    pub fn ctx(&self) -> &TenantCtx {
        &self.1
    }

    pub(crate) async fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, DbError> {
        self.0.query(sql, params, false).await
    }

    pub(crate) async fn query_opt(&self, sql: &str, params: Params<'_>) -> Result<Option<Row>, DbError> {
        self.0.query_opt(sql, params, false).await
    }

    pub(crate) async fn query_one(&self, sql: &str, params: Params<'_>) -> Result<Row, DbError> {
        self.query_opt(sql, params).await?.ok_or_else(|| DbError::Decode(anyhow::anyhow!("query returned no row")))
    }

    pub(crate) async fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64, DbError> {
        self.0.execute(sql, params, false).await
    }

    /// A last statement, sent with `COMMIT` in the same write (with `BEGIN` and the context too
    /// if it is the first): committed once this returns `Ok`, and the row locks it takes are
    /// held for the server's work only, not for a round trip to the client and back.
    pub(crate) async fn execute_and_commit(self, sql: &str, params: Params<'_>) -> Result<u64, DbError> {
        self.0.execute(sql, params, true).await
    }

    /// Commits and waits for it: what was written is durable and visible once this returns.
    pub async fn commit(self) -> Result<(), DbError> {
        if self.0.started.load(Ordering::SeqCst) {
            self.0.end().await?;
        }
        self.0.finished.store(true, Ordering::SeqCst);
        Ok(())
    }
}

/// Where a read runs: as its own one-shot transaction, or as one statement of a [`Tx`].
// Built for one call and moved once: boxing the large variant would only add an allocation per
// query.
#[allow(clippy::large_enum_variant)]
pub enum Reading<'a> {
    Alone(ReadTx),
    Within(&'a Tx),
}

impl From<ReadTx> for Reading<'_> {
    fn from(tx: ReadTx) -> Self {
        Reading::Alone(tx)
    }
}

impl<'a> From<&'a Tx> for Reading<'a> {
    fn from(tx: &'a Tx) -> Self {
        Reading::Within(tx)
    }
}

impl Reading<'_> {
    pub(crate) async fn query(self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, DbError> {
        match self {
            Reading::Alone(tx) => tx.query(sql, params).await,
            Reading::Within(tx) => tx.query(sql, params).await,
        }
    }

    pub(crate) async fn query_opt(self, sql: &str, params: Params<'_>) -> Result<Option<Row>, DbError> {
        match self {
            Reading::Alone(tx) => tx.query_opt(sql, params).await,
            Reading::Within(tx) => tx.query_opt(sql, params).await,
        }
    }
}

/// Where a write runs: as its own one-shot transaction, or as one statement of a [`Tx`].
#[allow(clippy::large_enum_variant)] // as for `Reading`
pub enum Writing<'a> {
    Alone(WriteTx),
    Within(&'a Tx),
}

impl From<WriteTx> for Writing<'_> {
    fn from(tx: WriteTx) -> Self {
        Writing::Alone(tx)
    }
}

impl<'a> From<&'a Tx> for Writing<'a> {
    fn from(tx: &'a Tx) -> Self {
        Writing::Within(tx)
    }
}

impl Writing<'_> {
    pub fn ctx(&self) -> &TenantCtx {
        match self {
            Writing::Alone(tx) => tx.ctx(),
            Writing::Within(tx) => tx.ctx(),
        }
    }

    pub(crate) async fn execute(self, sql: &str, params: Params<'_>) -> Result<u64, DbError> {
        match self {
            Writing::Alone(tx) => tx.execute(sql, params).await,
            Writing::Within(tx) => tx.execute(sql, params).await,
        }
    }

    pub(crate) async fn query(self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, DbError> {
        match self {
            Writing::Alone(tx) => tx.query(sql, params).await,
            Writing::Within(tx) => tx.query(sql, params).await,
        }
    }
}
