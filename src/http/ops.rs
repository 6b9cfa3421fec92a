//! Operations endpoints: liveness and readiness (outside `/api`, no session needed).

use actix_web::{get, web, HttpResponse};
use utoipa_actix_web::service_config::ServiceConfig;

use super::AppState;
use crate::{
    error::ErrorBody,
    probe::{self, Health, Readiness},
};

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(healthz).service(readyz).service(metrics).service(openapi);
}

/// Prometheus text format (docs/operations.md lists every series).
#[utoipa::path(tag = "operations", responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain", body = String)))]
#[get("/metrics")]
async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    probe::metrics(&state.metrics, &state.db, state.broker.is_up()).await
}

/// The process is up and serving.
#[utoipa::path(tag = "operations", responses((status = 200, body = Health)))]
#[get("/healthz")]
async fn healthz() -> HttpResponse {
    probe::health()
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
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let needed = probe::database_and_store(&state.db, &state.store).await;
    let broker = if state.broker.is_up() { "ok" } else { "unreachable" };
    probe::readiness(&needed, &[("broker", broker)])
}
