//! Configuration: one typed struct of groups (database, broker, worker, webhooks, storage, limits, http,
//! sign-in, audit), parsed once from flags with environment fallbacks, each group validating
//! itself before anything connects. A bad value fails start with one line naming the
//! variable (see [`Config::load`]); nothing here panics on user input.

mod groups;
mod network;
mod storage;
mod webhooks;

pub use groups::{AuditConfig, AuthConfig, BrokerConfig, DatabaseConfig, HttpConfig, LimitsConfig, WorkerConfig};
pub use storage::StorageConfig;
pub use webhooks::WebhookConfig;

use anyhow::bail;
use clap::{error::ContextKind, CommandFactory, Parser, ValueEnum};
pub use network::PublicUrl;
use secrecy::SecretString;

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
    /// Check the live catalog for isolation weaknesses and for what distributing the tenant
    /// tables by organization would break (sql/audit); exit 1 on any finding.
    RlsAudit,
    /// Explain one user's access to a table (and a row): which policies apply to each command,
    /// their predicate, and whether the row is allowed and why (`--user`, `--table`, `--row`).
    RlsExplain,
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

    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish before they are cut.
    #[arg(long, env = "SHUTDOWN_TIMEOUT_SECONDS", default_value_t = 30)]
    pub shutdown_timeout_seconds: u64,

    /// Log output format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(flatten)]
    pub database: DatabaseConfig,

    #[command(flatten)]
    pub broker: BrokerConfig,

    #[command(flatten)]
    pub worker: WorkerConfig,

    #[command(flatten)]
    pub webhooks: WebhookConfig,

    #[command(flatten)]
    pub storage: StorageConfig,

    #[command(flatten)]
    pub limits: LimitsConfig,

    #[command(flatten)]
    pub http: HttpConfig,

    #[command(flatten)]
    pub auth: AuthConfig,

    #[command(flatten)]
    pub audit: AuditConfig,
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

    /// Checks that span several values or that clap cannot express: each group's own, then
    /// those that depend on the environment or the mode.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.database.validate()?;
        self.broker.validate()?;
        self.worker.validate()?;
        self.webhooks.validate()?;
        self.storage.validate()?;
        self.auth.validate(self.app_env)?;
        let serves_http = matches!(self.mode, Mode::Api | Mode::All);
        if serves_http && self.http.public_url.is_none() && self.app_env == Environment::Production {
            bail!("missing PUBLIC_URL: required when APP_ENV=production (e.g. https://files.example.com)");
        }
        Ok(())
    }

    pub fn is_dev(&self) -> bool {
        self.app_env == Environment::Dev
    }

    pub fn cookie_secure(&self) -> bool {
        self.auth.cookie_secure.unwrap_or(!self.is_dev())
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
