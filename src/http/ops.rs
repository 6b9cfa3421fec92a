//! Operations endpoints: liveness and readiness (outside `/api`, no session needed).

use std::time::Duration;

use actix_web::{get, web, HttpResponse};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::{ApiResult, AppState};
use crate::{
    db::system,
    error::{ApiError, ErrorBody},
    metrics::METRICS,
};

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
    /// `ok` per dependency.
    #[schema(value_type = Object)]
    checks: serde_json::Value,
}

/// Prometheus text format (docs/operations.md lists every series).
#[utoipa::path(tag = "operations", responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain", body = String)))]
#[get("/metrics")]
async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(METRICS.scrape(&state.db).await)
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

/// The database (as the app role) and the broker answer; 503 naming the one that does not.
#[utoipa::path(tag = "operations", responses((status = 200, body = Readiness), (status = 503, description = "`not_ready`", body = ErrorBody)))]
#[get("/readyz")]
async fn readyz(state: web::Data<AppState>) -> ApiResult {
    let database = tokio::time::timeout(PROBE_TIMEOUT, async {
        let conn = state.db.system_conn().await?;
        system::ping(&conn).await
    });
    let broker = tokio::time::timeout(PROBE_TIMEOUT, async {
        let connection =
            lapin::Connection::connect(&state.config.amqp_url, lapin::ConnectionProperties::default()).await?;
        connection.close(200, "readiness probe".into()).await
    });
    let (database, broker) = tokio::join!(database, broker);
    let database_ok = matches!(database, Ok(Ok(())));
    let broker_ok = matches!(broker, Ok(Ok(())));
    let failing: Vec<&str> = [("database", database_ok), ("broker", broker_ok)]
        .into_iter()
        .filter_map(|(name, ok)| (!ok).then_some(name))
        .collect();
    if !failing.is_empty() {
        return Err(ApiError::NotReady(failing.join(", ")));
    }
    Ok(HttpResponse::Ok()
        .json(Readiness { status: "ready".into(), checks: json!({ "database": "ok", "broker": "ok" }) }))
}
