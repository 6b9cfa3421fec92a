//! Operations endpoints: liveness and readiness (outside `/api`, no session needed).

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::{ApiResult, AppState};
use crate::{db::system, error::ApiError, metrics::METRICS};

/// How long a readiness probe waits for each dependency.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

/// Prometheus text format (docs/operations.md lists every series).
async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(METRICS.scrape(&state.db).await)
}

/// The process is up and serving.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// The database (as the app role) and the broker answer; 503 naming the one that does not.
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
    Ok(HttpResponse::Ok().json(json!({ "status": "ready", "checks": { "database": "ok", "broker": "ok" } })))
}
