//! The event feed (#27, `GET /api/events`, migrations V29): every change writes its event in its
//! own transaction, numbered in commit order per organization; each organization reads only its
//! own, each member only what their role may see, and the database decides both.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{
    helpers::{assert_error, eventually, random_email, spawn_app, TestApp, TestUser, PASSWORD},
    shares::{ready_file, share},
};

const PNG: &[u8] = &[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D, b'I', b'H', b'D', b'R'];

async fn feed(user: &TestUser, query: &str) -> Value {
    let response = user.get(&format!("/api/events{query}")).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// Every event the user may see, following the cursor page by page.
async fn all_events(user: &TestUser) -> Vec<Value> {
    let (mut events, mut after) = (Vec::new(), String::new());
    loop {
        let page = feed(user, &format!("?limit=3{after}")).await;
        let got = page["events"].as_array().unwrap().clone();
        if got.is_empty() {
            assert_eq!(after, format!("&after={}", page["next"].as_str().unwrap()), "an empty page keeps the cursor");
            return events;
        }
        after = format!("&after={}", page["next"].as_str().unwrap());
        events.extend(got);
    }
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

async fn upload_id(user: &TestUser, name: &str, bytes: &[u8]) -> String {
    let response = user.upload(name, bytes.to_vec()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json::<Value>().await.unwrap()["file_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn every_change_writes_its_event_in_order_without_secrets() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let _worker = app.start_worker();
    assert_eq!(owner.patch("/api/org", json!({ "allowed_types": ["text/*"] })).await.status(), StatusCode::OK);

    let notes = upload_id(&owner, "notes.txt", b"plain words").await;
    app.wait_for_status(&owner, &notes, "ready").await;
    let image = upload_id(&owner, "logo.png", PNG).await;
    app.wait_for_status(&owner, &image, "failed").await;
    let link = share(&owner, &notes, 600).await;
    let link_id = link["id"].as_str().unwrap().to_owned();
    assert_eq!(
        owner.delete_path(&format!("/api/files/{notes}/links/{link_id}")).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(owner.delete_path(&format!("/api/files/{image}")).await.status(), StatusCode::NO_CONTENT);
    let member = app.add_user(&owner, "member").await;
    assert_eq!(owner.set_role(&member.user_id, "admin").await.status(), StatusCode::OK);
    assert_eq!(owner.deactivate(&member.user_id).await.status(), StatusCode::OK);

    let events = all_events(&owner).await;
    let seen: Vec<&str> = types(&events);
    // The owner's own joining comes first; validations may finish in either order.
    assert_eq!(seen[0], "member.joined");
    for expected in [
        "file.uploaded",
        "file.ready",
        "file.failed",
        "link.created",
        "link.revoked",
        "file.deleted",
        "member.role_changed",
        "member.deactivated",
    ] {
        assert!(seen.contains(&expected), "{expected} in {seen:?}");
    }
    assert_eq!(seen.iter().filter(|t| **t == "member.joined").count(), 2, "{seen:?}");
    let position = |kind: &str| seen.iter().position(|t| *t == kind).unwrap();
    assert!(position("link.created") < position("link.revoked") && position("link.revoked") < position("file.deleted"));

    let failed = events.iter().find(|e| e["type"] == "file.failed").unwrap();
    assert_eq!(failed["data"]["file_id"], image.as_str());
    assert!(failed["data"]["reason"].as_str().unwrap().contains("does not accept"), "{failed}");
    let ready = events.iter().find(|e| e["type"] == "file.ready").unwrap();
    assert_eq!(
        (ready["data"]["file_id"].as_str(), ready["data"]["filename"].as_str()),
        (Some(notes.as_str()), Some("notes.txt"))
    );
    assert_eq!(ready["data"]["sha256"].as_str().unwrap().len(), 64);
    let role = events.iter().find(|e| e["type"] == "member.role_changed").unwrap();
    assert_eq!(role["data"], json!({ "user_id": member.user_id, "from": "member", "to": "admin" }));
    assert!(events.iter().all(|e| e["id"].is_string() && e["timestamp"].is_string()));
    // Never a secret: not the link's, not a hash of it.
    let text = serde_json::to_string(&events).unwrap();
    let secret = link["url"].as_str().unwrap().rsplit('/').next().unwrap();
    assert!(!text.contains(secret) && !text.contains("secret") && !text.contains("hash"), "{text}");
}

#[tokio::test]
async fn each_organization_reads_its_own_events_and_each_member_what_their_role_may_see() {
    let app = spawn_app().await;
    let a = app.register_org().await;
    let b = app.register_org().await;
    let member = app.add_user(&a, "member").await;
    let owners_file = ready_file(&app, &a, "owners.txt", "owner's").await;
    let members_file = ready_file(&app, &member, "members.txt", "member's").await;
    share(&a, &owners_file, 600).await;
    share(&member, &members_file, 600).await;
    b.upload("b.txt", "b's").await;

    let a_events = all_events(&a).await;
    let b_events = all_events(&b).await;
    assert_eq!(types(&b_events), ["member.joined", "file.uploaded"]);
    let a_ids: Vec<&Value> = a_events.iter().map(|e| &e["id"]).collect();
    assert!(b_events.iter().all(|e| !a_ids.contains(&&e["id"])));
    assert!(!serde_json::to_string(&b_events).unwrap().contains(&a.org_id));

    // The member sees every file's events and the links of their own file; no member events.
    let seen = all_events(&member).await;
    let files: Vec<&Value> =
        seen.iter().filter(|e| e["type"] == "file.uploaded").map(|e| &e["data"]["file_id"]).collect();
    assert_eq!(files.len(), 2, "{seen:?}");
    let links: Vec<&Value> =
        seen.iter().filter(|e| e["type"] == "link.created").map(|e| &e["data"]["file_id"]).collect();
    assert_eq!(links, [&json!(members_file)]);
    assert!(types(&seen).iter().all(|t| !t.starts_with("member.")), "{seen:?}");
    assert_eq!(a_events.iter().filter(|e| e["type"] == "link.created").count(), 2, "the owner sees both links");
}

/// `sql`'s count, as the app role acting as `user`.
async fn count(app: &TestApp, user: &TestUser, sql: &str) -> i64 {
    app.app_role_as(user).await.query_one(sql, &[]).await.unwrap().get(0)
}

/// The database, not the handler, keeps the feed to one organization and one role's view: the
/// app role's unfiltered reads and a write into another organization.
#[tokio::test]
async fn the_database_scopes_events_whatever_the_query() {
    let app = spawn_app().await;
    let a = app.register_org().await;
    let b = app.register_org().await;
    let member = app.add_user(&a, "member").await;
    b.upload("b.txt", "b's").await;

    let all = "select count(*) from app.events";
    assert_eq!(count(&app, &a, all).await, 2, "A's two joinings, nothing of B's");
    assert_eq!(count(&app, &member, all).await, 0, "a member sees no member events");
    assert_eq!(count(&app, &b, "select count(*) from app.events where type like 'file.%'").await, 1);

    let forged = app
        .app_role_as(&a)
        .await
        .execute(
            "insert into app.events (organization_id, type, data) values ($1::text::uuid, 'file.deleted', '{}')",
            &[&b.org_id],
        )
        .await;
    assert!(forged.is_err(), "an event for another organization is refused");
}

#[tokio::test]
async fn bad_cursors_and_limits_are_a_400() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    for query in [
        "?after=-1",
        "?after=abc",
        "?after=1e3",
        "?after=99999999999999999999",
        "?limit=0",
        "?limit=501",
        "?limit=x",
        "?page=2",
    ] {
        let response = owner.get(&format!("/api/events{query}")).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
    }
    assert_error(owner.get("/api/events?after=-1").await, StatusCode::BAD_REQUEST, "invalid_cursor").await;
    let anonymous = app.client().get(app.url("/api/events")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    // Past the end: nothing, and the cursor stays where it was.
    let page = feed(&owner, "?after=1000").await;
    assert_eq!((page["events"].clone(), page["next"].clone()), (json!([]), json!("1000")));
}

/// Events older than EVENT_RETENTION_DAYS are pruned by the worker's maintenance; newer stay.
#[tokio::test]
async fn events_past_their_retention_are_pruned() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let invited = random_email();
    let token = owner.invite_ok(&invited, "member").await;
    let registered = app
        .client()
        .post(app.url("/api/auth/register"))
        .json(&json!({ "email": invited, "password": PASSWORD, "invitation_token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), StatusCode::CREATED, "an invitation's member joins through the registry");
    assert_eq!(types(&all_events(&owner).await), ["member.joined", "member.joined"]);
    app.superuser()
        .await
        .batch_execute(&format!(
            "update app.events set created_at = now() - interval '8 days'
              where organization_id = '{}' and seq = 1",
            owner.org_id
        ))
        .await
        .unwrap();
    let _worker = app.start_worker();
    eventually("the old event is pruned", || async {
        let left = all_events(&owner).await;
        (left.len() == 1).then_some(left)
    })
    .await;
}

/// One organization can write events faster than one prune batch a round removes them (a round
/// is MAINTENANCE_INTERVAL_MS apart): a round keeps pruning until a batch comes back short, so a
/// backlog past the retention goes in one round rather than growing without bound.
#[tokio::test]
async fn a_backlog_of_expired_events_goes_in_one_maintenance_round() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    app.superuser()
        .await
        .batch_execute(&format!(
            "insert into app.events (organization_id, type, data, created_at)
             select '{}', 'file.deleted', '{{}}', now() - interval '8 days' from generate_series(1, 3000)",
            owner.org_id
        ))
        .await
        .unwrap();
    let expired = || async {
        app.superuser()
            .await
            .query_one("select count(*) from app.events where created_at < now() - interval '7 days'", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    assert_eq!(expired().await, 3000);

    // Rounds 2 s apart: the first (at 2 s) must take all 3,000; batches of 500 a round would
    // leave 2,000 at 5 s.
    let mut config = app.config.clone();
    config.worker.maintenance_interval_ms = 2000;
    let started = std::time::Instant::now();
    let _worker = app.start_worker_with(config);
    while expired().await > 0 {
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{} left after 5 s", expired().await);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(types(&all_events(&owner).await), ["member.joined"], "the recent event stays");
}
