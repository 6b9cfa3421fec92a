//! The three kinds of tenant transaction, and the two traits query functions take them by.

use std::{future::Future, sync::atomic::Ordering};

use deadpool_postgres::Object;
use tokio_postgres::Row;

use super::{
    caller::Context,
    wire::{Bound, Plans},
    TenantCtx,
};
use crate::db::{param::Params, share::Share, DbError, Statements};

/// What a read runs on: a one-shot [`ReadTx`], or one statement of a [`Tx`] (`&tx`). The
/// statements go through a sealed trait that only the `db` layer can name, so handlers can
/// hand a transaction to a query function but cannot send SQL through it.
pub trait TenantRead: exec::Read {}
impl<T: exec::Read> TenantRead for T {}

/// What a write runs on: a one-shot [`WriteTx`]; one statement of a [`Tx`] (`&tx`); or a
/// `Tx`'s last statement, the transaction given by value: sent with its `COMMIT` in the same
/// write, and committed once the query function returns `Ok`.
pub trait TenantWrite: exec::Write {}
impl<T: exec::Write> TenantWrite for T {}

/// The statements behind [`TenantRead`] and [`TenantWrite`]; nameable only in `db`.
pub(in crate::db) mod exec {
    use super::*;

    pub trait Read: Send + Sized {
        fn query(self, sql: &str, params: Params<'_>) -> impl Future<Output = Result<Vec<Row>, DbError>> + Send;

        fn query_opt(self, sql: &str, params: Params<'_>) -> impl Future<Output = Result<Option<Row>, DbError>> + Send;

        /// A page of rows and the total for the same filter, sent together: one round trip.
        fn query_page(
            self,
            page_sql: &str,
            page_params: Params<'_>,
            count_sql: &str,
            count_params: Params<'_>,
        ) -> impl Future<Output = Result<(Vec<Row>, i64), DbError>> + Send;
    }

    pub trait Write: Send + Sized {
        /// Who the transaction acts for (its statements name them as parameters).
        fn ctx(&self) -> &TenantCtx;

        fn execute(self, sql: &str, params: Params<'_>) -> impl Future<Output = Result<u64, DbError>> + Send;

        /// The statement's rows (`RETURNING`).
        fn query(self, sql: &str, params: Params<'_>) -> impl Future<Output = Result<Vec<Row>, DbError>> + Send;

        fn query_opt(self, sql: &str, params: Params<'_>) -> impl Future<Output = Result<Option<Row>, DbError>> + Send;

        /// The statement's one row; none is a decoding error.
        fn query_one(self, sql: &str, params: Params<'_>) -> impl Future<Output = Result<Row, DbError>> + Send {
            async move {
                self.query_opt(sql, params)
                    .await?
                    .ok_or_else(|| DbError::Decode(anyhow::anyhow!("query returned no row")))
            }
        }
    }
}

/// One read of tenant data: one statement (or a page and its total), sent with its `BEGIN`,
/// read-only context and `COMMIT` in one round trip. Consumed by it. It names its tenant only
/// through the context (`app.current_org_id()` in SQL), which for a credential is known only
/// once the database has answered.
pub struct ReadTx(Bound);

impl ReadTx {
    pub(in crate::db) async fn new(
        conn: Object,
        statements: Statements,
        context: Context,
        plans: Plans,
        share: Option<Share>,
    ) -> Result<Self, DbError> {
        Ok(Self(Bound::new(conn, statements, context, plans, true, share).await?))
    }
}

/// One write of tenant data: one statement, sent with its `BEGIN`, context and `COMMIT` in one
/// round trip. Committed once it returns `Ok`; consumed by it.
pub struct WriteTx(Bound, TenantCtx);

impl WriteTx {
    pub(in crate::db) async fn new(
        conn: Object,
        statements: Statements,
        ctx: &TenantCtx,
        share: Option<Share>,
    ) -> Result<Self, DbError> {
        Ok(Self(Bound::writing(conn, statements, ctx, share).await?, *ctx))
    }
}

/// A transaction of any number of statements (sent as they come, or several at once with
/// `try_join!`), ending with [`Tx::commit`] or with a last statement given the transaction
/// by value ([`TenantWrite`]).
pub struct Tx(Bound, TenantCtx);

impl Tx {
    pub(in crate::db) async fn new(
        conn: Object,
        statements: Statements,
        ctx: &TenantCtx,
        share: Option<Share>,
    ) -> Result<Self, DbError> {
        Ok(Self(Bound::writing(conn, statements, ctx, share).await?, *ctx))
    }

    pub fn ctx(&self) -> &TenantCtx {
        &self.1
    }

    // The db layer's own tests send raw SQL through a transaction: with the traits in scope,
    // `tx.query` would be ambiguous (`&Tx` reads and writes) or consume it (`Tx` writes last).
    #[cfg(test)]
    pub(in crate::db) async fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, DbError> {
        self.0.query(sql, params, false).await
    }

    #[cfg(test)]
    pub(in crate::db) async fn query_one(&self, sql: &str, params: Params<'_>) -> Result<Row, DbError> {
        exec::Write::query_one(self, sql, params).await
    }

    #[cfg(test)]
    pub(in crate::db) async fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64, DbError> {
        self.0.execute(sql, params, false).await
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

/// The statements of a kind, each sent with the transaction's end (`COMMIT`) or not: the one
/// difference between a one-shot kind (and a `Tx` given by value: its last statement) and a
/// statement among others of a `&Tx`.
macro_rules! reads {
    ($kind:ty, $end:literal) => {
        impl exec::Read for $kind {
            async fn query(self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, DbError> {
                self.0.query(sql, params, $end).await
            }

            async fn query_opt(self, sql: &str, params: Params<'_>) -> Result<Option<Row>, DbError> {
                self.0.query_opt(sql, params, $end).await
            }

            async fn query_page(
                self,
                page_sql: &str,
                page_params: Params<'_>,
                count_sql: &str,
                count_params: Params<'_>,
            ) -> Result<(Vec<Row>, i64), DbError> {
                self.0.query_page(page_sql, page_params, count_sql, count_params, $end).await
            }
        }
    };
}

macro_rules! writes {
    ($kind:ty, $end:literal) => {
        impl exec::Write for $kind {
            fn ctx(&self) -> &TenantCtx {
                &self.1
            }

            async fn execute(self, sql: &str, params: Params<'_>) -> Result<u64, DbError> {
                self.0.execute(sql, params, $end).await
            }

            async fn query(self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, DbError> {
                self.0.query(sql, params, $end).await
            }

            async fn query_opt(self, sql: &str, params: Params<'_>) -> Result<Option<Row>, DbError> {
                self.0.query_opt(sql, params, $end).await
            }
        }
    };
}

reads!(ReadTx, true);
reads!(&Tx, false);
writes!(WriteTx, true);
writes!(&Tx, false);
// A `Tx` given by value: its last statement, sent with `COMMIT` in the same write (with `BEGIN`
// and the context too if it is the first), so the row locks it takes are held for the server's
// work only, not for a round trip to the client and back.
writes!(Tx, true);
