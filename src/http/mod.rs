//! HTTP surface: every route, the shared state, and how extractor failures become JSON errors.

mod auth;
mod budget;
mod client;
mod events;
mod extract;
mod files;
mod middleware;
mod openapi;
mod ops;
mod org;
mod paging;
mod shared;
mod throttle;
mod tokens;

use std::sync::Arc;

use actix_web::{
    error::{JsonPayloadError, PathError, QueryPayloadError},
    web, HttpResponse, ResponseError,
};

pub use budget::{RequestBudgets, Standing};
pub use extract::{Authed, Reader};
pub use middleware::{
    budget_accounting, error_bodies, head_as_get, known_query_parameters, request_id, session_errors, ApiRootSpan,
    RequestId,
};
pub use openapi::{openapi, ApiDoc, BodyErrors, QueryParameters};
pub use paging::PageQuery;
pub use throttle::ClientLimiter;
use utoipa_actix_web::{scope, service_config::ServiceConfig};

use crate::{
    auth::signing::SigningKey,
    config::{Config, PublicUrl},
    db::Db,
    error::ApiError,
    metrics::Metrics,
    queue::BrokerStatus,
    storage::FileStore,
    uploads::Uploads,
};

/// JSON bodies are small (credentials, a filename, up to 100 ids); files come as multipart.
const JSON_LIMIT_BYTES: usize = 64 * 1024;

/// Everything handlers share, registered once.
pub struct AppState {
    pub db: Db,
    pub store: FileStore,
    pub config: Arc<Config>,
    /// A bcrypt hash to verify against when the email is unknown (equal login timing).
    pub decoy_hash: String,
    /// The OpenAPI document, generated once at start from the routes.
    pub openapi_json: Arc<str>,
    /// Per-address limit on login and register.
    pub sign_in_limiter: ClientLimiter,
    /// Per-address limit on opening share links (no session to limit instead).
    pub share_limiter: ClientLimiter,
    /// Each organization's request rate.
    pub budgets: RequestBudgets,
    /// The broker as this process last saw it (reported, not required: see `http::ops`).
    pub broker: BrokerStatus,
    /// This application's metrics (shared with its worker in `--mode all`).
    pub metrics: Arc<Metrics>,
    /// The query parameters each operation accepts (from the OpenAPI document).
    pub query_parameters: QueryParameters,
    /// Signs the list cursors this process hands out (derived from `SESSION_KEY`).
    pub cursor_key: SigningKey,
    /// Derives sessions' CSRF tokens (from `SESSION_KEY`; see `auth::session::csrf_token`).
    pub csrf_key: SigningKey,
    /// Where every absolute URL handed out starts (`PUBLIC_URL`).
    pub public_url: PublicUrl,
    /// Recording uploads, resumable ones' `PATCH`es, the memory budget for their bodies.
    pub uploads: Uploads,
    /// Checks where a new webhook endpoint resolves (as the worker's deliveries do).
    pub webhooks: crate::webhooks::Sender,
}

impl AppState {
    /// The client's address, for per-address limits (`http::client`).
    pub fn client_address(&self, req: &actix_web::HttpRequest) -> Option<std::net::IpAddr> {
        client::address(req, &self.config.http.trusted_proxies)
    }
}

/// Every route. Only `service(...)` of handlers annotated with `#[utoipa::path]` is used (no
/// `route(...)`), so a route cannot exist without its OpenAPI entry: it would not compile.
pub fn routes(cfg: &mut ServiceConfig) {
    cfg.app_data(web::JsonConfig::default().limit(JSON_LIMIT_BYTES).error_handler(|err, _| json_error(err).into()))
        .app_data(web::PathConfig::default().error_handler(|_: PathError, _| ApiError::NotFound.into()))
        .app_data(
            web::QueryConfig::default()
                .error_handler(|err: QueryPayloadError, _| ApiError::invalid("invalid_query", err.to_string()).into()),
        )
        // Before the /api scope: once a scope's prefix matches, actix looks no further, and
        // /api/openapi.json lives here.
        .configure(ops::configure)
        .service(
            scope("/api")
                .configure(auth::configure)
                .configure(events::configure)
                .configure(files::configure)
                .configure(org::configure)
                .configure(shared::configure)
                .configure(tokens::configure),
        )
        .default_service(web::to(|| async { ApiError::NotFound.error_response() }));
}

fn json_error(err: JsonPayloadError) -> ApiError {
    match err {
        JsonPayloadError::ContentType => ApiError::UnsupportedMediaType("application/json"),
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => ApiError::TooLarge {
            code: "body_too_large",
            message: format!("JSON body must be at most {JSON_LIMIT_BYTES} bytes"),
        },
        JsonPayloadError::Deserialize(e) if e.is_data() => ApiError::invalid("invalid_body", e.to_string()),
        JsonPayloadError::Deserialize(e) => ApiError::invalid("invalid_json", format!("malformed JSON: {e}")),
        other => ApiError::invalid("invalid_body", other.to_string()),
    }
}

/// Shorthand for handler results.
pub type ApiResult = Result<HttpResponse, ApiError>;
