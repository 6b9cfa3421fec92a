//! The webhooks group: what endpoints may be, and how deliveries are tried.

use anyhow::bail;
use clap::Args;

/// Webhooks (docs/events.md): what endpoints may be, and how deliveries are tried.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Webhooks")]
pub struct WebhookConfig {
    /// Accept `http://` endpoint URLs (development and tests only; production needs `https`).
    #[arg(long, env = "WEBHOOK_ALLOW_HTTP", default_value_t = false, action = clap::ArgAction::Set)]
    pub webhook_allow_http: bool,

    /// Accept endpoints that resolve to loopback, private, link-local, shared or metadata
    /// addresses (development and tests only: otherwise a webhook could reach the internal
    /// network). Checked when an endpoint is created and at every delivery.
    #[arg(long, env = "WEBHOOK_ALLOW_PRIVATE", default_value_t = false, action = clap::ArgAction::Set)]
    pub webhook_allow_private: bool,

    /// How long an endpoint has to answer a delivery (connecting included) before the attempt
    /// counts as failed.
    #[arg(long, env = "WEBHOOK_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub webhook_timeout_ms: u64,

    /// Delays before each retry of a failed delivery; after the last the delivery is failed.
    /// The default retries for about a day: 5 s, 30 s, 2 min, 10 min, 1 h, 4 h, 8 h, 10 h.
    #[arg(
        long,
        env = "WEBHOOK_RETRY_DELAYS_MS",
        value_delimiter = ',',
        default_value = "5000,30000,120000,600000,3600000,14400000,28800000,36000000"
    )]
    pub webhook_retry_delays_ms: Vec<u64>,

    /// An endpoint whose every delivery attempt has failed for this long is disabled (and a
    /// `webhook.disabled` entry written to the audit log).
    #[arg(long, env = "WEBHOOK_DISABLE_AFTER_SECONDS", default_value_t = 432_000, value_parser = clap::value_parser!(u64).range(1..=MAX_WEBHOOK_SECONDS))]
    pub webhook_disable_after_seconds: u64,

    /// After a secret is rotated, the old one keeps signing (beside the new) this long.
    #[arg(long, env = "WEBHOOK_SECRET_OVERLAP_SECONDS", default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(0..=MAX_WEBHOOK_SECONDS))]
    pub webhook_secret_overlap_seconds: u64,

    /// Deliveries one worker process attempts at once (its prefetch on the webhook queue).
    #[arg(long, env = "WEBHOOK_CONCURRENCY", default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub webhook_concurrency: u16,

    /// Deliveries of one endpoint queued or under way at once, across the workers: a slow or
    /// backlogged endpoint holds at most this many delivery slots, and every other endpoint's
    /// deliveries go out beside its backlog (in turns across endpoints).
    #[arg(long, env = "WEBHOOK_ENDPOINT_CONCURRENCY", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub webhook_endpoint_concurrency: u16,
}

/// The longest a webhook setting may span: 30 days.
const MAX_WEBHOOK_SECONDS: u64 = 30 * 86_400;

impl WebhookConfig {
    pub(super) fn validate(&self) -> anyhow::Result<()> {
        if self.webhook_retry_delays_ms.iter().any(|&ms| ms == 0 || ms > MAX_WEBHOOK_SECONDS * 1000) {
            bail!("invalid WEBHOOK_RETRY_DELAYS_MS: give delays in milliseconds, each above 0 and at most 30 days");
        }
        Ok(())
    }

    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.webhook_timeout_ms)
    }

    /// How long the old secret signs after a rotation, in seconds (at most 30 days).
    pub fn secret_overlap_seconds(&self) -> i64 {
        i64::try_from(self.webhook_secret_overlap_seconds).unwrap_or(i64::MAX)
    }

    /// How long an attempt (or a published delivery waiting for one) may take before the
    /// delivery is due again: a worker killed mid-attempt leaves it to this.
    pub fn lease(&self) -> std::time::Duration {
        self.timeout() * 3
    }

    /// The delay before the retry that follows failed attempt `attempt` (1-based), or `None`
    /// when it was the last.
    pub fn retry_delay(&self, attempt: u32) -> Option<std::time::Duration> {
        let index = usize::try_from(attempt.checked_sub(1)?).ok()?;
        self.webhook_retry_delays_ms.get(index).map(|ms| std::time::Duration::from_millis(*ms))
    }
}
