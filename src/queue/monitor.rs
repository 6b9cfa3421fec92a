//! Whether the broker can be reached, as seen by one long-lived connection per process: the
//! api reports it (readiness detail, `broker_up` gauge) without depending on it, since uploads
//! wait in the outbox while the broker is away; the worker's readiness depends on its own
//! consumer instead. One connection for the process's life, not one per probe.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use lapin::{Connection, ConnectionProperties};
use tokio_util::sync::CancellationToken;

use super::bounded;
use crate::shutdown::pause;

/// How often a live connection is looked at, and the longest wait between reconnects.
const CHECK_EVERY: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The last known state of the broker connection; `false` until the first connect succeeds.
#[derive(Debug, Clone, Default)]
pub struct BrokerStatus(Arc<AtomicBool>);

impl BrokerStatus {
    pub fn is_up(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, up: bool) {
        self.0.store(up, Ordering::Relaxed);
    }

    /// Keeps a connection to `url` open until `stop`, reconnecting with backoff, and keeps the
    /// status current; every wait on the broker is bounded by `timeout`. Spawned once per
    /// process.
    pub fn watch(&self, url: String, timeout: Duration, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let status = self.clone();
        tokio::spawn(async move {
            let mut backoff = CHECK_EVERY;
            while !stop.is_cancelled() {
                let properties = ConnectionProperties::default().with_connection_name("tenant-files monitor".into());
                match bounded(timeout, Connection::connect(&url, properties)).await {
                    Ok(connection) => {
                        status.set(true);
                        backoff = CHECK_EVERY;
                        while connection.status().connected() && pause(&stop, CHECK_EVERY).await {}
                        status.set(false);
                        let _ = bounded(timeout, connection.close(200, "monitor stopping".into())).await;
                    }
                    Err(e) => {
                        status.set(false);
                        tracing::debug!(error = %e, "broker unreachable");
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
                if !pause(&stop, backoff).await {
                    break;
                }
            }
        })
    }
}
