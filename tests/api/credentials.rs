//! Credentials that cannot outlive what granted them (#21): a personal API token creates no
//! credential and no member, a share link works only while its creator may still share its
//! file, owners and admins see and revoke every link; and what the network says about a client
//! (its address, the service's own URL) counts only as far as the operator vouches for it.

use std::collections::BTreeSet;

use reqwest::{header, Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{
    helpers::{assert_error, random_email, spawn_app, spawn_app_with, Bearer, Settings, TestApp, TestUser},
    shares::{ready_file, share},
};

/// Every state-changing operation a bearer token is refused (403 `session_required`): each
/// would create a credential or a member that outlives the token and survives its revocation.
const SESSION_ONLY: &[&str] = &[
    "POST /api/tokens",
    "POST /api/org/invitations",
    "POST /api/files/{id}/links",
    "PATCH /api/org/users/{id}",
    "POST /api/org/users/{id}/reactivate",
    "PATCH /api/org",
    // An endpoint would go on receiving the organization's events after the token is revoked;
    // a rotated secret is shown to whoever rotates.
    "POST /api/org/webhooks",
    "POST /api/org/webhooks/{id}/secret",
];

/// Every other state-changing operation a token may perform: it changes or removes data, or
/// takes rights away, and creates nothing that authenticates anyone.
const TOKEN_ALLOWED: &[&str] = &[
    "POST /api/auth/logout",
    "POST /api/files/upload",
    "POST /api/files/bulk-delete",
    "PATCH /api/files/{id}",
    "DELETE /api/files/{id}",
    "DELETE /api/files/{id}/links/{link_id}",
    "POST /api/files/tus",
    "PATCH /api/files/tus/{id}",
    "DELETE /api/files/tus/{id}",
    "DELETE /api/org/links/{id}",
    "DELETE /api/org/webhooks/{id}",
    "POST /api/org/webhooks/{id}/deliveries/{delivery_id}/retry",
    "POST /api/org/users/{id}/deactivate",
    "DELETE /api/tokens/{id}",
];

/// Signing in and registering take no credential at all.
const ANONYMOUS: &[&str] = &["POST /api/auth/login", "POST /api/auth/register"];

async fn state_changing_operations(app: &TestApp) -> BTreeSet<String> {
    let spec: Value = app.client().get(app.url("/api/openapi.json")).send().await.unwrap().json().await.unwrap();
    let mut ops = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["post", "put", "patch", "delete"].contains(&method.as_str()) {
                ops.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    ops
}

/// A request for `operation` with its path's ids filled in and a body it would accept.
fn request(operation: &str, ids: &Ids) -> (Method, String, Option<Value>) {
    let (method, pattern) = operation.split_once(' ').unwrap();
    let path = pattern
        .replace("/api/org/users/{id}", &format!("/api/org/users/{}", ids.user))
        .replace("/api/files/{id}", &format!("/api/files/{}", ids.file))
        .replace("/api/org/webhooks/{id}", &format!("/api/org/webhooks/{}", ids.webhook))
        .replace("{link_id}", &ids.link)
        .replace("{id}", &Uuid::new_v4().to_string());
    let body = match operation {
        "POST /api/tokens" => Some(json!({ "name": "minted", "expires_in_days": 365 })),
        "POST /api/org/invitations" => Some(json!({ "email": random_email(), "role": "owner" })),
        "POST /api/files/{id}/links" => Some(json!({ "expires_in_seconds": 604_800 })),
        "PATCH /api/org/users/{id}" => Some(json!({ "role": "admin" })),
        "PATCH /api/org" => Some(json!({ "allowed_types": ["*/*"] })),
        "PATCH /api/files/{id}" => Some(json!({ "filename": "renamed.txt" })),
        "POST /api/files/bulk-delete" => Some(json!({ "ids": [Uuid::new_v4()] })),
        "POST /api/org/webhooks" => Some(json!({ "url": "http://127.0.0.1:9/in", "events": ["*"] })),
        _ => None,
    };
    (method.parse().unwrap(), path, body)
}

struct Ids {
    user: String,
    file: String,
    link: String,
    webhook: String,
}

/// The review's finding: an owner's 1-day token minted an owner invitation and a 7-day link,
/// both working after the token was revoked. Now every operation of the document is classified,
/// every one is tried with a token, and those that would create a credential or a member are
/// refused while the same request from the signed-in session succeeds.
#[tokio::test]
async fn a_token_reaches_every_state_change_except_those_that_create_credentials_or_members() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let member = app.add_user(&owner, "member").await;
    assert_eq!(owner.deactivate(&member.user_id).await.status(), StatusCode::OK);
    let file = ready_file(&app, &owner, "report.txt", "numbers").await;
    let link = share(&owner, &file, 60).await["id"].as_str().unwrap().to_owned();
    let (_, secret) = owner.create_token("one day").await;
    let script = Bearer::new(&app, &secret);
    let webhook = owner.post("/api/org/webhooks", json!({ "url": "http://127.0.0.1:9/", "events": ["*"] })).await;
    let webhook = webhook.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let ids = Ids { user: member.user_id.clone(), file: file.clone(), link, webhook };

    let listed: BTreeSet<String> =
        SESSION_ONLY.iter().chain(TOKEN_ALLOWED).chain(ANONYMOUS).map(|op| op.to_string()).collect();
    assert_eq!(state_changing_operations(&app).await, listed, "a new state change needs a decision here");

    for operation in SESSION_ONLY {
        let (method, path, body) = request(operation, &ids);
        let mut by_token = script.request(method.clone(), &path);
        if let Some(body) = &body {
            by_token = by_token.json(body);
        }
        assert_error(by_token.send().await.unwrap(), StatusCode::FORBIDDEN, "session_required").await;
    }
    // Nothing was created: one invitation (the member's), one link and one token (the
    // script's), both made by the session.
    let invitations: Value = owner.get("/api/org/invitations").await.json().await.unwrap();
    assert_eq!(invitations["total"], 1, "{invitations}");
    let links: Value = owner.get(&format!("/api/files/{file}/links")).await.json().await.unwrap();
    assert_eq!(links["links"].as_array().unwrap().len(), 1, "{links}");
    let tokens: Value = owner.get("/api/tokens").await.json().await.unwrap();
    assert_eq!(tokens["tokens"].as_array().unwrap().len(), 1, "{tokens}");
    let webhooks: Value = owner.get("/api/org/webhooks").await.json().await.unwrap();
    assert_eq!(webhooks["webhooks"].as_array().unwrap().len(), 1, "{webhooks}");
    let users: Value = owner.get(&format!("/api/org/users/{}", member.user_id)).await.json().await.unwrap();
    assert_eq!((users["role"].as_str(), users["is_active"].as_bool()), (Some("member"), Some(false)));

    // The refusal is the token's, not the request's: the session does the same at once.
    for operation in SESSION_ONLY {
        let (method, path, body) = request(operation, &ids);
        let response = owner.changing(method, &path).json(&body.unwrap_or(json!({}))).send().await.unwrap();
        assert!(response.status().is_success(), "{operation} from the session: {}", response.status());
    }

    for operation in TOKEN_ALLOWED {
        let (method, path, body) = request(operation, &ids);
        let mut by_token = script.request(method, &path).header("Tus-Resumable", "1.0.0");
        if let Some(body) = &body {
            by_token = by_token.json(body);
        }
        let response = by_token.send().await.unwrap();
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        assert_ne!(answer["error"]["code"], "session_required", "{operation}: {status} {answer}");
    }
}

/// An admin's link to a member's file worked after the admin was demoted. A link now works
/// only while its creator may still share its file: the uploader always, anyone else only as
/// an owner or admin (and deactivation ends every link of its creator, as before).
#[tokio::test]
async fn a_link_stops_working_when_its_creator_loses_the_right_to_share_its_file() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let admin = app.add_user(&owner, "admin").await;
    let member = app.add_user(&owner, "member").await;
    let members_file = ready_file(&app, &member, "members.txt", "member's").await;
    let admins_file = ready_file(&app, &admin, "admins.txt", "admin's").await;
    let to_members_file = share(&admin, &members_file, 3600).await["url"].as_str().unwrap().to_owned();
    let to_own_file = share(&admin, &admins_file, 3600).await["url"].as_str().unwrap().to_owned();
    let by_member = share(&member, &members_file, 3600).await["url"].as_str().unwrap().to_owned();
    for url in [&to_members_file, &to_own_file, &by_member] {
        assert_eq!(open(url).await.status(), StatusCode::OK);
    }

    assert_eq!(owner.set_role(&admin.user_id, "member").await.status(), StatusCode::OK);

    assert_error(open(&to_members_file).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(open(&to_own_file).await.status(), StatusCode::OK, "still its uploader");
    assert_eq!(open(&by_member).await.status(), StatusCode::OK);
    let links: Value = owner.get("/api/org/links").await.json().await.unwrap();
    let works = |file: &str| {
        links["links"].as_array().unwrap().iter().filter(|l| l["file_id"] == file).map(|l| l["works"].clone()).collect()
    };
    assert_eq!(works(&admins_file), vec![json!(true)]);
    let mut on_members_file: Vec<Value> = works(&members_file);
    on_members_file.sort_by_key(|w| w.to_string());
    assert_eq!(on_members_file, vec![json!(false), json!(true)], "{links}");

    assert_eq!(owner.deactivate(&member.user_id).await.status(), StatusCode::OK);
    assert_error(open(&by_member).await, StatusCode::NOT_FOUND, "not_found").await;
}

/// `GET /api/org/links`: every link of the organization, with its file and creator, for owners
/// and admins; `DELETE /api/org/links/{id}` revokes any. Another organization's links are
/// neither listed nor revocable, by the database (the revoke statement names only the link).
#[tokio::test]
async fn owners_and_admins_review_and_revoke_every_link_of_their_organization_only() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let member = app.add_user(&owner, "member").await;
    let stranger = app.register_org().await;
    let file = ready_file(&app, &member, "plan.txt", "the plan").await;
    let link = share(&member, &file, 3600).await;
    let (link_id, url) = (link["id"].as_str().unwrap().to_owned(), link["url"].as_str().unwrap().to_owned());
    let foreign_file = ready_file(&app, &stranger, "theirs.txt", "theirs").await;
    let foreign = share(&stranger, &foreign_file, 3600).await;

    let listed: Value = owner.get("/api/org/links").await.json().await.unwrap();
    assert_eq!(
        (listed["total"].as_i64(), listed["page"].as_i64(), listed["limit"].as_i64()),
        (Some(1), Some(1), Some(20))
    );
    let entry = &listed["links"][0];
    assert_eq!(entry["id"], link_id);
    assert_eq!((entry["file_id"].as_str(), entry["filename"].as_str()), (Some(file.as_str()), Some("plan.txt")));
    assert_eq!(
        (entry["created_by"].as_str(), entry["created_by_email"].as_str()),
        (Some(member.user_id.as_str()), Some(member.email.as_str()))
    );
    assert_eq!((entry["works"].as_bool(), entry["revoked_at"].is_null()), (Some(true), true));
    assert!(entry.get("url").is_none() && entry.get("secret").is_none(), "{entry}");
    let theirs: Value = stranger.get("/api/org/links").await.json().await.unwrap();
    assert_eq!(theirs["links"].as_array().unwrap().len(), 1);
    assert_eq!(theirs["links"][0]["id"], foreign["id"]);

    assert_error(member.get("/api/org/links").await, StatusCode::FORBIDDEN, "forbidden").await;
    assert_error(member.delete_path(&format!("/api/org/links/{link_id}")).await, StatusCode::FORBIDDEN, "forbidden")
        .await;
    let foreign_id = foreign["id"].as_str().unwrap();
    assert_error(owner.delete_path(&format!("/api/org/links/{foreign_id}")).await, StatusCode::NOT_FOUND, "not_found")
        .await;
    assert_eq!(open(foreign["url"].as_str().unwrap()).await.status(), StatusCode::OK, "untouched");

    assert_eq!(owner.delete_path(&format!("/api/org/links/{link_id}")).await.status(), StatusCode::NO_CONTENT);
    assert_error(open(&url).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(owner.delete_path(&format!("/api/org/links/{link_id}")).await.status(), StatusCode::NO_CONTENT);
    let after: Value = owner.get("/api/org/links").await.json().await.unwrap();
    assert_eq!(
        (after["links"][0]["works"].as_bool(), after["links"][0]["revoked_at"].is_string()),
        (Some(false), true)
    );
    let audit: Value = owner.get("/api/org/audit").await.json().await.unwrap();
    assert!(
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "share_link_revoked" && e["target_id"] == link_id.as_str()),
        "{audit}"
    );
}

/// Opened by someone with no session at all.
async fn open(url: &str) -> reqwest::Response {
    reqwest::Client::new().get(url).send().await.unwrap()
}

/// Sign-in attempts with a wrong password from `forwarded_for` (unknown emails: the per-email
/// throttle stays out of it), and the status each got.
async fn sign_ins_from(app: &TestApp, forwarded_for: &[&str]) -> Vec<u16> {
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for address in forwarded_for {
        let response = client
            .post(app.url("/api/auth/login"))
            .header("X-Forwarded-For", *address)
            .json(&json!({ "email": random_email(), "password": "wrong password" }))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    statuses
}

/// Per-address limits: behind a trusted proxy, by the address it forwards, an IPv6 client by
/// its /64 (one host holds a whole /64: counting its addresses apart would be no limit); from
/// anyone else, `X-Forwarded-For` is the client's own words and counts for nothing.
#[tokio::test]
async fn per_address_limits_count_ipv6_by_network_and_believe_only_trusted_proxies() {
    let limited = || Settings { auth_rate_per_minute: 1, auth_rate_burst: 2, ..Settings::default() };
    let behind_proxy = spawn_app_with(Settings { trusted_proxies: "127.0.0.1", ..limited() }).await;
    let same_64 = ["2001:db8:0:1::1", "2001:db8:0:1::2", "2001:db8:0:1:ffff:ffff:ffff:ffff"];
    assert_eq!(sign_ins_from(&behind_proxy, &same_64).await, [401, 401, 429]);
    let others = ["2001:db8:0:2::1", "198.51.100.7", "198.51.100.8", "1.1.1.1, 198.51.100.9"];
    assert_eq!(sign_ins_from(&behind_proxy, &others).await, [401, 401, 401, 401]);

    let direct = spawn_app_with(limited()).await;
    assert_eq!(sign_ins_from(&direct, &["198.51.100.1", "198.51.100.2", "198.51.100.3"]).await, [401, 401, 429]);
}

async fn create_tus_upload(user: &TestUser, forged_host: &str) -> String {
    let created = user
        .changing(Method::POST, "/api/files/tus")
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", "3")
        .header("Upload-Metadata", "filename YS50eHQ=")
        .header(header::HOST, forged_host)
        .header("X-Forwarded-Host", forged_host)
        .header("X-Forwarded-Proto", "http")
        .header(header::FORWARDED, format!("host={forged_host};proto=http"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    created.headers()[header::LOCATION].to_str().unwrap().to_owned()
}

/// A tus `Location` and a share link's URL once echoed the client's `Host` and forwarding
/// headers: a link handed to someone else could point anywhere the requester chose. Every
/// absolute URL now starts with `PUBLIC_URL` (in dev, the address the api listens on).
#[tokio::test]
async fn absolute_urls_come_from_public_url_never_from_the_request() {
    let app = spawn_app_with(Settings {
        public_url: Some("https://files.example.com/tenant-files/".into()),
        ..Settings::default()
    })
    .await;
    let owner = app.register_org().await;
    let location = create_tus_upload(&owner, "evil.example").await;
    assert!(location.starts_with("https://files.example.com/tenant-files/api/files/tus/"), "{location}");
    let file = ready_file(&app, &owner, "a.txt", "a").await;
    let created = owner
        .changing(Method::POST, &format!("/api/files/{file}/links"))
        .header("X-Forwarded-Host", "evil.example")
        .json(&json!({ "expires_in_seconds": 60 }))
        .send()
        .await
        .unwrap();
    let url = created.json::<Value>().await.unwrap()["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with("https://files.example.com/tenant-files/api/shared/tfs_"), "{url}");

    let dev = spawn_app().await;
    let owner = dev.register_org().await;
    let location = create_tus_upload(&owner, "evil.example").await;
    assert!(location.starts_with(&format!("{}/api/files/tus/", dev.address)), "{location}");
}

/// Every secret handed out names its organization (V26: its lookup is that organization's, one
/// shard's once distributed): the token, the share link and the invitation. The organization is
/// part of the secret: written over with another's, it opens nothing. A secret from before,
/// which names none, still works.
#[tokio::test]
async fn secrets_name_their_organization_and_one_named_otherwise_opens_nothing() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let other = app.register_org().await;
    let named = |secret: &str| secret.contains(&format!("_{}_", owner.org_id.replace('-', "")));
    let elsewhere = |secret: &str| secret.replace(&owner.org_id.replace('-', ""), &other.org_id.replace('-', ""));

    let (_, token) = owner.create_token("script").await;
    assert!(named(&token), "{token}");
    let me = |secret: String| {
        let script = Bearer::new(&app, &secret);
        async move { script.request(Method::GET, "/api/auth/me").send().await.unwrap() }
    };
    assert_eq!(me(token.clone()).await.status(), StatusCode::OK);
    assert_eq!(me(elsewhere(&token)).await.status(), StatusCode::UNAUTHORIZED);

    let file = ready_file(&app, &owner, "shared.txt", "shared bytes").await;
    let url = share(&owner, &file, 600).await["url"].as_str().unwrap().to_owned();
    let secret = url.rsplit('/').next().unwrap().to_owned();
    assert!(named(&secret), "{url}");
    let open = |url: String| async move { reqwest::Client::new().get(url).send().await.unwrap().status() };
    assert_eq!(open(url.replace(&secret, &elsewhere(&secret))).await, StatusCode::NOT_FOUND);
    assert_eq!(open(url).await, StatusCode::OK);

    let invited = random_email();
    let invitation = owner.invite_ok(&invited, "member").await;
    assert!(named(&invitation), "{invitation}");
    let register = |token: String| {
        let body = json!({ "email": invited, "password": crate::helpers::PASSWORD, "invitation_token": token });
        let client = reqwest::Client::new();
        let url = app.url("/api/auth/register");
        async move { client.post(url).json(&body).send().await.unwrap() }
    };
    assert_error(register(elsewhere(&invitation)).await, StatusCode::BAD_REQUEST, "invalid_invitation").await;
    assert_eq!(register(invitation).await.status(), StatusCode::CREATED);

    // A token made before V26 (`tfp_` and 64 hex digits, stored as its SHA-256) names no
    // organization: looked up by its hash alone, it still acts for its user.
    let old = format!("tfp_{}", "ab".repeat(32));
    app.as_user(
        &owner,
        &format!(
            "insert into app.api_tokens (id, organization_id, user_id, name, token_hash, expires_at)
             values (gen_random_uuid(), '{org}', '{user}', 'old script', sha256('{old}'::bytea), now() + interval '1 day')",
            org = owner.org_id,
            user = owner.user_id,
        ),
    )
    .await;
    let response = me(old).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap()["organization_id"], owner.org_id.as_str());
}
