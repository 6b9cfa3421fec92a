//! `ApiError`: the one error type handlers return, mapped to HTTP in exactly one place.
//!
//! Client errors carry a stable snake_case `code` and a message that is safe to show.
//! Everything unexpected becomes `Internal`: the client sees a generic 500, the log gets the
//! whole cause chain. Database text never reaches a response.

use actix_web::{http::StatusCode, HttpResponse, ResponseError};
use serde::Serialize;

use crate::{
    db::{refusals::Budget, DbError},
    domain::Invalid,
    storage::StorageError,
};

/// What a retryable refusal (503, 423) suggests a client wait before trying again.
const RETRY_AFTER_SECONDS: &str = "2";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is well-formed HTTP but its content is not acceptable.
    #[error("{}", .0.message)]
    Invalid(#[from] Invalid),
    #[error("authentication required")]
    Unauthenticated,
    /// Wrong password, unknown email and deactivated user all look exactly like this.
    #[error("invalid email or password")]
    InvalidCredentials,
    #[error("missing or invalid X-CSRF-Token header")]
    CsrfFailed,
    #[error("{0}")]
    Forbidden(&'static str),
    /// 403: only a signed-in session may do this, never a bearer token (docs/security.md,
    /// "What a token may do"): it would create a credential or a member that outlives the token.
    #[error("this needs a signed-in session: an API token cannot create credentials or members")]
    SessionRequired,
    /// Another tenant's object, a deleted object and a malformed id all answer this.
    #[error("not found")]
    NotFound,
    #[error("{message}")]
    Conflict { code: &'static str, message: &'static str },
    #[error("{message}")]
    TooLarge { code: &'static str, message: String },
    #[error("request body must be {0}")]
    UnsupportedMediaType(&'static str),
    #[error("too many failed login attempts; try again later")]
    TooManyAttempts,
    /// The organization already has its maximum of uploads in flight.
    #[error("too many uploads in progress for this organization; retry when one has finished")]
    TooManyUploads,
    /// The user already has their maximum of unfinished resumable uploads.
    #[error("too many unfinished resumable uploads; finish or terminate one (GET /api/files/tus lists them)")]
    TooManyOpenUploads,
    /// Too many requests from one client address (per-process limit on sign-in endpoints).
    #[error("too many requests from this address; slow down")]
    RateLimited,
    /// 429: the caller's organization holds its whole share of this process's database
    /// connections (`DB_POOL_ORG_SHARE`); other organizations' requests still go through.
    #[error("your organization has too many requests in progress; retry shortly")]
    OrganizationBusy,
    /// 429: the caller's organization has spent its request budget for now
    /// (`ORG_REQUESTS_PER_MINUTE`, or its plan's); `standing` goes out as its `RateLimit` fields.
    #[error("your organization has used its request budget; retry in {retry_after} s")]
    OverRequestBudget { standing: crate::http::Standing, retry_after: u64 },
    /// 423: another request is writing to this resumable upload right now (tusd's answer).
    #[error("another request is uploading to this upload right now; retry shortly")]
    Locked,
    #[error("service temporarily unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// A client error that actix answered before our handlers (a failed precondition, an
    /// unsatisfiable range, a wrong method): its status is kept, only the body becomes ours.
    #[error("{}", .0.canonical_reason().unwrap_or("request refused"))]
    Http(StatusCode),
    /// Readiness: the named dependencies do not answer.
    #[error("not ready: {0} unreachable")]
    NotReady(String),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid(Invalid::new(code, message))
    }

    /// Readiness: `NotReady` naming the dependencies whose check is false, if any.
    pub fn not_ready(checks: &[(&str, bool)]) -> Option<Self> {
        let failing: Vec<&str> = checks.iter().filter(|(_, ok)| !ok).map(|(name, _)| *name).collect();
        (!failing.is_empty()).then(|| ApiError::NotReady(failing.join(", ")))
    }

    /// The organization's budget this refuses a request by, if it is such a refusal.
    pub fn budget(&self) -> Option<Budget> {
        match self {
            ApiError::OverRequestBudget { .. } => Some(Budget::Requests),
            ApiError::OrganizationBusy => Some(Budget::Connections),
            ApiError::TooManyUploads => Some(Budget::UploadSlots),
            _ => None,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::Invalid(invalid) => invalid.code,
            ApiError::Unauthenticated => "unauthenticated",
            ApiError::InvalidCredentials => "invalid_credentials",
            ApiError::CsrfFailed => "csrf_failed",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::SessionRequired => "session_required",
            ApiError::NotFound => "not_found",
            ApiError::Conflict { code, .. } | ApiError::TooLarge { code, .. } => code,
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::TooManyAttempts => "too_many_attempts",
            ApiError::RateLimited => "rate_limited",
            ApiError::TooManyUploads => "too_many_uploads",
            ApiError::TooManyOpenUploads => "too_many_open_uploads",
            ApiError::OrganizationBusy => "organization_busy",
            ApiError::OverRequestBudget { .. } => "request_budget_exceeded",
            ApiError::Locked => "upload_locked",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::NotReady(_) => "not_ready",
            ApiError::Http(status) => http_code(*status),
            ApiError::Internal(_) => "internal_error",
        }
    }
}

/// The `code` of a status that only actix answers.
fn http_code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::NOT_ACCEPTABLE => "not_acceptable",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::LENGTH_REQUIRED => "length_required",
        StatusCode::PRECONDITION_FAILED => "precondition_failed",
        StatusCode::URI_TOO_LONG => "uri_too_long",
        StatusCode::RANGE_NOT_SATISFIABLE => "range_not_satisfiable",
        StatusCode::EXPECTATION_FAILED => "expectation_failed",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "headers_too_large",
        _ => "bad_request",
    }
}

/// Every error answer: `{"error": {"code": "snake_case", "message": "…"}}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `not_found`, `csrf_failed`, `quota_exceeded`, …
    #[schema(value_type = String, example = "not_found")]
    pub code: &'static str,
    /// Safe to show; never contains internals.
    pub message: String,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated | ApiError::InvalidCredentials => StatusCode::UNAUTHORIZED,
            ApiError::CsrfFailed | ApiError::Forbidden(_) | ApiError::SessionRequired => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooManyAttempts
            | ApiError::RateLimited
            | ApiError::TooManyUploads
            | ApiError::TooManyOpenUploads
            | ApiError::OrganizationBusy
            | ApiError::OverRequestBudget { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Locked => StatusCode::LOCKED,
            ApiError::Unavailable(_) | ApiError::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Http(status) => *status,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        // Logged once, here, where the error is turned into an answer.
        match self {
            ApiError::Internal(e) | ApiError::Unavailable(e) => {
                tracing::error!(error.message = %e, error.cause_chain = ?e, "request failed");
            }
            _ => tracing::debug!(error.code = self.code(), "request refused"),
        }
        let mut response = HttpResponse::build(self.status_code());
        // A dependency blipped, another request holds the upload, or the organization's other
        // requests hold its share: worth retrying soon, and clients that honour Retry-After
        // (tus clients do) wait this long first.
        if matches!(self, ApiError::Unavailable(_) | ApiError::Locked | ApiError::OrganizationBusy) {
            response.insert_header((actix_web::http::header::RETRY_AFTER, RETRY_AFTER_SECONDS));
        }
        if let ApiError::OverRequestBudget { standing, retry_after } = self {
            response.insert_header((actix_web::http::header::RETRY_AFTER, retry_after.to_string()));
            for field in standing.headers() {
                response.insert_header(field);
            }
        }
        response.json(ErrorBody { error: ErrorDetail { code: self.code(), message: self.to_string() } })
    }
}

/// Constraint names are the database's vocabulary for "this would break a rule"; here they
/// become the API's answers. Anything unrecognised is a bug and answers 500.
impl From<DbError> for ApiError {
    fn from(err: DbError) -> Self {
        match &err {
            DbError::Unavailable(_) => ApiError::Unavailable(err.into()),
            DbError::Unauthenticated => ApiError::Unauthenticated,
            DbError::Busy => ApiError::OrganizationBusy,
            // A value the request carried that PostgreSQL refuses (out of its range, a NUL in
            // text): the client's to fix. The handlers' own checks should have answered first.
            DbError::InvalidValue(_) => {
                tracing::warn!(error = %err, error.cause_chain = ?err, "the database refused a value from the request");
                ApiError::invalid("invalid_value", "a value in the request is outside what the service accepts")
            }
            // The handler's own checks should have answered first; the database is the backstop.
            DbError::Refused(_) => {
                tracing::warn!(error = %err, "the database refused a statement the handler allowed");
                ApiError::Forbidden("not allowed")
            }
            DbError::Constraint(name) => match name.as_str() {
                "organizations_name_key" => ApiError::Conflict {
                    code: "organization_name_taken",
                    message: "an organization with this name already exists",
                },
                "users_email_key" => {
                    ApiError::Conflict { code: "email_taken", message: "a user with this email already exists" }
                }
                "organizations_within_quota" => ApiError::TooLarge {
                    code: "quota_exceeded",
                    message: "this upload would exceed the organization's storage quota".into(),
                },
                "organizations_uploads_in_flight" => ApiError::TooManyUploads,
                "organizations_max_file_bytes" => ApiError::TooLarge {
                    code: "file_too_large",
                    message: "the file is larger than this organization accepts (max_file_bytes in GET /api/org)"
                        .into(),
                },
                "files_deleted_are_final" => ApiError::NotFound,
                "users_no_self_change" => {
                    ApiError::Forbidden("nobody changes their own role or deactivates themselves")
                }
                "users_role_change_by_owner" => ApiError::Forbidden("only owners change roles"),
                "users_owner_managed_by_owner" => ApiError::Forbidden("only owners deactivate or reactivate an owner"),
                "users_last_owner" => ApiError::Conflict {
                    code: "last_owner",
                    message: "an organization keeps at least one active owner",
                },
                _ => ApiError::Internal(err.into()),
            },
            _ => ApiError::Internal(err.into()),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::TooLarge { limit_bytes } => ApiError::TooLarge {
                code: "file_too_large",
                message: format!("file exceeds the limit of {} MB", limit_bytes / 1_048_576),
            },
            StorageError::Body(message) => ApiError::invalid("invalid_multipart", message),
            StorageError::Failed(_) => ApiError::Unavailable(err.into()),
            StorageError::NotFound => ApiError::Internal(err.into()),
        }
    }
}
