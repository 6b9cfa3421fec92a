//! The OpenAPI document: generated from the handlers' own annotations (a route cannot exist
//! without its entry), plus the HEAD each GET answers, and what the service reads from it —
//! the query parameters each operation declares (any other is refused).

use super::routes;

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

/// The OpenAPI document of [`routes`](super::routes), as served at `/api/openapi.json`: the handlers' own
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
        for operation in
            [&mut item.get, &mut item.post, &mut item.patch, &mut item.delete, &mut item.put, &mut item.head]
                .into_iter()
                .flatten()
        {
            if operation.security.as_ref().is_some_and(|required| !required.is_empty()) {
                add_budget_refusals(operation);
            }
        }
    }
    openapi
}

/// Every authenticated operation may be refused by its organization's budgets (docs/scaling.md,
/// "Fair share between organizations"): its 429 says so, beside what the operation's own 429
/// says (an upload's `too_many_uploads`).
fn add_budget_refusals(operation: &mut utoipa::openapi::path::Operation) {
    use utoipa::openapi::{header::Header, Content, Ref, RefOr, ResponseBuilder};
    const BUDGETS: &str = "`request_budget_exceeded`: the organization has spent its request budget (`Retry-After`, \
        `RateLimit-Policy`, `RateLimit`); `organization_busy`: it holds its share of the database connections \
        (`Retry-After`).";
    let responses = &mut operation.responses.responses;
    let description = match responses.get("429") {
        Some(RefOr::T(own)) => format!("{}; also {BUDGETS}", own.description.trim_end_matches('.')),
        _ => BUDGETS.to_owned(),
    };
    let header = |description: &str| {
        let mut header =
            Header::new(utoipa::openapi::ObjectBuilder::new().schema_type(utoipa::openapi::schema::Type::String));
        header.description = Some(description.to_owned());
        header
    };
    let refused = ResponseBuilder::new()
        .description(description)
        .content("application/json", Content::new(Some(Ref::from_schema_name("ErrorBody"))))
        .header("Retry-After", header("seconds to wait before retrying"))
        .header(
            "RateLimit-Policy",
            header("`\"org\";q=<requests>;w=60`: the organization's quota per window (request budget only)"),
        )
        .header(
            "RateLimit",
            header("`\"org\";r=<remaining>;t=<seconds>` (request budget only; every authenticated answer has it)"),
        )
        .build();
    responses.insert("429".to_owned(), RefOr::T(refused));
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
