//! Connections without tenant context, for the SECURITY DEFINER registry ([`super::system`]).
//! Tenant tables read as empty through them (the policies fail closed).

use std::future::Future;

use deadpool_postgres::{GenericClient, Object};
use tokio_postgres::Row;

use super::{
    param::{self, Params},
    DbError, Statements,
};

/// What a registry call runs on: a [`SystemConn`] (`&conn`) or a [`SystemTx`] (`&tx`). Sealed
/// like the tenant kinds' traits: only the `db` layer can send statements through it.
pub trait SystemQuery: exec::Query {}
impl<T: exec::Query> SystemQuery for T {}

/// The statements behind [`SystemQuery`]; nameable only in `db`.
pub(in crate::db) mod exec {
    use super::*;

    pub trait Query: Send + Sized {
        fn query(self, sql: &str, params: Params<'_>) -> impl Future<Output = Result<Vec<Row>, DbError>> + Send;

        fn query_opt(self, sql: &str, params: Params<'_>) -> impl Future<Output = Result<Option<Row>, DbError>> + Send;
    }
}

/// A pooled app-role connection with no tenant context. Its purpose is calling the registry
/// functions in [`super::system`].
pub struct SystemConn {
    conn: Object,
    statements: Statements,
}

impl SystemConn {
    pub(in crate::db) fn new(conn: Object, statements: Statements) -> Self {
        Self { conn, statements }
    }

    /// A transaction without tenant context, for registry calls whose row locks must last
    /// until a side effect elsewhere is done (outbox relay, purge).
    pub async fn begin(&mut self) -> Result<SystemTx<'_>, DbError> {
        Ok(SystemTx { tx: self.conn.transaction().await?, statements: self.statements })
    }
}

pub struct SystemTx<'a> {
    tx: deadpool_postgres::Transaction<'a>,
    statements: Statements,
}

impl SystemTx<'_> {
    pub async fn commit(self) -> Result<(), DbError> {
        Ok(self.tx.commit().await?)
    }
}

/// The same statements on a connection and on a transaction (deadpool's client and
/// transaction share no trait with both the statement cache and unnamed statements).
macro_rules! system_query {
    ($type:ty, $client:ident) => {
        impl exec::Query for &$type {
            async fn query(self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, DbError> {
                Ok(match self.statements {
                    Statements::Prepared => {
                        let statement = self.$client.prepare_cached(sql).await?;
                        self.$client.query(&statement, &param::untyped(params)).await?
                    }
                    Statements::Unnamed => self.$client.query_typed(sql, &param::typed(params)).await?,
                })
            }

            async fn query_opt(self, sql: &str, params: Params<'_>) -> Result<Option<Row>, DbError> {
                Ok(match self.statements {
                    Statements::Prepared => {
                        let statement = self.$client.prepare_cached(sql).await?;
                        self.$client.query_opt(&statement, &param::untyped(params)).await?
                    }
                    Statements::Unnamed => self.$client.query_typed_opt(sql, &param::typed(params)).await?,
                })
            }
        }
    };
}

system_query!(SystemConn, conn);
system_query!(SystemTx<'_>, tx);
