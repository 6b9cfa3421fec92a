//! The background worker (`--mode worker`): the outbox relay, the validation consumer, the
//! webhook consumer (`webhooks`), and the maintenance loop (purge of deleted files' bytes,
//! re-enqueue of stuck pending files). Each
//! runs until the shutdown token is cancelled and survives broker or database outages by
//! reconnecting with backoff; none of them exits on a transient error.

mod consumer;
mod job;
mod maintenance;
mod outcomes;
mod relay;
mod validate;
mod webhooks;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

pub use job::{JobMessage, Outcome};

use crate::{config::Config, db::Db, metrics::Metrics, probe, queue::Topology, shutdown::pause, storage::FileStore};

/// What the worker's tasks share.
pub struct WorkerCtx {
    pub config: Arc<Config>,
    pub db: Db,
    pub store: FileStore,
    pub topology: Topology,
    /// Whether the consumer is attached to the work queue: the worker's readiness.
    pub consuming: Arc<AtomicBool>,
    /// The application's metrics (shared with the api in `--mode all`).
    pub metrics: Arc<Metrics>,
    /// Where jobs commit their verdicts, in batches.
    outcomes: outcomes::Recorder,
    /// Sends webhook deliveries (to public addresses only, unless allowed).
    webhooks: crate::webhooks::Sender,
    /// Wakes the relay when a delivery ends: its endpoint may take the next one now (each
    /// endpoint has only `WEBHOOK_ENDPOINT_CONCURRENCY` in flight), not a relay interval later.
    relay_wake: tokio::sync::Notify,
}

impl WorkerCtx {
    pub fn new(config: Config, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let (db, store) = crate::resources::open_db_and_store(&config)?;
        let topology = Topology::from_config(&config);
        let outcomes = outcomes::Recorder::start(db.clone(), metrics.clone());
        let webhooks = crate::webhooks::Sender::new(config.webhooks.timeout(), config.webhooks.webhook_allow_private)?;
        Ok(Self {
            config: Arc::new(config),
            db,
            store,
            topology,
            consuming: Arc::default(),
            metrics,
            outcomes,
            webhooks,
            relay_wake: tokio::sync::Notify::new(),
        })
    }

    /// How long to wait before retrying attempt `attempt` (1-based); the last delay repeats.
    pub fn retry_delay_ms(&self, attempt: u32) -> u32 {
        let delays = &self.config.worker.job_retry_delays_ms;
        let index = (attempt.max(1) as usize - 1).min(delays.len() - 1);
        delays[index]
    }
}

/// What a relay publishes and a consumer consumes: each lane has its own relay loop and
/// consumer, so a backlog of one never slows the other's rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Validation,
    Webhooks,
}

impl Lane {
    pub(crate) fn queue(self, ctx: &WorkerCtx) -> &str {
        match self {
            Lane::Validation => &ctx.topology.work_queue,
            Lane::Webhooks => &ctx.topology.webhook_queue,
        }
    }

    pub(crate) fn prefetch(self, ctx: &WorkerCtx) -> u16 {
        match self {
            Lane::Validation => ctx.config.worker.worker_prefetch,
            Lane::Webhooks => ctx.config.webhooks.webhook_concurrency,
        }
    }

    /// The worker is ready when its validation consumer is attached.
    pub(crate) fn set_consuming(self, ctx: &WorkerCtx, consuming: bool) {
        if self == Lane::Validation {
            ctx.consuming.store(consuming, Ordering::Relaxed);
        }
    }
}

/// Runs every worker task until `shutdown` is cancelled, then lets the job in hand finish.
/// Counts into `metrics` (the api's, when both run in one process).
pub async fn run_worker_until_stopped(
    config: Config,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
) -> anyhow::Result<()> {
    let ctx = Arc::new(WorkerCtx::new(config, metrics)?);
    tracing::info!(queue = %ctx.topology.work_queue, "worker starting");
    let metrics = match ctx.config.worker.metrics_bind {
        Some(addr) => Some(serve_metrics(addr, ctx.clone(), shutdown.clone())?),
        None => None,
    };
    tokio::join!(
        relay::run(ctx.clone(), shutdown.clone(), Lane::Validation),
        relay::run(ctx.clone(), shutdown.clone(), Lane::Webhooks),
        consumer::run(ctx.clone(), shutdown.clone(), Lane::Validation),
        consumer::run(ctx.clone(), shutdown.clone(), Lane::Webhooks),
        maintenance::run(ctx.clone(), shutdown.clone()),
    );
    if let Some(server) = metrics {
        server.await??;
    }
    tracing::info!("worker stopped");
    Ok(())
}

/// Publishes every job in the outbox, then processes every message waiting on the work queue,
/// each settled exactly as the running consumer settles it, until both are empty; returns how
/// many messages it processed. Retries it schedules come back after their delay and are not
/// waited for. For tests (deterministic: no worker to start, nothing to poll) and for working
/// off a backlog by hand.
pub async fn drain(config: Config, metrics: Arc<Metrics>) -> anyhow::Result<usize> {
    use lapin::options::BasicGetOptions;
    let ctx = Arc::new(WorkerCtx::new(config, metrics)?);
    let timeout = ctx.config.broker.timeout();
    let (connection, channel) =
        crate::queue::connect(&ctx.config.broker.amqp_url, &ctx.topology, "tenant-files drain", timeout).await?;
    let publisher = Arc::new(
        crate::queue::Publisher::new(crate::queue::bounded(timeout, connection.create_channel()).await?, timeout)
            .await?,
    );
    let mut processed = 0;
    let work_queue = ctx.topology.work_queue.as_str();
    // In rounds: the relay publishes what the queue's depth bound lets through, then the queue
    // is worked off, until a round finds nothing.
    loop {
        while relay::relay_batch(&ctx, &publisher).await? > 0 {}
        let before = processed;
        while let Some(message) =
            crate::queue::bounded(timeout, channel.basic_get(work_queue.into(), BasicGetOptions::default())).await?
        {
            consumer::settle(ctx.clone(), publisher.clone(), message.delivery).await;
            processed += 1;
        }
        if processed == before {
            break;
        }
    }
    let _ = connection.close(200, "drained".into()).await;
    Ok(processed)
}

/// `/metrics`, `/healthz` and `/readyz` for a worker-only process, stopped with the worker.
/// Ready means able to work: the database and the file store answer, and the consumer is
/// attached to its queue.
fn serve_metrics(
    addr: std::net::SocketAddr,
    ctx: Arc<WorkerCtx>,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    use actix_web::{web, App, HttpServer};
    let ctx = web::Data::from(ctx);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(ctx.clone())
            .route(
                "/metrics",
                web::get().to(|ctx: web::Data<WorkerCtx>| async move {
                    probe::metrics(&ctx.metrics, &ctx.db, ctx.consuming.load(Ordering::Relaxed)).await
                }),
            )
            .route("/healthz", web::get().to(|| async { probe::health() }))
            .route("/readyz", web::get().to(readiness))
    })
    .workers(1)
    .disable_signals()
    .bind(addr)
    .with_context(|| format!("cannot listen on METRICS_BIND {addr}"))?
    .run();
    let handle = server.handle();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        handle.stop(true).await;
    });
    Ok(tokio::spawn(server))
}

/// Ready means able to work: the database and the file store answer, and the consumer is
/// attached to its queue.
async fn readiness(ctx: actix_web::web::Data<WorkerCtx>) -> actix_web::HttpResponse {
    let [database, storage] = probe::database_and_store(&ctx.db, &ctx.store).await;
    probe::readiness(&[database, storage, ("broker", ctx.consuming.load(Ordering::Relaxed))], &[])
}

/// Exponential backoff for reconnecting: 250 ms doubling up to 30 s.
struct Backoff(Duration);

impl Backoff {
    const FIRST: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(30);

    fn new() -> Self {
        Self(Self::FIRST)
    }

    fn next(&mut self) -> Duration {
        let current = self.0;
        self.0 = (self.0 * 2).min(Self::MAX);
        current
    }

    fn reset(&mut self) {
        self.0 = Self::FIRST;
    }
}
