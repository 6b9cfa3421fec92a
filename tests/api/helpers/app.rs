//! The app under test: its settings, its database and store, starting it.

use std::sync::LazyLock;

use reqwest::{Response, StatusCode};
use serde_json::json;
use tenant_files::{config::Config, db::migrate, startup::Application, telemetry};
use tokio_postgres::NoTls;
use uuid::Uuid;

use super::*;

/// Owner-role URL of a maintenance database on the cluster `make test` starts.
pub(super) fn admin_url() -> String {
    std::env::var("TEST_PG_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://tenant_files_owner@127.0.0.1:54329/postgres".into())
}

/// The broker `make test` starts.
pub fn amqp_url() -> String {
    std::env::var("TEST_AMQP_URL").unwrap_or_else(|_| tenant_files::config::DEV_AMQP_URL.into())
}

pub fn db_url(role: &str, db: &str) -> String {
    let admin: tokio_postgres::Config = admin_url().parse().expect("TEST_PG_ADMIN_URL");
    let host = match &admin.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        #[allow(unreachable_patterns)]
        _ => "127.0.0.1".into(),
    };
    let port = admin.get_ports().first().copied().unwrap_or(5432);
    format!("postgres://{role}@{host}:{port}/{db}")
}

/// Logs stay silent unless TEST_LOG is set.
static TRACING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var("TEST_LOG").is_ok() {
        telemetry::init(tenant_files::config::LogFormat::Text);
    }
});

pub struct TestApp {
    pub address: String,
    /// The configuration the app runs with; the worker is started from the same one.
    pub config: Config,
    /// The command line that config came from (to start the binary as a separate process).
    pub args: Vec<String>,
    pub db_name: String,
    /// Where the app keeps file bytes, seen from outside.
    pub store: TestStore,
    /// This app's metrics, shared with the workers the test starts in-process: exact counts.
    pub metrics: std::sync::Arc<tenant_files::metrics::Metrics>,
    /// Stops the server when the test ends (see [`TestApp`]'s `Drop`).
    server: actix_web::dev::ServerHandle,
    _upload_root: tempfile::TempDir,
}

/// The server's workers are threads of their own that keep their database connections until
/// the server tells them to stop; the server can only tell them while it runs, so it runs on a
/// thread of its own too, beyond the test's runtime, and is stopped here. Without this, every
/// finished test kept its connections open until the test binary exited, and the suite ran the
/// cluster out of connection slots.
impl Drop for TestApp {
    fn drop(&mut self) {
        // The command is sent at once; the server's thread carries it out.
        drop(self.server.stop(false));
    }
}

/// Settings a test may change before the app starts.
pub struct Settings {
    pub max_file_size_mb: u64,
    pub db_pool_size: u16,
    pub login_max_failures: u32,
    pub cookie_secure: bool,
    pub worker_prefetch: u16,
    pub job_max_attempts: u32,
    pub pending_sweep_after_seconds: u64,
    /// Connect the app role through this port instead (a `TcpProxy` in front of PostgreSQL).
    pub app_db_port: Option<u16>,
    pub db_pool_timeout_ms: u64,
    /// Per-address sign-in limit: every request of a test comes from 127.0.0.1, so it is loose
    /// unless a test is about it.
    pub auth_rate_per_minute: u32,
    pub auth_rate_burst: u32,
    /// Per-address limit on opening share links; loose unless a test is about it.
    pub share_rate_per_minute: u32,
    pub share_rate_burst: u32,
    /// Reach the broker here instead (a `TcpProxy`, or a port nobody listens on).
    pub amqp_url: Option<String>,
    /// `classic` or `quorum`.
    pub queue_type: &'static str,
    /// `none`, or `transaction` behind PgBouncer (with `app_db_port: Some(pgbouncer_port())`).
    pub db_pooler: &'static str,
    /// How long a resumable (tus) upload lives.
    pub tus_expiry_seconds: u64,
    /// Store files in S3 even when the run's default is a local directory (`TEST_STORAGE`).
    pub s3: bool,
    /// Reach S3 here instead (a `TcpProxy` in front of SeaweedFS); implies `s3`.
    pub s3_endpoint: Option<String>,
    /// `PUBLIC_URL`; `None` leaves the dev default (the bound address).
    pub public_url: Option<String>,
    /// `TRUSTED_PROXIES`; empty trusts none.
    pub trusted_proxies: &'static str,
    /// How long an upload body may send nothing (a tus lease lapses after twice this).
    pub upload_idle_timeout_seconds: u64,
    /// The process's memory budget for upload bodies.
    pub upload_memory_mb: u64,
    /// The percentage of it one organization may hold.
    pub upload_memory_org_share: u8,
    /// How old a chunk no upload refers to must be before the worker removes it.
    pub chunk_sweep_grace_seconds: u64,
    /// Unfinished resumable uploads one user may have open.
    pub tus_max_open_uploads: u32,
    /// Percentage of the pool one organization may hold (`DB_POOL_ORG_SHARE`).
    pub db_pool_org_share: u8,
    /// How long an organization at its share waits for one of its connections.
    pub db_org_wait_ms: u64,
    /// Authenticated requests per organization and minute (`ORG_REQUESTS_PER_MINUTE`).
    pub org_requests_per_minute: u32,
    /// The api processes sharing each organization's request budget.
    pub api_processes: u32,
    /// Webhook endpoints on loopback (every test receiver is) are allowed unless a test is
    /// about refusing them.
    pub webhook_allow_private: bool,
    /// How long an endpoint may fail before it is disabled.
    pub webhook_disable_after_seconds: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_file_size_mb: 5,
            db_pool_size: 8,
            login_max_failures: 5,
            cookie_secure: false,
            worker_prefetch: 4,
            job_max_attempts: 3,
            pending_sweep_after_seconds: 600,
            app_db_port: None,
            db_pool_timeout_ms: 5000,
            auth_rate_per_minute: 100_000,
            auth_rate_burst: 10_000,
            share_rate_per_minute: 100_000,
            share_rate_burst: 10_000,
            amqp_url: None,
            queue_type: "classic",
            db_pooler: "none",
            tus_expiry_seconds: 86_400,
            s3: false,
            s3_endpoint: None,
            public_url: None,
            trusted_proxies: "",
            upload_idle_timeout_seconds: 5,
            upload_memory_mb: 64,
            upload_memory_org_share: 50,
            chunk_sweep_grace_seconds: 900,
            tus_max_open_uploads: 100,
            db_pool_org_share: 50,
            db_org_wait_ms: 1000,
            org_requests_per_minute: 12_000,
            api_processes: 1,
            webhook_allow_private: true,
            webhook_disable_after_seconds: 3600,
        }
    }
}

/// The `SESSION_KEY` of every test app (64 bytes).
pub const TEST_SESSION_KEY: &str = "test-session-key-test-session-key-test-session-key-test-session-";

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Settings::default()).await
}

pub async fn spawn_app_with(mut settings: Settings) -> TestApp {
    LazyLock::force(&TRACING);
    // `make test` runs the suite a second time with every app behind PgBouncer (transaction
    // mode), except those that put their own proxy in front of PostgreSQL.
    if std::env::var("TEST_DB_POOLER").as_deref() == Ok("transaction") && settings.app_db_port.is_none() {
        settings.app_db_port = Some(pgbouncer_port());
        settings.db_pooler = "transaction";
    }
    let db_name = format!("tf_test_{}", Uuid::new_v4().simple());
    create_database(&db_name).await;
    let upload_root = tempfile::tempdir().expect("temp upload dir");
    let upload_dir = upload_root.path().join("uploads");
    let (storage_args, store) = if settings.s3 || settings.s3_endpoint.is_some() || s3_by_default() {
        let endpoint = settings.s3_endpoint.unwrap_or_else(s3_endpoint);
        let args = vec![
            "--storage=s3".to_owned(),
            format!("--s3-endpoint={endpoint}"),
            format!("--s3-bucket={S3_BUCKET}"),
            // The test's own corner of the shared bucket.
            format!("--s3-prefix={db_name}"),
            format!("--aws-access-key-id={S3_ACCESS_KEY}"),
            format!("--aws-secret-access-key={S3_SECRET_KEY}"),
        ];
        (args, TestStore::s3(&db_name))
    } else {
        (vec![format!("--upload-dir={}", upload_dir.display())], TestStore::Local(upload_dir))
    };

    let mut args = vec![
        "tenant-files".to_owned(),
        "--bind=127.0.0.1:0".into(),
        format!(
            "--database-url={}",
            match settings.app_db_port {
                Some(port) => format!("postgres://tenant_files_app@127.0.0.1:{port}/{db_name}"),
                None => db_url("tenant_files_app", &db_name),
            }
        ),
        format!("--db-pool-timeout-ms={}", settings.db_pool_timeout_ms),
        format!("--db-pooler={}", settings.db_pooler),
        format!("--migration-database-url={}", db_url("tenant_files_owner", &db_name)),
        format!("--max-file-size-mb={}", settings.max_file_size_mb),
        format!("--db-pool-size={}", settings.db_pool_size),
        format!("--db-pool-org-share={}", settings.db_pool_org_share),
        format!("--db-org-wait-ms={}", settings.db_org_wait_ms),
        format!("--org-requests-per-minute={}", settings.org_requests_per_minute),
        format!("--api-processes={}", settings.api_processes),
        "--budget-bookkeeping-ms=200".into(),
        format!("--login-max-failures={}", settings.login_max_failures),
        format!("--auth-rate-per-minute={}", settings.auth_rate_per_minute),
        format!("--auth-rate-burst={}", settings.auth_rate_burst),
        format!("--share-rate-per-minute={}", settings.share_rate_per_minute),
        format!("--share-rate-burst={}", settings.share_rate_burst),
        format!("--tus-expiry-seconds={}", settings.tus_expiry_seconds),
        format!("--upload-idle-timeout-seconds={}", settings.upload_idle_timeout_seconds),
        format!("--upload-memory-mb={}", settings.upload_memory_mb),
        format!("--upload-memory-org-share={}", settings.upload_memory_org_share),
        format!("--chunk-sweep-grace-seconds={}", settings.chunk_sweep_grace_seconds),
        format!("--tus-max-open-uploads={}", settings.tus_max_open_uploads),
        "--bcrypt-cost=4".into(),
        format!("--cookie-secure={}", settings.cookie_secure),
        format!("--amqp-url={}", settings.amqp_url.unwrap_or_else(amqp_url)),
        // Exchanges and queues of their own per test; unused queues vanish after a while.
        format!("--queue-prefix={db_name}"),
        format!("--queue-type={}", settings.queue_type),
        "--queue-expires-ms=300000".into(),
        format!("--worker-prefetch={}", settings.worker_prefetch),
        format!("--job-max-attempts={}", settings.job_max_attempts),
        "--job-retry-delays-ms=100,200".into(),
        "--relay-interval-ms=50".into(),
        "--maintenance-interval-ms=200".into(),
        format!("--pending-sweep-after-seconds={}", settings.pending_sweep_after_seconds),
        // Receivers are plain http on loopback; retries a second apart, three of them.
        "--webhook-allow-http=true".into(),
        format!("--webhook-allow-private={}", settings.webhook_allow_private),
        "--webhook-timeout-ms=1500".into(),
        "--webhook-retry-delays-ms=1000,1000,1000".into(),
        format!("--webhook-disable-after-seconds={}", settings.webhook_disable_after_seconds),
        "--app-env=dev".into(),
        // Known, so that a test can sign what the service signs (cursors), and the same for
        // every process a test starts.
        format!("--session-key={TEST_SESSION_KEY}"),
    ];
    args.extend(storage_args);
    args.extend(settings.public_url.map(|url| format!("--public-url={url}")));
    if !settings.trusted_proxies.is_empty() {
        args.push(format!("--trusted-proxies={}", settings.trusted_proxies));
    }
    let config = Config::from_args(&args).expect("test config");
    migrate::run(&config.database.migration_database_url).await.expect("migrations apply");
    partition_when_asked(&db_name).await;
    let metrics = std::sync::Arc::new(tenant_files::metrics::Metrics::new());
    let app = Application::build(config.clone(), metrics.clone()).await.expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let server = app.handle();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("server runtime");
        runtime.block_on(app.run_until_stopped())
    });
    TestApp { address, config, args, db_name, store, metrics, server, _upload_root: upload_root }
}

/// A fresh database migrated as the owner, without a running app (for catalog-level tests).
pub async fn migrated_database() -> String {
    let name = format!("tf_test_{}", Uuid::new_v4().simple());
    create_database(&name).await;
    let owner: tokio_postgres::Config = db_url("tenant_files_owner", &name).parse().unwrap();
    migrate::run(&owner).await.expect("migrations apply");
    partition_when_asked(&name).await;
    name
}

/// `make test-partitioned` (TEST_PARTITIONS=8) runs the suite on databases whose growing tables
/// are hash-partitioned by organization (#28's rehearsal, `sql/rehearsal/`).
async fn partition_when_asked(db_name: &str) {
    if let Ok(partitions) = std::env::var("TEST_PARTITIONS") {
        partition_by_organization(db_name, partitions.parse().expect("TEST_PARTITIONS is a number")).await;
    }
}

/// Runs `sql/rehearsal/partition_by_organization.sql` as the owner.
pub async fn partition_by_organization(db_name: &str, partitions: u32) {
    let (client, connection) =
        tokio_postgres::connect(&db_url("tenant_files_owner", db_name), NoTls).await.expect("owner");
    tokio::spawn(connection);
    let script = include_str!("../../../sql/rehearsal/partition_by_organization.sql");
    client
        .batch_execute(&format!("set rehearsal.partitions = {partitions};\n{script}"))
        .await
        .expect("the rehearsal partitions the database");
}

/// Runs statements as the superuser in the given database (to plant weaknesses).
pub async fn as_superuser(db_name: &str, sql: &str) {
    let (client, connection) = tokio_postgres::connect(&db_url("postgres", db_name), NoTls).await.expect("superuser");
    tokio::spawn(connection);
    client.batch_execute(sql).await.expect("superuser statements");
}

async fn create_database(name: &str) {
    let (client, connection) = tokio_postgres::connect(&admin_url(), NoTls)
        .await
        .expect("the test cluster is up (run `make test`, or scripts/dev-services.sh start)");
    tokio::spawn(connection);
    client
        .batch_execute(&format!("create database {name} owner tenant_files_owner"))
        .await
        .expect("create test database");
}

impl TestApp {
    /// A direct connection as the given role to this test's database.
    pub async fn connect_as(&self, role: &str) -> tokio_postgres::Client {
        let (client, connection) =
            tokio_postgres::connect(&db_url(role, &self.db_name), NoTls).await.expect("connect to test database");
        tokio::spawn(connection);
        client
    }

    /// The app role, exactly as the service connects.
    pub async fn app_role(&self) -> tokio_postgres::Client {
        self.connect_as("tenant_files_app").await
    }

    /// The app role in an open transaction acting as `user` (their organization and user id set
    /// as the service sets them): for proving what the database itself lets a tenant read or
    /// write, whatever the query. The transaction ends with the client.
    pub async fn app_role_as(&self, user: &TestUser) -> tokio_postgres::Client {
        let db = self.app_role().await;
        db.batch_execute(&format!(
            "begin; select set_config('app.org_id', '{}', true), set_config('app.user_id', '{}', true)",
            user.org_id, user.user_id
        ))
        .await
        .expect("a tenant transaction");
        db
    }

    /// Runs SQL on the owner role's connection, in a transaction acting as `user` (their
    /// organization and user id set like the service does): for arranging states the API
    /// cannot reach, such as a file made `ready` or a user deactivated behind the API's back.
    /// The policies are forced on the owner role too, so this obeys the same rules.
    pub async fn as_user(&self, user: &TestUser, sql: &str) {
        let owner = self.connect_as("tenant_files_owner").await;
        owner
            .batch_execute(&format!(
                "begin; select set_config('app.org_id', '{}', true), set_config('app.user_id', '{}', true); {sql}; commit;",
                user.org_id, user.user_id
            ))
            .await
            .expect("statement as user");
    }

    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder().cookie_store(true).build().expect("http client")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Registers a new organization with a random name and returns its owner, signed in.
    pub async fn register_org(&self) -> TestUser {
        let email = random_email();
        let org_name = format!("org-{}", Uuid::new_v4());
        let client = self.client();
        let response = client
            .post(self.url("/api/auth/register"))
            .json(&json!({ "email": email, "password": PASSWORD, "organization_name": org_name }))
            .send()
            .await
            .expect("register");
        assert_eq!(response.status(), StatusCode::CREATED, "register should succeed");
        TestUser::from_signed_in(self, client, response, email).await
    }

    /// Adds a user with `role` to the inviter's organization the way a person would: the
    /// inviter creates an invitation, the new user registers with its token (and is signed in).
    pub async fn add_user(&self, inviter: &TestUser, role: &str) -> TestUser {
        let email = random_email();
        let token = inviter.invite_ok(&email, role).await;
        let client = self.client();
        let response = client
            .post(self.url("/api/auth/register"))
            .json(&json!({ "email": email, "password": PASSWORD, "invitation_token": token }))
            .send()
            .await
            .expect("register by invitation");
        assert_eq!(response.status(), StatusCode::CREATED, "joining by invitation should succeed");
        TestUser::from_signed_in(self, client, response, email).await
    }

    pub async fn login(&self, email: &str, password: &str) -> TestUser {
        let client = self.client();
        let response = self.post_login(&client, email, password).await;
        assert_eq!(response.status(), StatusCode::OK, "login should succeed");
        TestUser::from_signed_in(self, client, response, email.to_owned()).await
    }

    pub async fn post_login(&self, client: &reqwest::Client, email: &str, password: &str) -> Response {
        client
            .post(self.url("/api/auth/login"))
            .json(&json!({ "email": email, "password": password }))
            .send()
            .await
            .expect("login request")
    }

    /// Waits until exactly `count` files are stored (abandoned uploads are removed in the
    /// background, moments after the answer), and fails if that never happens.
    pub async fn assert_stored_files(&self, count: usize) {
        let what = format!("{count} stored files remain");
        eventually(&what, || async { (self.store.keys().await.len() == count).then_some(()) }).await;
    }

    /// `count` files named `{prefix}{n}.txt` of 1 byte, inserted behind the API's back as
    /// `user` (the policies and triggers apply; no bytes are stored): a large organization,
    /// quickly.
    pub async fn insert_files(&self, user: &TestUser, prefix: &str, count: u32) {
        self.as_user(
            user,
            &format!(
                "insert into app.files (id, organization_id, filename, file_size_bytes, sha256, uploaded_by)
                 select gen_random_uuid(), '{org}', '{prefix}' || g || '.txt', 1, repeat('a', 64), '{user}'
                   from generate_series(1, {count}) g",
                org = user.org_id,
                user = user.user_id
            ),
        )
        .await;
    }

    /// A superuser connection: the test's view from outside the rules (RLS does not apply).
    pub async fn superuser(&self) -> tokio_postgres::Client {
        self.connect_as("postgres").await
    }

    /// Rows in app.files across all organizations, deleted ones included.
    pub async fn count_file_rows(&self) -> i64 {
        self.superuser().await.query_one("select count(*) from app.files", &[]).await.expect("count").get(0)
    }
}
