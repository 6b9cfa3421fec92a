//! Webhooks (#27, migrations V30): an organization's endpoints, managed by its owners and
//! admins, receive its events signed in the Standard Webhooks form, at least once, retried on
//! failure, never another organization's. Every delivery here is checked by the receiver with
//! the Standard Webhooks reference library (`tests/webhooks/receiver.py`), not by our code.

use std::time::Duration;

use base64::{engine::general_purpose::STANDARD, Engine};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::{
    helpers::{
        amqp_url_via, assert_error, broker_addr, eventually, spawn_app, spawn_app_with, Bearer, Receiver, Settings,
        TcpProxy, TestApp, TestUser,
    },
    worker_process::spawn_worker_process,
};

const PNG: &[u8] = &[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D, b'I', b'H', b'D', b'R'];

/// Creates an endpoint for `events` at `url`; returns its id and secret.
async fn create(user: &TestUser, url: &str, events: &[&str]) -> (String, String) {
    let response = user.post("/api/org/webhooks", json!({ "url": url, "events": events })).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    (body["id"].as_str().unwrap().to_owned(), body["secret"].as_str().unwrap().to_owned())
}

async fn deliveries(user: &TestUser, webhook: &str) -> Value {
    let response = user.get(&format!("/api/org/webhooks/{webhook}/deliveries")).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// Waits until the endpoint's newest delivery is as `expected` says, and returns it.
async fn delivery_when(user: &TestUser, webhook: &str, what: &str, expected: impl Fn(&Value) -> bool) -> Value {
    eventually(what, || async {
        let first = deliveries(user, webhook).await["deliveries"][0].clone();
        expected(&first).then_some(first)
    })
    .await
}

/// Waits until the endpoint's newest delivery is in `state`, and returns it.
async fn delivery_in(user: &TestUser, webhook: &str, state: &str) -> Value {
    delivery_when(user, webhook, &format!("the delivery is {state}"), |d| d["state"] == state).await
}

/// The test's exchanges and queues, declared now (before any worker does), and a channel.
async fn declared(app: &TestApp) -> (tenant_files::queue::Topology, lapin::Connection, lapin::Channel) {
    let topology = app.topology();
    let (connection, channel) = app.broker().await;
    topology.declare(&channel).await.expect("declare");
    (topology, connection, channel)
}

fn types(received: &[Value]) -> Vec<&str> {
    received.iter().map(|d| d["payload"]["type"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn owners_and_admins_manage_endpoints_and_see_a_secret_once() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let member = app.add_user(&owner, "member").await;
    let admin = app.add_user(&owner, "admin").await;
    let other = app.register_org().await;

    let response = owner
        .post(
            "/api/org/webhooks",
            json!({ "url": "http://127.0.0.1:9/in", "events": ["file.ready", "file.failed"], "description": "CI" }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap();
    assert!(STANDARD.decode(secret.strip_prefix("whsec_").unwrap()).unwrap().len() >= 24);
    assert_eq!(
        (&created["url"], &created["events"], &created["description"], &created["enabled"]),
        (&json!("http://127.0.0.1:9/in"), &json!(["file.ready", "file.failed"]), &json!("CI"), &json!(true))
    );
    let (_, all) = create(&admin, "http://127.0.0.1:9/all", &["*"]).await;
    assert_ne!(all, secret);

    let listed: Value = owner.get("/api/org/webhooks").await.json().await.unwrap();
    assert_eq!(listed["webhooks"].as_array().unwrap().len(), 2);
    let shown = serde_json::to_string(&listed).unwrap()
        + &owner.get(&format!("/api/org/webhooks/{id}")).await.text().await.unwrap();
    assert!(!shown.contains("secret") && !shown.contains(&secret[6..]), "{shown}");

    // A rotation shows the new secret once, and says until when the old one signs too.
    let rotated: Value = owner.post(&format!("/api/org/webhooks/{id}/secret"), json!({})).await.json().await.unwrap();
    assert!(rotated["secret"].as_str().unwrap().starts_with("whsec_") && rotated["secret"] != secret);
    assert!(rotated["previous_secret_expires_at"].is_string());

    // Members: 403. Another organization: 404 for each id, and an empty list.
    assert_error(member.get("/api/org/webhooks").await, StatusCode::FORBIDDEN, "forbidden").await;
    let by_member = member.post("/api/org/webhooks", json!({ "url": "http://127.0.0.1:9/", "events": ["*"] })).await;
    assert_error(by_member, StatusCode::FORBIDDEN, "forbidden").await;
    for path in [format!("/api/org/webhooks/{id}"), format!("/api/org/webhooks/{id}/deliveries")] {
        assert_error(other.get(&path).await, StatusCode::NOT_FOUND, "not_found").await;
    }
    let rotate_other = other.post(&format!("/api/org/webhooks/{id}/secret"), json!({})).await;
    assert_error(rotate_other, StatusCode::NOT_FOUND, "not_found").await;
    let retry_other =
        other.post(&format!("/api/org/webhooks/{id}/deliveries/{}/retry", uuid::Uuid::new_v4()), json!({})).await;
    assert_error(retry_other, StatusCode::NOT_FOUND, "not_found").await;
    assert_error(other.delete_path(&format!("/api/org/webhooks/{id}")).await, StatusCode::NOT_FOUND, "not_found").await;
    let others: Value = other.get("/api/org/webhooks").await.json().await.unwrap();
    assert_eq!(others["webhooks"], json!([]));

    // A token may not create one (the secret is a credential of sorts).
    let (_, token) = owner.create_token("ci").await;
    let by_token = Bearer::new(&app, &token)
        .request(Method::POST, "/api/org/webhooks")
        .json(&json!({ "url": "http://127.0.0.1:9/", "events": ["*"] }))
        .send()
        .await
        .unwrap();
    assert_error(by_token, StatusCode::FORBIDDEN, "session_required").await;

    assert_eq!(owner.delete_path(&format!("/api/org/webhooks/{id}")).await.status(), StatusCode::NO_CONTENT);
    assert_error(owner.get(&format!("/api/org/webhooks/{id}")).await, StatusCode::NOT_FOUND, "not_found").await;
    let audit: Value = owner.get("/api/org/audit?limit=100").await.json().await.unwrap();
    let actions: Vec<&str> =
        audit["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    for action in ["webhook.created", "webhook.secret_rotated", "webhook.deleted"] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
}

#[tokio::test]
async fn bad_endpoints_are_refused_with_clear_errors() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let long = format!("http://127.0.0.1:9/{}", "a".repeat(2100));
    for (body, code) in [
        (json!({ "url": "http://127.0.0.1:9/", "events": ["file.readyy"] }), "invalid_events"),
        (json!({ "url": "http://127.0.0.1:9/", "events": [] }), "invalid_events"),
        (json!({ "url": "ftp://127.0.0.1/", "events": ["*"] }), "invalid_url"),
        (json!({ "url": "http://user:pw@127.0.0.1:9/", "events": ["*"] }), "invalid_url"),
        (json!({ "url": "not a url", "events": ["*"] }), "invalid_url"),
        (json!({ "url": long, "events": ["*"] }), "invalid_url"),
        (json!({ "url": "http://no-such-host.invalid/", "events": ["*"] }), "invalid_url"),
        (
            json!({ "url": "http://127.0.0.1:9/", "events": ["*"], "description": "d".repeat(501) }),
            "invalid_description",
        ),
        (json!({ "url": "http://127.0.0.1:9/", "events": ["*"], "secret": "mine" }), "invalid_body"),
        (json!({ "events": ["*"] }), "invalid_body"),
    ] {
        let response = owner.post("/api/org/webhooks", body.clone()).await;
        assert_error(response, StatusCode::BAD_REQUEST, code).await;
    }
    let listed: Value = owner.get("/api/org/webhooks").await.json().await.unwrap();
    assert_eq!(listed["webhooks"], json!([]), "nothing was half-created");
}

/// Without WEBHOOK_ALLOW_PRIVATE an endpoint may not point into the service's own network:
/// refused at creation, and, should its name resolve there later (DNS rebinding), at delivery.
#[tokio::test]
async fn private_addresses_are_refused_at_creation_and_at_delivery() {
    let app = spawn_app_with(Settings { webhook_allow_private: false, ..Settings::default() }).await;
    let owner = app.register_org().await;
    for url in [
        "http://127.0.0.1:9/",
        "http://localhost:9/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://[::1]:9/",
        "http://[::ffff:127.0.0.1]:9/",
    ] {
        let response = owner.post("/api/org/webhooks", json!({ "url": url, "events": ["*"] })).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{url}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_url", "{url}");
        assert!(body["error"]["message"].as_str().unwrap().contains("WEBHOOK_ALLOW_PRIVATE"), "{body}");
    }

    // An endpoint created where private addresses were allowed, delivered by a worker where
    // they are not: refused when it connects, and nothing reaches the receiver.
    let lenient = spawn_app().await;
    let owner = lenient.register_org().await;
    let receiver = Receiver::start().await;
    let (webhook, _) = create(&owner, &receiver.url("/in"), &["file.uploaded"]).await;
    let mut strict = lenient.config.clone();
    strict.webhooks.webhook_allow_private = false;
    let _worker = lenient.start_worker_with(strict);
    owner.upload_ok("a.txt", "a").await;
    let refused = delivery_when(&owner, &webhook, "the attempt is refused", |d| d["last_error"].is_string()).await;
    assert!(refused["last_error"].as_str().unwrap().contains("WEBHOOK_ALLOW_PRIVATE"), "{refused}");
    assert_eq!(refused["last_status_code"], Value::Null);
    assert!(receiver.received().await.is_empty());
}

/// The events a consumer would poll for arrive signed, each verified by the reference library;
/// another organization's endpoint never receives ours, nor ours theirs.
#[tokio::test]
async fn ready_failed_and_deleted_events_arrive_signed_and_only_to_their_organization() {
    let app = spawn_app().await;
    let a = app.register_org().await;
    let b = app.register_org().await;
    assert_eq!(a.patch("/api/org", json!({ "allowed_types": ["text/*"] })).await.status(), StatusCode::OK);
    let (ours, theirs) = (Receiver::start().await, Receiver::start().await);
    let (webhook, secret) = create(&a, &ours.url("/a"), &["file.ready", "file.failed", "file.deleted"]).await;
    let (_, b_secret) = create(&b, &theirs.url("/b"), &["*"]).await;
    ours.trust(&[&secret, &b_secret]).await;
    theirs.trust(&[&b_secret, &secret]).await;
    let _worker = app.start_worker();

    let notes = a.upload_ok("notes.txt", "plain words").await;
    app.wait_for_status(&a, &notes, "ready").await;
    let image = a.upload_ok("logo.png", PNG).await;
    app.wait_for_status(&a, &image, "failed").await;
    assert_eq!(a.delete_path(&format!("/api/files/{notes}")).await.status(), StatusCode::NO_CONTENT);
    let b_file = b.upload_ok("b.txt", "b's").await;

    let received = ours.wait_for(3).await;
    let mut kinds = types(&received);
    kinds.sort_unstable();
    assert_eq!(kinds, ["file.deleted", "file.failed", "file.ready"]);
    for delivery in &received {
        assert_eq!(delivery["verified_with"], json!([0]), "signed with our secret only: {delivery}");
        assert_eq!(delivery["content_type"], "application/json");
        assert!(delivery["webhook_id"].as_str().unwrap().starts_with("msg_"));
        assert!(delivery["payload"]["timestamp"].is_string());
        assert_eq!(delivery["path"], "/a");
    }
    let failed = received.iter().find(|d| d["payload"]["type"] == "file.failed").unwrap();
    assert_eq!(failed["payload"]["data"]["file_id"], image.as_str());
    assert!(failed["payload"]["data"]["reason"].as_str().unwrap().contains("does not accept"), "{failed}");
    let ready = received.iter().find(|d| d["payload"]["type"] == "file.ready").unwrap();
    assert_eq!(ready["payload"]["data"]["filename"], "notes.txt");
    assert_eq!(ready["payload"]["data"]["sha256"].as_str().unwrap().len(), 64);

    let theirs_received = theirs.wait_for(2).await;
    assert!(theirs_received.iter().all(|d| d["verified_with"] == json!([0])));
    let text = serde_json::to_string(&theirs_received).unwrap();
    assert!(text.contains(&b_file) && !text.contains(&notes) && !text.contains(&image), "{text}");

    // Nothing else arrives: not file.uploaded (not taken), not the other organization's.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let everything = ours.received().await;
    assert_eq!(everything.len(), 3, "{everything:?}");
    assert!(!serde_json::to_string(&everything).unwrap().contains(&b_file));
    let page = deliveries(&a, &webhook).await;
    assert_eq!(page["total"], 3);
    assert!(page["deliveries"].as_array().unwrap().iter().all(|d| d["state"] == "delivered" && d["attempts"] == 1));
}

/// A receiver that answers 500 gets the delivery again, under the same `webhook-id`; a retry by
/// hand sends it once more, again the same.
#[tokio::test]
async fn a_failed_attempt_is_retried_with_the_same_webhook_id() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let receiver = Receiver::start().await;
    let (webhook, secret) = create(&owner, &receiver.url("/in"), &["file.uploaded"]).await;
    receiver.trust(&[&secret]).await;
    receiver.answer(&[500]).await;
    let _worker = app.start_worker();
    owner.upload_ok("a.txt", "a").await;

    let received = receiver.wait_for(2).await;
    assert_eq!((received[0]["answered"].as_u64(), received[1]["answered"].as_u64()), (Some(500), Some(200)));
    assert_eq!(received[0]["webhook_id"], received[1]["webhook_id"]);
    assert!(received.iter().all(|d| d["verified_with"] == json!([0])));
    let delivered = delivery_in(&owner, &webhook, "delivered").await;
    assert_eq!((delivered["attempts"].as_i64(), delivered["last_status_code"].as_i64()), (Some(2), Some(200)));
    assert_eq!(delivered["type"], "file.uploaded");
    assert_eq!(
        format!("msg_{}", delivered["id"].as_str().unwrap().replace('-', "")),
        received[0]["webhook_id"].as_str().unwrap()
    );

    let id = delivered["id"].as_str().unwrap();
    let retried = owner.post(&format!("/api/org/webhooks/{webhook}/deliveries/{id}/retry"), json!({})).await;
    assert_eq!(retried.status(), StatusCode::ACCEPTED);
    let again = receiver.wait_for(3).await;
    assert_eq!(again[2]["webhook_id"], received[0]["webhook_id"]);
    let recorded = |d: &Value| d["attempts"] == 3 && d["state"] == "delivered";
    let delivered = delivery_when(&owner, &webhook, "the retry is recorded", recorded).await;
    assert_eq!(delivered["next_attempt_at"], Value::Null);
    let unknown =
        owner.post(&format!("/api/org/webhooks/{webhook}/deliveries/{}/retry", uuid::Uuid::new_v4()), json!({})).await;
    assert_error(unknown, StatusCode::NOT_FOUND, "not_found").await;
}

/// A redirect is an answer, not a new address to post to: the attempt fails, saying so, and
/// nothing is sent where it points.
#[tokio::test]
async fn redirects_are_not_followed() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let receiver = Receiver::start().await;
    let (webhook, _) = create(&owner, &receiver.url("/in"), &["file.uploaded"]).await;
    receiver.answer(&[302; 10]).await;
    let _worker = app.start_worker();
    owner.upload_ok("a.txt", "a").await;
    let failed = delivery_in(&owner, &webhook, "failed").await;
    assert_eq!(failed["last_status_code"], 302);
    assert!(failed["last_error"].as_str().unwrap().contains("redirects are not followed"), "{failed}");
    let received = receiver.received().await;
    assert_eq!(received.len(), 4, "the first attempt and three retries, never the redirect's target");
    assert!(received.iter().all(|d| d["path"] == "/in"));
}

/// The relay's worst instant: it committed deliveries queued and leased, then died before
/// publishing them. Nothing carries them, and nothing is lost: when the lease ends they are due
/// again, and the next relay sends them.
#[tokio::test]
async fn deliveries_claimed_by_a_relay_that_died_before_publishing_go_out_when_the_lease_ends() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let receiver = Receiver::start().await;
    let (webhook, secret) = create(&owner, &receiver.url("/in"), &["file.uploaded"]).await;
    receiver.trust(&[&secret]).await;
    owner.upload_ok("a.txt", "claimed, never published").await;
    app.superuser()
        .await
        .execute("update app.webhook_deliveries set queued = true, due_at = now() + interval '2 seconds'", &[])
        .await
        .unwrap();

    let _worker = app.start_worker();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(receiver.received().await.is_empty(), "leased: not before the lease ends");
    let received = receiver.wait_for(1).await;
    assert_eq!(received[0]["verified_with"], json!([0]));
    let delivered = delivery_in(&owner, &webhook, "delivered").await;
    assert_eq!(delivered["attempts"], 1);
}

/// A broker outage delays deliveries and loses none: the events wait in the database and go
/// out once the broker is back.
#[tokio::test]
async fn deliveries_written_during_a_broker_outage_arrive_once_it_is_back() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let receiver = Receiver::start().await;
    let (webhook, secret) = create(&owner, &receiver.url("/in"), &["file.uploaded"]).await;
    receiver.trust(&[&secret]).await;
    let proxy = TcpProxy::start(broker_addr()).await;
    let mut config = app.config.clone();
    config.broker.amqp_url = amqp_url_via(proxy.port);
    config.broker.broker_timeout_ms = 1000;
    let _worker = app.start_worker_with(config);
    owner.upload_ok("a.txt", "during the outage").await;
    owner.upload_ok("b.txt", "during the outage").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(receiver.received().await.is_empty());
    assert_eq!(deliveries(&owner, &webhook).await["deliveries"][0]["state"], "pending");

    proxy.set_up(true);
    let received = receiver.wait_for(2).await;
    assert!(received.iter().all(|d| d["verified_with"] == json!([0])));
    eventually("both are recorded delivered", || async {
        let page = deliveries(&owner, &webhook).await;
        page["deliveries"].as_array().unwrap().iter().all(|d| d["state"] == "delivered").then_some(())
    })
    .await;
}

/// A backlog waits in the database, not in the queue: the relay keeps the webhook queue within
/// RELAY_QUEUE_DEPTH, so no delivery waits there past its lease to be published twice; each
/// arrives once.
#[tokio::test]
async fn a_backlog_waits_in_the_database_and_each_delivery_arrives_once() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let receiver = Receiver::start().await;
    let (webhook, _) = create(&owner, &receiver.url("/in"), &["file.uploaded"]).await;
    receiver.delay(0.15).await;
    for i in 0..20 {
        owner.upload_ok(&format!("{i}.txt"), "backlog").await;
    }
    let mut config = app.config.clone();
    config.worker.relay_queue_depth = 3;
    config.webhooks.webhook_concurrency = 1;
    let _worker = app.start_worker_with(config);
    let (topology, _connection, _channel) = declared(&app).await;
    let queue = topology.webhook_queue;
    let mut deepest = 0;
    while receiver.received().await.len() < 20 {
        deepest = deepest.max(app.queue_depth(&queue).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(deepest <= 3, "the queue held {deepest}");
    delivery_in(&owner, &webhook, "delivered").await;
    let received = receiver.received().await;
    let ids: std::collections::BTreeSet<&str> = received.iter().map(|d| d["webhook_id"].as_str().unwrap()).collect();
    assert_eq!((received.len(), ids.len()), (20, 20));
}

/// One organization's slow endpoint with a backlog holds at most WEBHOOK_ENDPOINT_CONCURRENCY
/// of the worker's delivery slots, and another organization's delivery goes out beside the
/// backlog, not behind it.
#[tokio::test]
async fn a_slow_endpoints_backlog_does_not_delay_another_organizations_deliveries() {
    let app = spawn_app().await;
    let (slow_org, quick_org) = (app.register_org().await, app.register_org().await);
    let (slow, quick) = (Receiver::start().await, Receiver::start().await);
    create(&slow_org, &slow.url("/slow"), &["file.uploaded"]).await;
    create(&quick_org, &quick.url("/quick"), &["file.uploaded"]).await;
    slow.delay(1.0).await;
    for i in 0..24 {
        slow_org.upload_ok(&format!("{i}.txt"), "backlog").await;
    }
    let mut config = app.config.clone();
    config.webhooks.webhook_concurrency = 4;
    config.webhooks.webhook_endpoint_concurrency = 2;
    let _worker = app.start_worker_with(config);
    slow.wait_for(2).await;

    let uploaded = std::time::Instant::now();
    quick_org.upload_ok("quick.txt", "no backlog").await;
    quick.wait_for(1).await;
    let waited = uploaded.elapsed();
    let slow_so_far = slow.received().await.len();
    // Behind the backlog it would wait for 24 slow answers, 4 at a time: 6 s at least.
    assert!(waited < Duration::from_millis(2500), "waited {waited:?}");
    assert!(slow_so_far < 12, "the slow endpoint had {slow_so_far} deliveries already");
}

/// After its last retry a delivery is failed, saying why; an endpoint failing longer than
/// WEBHOOK_DISABLE_AFTER_SECONDS is disabled, with a `webhook.disabled` audit entry, and takes
/// no new deliveries.
#[tokio::test]
async fn deliveries_that_keep_failing_end_failed_and_the_endpoint_is_disabled() {
    let app = spawn_app_with(Settings { webhook_disable_after_seconds: 2, ..Settings::default() }).await;
    let owner = app.register_org().await;
    let receiver = Receiver::start().await;
    let (webhook, _) = create(&owner, &receiver.url("/in"), &["file.uploaded"]).await;
    receiver.answer(&[503; 10]).await;
    let _worker = app.start_worker();
    owner.upload_ok("a.txt", "a").await;

    let failed = delivery_in(&owner, &webhook, "failed").await;
    assert!(failed["attempts"].as_i64().unwrap() >= 3, "{failed}");
    assert_eq!(failed["next_attempt_at"], Value::Null);
    assert!(failed["finished_at"].is_string());
    let endpoint: Value = owner.get(&format!("/api/org/webhooks/{webhook}")).await.json().await.unwrap();
    assert_eq!(endpoint["enabled"], false, "{endpoint}");
    assert!(endpoint["disabled_at"].is_string() && endpoint["failing_since"].is_string());
    let audit: Value = owner.get("/api/org/audit?limit=100").await.json().await.unwrap();
    let disabled: Vec<&Value> =
        audit["entries"].as_array().unwrap().iter().filter(|e| e["action"] == "webhook.disabled").collect();
    assert_eq!(disabled.len(), 1, "{audit}");
    assert_eq!(disabled[0]["target_id"], webhook.as_str());

    let before = receiver.received().await.len();
    owner.upload_ok("b.txt", "b").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.received().await.len(), before, "a disabled endpoint receives nothing");
    assert_eq!(deliveries(&owner, &webhook).await["total"], 1);
}

/// A worker killed while the endpoint is answering: the delivery is sent again (same
/// `webhook-id`) by the next worker once the attempt's lease ends, and ends delivered.
#[tokio::test]
async fn a_worker_killed_mid_delivery_leaves_it_to_be_delivered_again() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let receiver = Receiver::start().await;
    let (webhook, secret) = create(&owner, &receiver.url("/in"), &["file.uploaded"]).await;
    receiver.trust(&[&secret]).await;
    receiver.delay(1.2).await;
    let mut worker = spawn_worker_process(&app);
    owner.upload_ok("a.txt", "a").await;
    receiver.wait_for(1).await;

    worker.kill().await.expect("SIGKILL");
    receiver.delay(0.0).await;
    let _replacement = app.start_worker();
    let delivered = delivery_in(&owner, &webhook, "delivered").await;
    let received = receiver.received().await;
    assert!(received.len() >= 2, "{received:?}");
    assert!(received.iter().all(|d| d["webhook_id"] == received[0]["webhook_id"] && d["verified_with"] == json!([0])));
    assert_eq!(delivered["attempts"], 2);
}

/// After a rotation both secrets sign, each signature verifying with its own secret.
#[tokio::test]
async fn after_a_rotation_the_old_and_the_new_secret_both_sign() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let receiver = Receiver::start().await;
    let (webhook, old) = create(&owner, &receiver.url("/in"), &["file.uploaded"]).await;
    let rotated: Value =
        owner.post(&format!("/api/org/webhooks/{webhook}/secret"), json!({})).await.json().await.unwrap();
    let new = rotated["secret"].as_str().unwrap();
    receiver.trust(&[&old, new]).await;
    let _worker = app.start_worker();
    owner.upload_ok("a.txt", "a").await;
    let received = receiver.wait_for(1).await;
    assert_eq!(received[0]["verified_with"], json!([0, 1]));
    assert_eq!(received[0]["signature"].as_str().unwrap().split(' ').count(), 2);
}

/// The database is the guard: as the app role, a member and another organization see no
/// endpoint and no delivery whatever they ask, and nobody reads a secret.
#[tokio::test]
async fn the_database_hides_endpoints_from_members_and_secrets_from_everyone() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let member = app.add_user(&owner, "member").await;
    let other = app.register_org().await;
    let receiver = Receiver::start().await;
    create(&owner, &receiver.url("/in"), &["*"]).await;
    owner.upload_ok("a.txt", "a").await;

    assert_eq!(count(&app, &owner, "webhooks").await, 1);
    assert_eq!(count(&app, &owner, "webhook_deliveries").await, 1, "file.uploaded, the one event since");
    for user in [&member, &other] {
        assert_eq!(count(&app, user, "webhooks").await, 0);
        assert_eq!(count(&app, user, "webhook_deliveries").await, 0);
    }
    let db = app.app_role_as(&owner).await;
    let refused = db.query("select secret from app.webhooks", &[]).await.unwrap_err();
    assert_eq!(refused.code(), Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE));
    let db = app.app_role_as(&member).await;
    let changed = db.execute("update app.webhook_deliveries set state = 'pending'", &[]).await.unwrap();
    assert_eq!(changed, 0);
}

/// Rows of `app.{table}` the app role sees acting as `user`, asking for all of them.
async fn count(app: &TestApp, user: &TestUser, table: &str) -> i64 {
    let db = app.app_role_as(user).await;
    db.query_one(&format!("select count(*) from app.{table}"), &[]).await.unwrap().get(0)
}

/// A message on the webhook queue that is not a delivery is dead-lettered; the consumer goes on.
#[tokio::test]
async fn malformed_webhook_messages_are_dead_lettered_and_delivery_goes_on() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let receiver = Receiver::start().await;
    create(&owner, &receiver.url("/in"), &["file.uploaded"]).await;
    let _worker = app.start_worker();
    let (topology, _connection, channel) = declared(&app).await;
    for body in [&b"not json"[..], br#"{"organization_id": 1}"#, br#"{"organization_id":"00000000-0000-0000-0000-000000000000","delivery_id":"00000000-0000-0000-0000-000000000000","x":1}"#] {
        channel
            .basic_publish(
                topology.exchange.as_str().into(),
                tenant_files::queue::WEBHOOK_ROUTING_KEY.into(),
                Default::default(),
                body,
                Default::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    eventually("the malformed messages are dead-lettered", || async {
        (app.queue_depth(&topology.webhook_dead_queue).await == 3).then_some(())
    })
    .await;
    owner.upload_ok("a.txt", "a").await;
    receiver.wait_for(1).await;
}
