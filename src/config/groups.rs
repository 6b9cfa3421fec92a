//! The configuration's groups, each with its flags, environment variables and own checks.

use std::net::SocketAddr;

use anyhow::bail;
use clap::Args;
use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};

use super::{
    network::{parse_network, PublicUrl},
    parse_secret, Environment, OutputFormat, Pooler, QueueType, BCRYPT_COSTS, DEV_AMQP_URL, DEV_DATABASE_URL,
    DEV_MIGRATION_DATABASE_URL, MIN_SESSION_KEY_BYTES,
};

/// The database: the app role's pool, and the owner's connection for migrations.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Database")]
pub struct DatabaseConfig {
    /// App role connection (subject to RLS), used by the api.
    #[arg(long, env = "DATABASE_URL", default_value = DEV_DATABASE_URL, hide_default_value = true, hide_env_values = true)]
    pub database_url: tokio_postgres::Config,

    /// Owner role connection, used only by `--mode migrate`.
    #[arg(long, env = "MIGRATION_DATABASE_URL", default_value = DEV_MIGRATION_DATABASE_URL, hide_default_value = true, hide_env_values = true)]
    pub migration_database_url: tokio_postgres::Config,

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

    /// Percentage of an api process's pool one organization may hold at once (at least one
    /// connection); past it, its requests wait DB_ORG_WAIT_MS for one of its own and then get
    /// 429 `organization_busy`, while other organizations' requests go through. 100: no bound.
    #[arg(long, env = "DB_POOL_ORG_SHARE", default_value_t = 50, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub db_pool_org_share: u8,

    /// How long a request of an organization at its share waits for one of its connections.
    #[arg(long, env = "DB_ORG_WAIT_MS", default_value_t = 1000)]
    pub db_org_wait_ms: u64,
}

/// RabbitMQ: where jobs go, and how long any wait on it may take.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Broker")]
pub struct BrokerConfig {
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

    /// How long any single wait on the broker may take (connecting, a publisher confirm, an ack)
    /// before it counts as failed: a blocked or hung broker must not hold the relay's claimed
    /// outbox rows, or a job's prefetch slot, for ever.
    #[arg(long, env = "BROKER_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub broker_timeout_ms: u64,

    /// Test isolation only: queues vanish after this long unused (x-expires).
    #[arg(long, env = "QUEUE_EXPIRES_MS", hide = true)]
    pub queue_expires_ms: Option<u32>,
}

/// The worker: how many jobs at once, retries, and its periodic housekeeping.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Worker")]
pub struct WorkerConfig {
    /// Unacknowledged deliveries per worker process; also the number of jobs processed at once.
    #[arg(long, env = "WORKER_PREFETCH", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub worker_prefetch: u16,

    /// Attempts per job before the file is marked failed and the message dead-lettered.
    #[arg(long, env = "JOB_MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub job_max_attempts: u32,

    /// Delays before retrying a job after a transient error, one per attempt (the last repeats).
    #[arg(long, env = "JOB_RETRY_DELAYS_MS", value_delimiter = ',', default_value = "1000,10000,60000")]
    pub job_retry_delays_ms: Vec<u32>,

    /// How often the outbox relay looks for unpublished jobs when idle.
    #[arg(long, env = "RELAY_INTERVAL_MS", default_value_t = 250)]
    pub relay_interval_ms: u64,

    /// Jobs the relay lets wait in the work queue at most; the rest wait in the outbox, from
    /// which each organization's jobs go out in turns, so one organization's backlog delays
    /// another's upload by one queue's depth at most. 0: no bound (every job goes out at once,
    /// oldest first). Keep it above the workers' jobs per second times RELAY_INTERVAL_MS.
    #[arg(long, env = "RELAY_QUEUE_DEPTH", default_value_t = 1000)]
    pub relay_queue_depth: u32,

    /// How long events stay readable in `GET /api/events` (the maintenance loop prunes older ones).
    #[arg(long, env = "EVENT_RETENTION_DAYS", default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..))]
    pub event_retention_days: u32,

    /// A file still pending this long after its last job gets a new one.
    #[arg(long, env = "PENDING_SWEEP_AFTER_SECONDS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub pending_sweep_after_seconds: u64,

    /// How often the purge of deleted files' bytes and the pending sweep run.
    #[arg(long, env = "MAINTENANCE_INTERVAL_MS", default_value_t = 5000)]
    pub maintenance_interval_ms: u64,

    /// A stored chunk of a resumable upload that no upload refers to (left by a killed
    /// process, or by an upload ended in the database alone) is removed by the worker once it
    /// is this old; the worker's sweep of the store runs this often.
    #[arg(long, env = "CHUNK_SWEEP_GRACE_SECONDS", default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub chunk_sweep_grace_seconds: u64,

    /// `--mode worker` only: serve `/metrics` and `/healthz` on this address (off by default; in
    /// `--mode all` and `api` the API serves them).
    #[arg(long, env = "METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,
}

/// What one upload may take: size, time, idle time, memory.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Limits")]
pub struct LimitsConfig {
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

    /// Unfinished resumable uploads one user may have open at once (429
    /// `too_many_open_uploads` beyond): an idle upload holds no upload slot, so without this
    /// one account could open them without bound.
    #[arg(long, env = "TUS_MAX_OPEN_UPLOADS", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub tus_max_open_uploads: u32,

    /// How long an upload's body may send nothing before it is ended (a resumable upload keeps
    /// what arrived and its lease lapses after twice this): a stalled body must not hold its
    /// connection, memory and upload for long.
    #[arg(long, env = "UPLOAD_IDLE_TIMEOUT_SECONDS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub upload_idle_timeout_seconds: u64,

    /// Request-body bytes of uploads this process holds in memory at once, in MB (a resumable
    /// upload's chunk on its way, a plain upload's parts: up to 15 MiB each); a body that finds
    /// them spent stores what it holds and waits (back-pressure).
    #[arg(long, env = "UPLOAD_MEMORY_MB", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub upload_memory_mb: u64,

    /// Percentage of UPLOAD_MEMORY_MB one organization's bodies may hold at once; past it, its
    /// bodies wait for its own to be stored while other organizations' proceed. 100: no share.
    #[arg(long, env = "UPLOAD_MEMORY_ORG_SHARE", default_value_t = 50, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub upload_memory_org_share: u8,
}

/// The HTTP server: where it listens and is reached, and its per-address limits.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "HTTP")]
pub struct HttpConfig {
    /// The HTTP server's worker threads, each a single-threaded runtime with its own share of
    /// the connections (actix's default: one per CPU core). For experiments on how requests
    /// and the database connections' tasks share the runtimes (docs/performance.md, "Tails").
    #[arg(long, env = "HTTP_WORKERS", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub http_workers: Option<u16>,

    /// Listen address.
    #[arg(long, env = "BIND", default_value = "127.0.0.1:5000")]
    pub bind: SocketAddr,

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

    /// Per-address limits count an IPv6 client by its network of this prefix length (a host
    /// usually holds a whole /64); IPv4 clients by their address.
    #[arg(long, env = "RATE_LIMIT_IPV6_PREFIX", default_value_t = 64, value_parser = clap::value_parser!(u8).range(1..=128))]
    pub rate_limit_ipv6_prefix: u8,

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

    /// Authenticated requests one organization may make per minute across all api processes,
    /// unless its plan says otherwise (`organizations.requests_per_minute`); past it, 429
    /// `request_budget_exceeded`. A whole minute's may come at once. 0: no budget.
    #[arg(long, env = "ORG_REQUESTS_PER_MINUTE", default_value_t = 12_000)]
    pub org_requests_per_minute: u32,

    /// The api processes the deployment runs behind one balancer: each enforces this part of
    /// every organization's request budget (docs/scaling.md, "Request budgets").
    #[arg(long, env = "API_PROCESSES", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub api_processes: u32,

    /// How often the limits' bookkeeping runs: plans' request rates reloaded, refusals added to
    /// the organizations' usage (GET /api/org/usage lags by up to this).
    #[arg(long, env = "BUDGET_BOOKKEEPING_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub budget_bookkeeping_ms: u64,
}

/// Sessions and passwords.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Sign-in")]
pub struct AuthConfig {
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
}

/// `--mode rls-audit` and `--mode rls-explain` only.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "RLS audit")]
pub struct AuditConfig {
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

    /// `--mode rls-explain`: the user whose access is explained (AUDIT_DATABASE_URL must then
    /// be a role that bypasses RLS, the superuser a DBA uses: it reads the user's row).
    #[arg(long = "user")]
    pub explain_user: Option<uuid::Uuid>,

    /// `--mode rls-explain`: the table of schema app.
    #[arg(long = "table", default_value = "files")]
    pub explain_table: String,

    /// `--mode rls-explain`: a row of that table (its `id`), to say whether each command may
    /// touch it and which policy decides.
    #[arg(long = "row")]
    pub explain_row: Option<uuid::Uuid>,
}

impl DatabaseConfig {
    /// Connections of an api process's pool one organization may hold at once; `None` when
    /// the share is the whole pool.
    pub fn per_org_connections(&self) -> Option<usize> {
        let pool = usize::from(self.db_pool_size);
        let share = (pool * usize::from(self.db_pool_org_share) / 100).max(1);
        (share < pool).then_some(share)
    }

    pub(super) fn validate(&self) -> anyhow::Result<()> {
        for (name, url) in
            [("DATABASE_URL", &self.database_url), ("MIGRATION_DATABASE_URL", &self.migration_database_url)]
        {
            if url.get_hosts().is_empty() {
                bail!("invalid {name}: no host given");
            }
        }
        Ok(())
    }
}

impl BrokerConfig {
    pub(super) fn validate(&self) -> anyhow::Result<()> {
        if self.queue_prefix.is_empty()
            || !self.queue_prefix.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        {
            bail!("invalid QUEUE_PREFIX: use letters, digits, '_', '-' or '.'");
        }
        if !self.amqp_url.starts_with("amqp://") {
            bail!("invalid AMQP_URL: must start with amqp:// (this build has no TLS)");
        }
        Ok(())
    }

    /// The longest any single wait on the broker may take.
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.broker_timeout_ms)
    }
}

impl WorkerConfig {
    pub(super) fn validate(&self) -> anyhow::Result<()> {
        if self.job_retry_delays_ms.is_empty() || self.job_retry_delays_ms.contains(&0) {
            bail!("invalid JOB_RETRY_DELAYS_MS: give one or more delays in milliseconds, each above 0");
        }
        Ok(())
    }
}

impl LimitsConfig {
    pub fn max_file_size_bytes(&self) -> u64 {
        self.max_file_size_mb * 1_048_576
    }
}

impl AuthConfig {
    pub(super) fn validate(&self, env: Environment) -> anyhow::Result<()> {
        if !BCRYPT_COSTS.contains(&self.bcrypt_cost) {
            bail!("invalid BCRYPT_COST: {} is outside {BCRYPT_COSTS:?}", self.bcrypt_cost);
        }
        match (&self.session_key, env) {
            (Some(key), _) if key.expose_secret().len() < MIN_SESSION_KEY_BYTES => {
                bail!("invalid SESSION_KEY: must be at least {MIN_SESSION_KEY_BYTES} bytes")
            }
            (None, Environment::Production) => {
                bail!("missing SESSION_KEY: required when APP_ENV=production ({MIN_SESSION_KEY_BYTES}+ bytes)")
            }
            _ => Ok(()),
        }
    }
}
