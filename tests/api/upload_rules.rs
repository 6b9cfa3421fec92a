//! Per-organization upload rules (#27, `PATCH /api/org`, migrations V28): the largest file an
//! organization accepts, refused at once when an upload declares more, and the types it accepts,
//! judged by the worker on the sniffed content (not the client's `Content-Type`).

use reqwest::{multipart, StatusCode};
use serde_json::{json, Value};

use crate::{
    helpers::{assert_error, spawn_app, TestUser},
    tus::Tus,
};

const PNG: &[u8] = &[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D, b'I', b'H', b'D', b'R'];
const PDF: &[u8] = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n";

async fn org(user: &TestUser) -> Value {
    let response = user.get("/api/org").await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

async fn set_rules(user: &TestUser, rules: Value) -> reqwest::Response {
    user.patch("/api/org", rules).await
}

#[tokio::test]
async fn owners_and_admins_set_the_rules_and_members_cannot() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let admin = app.add_user(&owner, "admin").await;
    let member = app.add_user(&owner, "member").await;
    assert_eq!(
        (org(&owner).await["max_file_bytes"].clone(), org(&owner).await["allowed_types"].clone()),
        (json!(null), json!(null))
    );

    let set =
        set_rules(&owner, json!({ "max_file_bytes": 1000, "allowed_types": ["image/*", "Application/PDF"] })).await;
    assert_eq!(set.status(), StatusCode::OK);
    let body: Value = set.json().await.unwrap();
    assert_eq!(body["max_file_bytes"], 1000);
    assert_eq!(body["allowed_types"], json!(["image/*", "application/pdf"]));
    assert_eq!(org(&member).await["allowed_types"], json!(["image/*", "application/pdf"]), "members see the rules");

    // A field left out stays; null removes that rule.
    let changed = set_rules(&admin, json!({ "max_file_bytes": null })).await;
    assert_eq!(changed.status(), StatusCode::OK);
    let now = org(&owner).await;
    assert_eq!(
        (now["max_file_bytes"].clone(), now["allowed_types"].clone()),
        (json!(null), json!(["image/*", "application/pdf"]))
    );

    assert_error(set_rules(&member, json!({ "max_file_bytes": 5 })).await, StatusCode::FORBIDDEN, "forbidden").await;
    assert_eq!(org(&owner).await["max_file_bytes"], json!(null), "the member changed nothing");

    let audited: Value = owner.get("/api/org/audit").await.json().await.unwrap();
    let changes =
        audited["entries"].as_array().unwrap().iter().filter(|e| e["action"] == "upload_rules_changed").count();
    assert_eq!(changes, 2, "{audited}");
}

#[tokio::test]
async fn bad_rules_are_a_400_and_change_nothing() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let service_limit = app.config.limits.max_file_size_bytes();
    for (body, code) in [
        (json!({ "max_file_bytes": 0 }), "invalid_max_file_bytes"),
        (json!({ "max_file_bytes": -5 }), "invalid_max_file_bytes"),
        (json!({ "max_file_bytes": service_limit + 1 }), "invalid_max_file_bytes"),
        (json!({ "allowed_types": [] }), "invalid_allowed_types"),
        (json!({ "allowed_types": ["image"] }), "invalid_allowed_types"),
        (json!({ "allowed_types": ["../etc/passwd"] }), "invalid_allowed_types"),
        (json!({ "allowed_types": ["image/png\u{0}"] }), "invalid_allowed_types"),
        (json!({ "allowed_types": vec!["image/png"; 51] }), "invalid_allowed_types"),
        (json!({}), "invalid_body"),
    ] {
        assert_error(set_rules(&owner, body.clone()).await, StatusCode::BAD_REQUEST, code).await;
    }
    for body in [json!({ "max_file_bytes": "big" }), json!({ "allowed_types": "image/*" }), json!({ "name": "x" })] {
        let response = set_rules(&owner, body.clone()).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
    }
    let malformed = owner
        .changing(reqwest::Method::PATCH, "/api/org")
        .header("content-type", "application/json")
        .body("{\"max_file_bytes\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    let now = org(&owner).await;
    assert_eq!((now["max_file_bytes"].clone(), now["allowed_types"].clone()), (json!(null), json!(null)));
}

/// One organization's rules are its own: another's uploads are untouched, and the database, not
/// the handler, keeps a member (or another organization) from changing them.
#[tokio::test]
async fn the_rules_stay_in_their_organization_and_the_database_refuses_a_member() {
    let app = spawn_app().await;
    let a = app.register_org().await;
    let b = app.register_org().await;
    assert_eq!(
        set_rules(&a, json!({ "max_file_bytes": 10, "allowed_types": ["application/pdf"] })).await.status(),
        StatusCode::OK
    );
    assert_eq!(org(&b).await["max_file_bytes"], json!(null));
    assert_eq!(b.upload("notes.txt", "longer than ten bytes").await.status(), StatusCode::CREATED);

    // As the app role with a member's context, and with B's: an unfiltered UPDATE changes nothing.
    let member = app.add_user(&a, "member").await;
    for (user, sql) in [
        (&member, "update app.organizations set max_file_bytes = null returning id"),
        (&b, "update app.organizations set max_file_bytes = 1 where id <> (select app.current_org_id()) returning id"),
    ] {
        let db = app.app_role_as(user).await;
        assert!(db.query(sql, &[]).await.unwrap().is_empty(), "{sql}");
    }
    assert_eq!(org(&a).await["max_file_bytes"], 10);
}

#[tokio::test]
async fn an_upload_declaring_more_than_the_organization_accepts_is_refused_at_once() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    assert_eq!(set_rules(&owner, json!({ "max_file_bytes": 100 * 1024 })).await.status(), StatusCode::OK);

    let large = vec![b'a'; 200 * 1024];
    assert_error(owner.upload("large.txt", large.clone()).await, StatusCode::PAYLOAD_TOO_LARGE, "file_too_large").await;
    assert_eq!(owner.upload("small.txt", vec![b'a'; 90 * 1024]).await.status(), StatusCode::CREATED);

    // Without a declared length, the bytes past the limit end it.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = large.chunks(16 * 1024).map(|c| Ok(c.to_vec())).collect();
    let streamed = multipart::Part::stream(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .file_name("streamed.txt");
    let response = owner.upload_form(multipart::Form::new().part("file", streamed)).await;
    assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "file_too_large").await;

    // A resumable upload declares its length when it is created.
    let tus = Tus::new(&app, &owner).await;
    assert_error(tus.create(200 * 1024, "large.txt").await, StatusCode::PAYLOAD_TOO_LARGE, "file_too_large").await;
    assert_eq!(tus.create(90 * 1024, "small.txt").await.status(), StatusCode::CREATED);

    // Only the one small file was kept, and nothing is left reserved.
    app.assert_stored_files(1).await;
    let usage: Value = owner.get("/api/org/usage").await.json().await.unwrap();
    assert_eq!(usage["storage"]["reserved_bytes"], 90 * 1024, "the open resumable upload's reservation alone: {usage}");
    // An upload refused on the way leaves no event either: its transaction never committed.
    let events: Value = owner.get("/api/events").await.json().await.unwrap();
    let uploaded = events["events"].as_array().unwrap().iter().filter(|e| e["type"] == "file.uploaded").count();
    assert_eq!(uploaded, 1, "{events}");
}

#[tokio::test]
async fn a_file_whose_sniffed_type_is_not_accepted_fails_with_the_reason() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    assert_eq!(set_rules(&owner, json!({ "allowed_types": ["application/pdf"] })).await.status(), StatusCode::OK);
    let _worker = app.start_worker();

    // The client's Content-Type says PDF; the content is a PNG.
    let disguised = multipart::Part::bytes(PNG.to_vec()).file_name("logo.png").mime_str("application/pdf").unwrap();
    let disguised = upload_id(owner.upload_form(multipart::Form::new().part("file", disguised)).await).await;
    let pdf = upload_id(owner.upload("report.pdf", PDF.to_vec()).await).await;

    let failed = app.wait_for_status(&owner, &disguised, "failed").await;
    let reason = failed["error_message"].as_str().unwrap();
    assert!(reason.contains("image/png") && reason.contains("does not accept (allowed: application/pdf)"), "{reason}");
    let ready = app.wait_for_status(&owner, &pdf, "ready").await;
    assert_eq!(ready["mime_type"], "application/pdf");
}

async fn upload_id(response: reqwest::Response) -> String {
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    body["file_id"].as_str().unwrap().to_owned()
}
