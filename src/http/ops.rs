//! Operations endpoints: liveness and readiness (outside `/api`, no session needed).

use std::time::Duration;

use actix_web::{get, web, HttpResponse};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::{ApiResult, AppState};
use crate::error::{ApiError, ErrorBody};

/// How long a readiness probe waits for each dependency.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(healthz).service(readyz).service(metrics).service(openapi);
}

#[derive(Serialize, ToSchema)]
struct Health {
    status: String,
}

#[derive(Serialize, ToSchema)]
struct Readiness {
    status: String,
    /// `ok` per dependency the api needs; `broker` is `ok` or `unreachable` and never fails
    /// readiness (uploads wait in the outbox while it is away).
    #[schema(value_type = Object)]
    checks: serde_json::Value,
}

/// Prometheus text format (docs/operations.md lists every series).
#[utoipa::path(tag = "operations", responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain", body = String)))]
#[get("/metrics")]
async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let sampled = state.db.sample(PROBE_TIMEOUT, state.broker.is_up()).await;
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(state.metrics.scrape(&sampled))
}

/// The process is up and serving.
#[utoipa::path(tag = "operations", responses((status = 200, body = Health)))]
#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok".into() })
}

/// This document: OpenAPI 3 for every endpoint, generated from the handlers themselves.
#[utoipa::path(tag = "operations", responses((status = 200, description = "OpenAPI 3 document", content_type = "application/json", body = Object)))]
#[get("/api/openapi.json")]
async fn openapi(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(state.openapi_json.to_string())
}

/// Ready when what the api needs answers: the database, as the app role, and the file store
/// (503 naming what does not). The broker's state is reported beside them, from the process's
/// one monitoring connection; the api does not need the broker to serve (uploads wait in the
/// outbox).
#[utoipa::path(tag = "operations", responses((status = 200, body = Readiness), (status = 503, description = "`not_ready`", body = ErrorBody)))]
#[get("/readyz")]
async fn readyz(state: web::Data<AppState>) -> ApiResult {
    let (database, storage) = tokio::join!(state.db.reachable(PROBE_TIMEOUT), state.store.reachable(PROBE_TIMEOUT));
    if let Some(not_ready) = ApiError::not_ready(&[("database", database), ("storage", storage)]) {
        return Err(not_ready);
    }
    let broker = if state.broker.is_up() { "ok" } else { "unreachable" };
    Ok(HttpResponse::Ok().json(Readiness {
        status: "ready".into(),
        checks: json!({ "database": "ok", "storage": "ok", "broker": broker }),
    }))
}
