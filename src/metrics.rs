//! Prometheus metrics for `GET /metrics`; every series is documented in docs/operations.md.
//!
//! One registry per application, handed to the api and the worker it serves (they share it in
//! `--mode all`), not a process-global: several applications in one process (tests) each count
//! only their own requests and jobs, so a test can assert exact counts.

use std::sync::Mutex;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub db_pool: IntGaugeVec,
    pub jobs_published: IntCounter,
    pub webhook_attempts: IntCounterVec,
    pub jobs_processed: IntCounterVec,
    pub jobs_panicked: IntCounter,
    pub job_duration: HistogramVec,
    pub outcome_batch_size: Histogram,
    pub outcome_batches_split: IntCounter,
    pub outbox_backlog: IntGauge,
    pub broker_up: IntGauge,
    pub budget_refusals: IntCounterVec,
    /// Serializes sample-and-render, so two scrapes never render each other's samples.
    scraping: Mutex<()>,
}

/// What the serving process read for the gauges just before a scrape.
#[derive(Debug, Clone, Copy)]
pub struct Sampled {
    pub pool_size: usize,
    pub pool_available: usize,
    pub pool_waiting: usize,
    /// `None` when the database did not answer in time.
    pub outbox_backlog: Option<i64>,
    pub broker_up: bool,
    /// Refusals by each per-organization budget since the process started, every organization
    /// together.
    pub budget_refusals: [(&'static str, u64); 4],
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by method, route pattern and status"),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by method, route pattern and status",
            )
            .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0]),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let db_pool = IntGaugeVec::new(
            Opts::new("db_pool_connections", "App-role connection pool: size, available and waiting"),
            &["state"],
        )
        .expect("valid metric");
        let jobs_published =
            IntCounter::new("jobs_published_total", "Validation jobs published by the outbox relay (confirmed)")
                .expect("valid metric");
        let webhook_attempts = IntCounterVec::new(
            Opts::new("webhook_attempts_total", "Webhook delivery attempts by outcome: delivered, failed"),
            &["outcome"],
        )
        .expect("valid metric");
        let jobs_processed = IntCounterVec::new(
            Opts::new(
                "jobs_processed_total",
                "Validation jobs by outcome: ready, failed, refused, retry, exhausted, permanent, malformed (the last three dead-lettered)",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let jobs_panicked = IntCounter::new(
            "jobs_panicked_total",
            "Validation jobs whose processing panicked (a bug); each is retried, then dead-lettered",
        )
        .expect("valid metric");
        let job_duration = HistogramVec::new(
            HistogramOpts::new("job_duration_seconds", "Time to process one validation job, by outcome")
                .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0]),
            &["outcome"],
        )
        .expect("valid metric");
        let outcome_batch_size = Histogram::with_opts(
            HistogramOpts::new(
                "job_outcome_batch_size",
                "Validation outcomes committed together in one statement (one tenant's jobs finished meanwhile)",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
        )
        .expect("valid metric");
        let outcome_batches_split = IntCounter::new(
            "job_outcome_batches_split_total",
            "Batches of outcomes whose statement failed and whose outcomes were then each committed alone",
        )
        .expect("valid metric");
        let outbox_backlog = IntGauge::new("outbox_backlog", "Validation jobs waiting in the outbox to be published")
            .expect("valid metric");
        let broker_up = IntGauge::new(
            "broker_up",
            "1 while this process reaches RabbitMQ (api: its monitoring connection; worker: its consumer), else 0",
        )
        .expect("valid metric");
        let budget_refusals = IntCounterVec::new(
            Opts::new(
                "budget_refusals_total",
                "Requests refused by a per-organization budget (requests, connections, upload_slots; upload_memory: bodies that waited), all organizations together",
            ),
            &["budget"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_duration.clone()),
            Box::new(db_pool.clone()),
            Box::new(jobs_published.clone()),
            Box::new(webhook_attempts.clone()),
            Box::new(jobs_processed.clone()),
            Box::new(jobs_panicked.clone()),
            Box::new(job_duration.clone()),
            Box::new(outcome_batch_size.clone()),
            Box::new(outcome_batches_split.clone()),
            Box::new(outbox_backlog.clone()),
            Box::new(broker_up.clone()),
            Box::new(budget_refusals.clone()),
        ] {
            registry.register(collector).expect("metric registered once");
        }
        Self {
            registry,
            http_requests,
            http_duration,
            db_pool,
            jobs_published,
            webhook_attempts,
            jobs_processed,
            jobs_panicked,
            job_duration,
            outcome_batch_size,
            outcome_batches_split,
            outbox_backlog,
            broker_up,
            budget_refusals,
            scraping: Mutex::new(()),
        }
    }

    /// Sets the gauges that are read rather than counted to `sampled`, then renders every
    /// series. Serialized, so that two scrapes (the api's and the worker's in `--mode all`)
    /// never render each other's samples.
    pub fn scrape(&self, sampled: &Sampled) -> String {
        let _one_at_a_time = self.scraping.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.db_pool.with_label_values(&["size"]).set(sampled.pool_size as i64);
        self.db_pool.with_label_values(&["available"]).set(sampled.pool_available as i64);
        self.db_pool.with_label_values(&["waiting"]).set(sampled.pool_waiting as i64);
        // A database that does not answer leaves the backlog at its last value rather than
        // failing the scrape.
        if let Some(backlog) = sampled.outbox_backlog {
            self.outbox_backlog.set(backlog);
        }
        self.broker_up.set(i64::from(sampled.broker_up));
        // Counted where the refusals happen (in `db::refusals`, which knows no metrics): the
        // counter catches up with the process's total.
        for (budget, total) in sampled.budget_refusals {
            let counter = self.budget_refusals.with_label_values(&[budget]);
            counter.inc_by(total.saturating_sub(counter.get()));
        }
        self.render()
    }

    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}
