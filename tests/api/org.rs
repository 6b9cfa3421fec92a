//! Organization endpoints, invitations, API tokens and the audit log.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_error, random_email, spawn_app, Bearer, PASSWORD};

#[tokio::test]
async fn org_shows_quota_usage_and_active_member_count() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let member = app.add_user(&owner, "member").await;
    owner.upload_ok("a.txt", "12345").await;

    let org: Value = member.get("/api/org").await.json().await.unwrap();
    assert_eq!(org["id"], owner.org_id);
    assert_eq!(org["storage_quota_mb"], 1000);
    assert_eq!(org["storage_used_bytes"], 5);
    assert_eq!(org["member_count"], 2);
    assert!(org["name"].as_str().unwrap().starts_with("org-"));

    assert_eq!(owner.deactivate(&member.user_id).await.status(), StatusCode::OK);
    let org: Value = owner.get("/api/org").await.json().await.unwrap();
    assert_eq!(org["member_count"], 1);
}

#[tokio::test]
async fn an_invitation_joins_the_inviting_organization_with_the_invited_role_once() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let email = random_email();
    let response = owner.post("/api/org/invitations", json!({ "email": email, "role": "admin" })).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let invitation: Value = response.json().await.unwrap();
    assert_eq!(invitation["role"], "admin");
    assert!(invitation["expires_at"].is_string());
    let token = invitation["invitation_token"].as_str().unwrap();

    let register = |email: String| {
        let client = app.client();
        let url = app.url("/api/auth/register");
        let token = token.to_owned();
        async move {
            client
                .post(url)
                .json(&json!({ "email": email, "password": PASSWORD, "invitation_token": token }))
                .send()
                .await
                .unwrap()
        }
    };
    let joined = register(email.clone()).await;
    assert_eq!(joined.status(), StatusCode::CREATED);
    let joined: Value = joined.json().await.unwrap();
    assert_eq!(joined["organization_id"], owner.org_id);
    assert_eq!(joined["role"], "admin");

    // Single use.
    assert_error(register(email.to_uppercase()).await, StatusCode::BAD_REQUEST, "invalid_invitation").await;
    let listed: Value = owner.get("/api/org/invitations").await.json().await.unwrap();
    assert_eq!(listed["total"], 1);
    assert!(listed["invitations"][0]["accepted_at"].is_string());
    assert!(listed["invitations"][0].get("invitation_token").is_none(), "the token is shown once only");
}

#[tokio::test]
async fn only_owners_and_admins_invite_and_only_owners_invite_owners() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let admin = app.add_user(&owner, "admin").await;
    let member = app.add_user(&owner, "member").await;

    assert_error(
        member.post("/api/org/invitations", json!({ "email": random_email(), "role": "member" })).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_error(
        admin.post("/api/org/invitations", json!({ "email": random_email(), "role": "owner" })).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    admin.invite_ok(&random_email(), "admin").await;
    owner.invite_ok(&random_email(), "owner").await;
    for bad in [
        json!({ "email": "nope", "role": "member" }),
        json!({ "email": random_email(), "role": "root" }),
        json!({ "email": random_email() }),
    ] {
        assert_eq!(owner.post("/api/org/invitations", bad).await.status(), StatusCode::BAD_REQUEST);
    }
}

#[tokio::test]
async fn register_needs_exactly_one_of_organization_name_and_invitation_token() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let token = owner.invite_ok(&random_email(), "member").await;
    let client = app.client();
    for body in [
        json!({ "email": random_email(), "password": PASSWORD }),
        json!({ "email": random_email(), "password": PASSWORD, "organization_name": "X", "invitation_token": token }),
    ] {
        let response = client.post(app.url("/api/auth/register")).json(&body).send().await.unwrap();
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_body").await;
    }
}

#[tokio::test]
async fn owners_manage_roles_and_admins_manage_activation() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let admin = app.add_user(&owner, "admin").await;
    let member = app.add_user(&owner, "member").await;

    let promoted = owner.set_role(&member.user_id, "admin").await;
    assert_eq!(promoted.status(), StatusCode::OK);
    let promoted: Value = promoted.json().await.unwrap();
    assert_eq!(promoted["role"], "admin");
    assert_eq!(owner.set_role(&member.user_id, "member").await.status(), StatusCode::OK);

    let deactivated = admin.deactivate(&member.user_id).await;
    assert_eq!(deactivated.status(), StatusCode::OK);
    assert_eq!(deactivated.json::<Value>().await.unwrap()["is_active"], false);
    let listed: Value = admin.get("/api/org/users").await.json().await.unwrap();
    assert_eq!(listed["total"], 3);
    let row = listed["users"].as_array().unwrap().iter().find(|u| u["id"] == member.user_id).unwrap().clone();
    assert_eq!((row["role"].as_str(), row["is_active"].as_bool()), (Some("member"), Some(false)));

    assert_eq!(admin.reactivate(&member.user_id).await.status(), StatusCode::OK);
    assert_eq!(app.login(&member.email, PASSWORD).await.me().await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_personal_token_authenticates_scripts_without_csrf_until_revoked() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let (id, secret) = owner.create_token("ci").await;
    assert!(secret.starts_with("tfp_"));
    let script = Bearer::new(&app, &secret);

    let me: Value = script.request(Method::GET, "/api/auth/me").send().await.unwrap().json().await.unwrap();
    assert_eq!(me["user_id"], owner.user_id);
    assert!(me["csrf_token"].is_null());
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(b"from ci".to_vec()).file_name("ci.txt"));
    let upload = script.request(Method::POST, "/api/files/upload").multipart(form).send().await.unwrap();
    assert_eq!(upload.status(), StatusCode::CREATED, "no CSRF token needed with a bearer token");

    let listed: Value = owner.get("/api/tokens").await.json().await.unwrap();
    assert_eq!(listed["tokens"][0]["id"], id);
    assert_eq!(listed["tokens"][0]["name"], "ci");
    assert!(listed["tokens"][0]["last_used_at"].is_string());
    assert!(listed["tokens"][0].get("secret").is_none());

    assert_eq!(owner.delete_path(&format!("/api/tokens/{id}")).await.status(), StatusCode::NO_CONTENT);
    let after = script.request(Method::GET, "/api/files").send().await.unwrap();
    assert_error(after, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    assert_error(owner.get(&format!("/api/tokens/{id}")).await, StatusCode::NOT_FOUND, "not_found").await;
}

/// A token must not be able to outlive itself: a 1-day token minting a 365-day one would turn
/// a short-lived leak into a year's access, and survive the revocation of the leaked token.
#[tokio::test]
async fn a_token_cannot_create_tokens() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let (_, secret) = owner.create_token("short-lived").await;
    let script = Bearer::new(&app, &secret);

    let minted = script
        .request(Method::POST, "/api/tokens")
        .json(&json!({ "name": "forever", "expires_in_days": 365 }))
        .send()
        .await
        .unwrap();

    assert_error(minted, StatusCode::FORBIDDEN, "session_required").await;
    let listed: Value = owner.get("/api/tokens").await.json().await.unwrap();
    assert_eq!(listed["tokens"].as_array().unwrap().len(), 1, "{listed}");
}

#[tokio::test]
async fn malformed_expired_or_unknown_bearer_tokens_are_401() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let (id, secret) = owner.create_token("short-lived").await;
    app.superuser()
        .await
        .execute("update app.api_tokens set expires_at = now() - interval '1 second' where id = $1::text::uuid", &[&id])
        .await
        .unwrap();
    let client = reqwest::Client::new();
    for header in
        [format!("Bearer {secret}"), "Bearer tfp_unknown".into(), "Basic dXNlcjpwYXNz".into(), "Bearer".into()]
    {
        let response = client.get(app.url("/api/files")).header("Authorization", header.clone()).send().await.unwrap();
        assert_error(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    }
    for body in [
        json!({ "name": "", "expires_in_days": 1 }),
        json!({ "name": "x", "expires_in_days": 0 }),
        json!({ "name": "x", "expires_in_days": 366 }),
    ] {
        assert_eq!(owner.post("/api/tokens", body).await.status(), StatusCode::BAD_REQUEST);
    }
}

#[tokio::test]
async fn security_relevant_events_are_in_the_audit_log_for_admins_only() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let member = app.add_user(&owner, "member").await;
    app.post_login(&app.client(), &member.email, "wrong password").await;
    let file = member.upload_ok("a.txt", "a").await;
    member.rename(&file, json!({ "filename": "b.txt" })).await;
    member.delete(&file).await;
    let other = member.upload_ok("c.txt", "c").await;
    member.bulk_delete(&[&other]).await;
    owner.set_role(&member.user_id, "admin").await;
    owner.deactivate(&member.user_id).await;
    owner.reactivate(&member.user_id).await;
    let (token, _) = owner.create_token("t").await;
    owner.delete_path(&format!("/api/tokens/{token}")).await;
    let fresh = app.login(&owner.email, PASSWORD).await;
    fresh.post("/api/auth/logout", json!({})).await;

    let log: Value = owner.get("/api/org/audit?limit=100").await.json().await.unwrap();
    let actions: Vec<&str> = log["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    for expected in [
        "invitation_created",
        "invitation_accepted",
        "login_failed",
        "login_succeeded",
        "logout",
        "file_uploaded",
        "file_renamed",
        "file_deleted",
        "files_bulk_deleted",
        "role_changed",
        "user_deactivated",
        "user_reactivated",
        "token_created",
        "token_revoked",
    ] {
        assert!(actions.contains(&expected), "{expected} missing from {actions:?}");
    }
    let entry = log["entries"].as_array().unwrap().iter().find(|e| e["action"] == "role_changed").unwrap();
    assert_eq!(entry["actor_user_id"], owner.user_id);
    assert_eq!(entry["target_id"], member.user_id);
    assert_eq!(entry["details"], json!({ "from": "member", "to": "admin" }));
    assert!(!entry["request_id"].as_str().unwrap().is_empty());
    assert!(entry["created_at"].is_string());

    let plain_member = app.add_user(&owner, "member").await;
    assert_error(plain_member.get("/api/org/audit").await, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn the_audit_log_is_append_only_in_the_database() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    owner.upload_ok("a.txt", "a").await;
    let db = app.app_role().await;
    db.batch_execute("begin").await.unwrap();
    db.query(
        "select set_config('app.org_id', $1, true), set_config('app.user_id', $2, true)",
        &[&owner.org_id, &owner.user_id],
    )
    .await
    .unwrap();
    let visible: i64 = db.query_one("select count(*) from app.audit_log", &[]).await.unwrap().get(0);
    assert!(visible >= 1);
    assert!(db.execute("update app.audit_log set action = 'nothing'", &[]).await.is_err());
    db.batch_execute("rollback; begin").await.unwrap();
    assert!(db.execute("delete from app.audit_log", &[]).await.is_err());
    db.batch_execute("rollback").await.unwrap();
    // Not even the owner role (which has every privilege on its table) can rewrite history.
    let superuser = app.superuser().await;
    assert!(superuser.execute("delete from app.audit_log", &[]).await.is_err());
}
