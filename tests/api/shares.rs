//! Expiring share links: created by whoever may change the file, opened without a session at
//! `/api/shared/{secret}`, dead once expired or revoked, and never a way into anything else.

use std::time::Duration;

use reqwest::{header, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_error, begin_as, spawn_app, spawn_app_with, Settings, TestApp, TestUser};

/// An uploaded file, made ready behind the API's back (no worker runs here).
pub(crate) async fn ready_file(app: &TestApp, user: &TestUser, name: &str, bytes: &str) -> String {
    let id = user.upload_ok(name, bytes).await;
    app.as_user(
        user,
        &format!(
            "update app.files set status = 'ready', mime_type = 'text/plain', processed_at = now() where id = '{id}'"
        ),
    )
    .await;
    id
}

pub(crate) async fn share(user: &TestUser, file_id: &str, seconds: u32) -> Value {
    let created = user.post(&format!("/api/files/{file_id}/links"), json!({ "expires_in_seconds": seconds })).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    created.json().await.unwrap()
}

/// Opened by someone with no session at all.
async fn open(url: &str) -> reqwest::Response {
    reqwest::Client::new().get(url).send().await.unwrap()
}

async fn audit_actions(app: &TestApp, org_id: &str) -> Vec<String> {
    let rows = app
        .superuser()
        .await
        .query(
            "select action from app.audit_log where organization_id = $1::text::uuid order by created_at, action",
            &[&org_id],
        )
        .await
        .unwrap();
    rows.iter().map(|row| row.get(0)).collect()
}

#[tokio::test]
async fn a_link_downloads_without_a_session_until_it_is_revoked() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let id = ready_file(&app, &owner, "report.txt", "quarterly numbers").await;

    let link = share(&owner, &id, 3600).await;
    let url = link["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&format!("{}/api/shared/tfs_", app.address)), "{url}");

    let opened = open(&url).await;
    assert_eq!(opened.status(), StatusCode::OK);
    let headers = opened.headers().clone();
    assert!(headers[header::CONTENT_DISPOSITION].to_str().unwrap().starts_with("attachment"));
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
    assert!(headers.get(header::SET_COOKIE).is_none(), "no session is made for a link");
    assert_eq!(opened.bytes().await.unwrap(), "quarterly numbers");
    let client = reqwest::Client::new();
    let partial = client.get(&url).header(header::RANGE, "bytes=0-8").send().await.unwrap();
    assert_eq!(partial.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(partial.bytes().await.unwrap(), "quarterly");
    let unchanged = client.get(&url).header(header::IF_NONE_MATCH, &headers[header::ETAG]).send().await.unwrap();
    assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED);
    let head = client.head(&url).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()[header::CONTENT_LENGTH], "17");

    // Listed without its secret.
    let listed: Value = owner.get(&format!("/api/files/{id}/links")).await.json().await.unwrap();
    assert_eq!(listed["links"][0]["id"], link["id"]);
    assert_eq!(listed["links"][0]["created_by_email"], owner.email);
    let secret = url.rsplit('/').next().unwrap();
    assert!(!listed.to_string().contains(secret), "{listed}");

    let revoked = owner.delete_path(&format!("/api/files/{id}/links/{}", link["id"].as_str().unwrap())).await;
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    assert_error(open(&url).await, StatusCode::NOT_FOUND, "not_found").await;
    let listed: Value = owner.get(&format!("/api/files/{id}/links")).await.json().await.unwrap();
    assert!(listed["links"][0]["revoked_at"].is_string());

    let actions = audit_actions(&app, &owner.org_id).await;
    for action in ["share_link_created", "share_link_used", "share_link_revoked"] {
        assert!(actions.iter().any(|a| a == action), "{action} in {actions:?}");
    }
}

/// Expired, revoked, deleted-file and deactivated-creator links are all the same 404.
#[tokio::test]
async fn a_link_dies_with_its_expiry_its_file_and_its_creator() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let admin = app.add_user(&owner, "admin").await;
    let expiring = share(&owner, &ready_file(&app, &owner, "a.txt", "a").await, 1).await;
    let deleted_file = ready_file(&app, &owner, "b.txt", "b").await;
    let of_deleted = share(&owner, &deleted_file, 3600).await;
    let of_admin = share(&admin, &ready_file(&app, &owner, "c.txt", "c").await, 3600).await;
    for link in [&expiring, &of_deleted, &of_admin] {
        assert_eq!(open(link["url"].as_str().unwrap()).await.status(), StatusCode::OK);
    }

    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(owner.delete(&deleted_file).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(owner.deactivate(&admin.user_id).await.status(), StatusCode::OK);

    for link in [&expiring, &of_deleted, &of_admin] {
        assert_error(open(link["url"].as_str().unwrap()).await, StatusCode::NOT_FOUND, "not_found").await;
    }
    let unknown = format!("{}/api/shared/tfs_{}", app.address, "0".repeat(64));
    assert_error(open(&unknown).await, StatusCode::NOT_FOUND, "not_found").await;
    let oversized = format!("{}/api/shared/{}", app.address, "x".repeat(10_000));
    assert_error(open(&oversized).await, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn another_organization_cannot_see_create_or_revoke_a_files_links() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let stranger = app.register_org().await;
    let id = ready_file(&app, &owner, "mine.txt", "mine").await;
    let link = share(&owner, &id, 3600).await;
    let link_id = link["id"].as_str().unwrap();

    let create = stranger.post(&format!("/api/files/{id}/links"), json!({ "expires_in_seconds": 60 })).await;
    assert_error(create, StatusCode::NOT_FOUND, "not_found").await;
    assert_error(stranger.get(&format!("/api/files/{id}/links")).await, StatusCode::NOT_FOUND, "not_found").await;
    let revoke = stranger.delete_path(&format!("/api/files/{id}/links/{link_id}")).await;
    assert_error(revoke, StatusCode::NOT_FOUND, "not_found").await;
    // Their own file's path with our link's id: still nothing of ours.
    let theirs = ready_file(&app, &stranger, "theirs.txt", "theirs").await;
    let crossed = stranger.delete_path(&format!("/api/files/{theirs}/links/{link_id}")).await;
    assert_error(crossed, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(open(link["url"].as_str().unwrap()).await.status(), StatusCode::OK, "the link still works");
}

/// Members share their own files; owners and admins any file of the organization.
#[tokio::test]
async fn members_share_only_their_own_files() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let member = app.add_user(&owner, "member").await;
    let admin = app.add_user(&owner, "admin").await;
    let owners_file = ready_file(&app, &owner, "owner.txt", "o").await;
    let members_file = ready_file(&app, &member, "member.txt", "m").await;

    let refused = member.post(&format!("/api/files/{owners_file}/links"), json!({ "expires_in_seconds": 60 })).await;
    assert_error(refused, StatusCode::FORBIDDEN, "forbidden").await;
    assert_error(member.get(&format!("/api/files/{owners_file}/links")).await, StatusCode::FORBIDDEN, "forbidden")
        .await;
    share(&member, &members_file, 60).await;
    let by_admin = share(&admin, &members_file, 60).await;
    let listed: Value = member.get(&format!("/api/files/{members_file}/links")).await.json().await.unwrap();
    assert_eq!(listed["links"].as_array().unwrap().len(), 2, "the uploader sees every link to their file");
    let revoked =
        owner.delete_path(&format!("/api/files/{members_file}/links/{}", by_admin["id"].as_str().unwrap())).await;
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn bad_link_requests_are_refused_with_a_clear_error() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let id = ready_file(&app, &owner, "x.txt", "x").await;
    let path = format!("/api/files/{id}/links");
    for (body, code) in [
        (json!({ "expires_in_seconds": 0 }), "invalid_expiry"),
        (json!({ "expires_in_seconds": 604_801 }), "invalid_expiry"),
        (json!({ "expires_in_seconds": "soon" }), "invalid_body"),
        (json!({ "expires_in_seconds": 60, "file_id": id }), "invalid_body"),
        (json!({}), "invalid_body"),
    ] {
        assert_error(owner.post(&path, body).await, StatusCode::BAD_REQUEST, code).await;
    }
    let pending = owner.upload_ok("pending.txt", "not validated yet").await;
    let not_ready = owner.post(&format!("/api/files/{pending}/links"), json!({ "expires_in_seconds": 60 })).await;
    assert_error(not_ready, StatusCode::CONFLICT, "file_not_ready").await;
    let malformed = owner.post("/api/files/not-a-uuid/links", json!({ "expires_in_seconds": 60 })).await;
    assert_error(malformed, StatusCode::NOT_FOUND, "not_found").await;
    let unknown_link = owner.delete_path(&format!("{path}/{}", uuid::Uuid::new_v4())).await;
    assert_error(unknown_link, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(owner.get(&path).await.json::<Value>().await.unwrap()["links"], json!([]), "nothing was created");
}

/// Opening links is limited per client address (there is no session to limit instead).
#[tokio::test]
async fn opening_links_is_rate_limited_per_address() {
    let app = spawn_app_with(Settings { share_rate_per_minute: 1, share_rate_burst: 3, ..Settings::default() }).await;
    let owner = app.register_org().await;
    let link = share(&owner, &ready_file(&app, &owner, "x.txt", "x").await, 60).await;
    let url = link["url"].as_str().unwrap();
    for _ in 0..3 {
        assert_eq!(open(url).await.status(), StatusCode::OK);
    }
    assert_error(open(url).await, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    let guessing = format!("{}/api/shared/tfs_guess", app.address);
    assert_error(open(&guessing).await, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
}

/// How many links the policies let `user` see, with no filter at all in the query.
async fn links_visible_to(db: &tokio_postgres::Client, user: &TestUser) -> i64 {
    begin_as(db, user).await;
    let n: i64 = db.query_one("select count(*) from app.share_links", &[]).await.unwrap().get(0);
    db.batch_execute("rollback").await.unwrap();
    n
}

/// The database, not the handler, keeps links apart: through the app role, another tenant's
/// context sees none, a member's sees only links to their own files, and a link can only point
/// at a file of its own organization.
#[tokio::test]
async fn the_database_keeps_links_to_their_organization_and_their_files() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let member = app.add_user(&owner, "member").await;
    let stranger = app.register_org().await;
    let owners_file = ready_file(&app, &owner, "o.txt", "o").await;
    share(&owner, &owners_file, 60).await;
    share(&member, &ready_file(&app, &member, "m.txt", "m").await, 60).await;

    let db = app.app_role().await;
    assert_eq!(links_visible_to(&db, &owner).await, 2);
    assert_eq!(links_visible_to(&db, &member).await, 1);
    assert_eq!(links_visible_to(&db, &stranger).await, 0);

    // The stranger, as an owner of their organization, points a link at our file.
    begin_as(&db, &stranger).await;
    let planted = db
        .execute(
            "insert into app.share_links (id, organization_id, file_id, created_by, secret_hash, expires_at)
             values (gen_random_uuid(), $1::text::uuid, $2::text::uuid, $3::text::uuid, sha256('x'), now() + interval '1 hour')",
            &[&stranger.org_id, &owners_file, &stranger.user_id],
        )
        .await;
    let refusal = planted.expect_err("a link to another organization's file is refused");
    let constraint = refusal.as_db_error().and_then(|e| e.constraint().map(str::to_owned));
    assert_eq!(constraint.as_deref(), Some("share_links_file_fkey"), "{refusal:?}");
}
