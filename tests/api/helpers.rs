//! `spawn_app()` and a small client per signed-in user, one method per endpoint.

use std::sync::LazyLock;

use reqwest::{multipart, Response, StatusCode};
use serde_json::{json, Value};
use tenant_files::{config::Config, db::migrate, startup::Application, telemetry};
use tokio_postgres::NoTls;
use uuid::Uuid;

pub use crate::stored::{s3_by_default, s3_endpoint, TestStore, S3_ACCESS_KEY, S3_BUCKET, S3_SECRET_KEY};

/// Owner-role URL of a maintenance database on the cluster `make test` starts.
fn admin_url() -> String {
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
    _upload_root: tempfile::TempDir,
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
    /// How old a chunk no upload refers to must be before the worker removes it.
    pub chunk_sweep_grace_seconds: u64,
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
            chunk_sweep_grace_seconds: 900,
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
        format!("--login-max-failures={}", settings.login_max_failures),
        format!("--auth-rate-per-minute={}", settings.auth_rate_per_minute),
        format!("--auth-rate-burst={}", settings.auth_rate_burst),
        format!("--share-rate-per-minute={}", settings.share_rate_per_minute),
        format!("--share-rate-burst={}", settings.share_rate_burst),
        format!("--tus-expiry-seconds={}", settings.tus_expiry_seconds),
        format!("--upload-idle-timeout-seconds={}", settings.upload_idle_timeout_seconds),
        format!("--upload-memory-mb={}", settings.upload_memory_mb),
        format!("--chunk-sweep-grace-seconds={}", settings.chunk_sweep_grace_seconds),
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
    migrate::run(&config.migration_database_url).await.expect("migrations apply");
    let metrics = std::sync::Arc::new(tenant_files::metrics::Metrics::new());
    let app = Application::build(config.clone(), metrics.clone()).await.expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestApp { address, config, args, db_name, store, metrics, _upload_root: upload_root }
}

/// A fresh database migrated as the owner, without a running app (for catalog-level tests).
pub async fn migrated_database() -> String {
    let name = format!("tf_test_{}", Uuid::new_v4().simple());
    create_database(&name).await;
    let owner: tokio_postgres::Config = db_url("tenant_files_owner", &name).parse().unwrap();
    migrate::run(&owner).await.expect("migrations apply");
    name
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
                "insert into app.files (id, organization_id, filename, file_path, file_size_bytes, sha256, uploaded_by)
                 select gen_random_uuid(), '{org}', '{prefix}' || g || '.txt', 'x', 1, repeat('a', 64), '{user}'
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

pub const PASSWORD: &str = "correct horse battery";

pub fn random_email() -> String {
    format!("user-{}@example.com", Uuid::new_v4().simple())
}

/// A signed-in user with their own cookie jar and CSRF token.
pub struct TestUser {
    pub address: String,
    pub client: reqwest::Client,
    pub csrf: String,
    pub user_id: String,
    pub org_id: String,
    pub email: String,
}

impl TestUser {
    async fn from_signed_in(app: &TestApp, client: reqwest::Client, response: Response, email: String) -> Self {
        let body: Value = response.json().await.expect("signed-in body");
        Self {
            address: app.address.clone(),
            client,
            csrf: body["csrf_token"].as_str().expect("csrf_token").to_owned(),
            user_id: body["user_id"].as_str().expect("user_id").to_owned(),
            org_id: body["organization_id"].as_str().expect("organization_id").to_owned(),
            email,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    /// A state-changing request as the web app sends it: the session cookie and the session's
    /// CSRF token. Every POST, PATCH and DELETE helper below starts here.
    pub fn changing(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path)).header("X-CSRF-Token", &self.csrf)
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.changing(reqwest::Method::POST, path).json(&body).send().await.expect("POST")
    }

    pub async fn patch(&self, path: &str, body: Value) -> Response {
        self.changing(reqwest::Method::PATCH, path).json(&body).send().await.expect("PATCH")
    }

    pub async fn delete_path(&self, path: &str) -> Response {
        self.changing(reqwest::Method::DELETE, path).send().await.expect("DELETE")
    }

    /// `POST /api/org/invitations`, returning the token.
    pub async fn invite_ok(&self, email: &str, role: &str) -> String {
        let response = self.post("/api/org/invitations", json!({ "email": email, "role": role })).await;
        assert_eq!(response.status(), StatusCode::CREATED, "invitation should be created");
        let body: Value = response.json().await.expect("invitation body");
        body["invitation_token"].as_str().expect("invitation_token").to_owned()
    }

    pub async fn set_role(&self, user_id: &str, role: &str) -> Response {
        self.patch(&format!("/api/org/users/{user_id}"), json!({ "role": role })).await
    }

    pub async fn deactivate(&self, user_id: &str) -> Response {
        self.post(&format!("/api/org/users/{user_id}/deactivate"), json!({})).await
    }

    pub async fn reactivate(&self, user_id: &str) -> Response {
        self.post(&format!("/api/org/users/{user_id}/reactivate"), json!({})).await
    }

    /// `POST /api/tokens`, returning `(id, secret)`.
    pub async fn create_token(&self, name: &str) -> (String, String) {
        let response = self.post("/api/tokens", json!({ "name": name, "expires_in_days": 30 })).await;
        assert_eq!(response.status(), StatusCode::CREATED, "token should be created");
        let body: Value = response.json().await.expect("token body");
        (body["id"].as_str().unwrap().to_owned(), body["secret"].as_str().unwrap().to_owned())
    }

    /// Ids listed under `key` by a list endpoint.
    pub async fn ids_at(&self, path: &str, key: &str) -> Vec<String> {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        let body: Value = response.json().await.expect("list body");
        body[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key} in {body}"))
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect()
    }

    pub async fn me(&self) -> Response {
        self.client.get(self.url("/api/auth/me")).send().await.expect("me")
    }

    pub async fn upload(&self, filename: &str, bytes: impl Into<Vec<u8>>) -> Response {
        let part = multipart::Part::bytes(bytes.into()).file_name(filename.to_owned());
        self.upload_form(multipart::Form::new().part("file", part)).await
    }

    pub async fn upload_form(&self, form: multipart::Form) -> Response {
        self.changing(reqwest::Method::POST, "/api/files/upload").multipart(form).send().await.expect("upload")
    }

    /// Starts an upload of `length` bytes whose body the test feeds chunk by chunk through the
    /// returned sender (its Content-Length is known up front, as a browser's is); the response
    /// arrives once the sender has sent all of it.
    pub fn upload_slowly(
        &self,
        filename: &str,
        length: u64,
    ) -> (tokio::sync::mpsc::Sender<Vec<u8>>, tokio::task::JoinHandle<Response>) {
        let (sender, receiver) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
        let chunks = futures_util::stream::unfold(receiver, |mut receiver| async move {
            let chunk = receiver.recv().await?;
            Some((Ok::<_, std::io::Error>(chunk), receiver))
        });
        let part = multipart::Part::stream_with_length(reqwest::Body::wrap_stream(chunks), length)
            .file_name(filename.to_owned());
        let request = self
            .changing(reqwest::Method::POST, "/api/files/upload")
            .multipart(multipart::Form::new().part("file", part));
        (sender, tokio::spawn(async move { request.send().await.expect("upload") }))
    }

    /// Uploads and returns the new file's id.
    pub async fn upload_ok(&self, filename: &str, bytes: impl Into<Vec<u8>>) -> String {
        let response = self.upload(filename, bytes).await;
        assert_eq!(response.status(), StatusCode::CREATED, "upload should succeed");
        let body: Value = response.json().await.expect("upload body");
        body["file_id"].as_str().expect("file_id").to_owned()
    }

    pub async fn list(&self, query: &str) -> Response {
        self.client.get(self.url(&format!("/api/files{query}"))).send().await.expect("list")
    }

    /// The ids on one page of the list.
    pub async fn listed_ids(&self, query: &str) -> Vec<String> {
        let response = self.list(query).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.expect("list body");
        body["files"].as_array().expect("files").iter().map(|f| f["id"].as_str().unwrap().to_owned()).collect()
    }

    pub async fn get_file(&self, id: &str) -> Response {
        self.client.get(self.url(&format!("/api/files/{id}"))).send().await.expect("detail")
    }

    pub async fn download(&self, id: &str) -> Response {
        self.client.get(self.url(&format!("/api/files/{id}/download"))).send().await.expect("download")
    }

    pub async fn rename(&self, id: &str, body: Value) -> Response {
        self.patch(&format!("/api/files/{id}"), body).await
    }

    pub async fn delete(&self, id: &str) -> Response {
        self.delete_path(&format!("/api/files/{id}")).await
    }

    pub async fn bulk_delete(&self, ids: &[&str]) -> Response {
        self.post("/api/files/bulk-delete", json!({ "ids": ids })).await
    }
}

/// Asserts status and the contract's error body; returns the error code.
pub async fn assert_error(response: Response, status: StatusCode, code: &str) {
    assert_eq!(response.status(), status, "status");
    let body: Value = response.json().await.expect("error body is JSON");
    assert_eq!(body["error"]["code"], code, "error code in {body}");
    assert!(body["error"]["message"].is_string(), "error message in {body}");
}

/// A worker running in this test process (for tests about the running worker: retries with
/// their delays, sweeps, outages), told to stop when dropped. Tests about what a job does use
/// `drain_jobs` instead.
pub struct RunningWorker {
    stop: tokio_util::sync::CancellationToken,
}

impl Drop for RunningWorker {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl TestApp {
    pub fn start_worker(&self) -> RunningWorker {
        self.start_worker_with(self.config.clone())
    }

    pub fn start_worker_with(&self, config: Config) -> RunningWorker {
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(tenant_files::worker::run_worker_until_stopped(config, stop.clone(), self.metrics.clone()));
        RunningWorker { stop }
    }

    /// Publishes the outbox and processes every waiting job, as a worker would, then returns how
    /// many it processed: for tests about what a job does, not about the running worker.
    pub async fn drain_jobs(&self) -> usize {
        tenant_files::worker::drain(self.config.clone(), self.metrics.clone()).await.expect("drain")
    }

    /// Polls the file's detail until its status is `status` and returns it.
    pub async fn wait_for_status(&self, user: &TestUser, id: &str, status: &str) -> Value {
        let what = format!("file {id} becomes {status}");
        eventually(&what, || async {
            let detail: Value = user.get_file(id).await.json().await.expect("detail");
            (detail["status"] == status).then_some(detail)
        })
        .await
    }

    /// A channel on the test broker, for publishing forged messages and counting queues.
    pub async fn broker(&self) -> (lapin::Connection, lapin::Channel) {
        let connection = lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
            .await
            .expect("test broker is up");
        let channel = connection.create_channel().await.expect("channel");
        (connection, channel)
    }

    pub fn topology(&self) -> tenant_files::queue::Topology {
        tenant_files::queue::Topology::from_config(&self.config)
    }

    /// Messages waiting (not delivered) in a queue of this test.
    pub async fn queue_depth(&self, queue: &str) -> u32 {
        let (_connection, channel) = self.broker().await;
        let queue = channel
            .queue_declare(
                queue.into(),
                lapin::options::QueueDeclareOptions { passive: true, ..Default::default() },
                lapin::types::FieldTable::default(),
            )
            .await
            .expect("queue exists");
        queue.message_count()
    }

    /// Publishes a raw body onto the work queue, as anyone with broker access could.
    pub async fn publish_raw(&self, body: &[u8]) {
        let (_connection, channel) = self.broker().await;
        let topology = self.topology();
        topology.declare(&channel).await.expect("declare");
        let publisher =
            tenant_files::queue::Publisher::new(channel, std::time::Duration::from_secs(10)).await.expect("publisher");
        publisher
            .publish_confirmed(
                &topology.exchange,
                tenant_files::queue::VALIDATE_ROUTING_KEY,
                &[(Uuid::new_v4().to_string(), body.to_vec())],
            )
            .await
            .expect("publish");
    }

    /// Removes a file's outbox job, as if the message had been lost after upload.
    pub async fn lose_job(&self, file_id: &str) {
        self.superuser()
            .await
            .execute("delete from app.outbox where file_id = $1::text::uuid", &[&file_id])
            .await
            .expect("delete outbox row");
    }
}

/// A script using a personal API token: no cookies, no CSRF token.
#[derive(Clone)]
pub struct Bearer {
    pub address: String,
    pub secret: String,
    client: reqwest::Client,
}

impl Bearer {
    pub fn new(app: &TestApp, secret: &str) -> Self {
        Self { address: app.address.clone(), secret: secret.to_owned(), client: reqwest::Client::new() }
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.address)).bearer_auth(&self.secret)
    }

    /// The same token, sent to another api process.
    pub fn at(&self, address: &str) -> Self {
        Self { address: address.to_owned(), ..self.clone() }
    }
}

/// A TCP proxy in front of PostgreSQL or RabbitMQ that a test can take down (refusing and
/// cutting every connection), freeze (connections stay open but nothing gets through: a hung
/// peer) and bring back: outages and restarts, seen from the service.
pub struct TcpProxy {
    pub port: u16,
    state: std::sync::Arc<tokio::sync::watch::Sender<ProxyState>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProxyState {
    Up,
    Down,
    Frozen,
}

impl TcpProxy {
    /// Starts down; call `set_up(true)` to let traffic through.
    pub async fn start(target: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (state, watcher) = tokio::sync::watch::channel(ProxyState::Down);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut watcher = watcher.clone();
                let at_accept = *watcher.borrow();
                match at_accept {
                    ProxyState::Down => continue, // the connection is dropped at once
                    ProxyState::Frozen => {
                        // Held open, never answered, until the state changes; then cut.
                        tokio::spawn(async move {
                            let _held = inbound;
                            let _ = watcher.wait_for(|state| *state != ProxyState::Frozen).await;
                        });
                    }
                    ProxyState::Up => {
                        tokio::spawn(async move {
                            let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else { return };
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => return,
                                _ = watcher.wait_for(|state| *state != ProxyState::Up) => {}
                            }
                            // Frozen: keep both ends open without forwarding a byte, until the
                            // state changes again; down or back up, the connection is cut.
                            if *watcher.borrow() == ProxyState::Frozen {
                                let _ = watcher.wait_for(|state| *state != ProxyState::Frozen).await;
                            }
                        });
                    }
                }
            }
        });
        Self { port, state: std::sync::Arc::new(state) }
    }

    pub fn set_up(&self, up: bool) {
        self.state.send_replace(if up { ProxyState::Up } else { ProxyState::Down });
    }

    /// A hung peer: open connections stay open and new ones are accepted, but nothing is
    /// forwarded either way until `set_up`.
    pub fn freeze(&self) {
        self.state.send_replace(ProxyState::Frozen);
    }
}

/// The test broker's URL split around its address: `(scheme and user, address, vhost path)`.
fn broker_url_parts() -> (String, std::net::SocketAddr, String) {
    let url = amqp_url();
    let (prefix, rest) = url.rsplit_once('@').expect("TEST_AMQP_URL has user@host");
    let (host_port, path) = rest.split_once('/').unwrap_or((rest, ""));
    let addr = host_port.replace("localhost", "127.0.0.1").parse().expect("TEST_AMQP_URL host:port");
    (prefix.to_owned(), addr, path.to_owned())
}

/// The RabbitMQ address of the test broker.
pub fn broker_addr() -> std::net::SocketAddr {
    broker_url_parts().1
}

/// The test broker's URL, reached through a proxy on `port` instead.
pub fn amqp_url_via(port: u16) -> String {
    let (prefix, _, path) = broker_url_parts();
    format!("{prefix}@127.0.0.1:{port}/{path}")
}

/// A local port nobody listens on (bound, then released).
pub fn unused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `check` every 50 ms until it returns `Some` (15 s at most) and returns that value: the
/// one way tests wait for something that happens in the background.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The PgBouncer `make test` starts in front of the test cluster (transaction mode, two server
/// connections per database and user).
pub fn pgbouncer_port() -> u16 {
    std::env::var("TEST_PGBOUNCER_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(64329)
}

/// The PostgreSQL address of the test cluster.
pub fn postgres_addr() -> std::net::SocketAddr {
    let admin: tokio_postgres::Config = admin_url().parse().unwrap();
    let port = admin.get_ports().first().copied().unwrap_or(5432);
    format!("127.0.0.1:{port}").parse().unwrap()
}

/// Opens a transaction on a raw app-role connection and sets the tenant as the helper does:
/// whatever it reads then is what the policies let `user` see, with no handler in between.
pub async fn begin_as(client: &tokio_postgres::Client, user: &TestUser) {
    client.batch_execute("begin").await.unwrap();
    client
        .query(
            "select set_config('app.org_id', $1, true), set_config('app.user_id', $2, true)",
            &[&user.org_id, &user.user_id],
        )
        .await
        .unwrap();
}
