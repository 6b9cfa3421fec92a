//! What every process answers its orchestrator and its scraper, api and worker alike:
//! liveness (`/healthz`), readiness (`/readyz`: 200 naming each dependency, or 503
//! `not_ready` naming those that do not answer) and the Prometheus scrape (`/metrics`).

use std::time::Duration;

use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    db::{refusals::Budget, Db},
    error::ApiError,
    metrics::{Metrics, Sampled},
    storage::FileStore,
};

/// How long a probe waits for each dependency.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Serialize, ToSchema)]
pub struct Health {
    status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    status: &'static str,
    /// A state per dependency: `ok` for each the process needs; the api reports `broker` as
    /// `ok` or `unreachable` without failing readiness (uploads wait in the outbox).
    #[schema(value_type = Object)]
    checks: serde_json::Map<String, serde_json::Value>,
}

pub fn health() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// Whether the database (as the app role) and the file store answer within the probe timeout.
pub async fn database_and_store(db: &Db, store: &FileStore) -> [(&'static str, bool); 2] {
    let (database, storage) = tokio::join!(db.reachable(PROBE_TIMEOUT), store.reachable(PROBE_TIMEOUT));
    [("database", database), ("storage", storage)]
}

/// 200 with `needed` (all `ok`) and `reported` (states that never fail readiness), or 503
/// `not_ready` naming the needed dependencies that failed.
pub fn readiness(needed: &[(&'static str, bool)], reported: &[(&'static str, &'static str)]) -> HttpResponse {
    if let Some(not_ready) = ApiError::not_ready(needed) {
        return not_ready.error_response();
    }
    let checks = needed.iter().map(|(name, _)| (*name, "ok")).chain(reported.iter().copied());
    let checks = checks.map(|(name, state)| (name.to_owned(), state.into())).collect();
    HttpResponse::Ok().json(Readiness { status: "ready", checks })
}

/// The Prometheus text exposition, with the gauges sampled now.
pub async fn metrics(metrics: &Metrics, db: &Db, broker_up: bool) -> HttpResponse {
    let pool = db.pool_status();
    let sampled = Sampled {
        pool_size: pool.size,
        pool_available: pool.available,
        pool_waiting: pool.waiting,
        outbox_backlog: db.outbox_backlog(PROBE_TIMEOUT).await,
        broker_up,
        budget_refusals: Budget::ALL.map(|budget| (budget.name(), db.refusals().total(budget))),
    };
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(metrics.scrape(&sampled))
}
