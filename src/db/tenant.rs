//! THE way to reach tenant rows.
//!
//! [`Db::read`](super::Db::read), [`Db::write`](super::Db::write) and
//! [`Db::begin`](super::Db::begin) hand out a pooled connection bound to a tenant context, as one
//! of three types, one per kind of transaction. The first statement is sent together with
//! `BEGIN` and the context statement in one write, so every statement runs inside the
//! transaction, under the RLS policies for that organization. The context is either known ids
//! ([`SET_TENANT_CONTEXT`]: bound parameters, transaction scope) or, for a read, the caller's
//! credential, which a registry function resolves and sets in that same first statement
//! ([`Caller`]): an authenticated read is one round trip, the session included. The settings
//! die with the transaction: a pooled connection never carries one request's tenant into the
//! next.
//!
//! - [`ReadTx`]: `BEGIN · context, read-only · statement · COMMIT` in one write. Its methods take
//!   it by value, so a second statement does not compile, and the database refuses a write
//!   (the context statement turns the transaction read-only, after a token's `last_used_at`
//!   stamp, which the COMMIT keeps).
//! - [`WriteTx`]: `BEGIN · context · statement · COMMIT` in one write, likewise consumed: row
//!   locks (the organization's counters row, say) are held for the server's work only, not for a
//!   round trip to the client and back. Should the statement fail, PostgreSQL turns that COMMIT
//!   into a rollback.
//! - [`Tx`]: any number of statements, ending with [`Tx::commit`] (awaited). One dropped without
//!   commit (a handler returning early with `?`) is rolled back in the background and only then
//!   returns to the pool: nothing half-written.
//!
//! Query functions in `db::*` take `impl Into<`[`Reading`]`>` or `impl Into<`[`Writing`]`>`:
//! a one-shot transaction, or a `&Tx` for a statement among others. The raw query methods are
//! visible only inside the crate's `db` layer, so handlers cannot send SQL of their own.
//!
//! `BEGIN` and `COMMIT` are prepared statements like the rest (cached per pooled connection),
//! so the server never parses them again.

use std::{
    future::Future,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, OnceLock,
    },
};

use deadpool_postgres::{GenericClient, Object};
use tokio_postgres::{Row, Statement};

use super::{
    param::{self, Param, Params},
    DbError, Statements,
};
use crate::domain::{OrgId, UserId};

/// Who is acting: built by the HTTP extractor from the server-side session or a bearer token
/// (or by the worker from a message), never from request parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TenantCtx {
    pub org_id: OrgId,
    pub user_id: UserId,
}

/// Who a transaction acts for: ids already known (a resolved caller, a worker's job), or a
/// credential that the transaction's own first statement resolves (a read made with a session
/// cookie or a bearer token), so that the credential costs no round trip of its own.
#[derive(Debug, Clone)]
pub enum Caller {
    Known(TenantCtx),
    /// The SHA-256 of a session's key: `app.session_context`.
    Session(Credential),
    /// The SHA-256 of a bearer token: `app.token_context`.
    Token(Credential),
}

impl Caller {
    /// Who the caller is, once known: at once for known ids, after its first transaction's
    /// context statement for a credential (every clone learns it).
    pub fn resolved(&self) -> Option<TenantCtx> {
        match self {
            Caller::Known(ctx) => Some(*ctx),
            Caller::Session(credential) | Caller::Token(credential) => credential.identity.0.get().map(|r| r.ctx),
        }
    }

    /// A session's stored state, once its first transaction has resolved it.
    pub fn session_state(&self) -> Option<&serde_json::Value> {
        match self {
            Caller::Session(credential) => credential.identity.0.get().and_then(|r| r.state.as_ref()),
            _ => None,
        }
    }
}

impl From<&TenantCtx> for Caller {
    fn from(ctx: &TenantCtx) -> Self {
        Caller::Known(*ctx)
    }
}

/// A credential's hash, and where the ids it stands for go once the database has resolved them.
#[derive(Debug, Clone)]
pub struct Credential {
    hash: Vec<u8>,
    identity: Identity,
}

impl Credential {
    pub fn new(hash: Vec<u8>) -> Self {
        Self { hash, identity: Identity::default() }
    }
}

/// Who a credential turned out to be: set by the first transaction that resolved it, and shared
/// by the caller's clones (the request's log line reads it when the request ends).
#[derive(Debug, Clone, Default)]
struct Identity(Arc<OnceLock<Resolved>>);

#[derive(Debug)]
struct Resolved {
    ctx: TenantCtx,
    /// A session's stored state (its CSRF token); `None` for a token.
    state: Option<serde_json::Value>,
}

/// Setting names are fixed here and in the policies' helper functions (migrations/V1).
///
/// `plan_cache_mode` ($3, a [`Plans`]) rides along only to save a statement: it is a performance
/// setting, not part of the security context (the policies hold under any plan). So does the
/// access mode ($4): `on` for a read. Transaction-scoped like the rest.
const SET_TENANT_CONTEXT: &str = r#"
select set_config('app.org_id', $1, true),
       set_config('app.user_id', $2, true),
       set_config('plan_cache_mode', $3, true),
       set_config('transaction_read_only', $4, true)
"#;

/// The same, with the ids resolved from a credential by a registry function (migrations/V16),
/// which raises `invalid_authorization_specification` when it is not valid: the transaction is
/// then aborted before the statement behind it runs. The function runs first (it is the `from`),
/// so a token's `last_used_at` stamp precedes the switch to read-only.
macro_rules! set_credential_context {
    ($function:literal, $state:literal) => {
        concat!(
            "select c.organization_id, c.user_id, ",
            $state,
            " as state, set_config('plan_cache_mode', $2, true), set_config('transaction_read_only', $3, true) \
             from ",
            $function,
            "($1) c"
        )
    };
}
const SET_SESSION_CONTEXT: &str = set_credential_context!("app.session_context", "c.state");
const SET_TOKEN_CONTEXT: &str = set_credential_context!("app.token_context", "null::jsonb");

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
    fn setting(self) -> &'static str {
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

/// What the context statement sets: known ids, or what a credential resolves to.
enum Context {
    Known { ids: [String; 2] },
    Credential { sql: &'static str, credential: Credential },
}

impl Context {
    fn new(caller: Caller) -> Self {
        match caller {
            Caller::Known(ctx) => Context::Known { ids: [ctx.org_id.to_string(), ctx.user_id.to_string()] },
            Caller::Session(credential) => Context::Credential { sql: SET_SESSION_CONTEXT, credential },
            Caller::Token(credential) => Context::Credential { sql: SET_TOKEN_CONTEXT, credential },
        }
    }

    fn sql(&self) -> &'static str {
        match self {
            Context::Known { .. } => SET_TENANT_CONTEXT,
            Context::Credential { sql, .. } => sql,
        }
    }
}

/// A pooled connection bound to a tenant context, with its transaction's framing statements.
/// Shared by the three kinds; owns the rule that a transaction that was started and not
/// finished is rolled back before the connection is reused.
struct Bound {
    /// `None` only once handed to the background rollback.
    conn: Option<Object>,
    context: Context,
    plans: Plans,
    read_only: bool,
    /// BEGIN, the context and COMMIT.
    framing: Framing,
    /// BEGIN and the context have been sent (with the first statement).
    started: AtomicBool,
    /// The transaction is over (committed, or a read's rollback answered): the connection goes
    /// back to the pool as it is.
    finished: AtomicBool,
}

impl Bound {
    async fn new(
        conn: Object,
        statements: Statements,
        caller: Caller,
        plans: Plans,
        read_only: bool,
    ) -> Result<Self, DbError> {
        let context = Context::new(caller);
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
        })
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
            Context::Credential { credential, .. } => &[&credential.hash, &plans, &read_only],
        };
        let rows = match &self.framing {
            Framing::Prepared { set_context, .. } => self.conn().query(set_context, &param::untyped(params)).await?,
            Framing::Unnamed => self.conn().query_typed(self.context.sql(), &param::typed(params)).await?,
        };
        if let (Context::Credential { credential, .. }, Some(row)) = (&self.context, rows.first()) {
            // A credential is one user's: a second resolution can only find the same ids.
            let _ = credential.identity.0.set(Resolved {
                ctx: TenantCtx {
                    org_id: OrgId::from_uuid(row.try_get("organization_id")?),
                    user_id: UserId::from_uuid(row.try_get("user_id")?),
                },
                state: row.try_get("state")?,
            });
        }
        Ok(())
    }

    async fn end(&self) -> Result<u64, tokio_postgres::Error> {
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
        if self.started.swap(true, Ordering::SeqCst) {
            if !end {
                return Ok(statement.await?);
            }
            // A transaction's last statement, with its end in the same write.
            let (result, _) = tokio::try_join!(biased; statement, self.end())?;
            self.finished.store(true, Ordering::SeqCst);
            return Ok(result);
        }
        if !end {
            let (_, _, result) = tokio::try_join!(biased; self.begin(), self.set_context(), statement)?;
            return Ok(result);
        }
        let (_, _, result, _) = tokio::try_join!(biased; self.begin(), self.set_context(), statement, self.end())?;
        self.finished.store(true, Ordering::SeqCst);
        Ok(result)
    }

    async fn query(&self, sql: &str, params: Params<'_>, end: bool) -> Result<Vec<Row>, DbError> {
        if self.unnamed() {
            return self.run(self.conn().query_typed(sql, &param::typed(params)), end).await;
        }
        let statement = self.prepare(sql).await?;
        self.run(self.conn().query(&statement, &param::untyped(params)), end).await
    }

    async fn query_opt(&self, sql: &str, params: Params<'_>, end: bool) -> Result<Option<Row>, DbError> {
        if self.unnamed() {
            return self.run(self.conn().query_typed_opt(sql, &param::typed(params)), end).await;
        }
        let statement = self.prepare(sql).await?;
        self.run(self.conn().query_opt(&statement, &param::untyped(params)), end).await
    }

    async fn execute(&self, sql: &str, params: Params<'_>, end: bool) -> Result<u64, DbError> {
        if self.unnamed() {
            return self.run(self.conn().execute_typed(sql, &param::typed(params)), end).await;
        }
        let statement = self.prepare(sql).await?;
        self.run(self.conn().execute(&statement, &param::untyped(params)), end).await
    }
}

impl Drop for Bound {
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

/// One read of tenant data: one statement (or a page and its total), sent with its `BEGIN`,
/// read-only context and `COMMIT` in one round trip. Consumed by it. It names its tenant only
/// through the context (`app.current_org_id()` in SQL), which for a credential is known only
/// once the database has answered.
pub struct ReadTx(Bound);

impl ReadTx {
    pub(super) async fn new(
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
        Ok((rows, super::decode(total.try_get(0))?))
    }
}

/// One write of tenant data: one statement, sent with its `BEGIN`, context and `COMMIT` in one
/// round trip. Committed once it returns `Ok`; consumed by it.
pub struct WriteTx(Bound, TenantCtx);

impl WriteTx {
    pub(super) async fn new(conn: Object, statements: Statements, ctx: &TenantCtx) -> Result<Self, DbError> {
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
    pub(super) async fn new(conn: Object, statements: Statements, ctx: &TenantCtx) -> Result<Self, DbError> {
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

/// The helper's own guarantees, with raw SQL through it (only the `db` layer can send any), on
/// a scratch database as the app role. The rest of "the database is the guard" is in
/// tests/api/database_guard.rs.
#[cfg(test)]
mod tests {
    use tokio_postgres::error::SqlState;
    use uuid::Uuid;

    use super::{
        super::{
            files, system,
            testing::{left_on_the_connection, scratch_db, tenant},
            tokens, Db, DbError,
        },
        Caller, Credential,
    };

    const NO_TENANT_NOTHING_VISIBLE: (Option<String>, i64) = (Some(String::new()), 0);
    const ALL_FILES: &str = "select organization_id from app.files";

    #[tokio::test]
    async fn a_pooled_connection_carries_no_tenant_after_its_transaction() {
        // One connection in the pool: every checkout below gets the same server session.
        let db = scratch_db(1).await;
        let (a, _) = tenant(&db, "a.txt").await;
        let (b, b_file) = tenant(&db, "b.txt").await;

        let tx = db.begin(&a).await.unwrap();
        assert_eq!(tx.query("select id from app.files", &[]).await.unwrap().len(), 1, "a's file only");
        tx.commit().await.unwrap();
        assert_eq!(left_on_the_connection(&db).await, NO_TENANT_NOTHING_VISIBLE);

        // A transaction dropped without commit (a handler's early return) rolls back and also
        // leaves nothing behind.
        let tx = db.begin(&b).await.unwrap();
        tx.execute("update app.files set filename = 'rolled back'", &[]).await.unwrap();
        drop(tx);
        assert_eq!(left_on_the_connection(&db).await, NO_TENANT_NOTHING_VISIBLE);
        let file = super::super::files::find(db.read(&b).await.unwrap(), b_file).await.unwrap().unwrap();
        assert_eq!(file.filename, "b.txt");
    }

    /// A read is one statement (a second does not compile: `ReadTx` is consumed), it cannot
    /// write (read-only from its context statement on), and it ends its own transaction.
    #[tokio::test]
    async fn a_read_sees_one_tenant_never_writes_and_ends_its_own_transaction() {
        let db = scratch_db(1).await;
        let (a, a_file) = tenant(&db, "a.txt").await;
        tenant(&db, "b.txt").await;

        let read = db.read(&a).await.unwrap();
        let orgs: Vec<Uuid> =
            read.query("select organization_id from app.files", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
        assert_eq!(orgs, [*a.org_id.as_uuid()], "an unfiltered read sees one tenant");
        assert_eq!(left_on_the_connection(&db).await, NO_TENANT_NOTHING_VISIBLE);

        let read = db.read(&a).await.unwrap();
        let write = read.query("update app.files set filename = 'never kept' returning id", &[]).await;
        let code = write.err().and_then(|e| match e {
            crate::db::DbError::Query(e) => e.code().cloned(),
            _ => None,
        });
        assert_eq!(code, Some(SqlState::READ_ONLY_SQL_TRANSACTION));
        assert_eq!(left_on_the_connection(&db).await, NO_TENANT_NOTHING_VISIBLE);
        let file = super::super::files::find(db.read(&a).await.unwrap(), a_file).await.unwrap().unwrap();
        assert_eq!(file.filename, "a.txt");
    }

    /// A write commits with its one statement; a statement the policies refuse leaves nothing,
    /// and the connection comes back clean.
    #[tokio::test]
    async fn a_write_commits_with_its_statement_or_leaves_nothing() {
        let db = scratch_db(1).await;
        let (a, a_file) = tenant(&db, "a.txt").await;
        let (b, b_file) = tenant(&db, "b.txt").await;
        let name = |ctx, id| {
            let db = &db;
            async move { super::super::files::find(db.read(&ctx).await.unwrap(), id).await.unwrap().unwrap().filename }
        };

        let write = db.write(&a).await.unwrap();
        assert_eq!(write.execute("update app.files set filename = 'kept'", &[]).await.unwrap(), 1);
        assert_eq!(name(a, a_file).await, "kept", "committed once it returned");

        // Moving b's file into a's organization: WITH CHECK refuses the row, and the COMMIT
        // sent behind the statement rolls back.
        let write = db.write(&b).await.unwrap();
        let moved =
            write.execute("update app.files set filename = 'moved', organization_id = $1", &[a.org_id.as_uuid()]).await;
        assert!(moved.is_err(), "WITH CHECK refuses the row");
        assert_eq!(name(b, b_file).await, "b.txt");
        assert_eq!(left_on_the_connection(&db).await, NO_TENANT_NOTHING_VISIBLE);
    }

    fn org_ids(rows: &[tokio_postgres::Row]) -> Vec<Uuid> {
        rows.iter().map(|r| r.get(0)).collect()
    }

    /// A read made with a session's key resolves it in its own first statement: it acts for that
    /// user's organization only (an unfiltered query sees one tenant), and the caller learns who
    /// it was. With a key that is not valid (unknown, expired) the read fails as unauthenticated
    /// and its statement never runs; nothing is left on the connection either way.
    #[tokio::test]
    async fn a_read_made_with_a_session_key_acts_for_its_user_only_and_a_bad_key_reads_nothing() {
        let db = scratch_db(1).await;
        let (a, _) = tenant(&db, "a.txt").await;
        tenant(&db, "b.txt").await;
        let (live, expired) = (vec![1u8; 32], vec![2u8; 32]);
        let state = serde_json::json!({ "csrf_token": "\"token\"" });
        for (key_hash, ttl_seconds) in [(&live, 60), (&expired, -1)] {
            let conn = db.system_conn().await.unwrap();
            assert!(system::session_save(&conn, key_hash, a.user_id, &state, ttl_seconds).await.unwrap());
        }

        let caller = Caller::Session(Credential::new(live));
        let rows = db.read(caller.clone()).await.unwrap().query(ALL_FILES, &[]).await.unwrap();
        assert_eq!(org_ids(&rows), [*a.org_id.as_uuid()], "an unfiltered read sees the session's tenant only");
        assert_eq!(caller.resolved(), Some(a));
        assert_eq!(caller.session_state(), Some(&state));
        assert_eq!(left_on_the_connection(&db).await, NO_TENANT_NOTHING_VISIBLE);

        for key_hash in [expired, vec![3u8; 32]] {
            let caller = Caller::Session(Credential::new(key_hash));
            let read = db.read(caller.clone()).await.unwrap().query(ALL_FILES, &[]).await;
            assert!(matches!(read, Err(DbError::Unauthenticated)), "{read:?}");
            assert_eq!(caller.resolved(), None);
            assert_eq!(left_on_the_connection(&db).await, NO_TENANT_NOTHING_VISIBLE);
        }
    }

    /// A read made with a bearer token acts for the token's user, stamps its `last_used_at`
    /// (kept: the read commits) and is read-only from then on; a revoked token reads nothing.
    #[tokio::test]
    async fn a_read_made_with_a_token_stamps_it_and_still_cannot_write() {
        let db = scratch_db(1).await;
        let (a, a_file) = tenant(&db, "a.txt").await;
        let (token_id, token_hash) = (Uuid::new_v4(), vec![4u8; 32]);
        let expires_at = chrono::Utc::now() + chrono::Duration::days(1);
        let tx = db.begin(&a).await.unwrap();
        tokens::insert(&tx, token_id, "script", &token_hash, expires_at).await.unwrap();
        tx.commit().await.unwrap();
        let last_used = |db: &Db| {
            let db = db.clone();
            async move { tokens::list(db.read(&a).await.unwrap()).await.unwrap()[0].last_used_at }
        };
        assert_eq!(last_used(&db).await, None);

        let caller = Caller::Token(Credential::new(token_hash.clone()));
        let rows = db.read(caller.clone()).await.unwrap().query(ALL_FILES, &[]).await.unwrap();
        assert_eq!(org_ids(&rows), [*a.org_id.as_uuid()]);
        assert_eq!(caller.resolved(), Some(a));
        assert!(last_used(&db).await.is_some(), "the stamp commits with the read");

        let read = db.read(Caller::Token(Credential::new(token_hash.clone()))).await.unwrap();
        let write = read.query("update app.files set filename = 'never kept' returning id", &[]).await;
        let code = write.err().and_then(|e| match e {
            DbError::Query(e) => e.code().cloned(),
            _ => None,
        });
        assert_eq!(code, Some(SqlState::READ_ONLY_SQL_TRANSACTION));
        let file = files::find(db.read(&a).await.unwrap(), a_file).await.unwrap().unwrap();
        assert_eq!(file.filename, "a.txt");

        assert!(tokens::revoke(db.write(&a).await.unwrap(), token_id).await.unwrap());
        let read = db.read(Caller::Token(Credential::new(token_hash))).await.unwrap().query(ALL_FILES, &[]).await;
        assert!(matches!(read, Err(DbError::Unauthenticated)), "{read:?}");
    }

    /// Past PostgreSQL's five custom plans a generic plan is cached per connection: a tenant id
    /// folded into it (an IMMUTABLE helper) would show here.
    #[tokio::test]
    async fn a_cached_prepared_statement_run_as_a_many_times_then_as_b_sees_only_b() {
        let db = scratch_db(1).await;
        let (a, _) = tenant(&db, "a.txt").await;
        let (b, _) = tenant(&db, "b.txt").await;
        let sql = "select organization_id from app.files where deleted_at is null";
        for _ in 0..12 {
            let rows = db.read(&a).await.unwrap().query(sql, &[]).await.unwrap();
            assert_eq!(rows.iter().map(|r| r.get::<_, Uuid>(0)).collect::<Vec<_>>(), [*a.org_id.as_uuid()]);
        }
        let tx = db.begin(&b).await.unwrap();
        let rows = tx.query(sql, &[]).await.unwrap();
        assert_eq!(rows.iter().map(|r| r.get::<_, Uuid>(0)).collect::<Vec<_>>(), [*b.org_id.as_uuid()]);
    }
}
