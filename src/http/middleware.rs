//! The middlewares every request passes through, outermost first: the request id, the root span
//! that logs one line per request and records the HTTP metrics, the JSON error bodies for
//! answers given outside our handlers, and the mapping of session-store failures.

use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::{header, StatusCode},
    middleware::{ErrorHandlerResponse, ErrorHandlers, Next},
    HttpMessage, ResponseError,
};
use tracing::Span;

use super::AppState;
use crate::error::ApiError;

/// Outermost middleware: fixes the request id (the caller's `X-Request-Id` or a new one) and
/// the start time before anything else runs, and echoes the id on every response.
pub async fn request_id(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = RequestId::from_header(req.headers().get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()));
    let echoed = header::HeaderValue::from_str(&id.0).ok();
    req.extensions_mut().insert(id);
    req.extensions_mut().insert(RequestStart(std::time::Instant::now()));
    let mut response = next.call(req).await?;
    if let Some(value) = echoed {
        response.headers_mut().insert(header::HeaderName::from_static(REQUEST_ID_HEADER), value);
    }
    Ok(response)
}

const REQUEST_ID_HEADER: &str = "x-request-id";

/// Every answer to a request of a known organization says where the organization stands on its
/// request budget (`RateLimit-Policy`, `RateLimit`), so a client can slow down before a 429 (the
/// budget's own 429 carries them itself, `ApiError::OverRequestBudget`); and a refusal by one
/// of the organization's budgets is counted for its usage, here, where every one is answered.
pub async fn budget_accounting(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut response = next.call(req).await?;
    let Some(spent) = response.request().extensions().get::<super::extract::Spent>().copied() else {
        return Ok(response);
    };
    let refused_by = response.response().error().and_then(|e| e.as_error::<ApiError>()).and_then(ApiError::budget);
    if let (Some(budget), Some(state)) = (refused_by, response.request().app_data::<actix_web::web::Data<AppState>>()) {
        state.db.refusals().count(spent.org, budget);
    }
    for (name, value) in spent.standing.iter().flat_map(super::Standing::headers) {
        response.headers_mut().insert(name, value);
    }
    Ok(response)
}

/// HEAD answers like GET without a body, on every GET route (HTTP requires it; download clients
/// ask HEAD for a file's size and ETag before fetching ranges). Routes are registered for GET
/// only, so a HEAD request is routed as the GET it stands for; the connection remembers that it
/// was HEAD and sends the GET's headers, Content-Length included, without the body.
pub async fn head_as_get(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if req.method() == actix_web::http::Method::HEAD {
        req.head_mut().method = actix_web::http::Method::GET;
        req.extensions_mut().insert(ServedAsGet);
    }
    next.call(req).await
}

/// Unknown query parameters are a 400 `invalid_query`, on every route, never silently ignored:
/// a client asking for something the server does not do must learn it. What each operation
/// accepts is what the OpenAPI document declares for it ([`super::QueryParameters`]).
pub async fn known_query_parameters(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    if let Some(unknown) = unknown_query_parameter(&req) {
        let refusal = ApiError::invalid("invalid_query", format!("unknown query parameter `{unknown}`"));
        let (req, _) = req.into_parts();
        return Ok(ServiceResponse::new(req, refusal.error_response()));
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

fn unknown_query_parameter(req: &ServiceRequest) -> Option<String> {
    if req.query_string().is_empty() {
        return None;
    }
    let state = req.app_data::<actix_web::web::Data<AppState>>()?;
    let route = req.match_pattern()?;
    let declared = state.query_parameters.declared(req.method().as_str(), &route)?;
    // A query string that does not even parse is the handler's to refuse, with its own message.
    let pairs = actix_web::web::Query::<Vec<(String, String)>>::from_query(req.query_string()).ok()?;
    pairs.into_inner().into_iter().map(|(name, _)| name).find(|name| !declared.contains(name))
}

/// Marks a HEAD request routed as GET, so its log line and metrics still say HEAD.
#[derive(Debug, Clone, Copy)]
struct ServedAsGet;

/// A safety net for answers produced outside our handlers (actix's own 404, a file's 412 or
/// 416): every error response gets the JSON error body of the contract, and keeps its status
/// and its other headers (a 416's `Content-Range: bytes */size`, say).
pub fn error_bodies<B: 'static>() -> ErrorHandlers<B> {
    ErrorHandlers::new().default_handler(|res: ServiceResponse<B>| {
        let is_json = res
            .response()
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        if is_json {
            return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
        }
        let (req, res) = res.into_parts();
        let mut replacement = status_error(res.status()).error_response();
        for (name, value) in res.headers() {
            if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                replacement.headers_mut().insert(name.clone(), value.clone());
            }
        }
        Ok(ErrorHandlerResponse::Response(ServiceResponse::new(req, replacement).map_into_right_body()))
    })
}

/// Wraps the session middleware, whose failures (a session that cannot be loaded or saved)
/// arrive as errors rather than responses, and come out as a bare 500. They leave as the JSON
/// error body instead, with the request id. A failure of the store is a 503: the store is the
/// database, the request may well have done its work (a login's user row is committed before
/// its session is saved), and the truthful answer is "retry later".
pub async fn session_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let request_id = req.extensions().get::<RequestId>().cloned();
    next.call(req).await.map_err(|error| {
        let cause = anyhow::anyhow!("session middleware: {error:?}");
        let api_error =
            if is_session_store_failure(&error) { ApiError::Unavailable(cause) } else { ApiError::Internal(cause) };
        let mut response = api_error.error_response();
        if let Some(value) = request_id.and_then(|id| header::HeaderValue::from_str(&id.0).ok()) {
            response.headers_mut().insert(header::HeaderName::from_static(REQUEST_ID_HEADER), value);
        }
        actix_web::error::InternalError::from_response(api_error.to_string(), response).into()
    })
}

/// actix-session hands every store failure over as an `InternalError` wrapping the store's
/// error type (its cause is not reachable from outside; the log line keeps it).
fn is_session_store_failure(error: &actix_web::Error) -> bool {
    use actix_session::storage::{LoadError, SaveError, UpdateError};
    use actix_web::error::InternalError;
    error.as_error::<InternalError<anyhow::Error>>().is_some()
        || error.as_error::<InternalError<LoadError>>().is_some()
        || error.as_error::<InternalError<SaveError>>().is_some()
        || error.as_error::<InternalError<UpdateError>>().is_some()
}

fn status_error(status: StatusCode) -> ApiError {
    match status {
        StatusCode::NOT_FOUND => ApiError::NotFound,
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::TooLarge { code: "body_too_large", message: "request body too large".into() }
        }
        s if s.is_client_error() => ApiError::Http(s),
        StatusCode::SERVICE_UNAVAILABLE => ApiError::Unavailable(anyhow::anyhow!("upstream unavailable")),
        _ => ApiError::Internal(anyhow::anyhow!("unhandled error response {status}")),
    }
}

/// The id of the request being served: the caller's `X-Request-Id` when it is a sane token,
/// otherwise a fresh UUID. Echoed in the response and recorded with logs and audit entries.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl RequestId {
    /// Accepts a caller's id only if it is short and plain, so it can be logged verbatim.
    pub fn from_header(value: Option<&str>) -> Self {
        match value {
            Some(id)
                if !id.is_empty()
                    && id.len() <= 128
                    && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)) =>
            {
                Self(id.to_owned())
            }
            _ => Self(uuid::Uuid::new_v4().to_string()),
        }
    }
}

/// When the request started (for the duration on its log line).
#[derive(Debug, Clone, Copy)]
pub struct RequestStart(pub std::time::Instant);

/// A metric label for the request method: one of the methods HTTP defines, or `other`. Any
/// token is a valid method, and each distinct label value is a new series kept for the
/// process's life, so a client must not be able to mint them.
fn method_label(method: &actix_web::http::Method) -> &'static str {
    const KNOWN: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"];
    KNOWN.into_iter().find(|known| *known == method.as_str()).unwrap_or("other")
}

/// The root span of every request, and its one log line when it ends: method, route pattern,
/// status, duration, request id, and the organization and user once known (`http::extract`).
/// Never headers, cookies, bodies or query strings (tokens and passwords live there).
pub struct ApiRootSpan;

impl tracing_actix_web::RootSpanBuilder for ApiRootSpan {
    fn on_request_start(request: &actix_web::dev::ServiceRequest) -> Span {
        let request_id = request.extensions().get::<RequestId>().map(|id| id.0.clone()).unwrap_or_default();
        let route = request.match_pattern().unwrap_or_else(|| "unmatched".into());
        tracing::info_span!(
            "request",
            method = %request.method(),
            route = %route,
            request_id = %request_id,
            org_id = tracing::field::Empty,
            user_id = tracing::field::Empty,
            status = tracing::field::Empty,
        )
    }

    fn on_request_end<B: actix_web::body::MessageBody>(
        span: Span,
        outcome: &Result<actix_web::dev::ServiceResponse<B>, actix_web::Error>,
    ) {
        let (status, started, labels) = match outcome {
            Ok(response) => {
                let request = response.request();
                let route = request.match_pattern().unwrap_or_else(|| "unmatched".into());
                let started = request.extensions().get::<RequestStart>().copied();
                let metrics = request.app_data::<actix_web::web::Data<AppState>>().map(|state| state.metrics.clone());
                let method = if request.extensions().contains::<ServedAsGet>() {
                    "HEAD"
                } else {
                    method_label(request.method())
                };
                (response.status().as_u16(), started, Some((method, route, metrics)))
            }
            Err(error) => (error.as_response_error().status_code().as_u16(), None, None),
        };
        let seconds = started.map(|s| s.0.elapsed().as_secs_f64()).unwrap_or_default();
        if let Some((method, route, Some(metrics))) = labels {
            let labels = [method, route.as_str(), &status.to_string()];
            metrics.http_requests.with_label_values(&labels).inc();
            metrics.http_duration.with_label_values(&labels).observe(seconds);
        }
        span.record("status", status);
        span.in_scope(|| tracing::info!(status, duration_ms = seconds * 1000.0, "request finished"));
    }
}
