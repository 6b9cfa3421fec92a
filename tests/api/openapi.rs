//! The OpenAPI document is generated from the handlers, covers every route, and is committed
//! as docs/openapi.json.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::spawn_app;

/// Every endpoint of the contract (DESIGN.md), as `METHOD /path`.
const CONTRACT: &[&str] = &[
    "POST /api/auth/register",
    "POST /api/auth/login",
    "POST /api/auth/logout",
    "GET /api/auth/me",
    "POST /api/files/upload",
    "GET /api/files",
    "GET /api/files/{id}",
    "GET /api/files/{id}/download",
    "PATCH /api/files/{id}",
    "DELETE /api/files/{id}",
    "POST /api/files/bulk-delete",
    "OPTIONS /api/files/tus",
    "GET /api/files/tus",
    "POST /api/files/tus",
    "GET /api/files/tus/{id}",
    "PATCH /api/files/tus/{id}",
    "DELETE /api/files/tus/{id}",
    "POST /api/files/{id}/links",
    "GET /api/files/{id}/links",
    "DELETE /api/files/{id}/links/{link_id}",
    "GET /api/shared/{secret}",
    "GET /api/org",
    "PATCH /api/org",
    "GET /api/events",
    "GET /api/org/users",
    "GET /api/org/users/{id}",
    "PATCH /api/org/users/{id}",
    "POST /api/org/users/{id}/deactivate",
    "POST /api/org/users/{id}/reactivate",
    "POST /api/org/invitations",
    "GET /api/org/invitations",
    "GET /api/org/invitations/{id}",
    "GET /api/org/audit",
    "GET /api/org/audit/{id}",
    "GET /api/org/links",
    "DELETE /api/org/links/{id}",
    "GET /api/org/usage",
    "POST /api/org/webhooks",
    "GET /api/org/webhooks",
    "GET /api/org/webhooks/{id}",
    "DELETE /api/org/webhooks/{id}",
    "POST /api/org/webhooks/{id}/secret",
    "GET /api/org/webhooks/{id}/deliveries",
    "POST /api/org/webhooks/{id}/deliveries/{delivery_id}/retry",
    "POST /api/tokens",
    "GET /api/tokens",
    "GET /api/tokens/{id}",
    "DELETE /api/tokens/{id}",
    "GET /healthz",
    "GET /readyz",
    "GET /metrics",
    "GET /api/openapi.json",
];

fn operations(spec: &Value) -> BTreeSet<String> {
    let mut ops = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for method in item.as_object().unwrap().keys() {
            ops.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    ops
}

#[tokio::test]
async fn the_document_covers_exactly_the_contracts_endpoints_and_is_committed() {
    let app = spawn_app().await;
    let response = app.client().get(app.url("/api/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let spec: Value = response.json().await.unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));

    // Every GET answers HEAD too, and says so.
    let heads = CONTRACT.iter().filter_map(|op| op.strip_prefix("GET ")).map(|path| format!("HEAD {path}"));
    let expected: BTreeSet<String> = CONTRACT.iter().map(|s| s.to_string()).chain(heads).collect();
    assert_eq!(operations(&spec), expected);
    for schema in ["ErrorBody", "FileDetail", "SignedInResponse", "UserList", "AuditRow"] {
        assert!(spec["components"]["schemas"][schema].is_object(), "schema {schema}");
    }

    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
    let generated = serde_json::to_string_pretty(&spec).unwrap() + "\n";
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let committed: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(committed, spec, "docs/openapi.json is stale: run the tests with UPDATE_OPENAPI=1");
}

/// Every operation in the document reaches a real route (the router's pattern, not "unmatched",
/// shows up in the request metrics).
#[tokio::test]
async fn every_documented_operation_is_routed() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let spec: Value = app.client().get(app.url("/api/openapi.json")).send().await.unwrap().json().await.unwrap();
    for op in operations(&spec) {
        let (method, path) = op.split_once(' ').unwrap();
        let concrete = path.replace("{id}", &uuid::Uuid::new_v4().to_string());
        owner
            .client
            .request(Method::from_bytes(method.as_bytes()).unwrap(), app.url(&concrete))
            .header("X-CSRF-Token", "not-the-token") // state changes stop at the CSRF check
            .send()
            .await
            .unwrap();
    }
    let metrics = app.client().get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for op in operations(&spec) {
        let (method, path) = op.split_once(' ').unwrap();
        let series = format!(r#"http_requests_total{{method="{method}",route="{path}","#);
        assert!(metrics.contains(&series), "{op} was not routed");
    }
}

/// The routing code only registers documented handlers (`service(...)`); a `route(...)` or
/// `web::resource(...)` would add a route the document cannot see.
#[test]
fn routes_are_only_registered_as_documented_services() {
    let mut dirs = vec![std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src/http"))];
    let mut checked = 0;
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let source = std::fs::read_to_string(&path).unwrap();
            for forbidden in [".route(", "web::resource(", "web::scope("] {
                assert!(!source.contains(forbidden), "{} uses {forbidden}", path.display());
            }
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} files under src/http were read");
}
