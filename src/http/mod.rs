//! HTTP surface: every route, the shared state, and how extractor failures become JSON errors.

mod auth;
mod client;
mod extract;
mod files;
mod middleware;
mod ops;
mod org;
mod shared;
mod throttle;
mod tokens;

use std::sync::Arc;

use actix_web::{
    error::{JsonPayloadError, PathError, QueryPayloadError},
    web, HttpResponse, ResponseError,
};

pub use extract::{Authed, Reader};
pub use middleware::{
    error_bodies, head_as_get, known_query_parameters, request_id, session_errors, ApiRootSpan, RequestId,
};
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
    /// The broker as this process last saw it (reported, not required: see `http::ops`).
    pub broker: BrokerStatus,
    /// This application's metrics (shared with its worker in `--mode all`).
    pub metrics: Arc<Metrics>,
    /// The query parameters each operation accepts (from the OpenAPI document).
    pub query_parameters: QueryParameters,
    /// Signs the list cursors this process hands out (derived from `SESSION_KEY`).
    pub cursor_key: SigningKey,
    /// Where every absolute URL handed out starts (`PUBLIC_URL`).
    pub public_url: PublicUrl,
    /// Recording uploads, resumable ones' `PATCH`es, the memory budget for their bodies.
    pub uploads: Uploads,
}

impl AppState {
    /// The client's address, for per-address limits (`http::client`).
    pub fn client_address(&self, req: &actix_web::HttpRequest) -> Option<std::net::IpAddr> {
        client::address(req, &self.config.trusted_proxies)
    }
}

/// Document-level OpenAPI settings; the paths and schemas come from the handlers.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "tenant-files",
        description = "Multi-tenant file API where PostgreSQL row-level security enforces tenant isolation. \
            Errors are `{\"error\": {\"code\", \"message\"}}`; another tenant's object, a deleted object \
            and a malformed id all answer the same 404."
    ),
    modifiers(&SecuritySchemes),
    components(schemas(crate::error::ErrorBody))
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "tf_session",
                "Session cookie from register/login (`__Host-tf_session` when Secure). State-changing \
                 requests must also send the session's CSRF token in `X-CSRF-Token`.",
            ))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("Personal API token from POST /api/tokens (no CSRF token needed)"))
                    .build(),
            ),
        );
    }
}

/// The OpenAPI document of [`routes`], as served at `/api/openapi.json`: the handlers' own
/// entries, plus the HEAD each GET answers (`middleware::head_as_get`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::{openapi::RefOr, OpenApi};
    use utoipa_actix_web::AppExt;
    let (_, mut openapi) =
        actix_web::App::new().into_utoipa_app().openapi(ApiDoc::openapi()).configure(routes).split_for_parts();
    for item in openapi.paths.paths.values_mut() {
        if let Some(get) = &item.get {
            let mut head = get.clone();
            head.operation_id = head.operation_id.map(|id| format!("{id}_head"));
            head.summary = Some("The GET's status and headers, without the body".into());
            head.description = None;
            for response in head.responses.responses.values_mut() {
                if let RefOr::T(response) = response {
                    response.content.clear();
                }
            }
            item.head = Some(head);
        }
    }
    openapi
}

/// The query parameters each operation declares, by method and route pattern, from the OpenAPI
/// document: any other parameter is refused (`middleware::known_query_parameters`), so the
/// document and the behaviour cannot drift apart.
#[derive(Debug, Default)]
pub struct QueryParameters(std::collections::HashMap<(String, String), Vec<String>>);

impl QueryParameters {
    pub fn of(openapi: &utoipa::openapi::OpenApi) -> Self {
        use utoipa::openapi::path::ParameterIn;
        let mut known = std::collections::HashMap::new();
        for (path, item) in &openapi.paths.paths {
            let operations = [
                ("GET", &item.get),
                ("POST", &item.post),
                ("PATCH", &item.patch),
                ("DELETE", &item.delete),
                ("PUT", &item.put),
            ];
            for (method, operation) in operations {
                let Some(operation) = operation else { continue };
                let names = operation
                    .parameters
                    .iter()
                    .flatten()
                    .filter(|p| matches!(p.parameter_in, ParameterIn::Query))
                    .map(|p| p.name.clone())
                    .collect();
                known.insert((method.to_owned(), path.clone()), names);
            }
        }
        Self(known)
    }

    /// The parameters `method` on `route` declares; `None` for a route that is not ours.
    pub fn declared(&self, method: &str, route: &str) -> Option<&[String]> {
        self.0.get(&(method.to_owned(), route.to_owned())).map(Vec::as_slice)
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

const MAX_PAGE_SIZE: u32 = 100;
const DEFAULT_PAGE_SIZE: u32 = 20;

/// `?page=&limit=` of every list endpoint: page from 1, limit 1–100 (default 20). Any other
/// parameter is refused (400), never silently ignored.
#[derive(Debug, Clone, Copy, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Page number, from 1 (default 1).
    #[param(minimum = 1)]
    page: Option<u32>,
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

/// A validated page request.
#[derive(Debug, Clone, Copy)]
pub struct Paging {
    pub page: u32,
    pub limit: u32,
}

impl PageQuery {
    pub fn paging(self) -> Result<Paging, ApiError> {
        Paging::parse(self.page, self.limit)
    }
}

impl Paging {
    pub fn parse(page: Option<u32>, limit: Option<u32>) -> Result<Self, ApiError> {
        let page = page.unwrap_or(1);
        let limit = limit.unwrap_or(DEFAULT_PAGE_SIZE);
        if page == 0 {
            return Err(ApiError::invalid("invalid_query", "page starts at 1"));
        }
        if !(1..=MAX_PAGE_SIZE).contains(&limit) {
            return Err(ApiError::invalid("invalid_query", format!("limit must be 1 to {MAX_PAGE_SIZE}")));
        }
        Ok(Self { page, limit })
    }

    pub fn limit(&self) -> i64 {
        i64::from(self.limit)
    }

    pub fn offset(&self) -> i64 {
        (i64::from(self.page) - 1) * i64::from(self.limit)
    }
}

/// The refusals of every endpoint that takes a JSON body, for the OpenAPI document.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum BodyErrors {
    /// Malformed JSON, a missing, unknown or invalid field (`invalid_json`, `invalid_body`, …).
    #[response(status = 400)]
    Invalid(crate::error::ErrorBody),
    /// `body_too_large`: JSON bodies are at most 64 KiB.
    #[response(status = 413)]
    TooLarge(crate::error::ErrorBody),
    /// The body is not `application/json`.
    #[response(status = 415)]
    UnsupportedMediaType(crate::error::ErrorBody),
}

/// Shorthand for handler results.
pub type ApiResult = Result<HttpResponse, ApiError>;
