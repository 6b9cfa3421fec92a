//! Tracing setup and the one way to run blocking work without losing the request's span.

use tracing::Span;
use tracing_subscriber::{fmt, layer::SubscriberExt, util::SubscriberInitExt, EnvFilter};

use crate::config::LogFormat;

/// Installs the global subscriber. `RUST_LOG` overrides the default `info` filter.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    // Logs go to stderr: stdout belongs to command output (`--mode rls-audit --format json`).
    // try_init: tests install one subscriber per process and may call this again.
    let _ = match format {
        LogFormat::Text => registry.with(fmt::layer().with_writer(std::io::stderr)).try_init(),
        LogFormat::Json => {
            registry.with(fmt::layer().json().flatten_event(true).with_writer(std::io::stderr)).try_init()
        }
    };
}

/// `spawn_blocking` that re-enters the caller's span, so logs from bcrypt or hashing threads
/// keep their request id.
pub fn spawn_blocking_with_tracing<F, R>(f: F) -> tokio::task::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let span = Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
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
/// status, duration, request id, and the organization and user once `Authed` knows them.
/// Never headers, cookies, bodies or query strings (tokens and passwords live there).
pub struct ApiRootSpan;

impl tracing_actix_web::RootSpanBuilder for ApiRootSpan {
    fn on_request_start(request: &actix_web::dev::ServiceRequest) -> Span {
        use actix_web::HttpMessage;
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
        use actix_web::HttpMessage;
        let (status, started, labels) = match outcome {
            Ok(response) => {
                let request = response.request();
                let route = request.match_pattern().unwrap_or_else(|| "unmatched".into());
                let started = request.extensions().get::<RequestStart>().copied();
                (response.status().as_u16(), started, Some((method_label(request.method()), route)))
            }
            Err(error) => (error.as_response_error().status_code().as_u16(), None, None),
        };
        let seconds = started.map(|s| s.0.elapsed().as_secs_f64()).unwrap_or_default();
        if let Some((method, route)) = labels {
            let metrics = &crate::metrics::METRICS;
            let labels = [method, route.as_str(), &status.to_string()];
            metrics.http_requests.with_label_values(&labels).inc();
            metrics.http_duration.with_label_values(&labels).observe(seconds);
        }
        span.record("status", status);
        span.in_scope(|| tracing::info!(status, duration_ms = seconds * 1000.0, "request finished"));
    }
}
