//! The database layer: the pool (private), the ways to get a connection, and SQLSTATE →
//! [`DbError`] mapping. SQL text lives in the resource modules, one function per query.
//!
//! Handlers never see the pool. They get a [`ReadTx`], [`WriteTx`] or [`Tx`] from [`Db::read`],
//! [`Db::write`] or [`Db::begin`], bound to a tenant context before any query runs, and hand it
//! to the query functions here (they cannot send SQL themselves: the raw methods are
//! crate-private). The few cross-tenant needs go through [`SystemConn`], whose queries can only
//! usefully call the SECURITY DEFINER registry (without a tenant context, every tenant table
//! reads as empty).
//!
//! A read's statements name the tenant only through the transaction's context, because a read
//! made with a credential learns its ids in the same round trip: as
//! `(select nullif(current_setting('app.org_id', true), '')::uuid)` (and `app.user_id` alike),
//! the expression the policies use (V10). Not `app.current_org_id()`: the helpers pin their
//! `search_path`, so PostgreSQL cannot inline them and runs a SQL function per call (0.2 ms a
//! statement). And as a sub-select, like the policies': evaluated once per statement.

/// The tenant's organization, as every statement names it: the transaction's own setting (set
/// by its first statement, from known ids or a resolved credential), read once per statement
/// (an init plan), never a parameter. Written once here, pasted by `concat!`.
macro_rules! tenant_org {
    () => {
        "(select nullif(current_setting('app.org_id', true), '')::uuid)"
    };
}

/// The acting user, the same way ([`tenant_org`]'s twin).
macro_rules! tenant_user {
    () => {
        "(select nullif(current_setting('app.user_id', true), '')::uuid)"
    };
}

pub mod audit;
pub mod events;
pub mod files;
pub mod invitations;
pub mod migrate;
pub mod orgs;
mod param;
pub mod refusals;
mod share;
pub mod share_links;
pub mod system;
mod system_conn;
mod tenant;
pub mod tokens;
pub mod tus;
pub mod uploads;
pub mod users;
pub mod webhooks;

use std::{sync::Arc, time::Duration};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::{error::SqlState, NoTls};

use crate::domain::OrgId;

pub use param::{Param, Params, SqlType};
pub use system_conn::{SystemConn, SystemQuery, SystemTx};
pub use tenant::{Caller, Credential, Plans, ReadTx, TenantCtx, TenantRead, TenantWrite, Tx, WriteTx};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database could not be reached in time (pool exhausted, server down, connection
    /// lost). Worth a 503 and a retry, not a 500.
    #[error("database unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// A named constraint (or a trigger raising with a constraint name) refused the write.
    #[error("constraint {0} violated")]
    Constraint(String),
    /// A row-level security policy or a missing privilege refused the statement: the database
    /// acting as the guard behind the handler's own checks.
    #[error("refused by the database's access rules")]
    Refused(#[source] tokio_postgres::Error),
    /// The credential a transaction was to resolve (a session's key, a bearer token) is not, or
    /// no longer, valid: nothing ran.
    #[error("the caller's credential is not valid")]
    Unauthenticated,
    /// The caller's organization holds its whole share of the pool's connections, and none came
    /// back within the wait.
    #[error("the organization holds its share of the database connections")]
    Busy,
    /// PostgreSQL refused a value as data (class 22: out of range, not valid for its type, a
    /// NUL in text): the value came from outside and was not checked well enough. A backstop:
    /// the caller's request is at fault, never the service's state.
    #[error("the database refused a value")]
    InvalidValue(#[source] tokio_postgres::Error),
    /// A row did not have the shape its query promised.
    #[error("unexpected row from the database")]
    Decode(#[source] anyhow::Error),
    #[error("database query failed")]
    Query(#[source] tokio_postgres::Error),
}

impl DbError {
    /// Whether the same statement may succeed if tried again later: the database was out of
    /// reach, or the server rolled the transaction back for a reason of the moment (a
    /// serialization failure or deadlock, class 40; a lack of resources, class 53; a lock not
    /// available, 55P03). Anything else (a refusal, a row that does not decode, a bug in a
    /// statement) fails the same way every time.
    pub fn is_transient(&self) -> bool {
        match self {
            DbError::Unavailable(_) | DbError::Busy => true,
            DbError::Query(e) => e.code().is_some_and(|code| {
                let code = code.code();
                code.starts_with("40") || code.starts_with("53") || code == "55P03"
            }),
            _ => false,
        }
    }
}

impl From<tokio_postgres::Error> for DbError {
    fn from(err: tokio_postgres::Error) -> Self {
        if let Some(db) = err.as_db_error() {
            let class = &db.code().code()[..2];
            // 23: integrity constraint violation; P0001/P0002: our triggers' named refusals.
            if class == "23" || db.code() == &SqlState::NO_DATA_FOUND || db.code() == &SqlState::RAISE_EXCEPTION {
                if let Some(name) = db.constraint() {
                    return DbError::Constraint(name.to_owned());
                }
            }
            if class == "22" {
                return DbError::InvalidValue(err);
            }
            if db.code() == &SqlState::INSUFFICIENT_PRIVILEGE {
                return DbError::Refused(err);
            }
            // Raised only by the registry's credential resolvers (migrations/V16).
            if db.code() == &SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
                return DbError::Unauthenticated;
            }
            // 57P01..03: admin shutdown, crash shutdown, cannot connect now; 53300: no
            // connection slot left (a pooler in front could not open a server connection).
            if class == "57" || class == "08" || db.code() == &SqlState::TOO_MANY_CONNECTIONS {
                return DbError::Unavailable(err.into());
            }
            return DbError::Query(err);
        }
        if err.is_closed() {
            return DbError::Unavailable(err.into());
        }
        DbError::Query(err)
    }
}

impl From<deadpool_postgres::PoolError> for DbError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        DbError::Unavailable(err.into())
    }
}

/// Turns a column read error into [`DbError::Decode`]; `try_get` everywhere, never `get`.
pub(crate) fn decode<T>(result: Result<T, tokio_postgres::Error>) -> Result<T, DbError> {
    result.map_err(|e| DbError::Decode(e.into()))
}

/// How statements go out: prepared once per connection and reused (direct connections: no
/// parsing per request), or unnamed each time (behind a transaction-mode pooler, where the next
/// transaction may run on another server connection that never saw the prepared statement).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statements {
    Prepared,
    Unnamed,
}

/// The app role's connection pool. Cloning is cheap (the pool is reference-counted).
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    statements: Statements,
    /// Each organization's share of the pool, if bounded (api processes; see [`share`]).
    shares: Option<Arc<share::Shares>>,
    /// Whose each credential seen so far was.
    known: Arc<tenant::KnownOrgs>,
    /// What the per-organization budgets refused, this one's and the others'.
    refusals: Arc<refusals::Refusals>,
}

impl Db {
    /// Builds the pool; connections are opened lazily, so this never blocks on the network.
    pub fn new(
        config: tokio_postgres::Config,
        max_size: usize,
        wait_timeout: Duration,
        statements: Statements,
    ) -> anyhow::Result<Self> {
        let manager = Manager::from_config(
            config,
            NoTls,
            // Fast recycling is enough: tenant settings are transaction-scoped and die with
            // their transaction, so a returned connection carries nothing of its last user.
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(max_size)
            .wait_timeout(Some(wait_timeout))
            .create_timeout(Some(wait_timeout))
            .recycle_timeout(Some(wait_timeout))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()?;
        Ok(Self { pool, statements, shares: None, known: Arc::default(), refusals: Arc::default() })
    }

    /// Bounds each organization to `per_org` of the pool's connections at once; a transaction
    /// past it waits up to `wait` for one of its organization's own, then fails with
    /// [`DbError::Busy`].
    pub fn with_org_share(mut self, per_org: usize, wait: Duration) -> Self {
        self.shares = Some(Arc::new(share::Shares::new(per_org, wait)));
        self
    }

    /// A connection of `caller`'s organization's share, when shares are bounded and the
    /// organization known.
    async fn share_for(&self, caller: &Caller) -> Result<Option<share::Share>, DbError> {
        let (Some(shares), Some(org)) = (&self.shares, self.organization_of(caller)) else { return Ok(None) };
        shares.take(org).await.map(Some)
    }

    /// The organization `caller` is for, if this process knows it before any read: its ids, or
    /// what its credential turned out to be the last time it was seen.
    pub fn organization_of(&self, caller: &Caller) -> Option<OrgId> {
        self.known.of(caller)
    }

    /// This process's count of what the per-organization budgets refused (counted by the
    /// layers that answer the refusals, flushed to the database by [`refusals::Refusals::flush`]).
    pub fn refusals(&self) -> &refusals::Refusals {
        &self.refusals
    }

    /// A transaction for tenant data, bound to `ctx`: the only way to reach tenant rows. Any
    /// number of statements; ends with [`Tx::commit`].
    #[tracing::instrument(name = "db.begin", skip_all, fields(org_id = %ctx.org_id))]
    pub async fn begin(&self, ctx: &TenantCtx) -> Result<Tx, DbError> {
        let share = self.share_for(&ctx.into()).await?;
        Tx::new(self.pool.get().await?, self.statements, ctx, share).await
    }

    /// A write of tenant data bound to `ctx`: one statement, sent with its BEGIN, context and
    /// COMMIT in one round trip. Committed once it returns `Ok`.
    #[tracing::instrument(name = "db.write", skip_all, fields(org_id = %ctx.org_id))]
    pub async fn write(&self, ctx: &TenantCtx) -> Result<WriteTx, DbError> {
        let share = self.share_for(&ctx.into()).await?;
        WriteTx::new(self.pool.get().await?, self.statements, ctx, share).await
    }

    /// A read of tenant data bound to `ctx`: one statement (or a page and its total), sent with
    /// its BEGIN, read-only context and COMMIT in one round trip.
    #[tracing::instrument(name = "db.read", skip_all, fields(org_id = %ctx.org_id))]
    pub async fn read(&self, ctx: &TenantCtx) -> Result<ReadTx, DbError> {
        let share = self.share_for(&ctx.into()).await?;
        let context = tenant::Context::known(ctx);
        ReadTx::new(self.pool.get().await?, self.statements, context, Plans::Generic, share).await
    }

    /// A read for `caller` (a known context, or a credential resolved by the read itself, in the
    /// same round trip): runs `read` on a [`ReadTx`] planned as `plans` says, and returns its
    /// value and who the caller turned out to be. A credential that is not valid fails it with
    /// [`DbError::Unauthenticated`] before the statement runs.
    #[tracing::instrument(name = "db.read_as", skip_all)]
    pub async fn read_as<T, F, Fut>(&self, caller: &Caller, plans: Plans, read: F) -> Result<(T, TenantCtx), DbError>
    where
        F: FnOnce(ReadTx) -> Fut,
        Fut: std::future::Future<Output = Result<T, DbError>>,
    {
        let share = self.share_for(caller).await?;
        let resolved = tenant::Resolution::default();
        let context = tenant::Context::new(caller, &resolved);
        let value = read(ReadTx::new(self.pool.get().await?, self.statements, context, plans, share).await?).await?;
        let who = resolved.of(caller)?;
        self.known.learn(caller, who.org_id);
        Ok((value, who))
    }

    /// Whether the database answers a query as the app role within `timeout` (readiness).
    pub async fn reachable(&self, timeout: Duration) -> bool {
        let ping = async { system::ping(&self.system_conn().await?).await };
        matches!(tokio::time::timeout(timeout, ping).await, Ok(Ok(())))
    }

    /// Jobs waiting in the outbox to be published, across tenants; `None` when the database
    /// does not answer within `timeout`.
    pub async fn outbox_backlog(&self, timeout: Duration) -> Option<i64> {
        let backlog = async { system::outbox_backlog(&self.system_conn().await?).await };
        match tokio::time::timeout(timeout, backlog).await {
            Ok(Ok(backlog)) => Some(backlog),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "outbox backlog not sampled");
                None
            }
            Err(_) => None,
        }
    }

    /// The pool's connections: open, idle, and requests waiting for one.
    pub fn pool_status(&self) -> deadpool_postgres::Status {
        self.pool.status()
    }

    /// A connection without tenant context, for the SECURITY DEFINER registry.
    pub async fn system_conn(&self) -> Result<SystemConn, DbError> {
        Ok(SystemConn::new(self.pool.get().await?, self.statements))
    }
}

/// A scratch database for the `db` layer's own tests: created on the cluster `make test` starts
/// (`TEST_PG_ADMIN_URL`, as the integration tests use), migrated as the owner, and reached as
/// the app role, so the helpers are tested exactly as the service runs them.
#[cfg(test)]
pub(crate) mod testing {
    use super::{system_conn::exec::Query as _, *};
    use crate::domain::{Email, FileId, Filename, OrgName, Role};

    fn admin_url() -> tokio_postgres::Config {
        std::env::var("TEST_PG_ADMIN_URL")
            .unwrap_or_else(|_| "postgres://tenant_files_owner@127.0.0.1:54329/postgres".into())
            .parse()
            .expect("TEST_PG_ADMIN_URL")
    }

    /// A fresh, migrated database; the app role's pool of `pool_size` connections to it.
    pub(crate) async fn scratch_db(pool_size: usize) -> Db {
        scratch_db_and_owner(pool_size).await.0
    }

    /// [`scratch_db`], and a connection to it as the owner role (which RLS binds too).
    pub(crate) async fn scratch_db_and_owner(pool_size: usize) -> (Db, tokio_postgres::Client) {
        let name = format!("tf_test_{}", uuid::Uuid::new_v4().simple());
        let (admin, connection) = admin_url().connect(NoTls).await.expect("the test cluster is up (make test)");
        tokio::spawn(connection);
        admin.batch_execute(&format!("create database {name} owner tenant_files_owner")).await.unwrap();
        let mut owner = admin_url();
        owner.dbname(&name);
        migrate::run(&owner).await.expect("migrations apply");
        let (owner_client, connection) = owner.connect(NoTls).await.unwrap();
        tokio::spawn(connection);
        let mut app = owner;
        app.user("tenant_files_app");
        (Db::new(app, pool_size, Duration::from_secs(5), Statements::Prepared).unwrap(), owner_client)
    }

    /// A new organization with an owner and one pending file named `filename`, made through the
    /// same queries registration and upload use.
    pub(crate) async fn tenant(db: &Db, filename: &str) -> (TenantCtx, FileId) {
        let ctx = TenantCtx { org_id: crate::domain::OrgId::new(), user_id: crate::domain::UserId::new() };
        let file_id = FileId::new();
        let name = OrgName::parse(&format!("org-{}", ctx.org_id)).unwrap();
        let email = Email::parse(&format!("{}@example.com", ctx.user_id)).unwrap();
        let filename = Filename::parse(filename).unwrap();
        let new_file = files::NewFile { id: file_id, filename: &filename, size: 1, sha256: &"0".repeat(64) };
        let tx = db.begin(&ctx).await.unwrap();
        orgs::insert(&tx, &name).await.unwrap();
        users::insert(&tx, &email, "not a hash", Role::Owner).await.unwrap();
        let event = audit::Event {
            action: audit::Action::FileUploaded,
            target: None,
            details: serde_json::json!({}),
            request_id: "test",
        };
        files::record_upload(tx, &new_file, crate::domain::JobId::new(), event).await.unwrap();
        (ctx, file_id)
    }

    /// The tenant setting and the files visible on the pool's (only) connection, checked out
    /// again: what one request leaves for the next.
    pub(crate) async fn left_on_the_connection(db: &Db) -> (Option<String>, i64) {
        let conn = db.system_conn().await.unwrap();
        let rows = conn
            .query("select current_setting('app.org_id', true), (select count(*) from app.files)", &[])
            .await
            .unwrap();
        (rows[0].get(0), rows[0].get(1))
    }
}
