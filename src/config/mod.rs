//! Configuration: one typed struct, parsed once from flags with environment fallbacks, and
//! validated before anything connects. A bad value fails start with one line naming the
//! variable (see [`Config::load`]); nothing here panics on user input.

use std::{net::SocketAddr, path::PathBuf};

mod network;

use anyhow::bail;
use clap::{error::ContextKind, CommandFactory, Parser, ValueEnum};
use ipnet::IpNet;
use network::parse_network;
pub use network::PublicUrl;
use secrecy::{ExposeSecret, SecretString};

/// The local development cluster started by `scripts/dev-services.sh` (`make run`).
pub const DEV_DATABASE_URL: &str = "postgres://tenant_files_app@127.0.0.1:54329/tenant_files";
pub const DEV_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:56729/%2f";
pub const DEV_MIGRATION_DATABASE_URL: &str = "postgres://tenant_files_owner@127.0.0.1:54329/tenant_files";

/// bcrypt's own bounds; below 10 is only sensible in tests.
const BCRYPT_COSTS: std::ops::RangeInclusive<u32> = 4..=31;
/// actix's cookie key derivation needs at least 64 bytes.
const MIN_SESSION_KEY_BYTES: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Serve the HTTP API.
    Api,
    /// Run the background worker: outbox relay, validation consumer, purge and sweep.
    Worker,
    /// API and worker in one process (local use).
    All,
    /// Apply the database migrations as the owner role, then exit.
    Migrate,
    /// Check the live catalog for isolation weaknesses (sql/audit); exit 1 on any finding.
    RlsAudit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Environment {
    /// Local development: generated session key, cookies without `Secure`.
    Dev,
    /// Anything else: `SESSION_KEY` required, cookies `Secure` and `__Host-` prefixed.
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueueType {
    /// Classic queues: one broker node.
    Classic,
    /// Quorum queues: replicated across the nodes of a RabbitMQ cluster (the durable,
    /// highly available kind for work queues).
    Quorum,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Pooler {
    /// A direct connection to PostgreSQL (or a session-mode pooler).
    None,
    /// A transaction-mode pooler: consecutive transactions may use different server connections.
    Transaction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Storage {
    /// A directory on this host (UPLOAD_DIR): one host only, unless the directory is shared.
    Local,
    /// An S3-compatible bucket (S3_BUCKET, S3_ENDPOINT, S3_REGION): any number of hosts.
    S3,
}

/// Where the bucket is (`STORAGE=s3`), checked.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// `https://…` or, for a store on a private network, `http://…`; `None` for AWS itself.
    pub endpoint: Option<String>,
    pub bucket: String,
    pub region: String,
    /// Before every key, without slashes at either end; empty for none.
    pub prefix: String,
    /// Access key id and secret; `None` leaves them to the AWS environment (role, token).
    pub credentials: Option<(SecretString, SecretString)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// tenant-files: a multi-tenant file API where PostgreSQL row-level security enforces isolation.
#[derive(Debug, Clone, Parser)]
#[command(name = "tenant-files", version, about)]
pub struct Config {
    /// What this process does.
    #[arg(long, value_enum, default_value_t = Mode::Api)]
    pub mode: Mode,

    /// `dev` relaxes cookie and secret requirements for local use; use `production` elsewhere.
    #[arg(long, env = "APP_ENV", value_enum, default_value_t = Environment::Dev)]
    pub app_env: Environment,

    /// App role connection (subject to RLS), used by the api.
    #[arg(long, env = "DATABASE_URL", default_value = DEV_DATABASE_URL, hide_default_value = true, hide_env_values = true)]
    pub database_url: tokio_postgres::Config,

    /// Owner role connection, used only by `--mode migrate`.
    #[arg(long, env = "MIGRATION_DATABASE_URL", default_value = DEV_MIGRATION_DATABASE_URL, hide_default_value = true, hide_env_values = true)]
    pub migration_database_url: tokio_postgres::Config,

    /// RabbitMQ, used by the worker (relay and consumer).
    #[arg(long, env = "AMQP_URL", default_value = DEV_AMQP_URL, hide_default_value = true, hide_env_values = true)]
    pub amqp_url: String,

    /// Prefix of every exchange and queue name (lets several deployments or tests share a broker).
    #[arg(long, env = "QUEUE_PREFIX", default_value = "tenant_files")]
    pub queue_prefix: String,

    /// Kind of every queue the service declares (`quorum` for a RabbitMQ cluster). A queue's
    /// type cannot change once declared: switching needs new queues (a new QUEUE_PREFIX, or
    /// the old ones deleted once drained).
    #[arg(long, env = "QUEUE_TYPE", value_enum, default_value_t = QueueType::Classic)]
    pub queue_type: QueueType,

    /// Unacknowledged deliveries per worker process; also the number of jobs processed at once.
    #[arg(long, env = "WORKER_PREFETCH", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub worker_prefetch: u16,

    /// Attempts per job before the file is marked failed and the message dead-lettered.
    #[arg(long, env = "JOB_MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub job_max_attempts: u32,

    /// Delays before retrying a job after a transient error, one per attempt (the last repeats).
    #[arg(long, env = "JOB_RETRY_DELAYS_MS", value_delimiter = ',', default_value = "1000,10000,60000")]
    pub job_retry_delays_ms: Vec<u32>,

    /// How long any single wait on the broker may take (connecting, a publisher confirm, an ack)
    /// before it counts as failed: a blocked or hung broker must not hold the relay's claimed
    /// outbox rows, or a job's prefetch slot, for ever.
    #[arg(long, env = "BROKER_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub broker_timeout_ms: u64,

    /// How often the outbox relay looks for unpublished jobs when idle.
    #[arg(long, env = "RELAY_INTERVAL_MS", default_value_t = 250)]
    pub relay_interval_ms: u64,

    /// A file still pending this long after its last job gets a new one.
    #[arg(long, env = "PENDING_SWEEP_AFTER_SECONDS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub pending_sweep_after_seconds: u64,

    /// How often the purge of deleted files' bytes and the pending sweep run.
    #[arg(long, env = "MAINTENANCE_INTERVAL_MS", default_value_t = 5000)]
    pub maintenance_interval_ms: u64,

    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish before they are cut.
    #[arg(long, env = "SHUTDOWN_TIMEOUT_SECONDS", default_value_t = 30)]
    pub shutdown_timeout_seconds: u64,

    /// `--mode worker` only: serve `/metrics` and `/healthz` on this address (off by default; in
    /// `--mode all` and `api` the API serves them).
    #[arg(long, env = "METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,

    /// Test isolation only: queues vanish after this long unused (x-expires).
    #[arg(long, env = "QUEUE_EXPIRES_MS", hide = true)]
    pub queue_expires_ms: Option<u32>,

    /// Connection for `--mode rls-audit` (the owner or a read-only auditor); defaults to
    /// MIGRATION_DATABASE_URL.
    #[arg(long, env = "AUDIT_DATABASE_URL", hide_env_values = true)]
    pub audit_database_url: Option<tokio_postgres::Config>,

    /// The role the service connects as, checked by `--mode rls-audit`.
    #[arg(long, env = "AUDIT_APP_ROLE", default_value = "tenant_files_app")]
    pub audit_app_role: String,

    /// The role that owns the SECURITY DEFINER registry, checked by `--mode rls-audit`.
    #[arg(long, env = "AUDIT_DEFINER_ROLE", default_value = "tenant_files_definer")]
    pub audit_definer_role: String,

    /// Output of `--mode rls-audit`.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,

    /// `transaction` when DATABASE_URL points at a transaction-mode pooler (PgBouncer before
    /// 1.21, say): every statement then goes out unnamed, never as a prepared statement that
    /// the next transaction's server connection would not know. `none` (direct connection)
    /// keeps prepared statements, parsed once per connection.
    #[arg(long, env = "DB_POOLER", value_enum, default_value_t = Pooler::None)]
    pub db_pooler: Pooler,

    /// Maximum connections in the app role's pool.
    #[arg(long, env = "DB_POOL_SIZE", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub db_pool_size: u16,

    /// How long a request waits for a pooled connection before answering 503.
    #[arg(long, env = "DB_POOL_TIMEOUT_MS", default_value_t = 5000)]
    pub db_pool_timeout_ms: u64,

    /// Listen address.
    #[arg(long, env = "BIND", default_value = "127.0.0.1:5000")]
    pub bind: SocketAddr,

    /// Where file bytes live; every api and worker process of a deployment must use the same.
    #[arg(long, env = "STORAGE", value_enum, default_value_t = Storage::Local)]
    pub storage: Storage,

    /// `STORAGE=local`: the root directory; files live at `UPLOAD_DIR/{organization_id}/{file_id}`.
    #[arg(long, env = "UPLOAD_DIR", default_value = "./data/uploads")]
    pub upload_dir: PathBuf,

    /// `STORAGE=s3`: the bucket (it must exist); objects are keyed `{organization_id}/{file_id}`.
    /// Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or the host's role).
    #[arg(long, env = "S3_BUCKET")]
    pub s3_bucket: Option<String>,

    /// `STORAGE=s3`: the S3 API's URL, for a store other than AWS (SeaweedFS, MinIO, …);
    /// requests use path-style addressing (`{endpoint}/{bucket}/{key}`).
    #[arg(long, env = "S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,

    /// `STORAGE=s3`: the bucket's region.
    #[arg(long, env = "S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,

    /// `STORAGE=s3`: a prefix before every key (`{prefix}/{organization_id}/{file_id}`), so
    /// several deployments (or test runs) can share a bucket.
    #[arg(long, env = "S3_PREFIX", default_value = "")]
    pub s3_prefix: String,

    /// `STORAGE=s3`: the access key, under the AWS tools' usual name. Without it (and its
    /// secret), credentials come from AWS_SESSION_TOKEN, AWS_WEB_IDENTITY_TOKEN_FILE or the
    /// host's instance role.
    #[arg(long, env = "AWS_ACCESS_KEY_ID", value_parser = parse_secret, hide_env_values = true)]
    pub aws_access_key_id: Option<SecretString>,

    /// `STORAGE=s3`: the secret key that goes with AWS_ACCESS_KEY_ID.
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", value_parser = parse_secret, hide_env_values = true)]
    pub aws_secret_access_key: Option<SecretString>,

    /// Per-file size limit in MB (1 MB = 1,048,576 bytes).
    #[arg(long, env = "MAX_FILE_SIZE_MB", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub max_file_size_mb: u64,

    /// The longest one upload may take; its reserved quota is held until then at most.
    #[arg(long, env = "UPLOAD_TIMEOUT_SECONDS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub upload_timeout_seconds: u64,

    /// How long a resumable (tus) upload lives after its last byte (or its creation): its
    /// declared length stays reserved against the quota until then, and an upload that gets
    /// no byte for this long expires. A completed upload answers HEAD this long.
    #[arg(long, env = "TUS_EXPIRY_SECONDS", default_value_t = 3_600, value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub tus_expiry_seconds: u64,

    /// A stored chunk of a resumable upload that no upload refers to (left by a killed
    /// process, or by an upload ended in the database alone) is removed by the worker once it
    /// is this old; the worker's sweep of the store runs this often.
    #[arg(long, env = "CHUNK_SWEEP_GRACE_SECONDS", default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub chunk_sweep_grace_seconds: u64,

    /// How long an upload's body may send nothing before it is ended (a resumable upload keeps
    /// what arrived and its lease lapses after twice this): a stalled body must not hold its
    /// connection, memory and upload for long.
    #[arg(long, env = "UPLOAD_IDLE_TIMEOUT_SECONDS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub upload_idle_timeout_seconds: u64,

    /// Request-body bytes of uploads this process holds in memory at once, in MB; a body that
    /// finds them spent stores what it holds and waits (back-pressure).
    #[arg(long, env = "UPLOAD_MEMORY_MB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub upload_memory_mb: u64,

    /// Secret for signing and encrypting session cookies, 64 bytes or more. Required outside dev.
    #[arg(long, env = "SESSION_KEY", value_parser = parse_secret, hide_env_values = true)]
    pub session_key: Option<SecretString>,

    /// `Secure` flag on cookies (and the `__Host-` name prefix). Default: on, except in dev.
    #[arg(long, env = "COOKIE_SECURE")]
    pub cookie_secure: Option<bool>,

    /// bcrypt work factor for new password hashes.
    #[arg(long, env = "BCRYPT_COST", default_value_t = 12)]
    pub bcrypt_cost: u32,

    /// Failed logins per email allowed within the window before answering 429.
    #[arg(long, env = "LOGIN_MAX_FAILURES", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub login_max_failures: u32,

    /// Length of the failed-login window, in seconds.
    #[arg(long, env = "LOGIN_WINDOW_SECONDS", default_value_t = 900, value_parser = clap::value_parser!(u32).range(1..))]
    pub login_window_seconds: u32,

    /// Sign-in requests (login and register together) one client address may make per minute,
    /// on average; protects this process's bcrypt slots from anonymous floods.
    #[arg(long, env = "AUTH_RATE_PER_MINUTE", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
    pub auth_rate_per_minute: u32,

    /// How many sign-in requests one client address may make in a burst before the per-minute
    /// rate applies.
    #[arg(long, env = "AUTH_RATE_BURST", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub auth_rate_burst: u32,

    /// Share-link openings (`/api/shared/…`) one client address may make per minute, on
    /// average.
    #[arg(long, env = "SHARE_RATE_PER_MINUTE", default_value_t = 120, value_parser = clap::value_parser!(u32).range(1..))]
    pub share_rate_per_minute: u32,

    /// How many share-link openings one client address may make in a burst.
    #[arg(long, env = "SHARE_RATE_BURST", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
    pub share_rate_burst: u32,

    /// Per-address limits count an IPv6 client by its network of this prefix length (a host
    /// usually holds a whole /64); IPv4 clients by their address.
    #[arg(long, env = "RATE_LIMIT_IPV6_PREFIX", default_value_t = 64, value_parser = clap::value_parser!(u8).range(1..=128))]
    pub rate_limit_ipv6_prefix: u8,

    /// Where clients reach this service: scheme, host and an optional path prefix
    /// (`https://files.example.com`, `https://example.com/files`). Every absolute URL the
    /// service hands out (a tus upload's `Location`, a share link) starts with it, never with
    /// what a client sent in `Host` or forwarding headers. Required when APP_ENV=production;
    /// in dev, `http://` and the address the api listens on.
    #[arg(long, env = "PUBLIC_URL", value_parser = PublicUrl::parse)]
    pub public_url: Option<PublicUrl>,

    /// Reverse proxies whose `X-Forwarded-For` is believed, comma-separated addresses or
    /// networks (`10.0.0.5,2001:db8::/48`): a request from one of them counts as coming from the
    /// address it forwards (for per-address limits). Empty: the TCP peer is the client.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_network)]
    pub trusted_proxies: Vec<IpNet>,

    /// Log output format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

fn parse_secret(value: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(value.to_owned()))
}

impl Config {
    /// Parses flags and environment, then validates. `--help`/`--version` print and exit;
    /// every other problem comes back as one line naming the variable.
    pub fn load() -> anyhow::Result<Self> {
        let config = match Self::try_parse() {
            Ok(config) => config,
            Err(err) if !err.use_stderr() => err.exit(),
            Err(err) => bail!(describe_clap_error(&err)),
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks that span several values or that clap cannot express.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !BCRYPT_COSTS.contains(&self.bcrypt_cost) {
            bail!("invalid BCRYPT_COST: {} is outside {BCRYPT_COSTS:?}", self.bcrypt_cost);
        }
        match (&self.session_key, self.app_env) {
            (Some(key), _) if key.expose_secret().len() < MIN_SESSION_KEY_BYTES => {
                bail!("invalid SESSION_KEY: must be at least {MIN_SESSION_KEY_BYTES} bytes")
            }
            (None, Environment::Production) => {
                bail!("missing SESSION_KEY: required when APP_ENV=production ({MIN_SESSION_KEY_BYTES}+ bytes)")
            }
            _ => {}
        }
        let serves_http = matches!(self.mode, Mode::Api | Mode::All);
        if serves_http && self.public_url.is_none() && self.app_env == Environment::Production {
            bail!("missing PUBLIC_URL: required when APP_ENV=production (e.g. https://files.example.com)");
        }
        if self.job_retry_delays_ms.is_empty() || self.job_retry_delays_ms.contains(&0) {
            bail!("invalid JOB_RETRY_DELAYS_MS: give one or more delays in milliseconds, each above 0");
        }
        if self.queue_prefix.is_empty()
            || !self.queue_prefix.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        {
            bail!("invalid QUEUE_PREFIX: use letters, digits, '_', '-' or '.'");
        }
        if !self.amqp_url.starts_with("amqp://") {
            bail!("invalid AMQP_URL: must start with amqp:// (this build has no TLS)");
        }
        if self.storage == Storage::S3 {
            self.s3_settings()?;
        }
        for (name, url) in
            [("DATABASE_URL", &self.database_url), ("MIGRATION_DATABASE_URL", &self.migration_database_url)]
        {
            if url.get_hosts().is_empty() {
                bail!("invalid {name}: no host given");
            }
        }
        Ok(())
    }

    pub fn is_dev(&self) -> bool {
        self.app_env == Environment::Dev
    }

    pub fn cookie_secure(&self) -> bool {
        self.cookie_secure.unwrap_or(!self.is_dev())
    }

    pub fn broker_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.broker_timeout_ms)
    }

    /// The bucket's settings, checked; an error names the setting at fault.
    pub fn s3_settings(&self) -> anyhow::Result<S3Settings> {
        let Some(bucket) = self.s3_bucket.clone() else {
            bail!("missing S3_BUCKET: required when STORAGE=s3");
        };
        let valid_name = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
        if !(3..=63).contains(&bucket.len()) || !bucket.chars().all(valid_name) {
            bail!("invalid S3_BUCKET {bucket:?}: 3 to 63 lowercase letters, digits, '-' or '.'");
        }
        if let Some(endpoint) = &self.s3_endpoint {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                bail!("invalid S3_ENDPOINT {endpoint:?}: must start with http:// or https://");
            }
        }
        let credentials = match (&self.aws_access_key_id, &self.aws_secret_access_key) {
            (Some(id), Some(secret)) => Some((id.clone(), secret.clone())),
            (None, None) => None,
            (Some(_), None) => bail!("missing AWS_SECRET_ACCESS_KEY: required with AWS_ACCESS_KEY_ID"),
            (None, Some(_)) => bail!("missing AWS_ACCESS_KEY_ID: required with AWS_SECRET_ACCESS_KEY"),
        };
        let prefix = self.s3_prefix.trim_matches('/').to_owned();
        if prefix.split('/').any(|part| part == "." || part == "..") {
            bail!("invalid S3_PREFIX {prefix:?}: no '.' or '..' segments");
        }
        Ok(S3Settings {
            endpoint: self.s3_endpoint.clone(),
            bucket,
            region: self.s3_region.clone(),
            prefix,
            credentials,
        })
    }

    pub fn max_file_size_bytes(&self) -> u64 {
        self.max_file_size_mb * 1_048_576
    }

    /// A config for the given arguments, ignoring nothing from the environment that clap
    /// would not read anyway. Used by tests and tools that build configs programmatically.
    pub fn from_args<I, T>(args: I) -> anyhow::Result<Self>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let config = Self::try_parse_from(args).map_err(|e| anyhow::anyhow!(describe_clap_error(&e)))?;
        config.validate()?;
        Ok(config)
    }
}

/// Turns clap's multi-line error into one line that names the environment variable (what an
/// operator actually set) next to the flag. Values of secret-bearing settings (database URLs
/// may hold passwords) are never echoed.
fn describe_clap_error(err: &clap::Error) -> String {
    let rendered = err.get(ContextKind::InvalidArg).map(|a| a.to_string());
    let value = err.get(ContextKind::InvalidValue).map(|v| v.to_string());
    let reason = std::error::Error::source(err)
        .map(ToString::to_string)
        .unwrap_or_else(|| err.kind().as_str().unwrap_or("invalid configuration").to_owned());
    let command = Config::command();
    let arg = rendered.as_deref().and_then(|rendered| {
        command.get_arguments().find(|a| {
            a.get_long().is_some_and(|long| {
                let flag = format!("--{long}");
                rendered == flag || rendered.starts_with(&format!("{flag} "))
            })
        })
    });
    match (arg, value) {
        (Some(arg), Some(value)) => {
            let flag = format!("--{}", arg.get_long().unwrap_or_default());
            let name = match arg.get_env() {
                Some(env) => format!("{} ({flag})", env.to_string_lossy()),
                None => flag,
            };
            if arg.is_hide_env_values_set() {
                format!("invalid {name}: {reason}")
            } else {
                format!("invalid {name} value {value:?}: {reason}")
            }
        }
        _ => err.to_string().lines().next().unwrap_or_default().trim_start_matches("error: ").to_owned(),
    }
}
