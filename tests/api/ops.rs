//! Operations: health, readiness, request ids, and riding out a database outage.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{
    amqp_url_via, assert_error, broker_addr, eventually, postgres_addr, spawn_app, spawn_app_with, unused_port,
    Settings, TcpProxy,
};

#[tokio::test]
async fn healthz_and_readyz_answer_when_everything_is_up() {
    let app = spawn_app().await;
    let client = app.client();
    let health = client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.json::<Value>().await.unwrap()["status"], "ok");
    // The broker monitor connects in the background once the app starts.
    let ready = eventually("the broker is reported", || async {
        let ready: Value = client.get(app.url("/readyz")).send().await.unwrap().json().await.unwrap();
        (ready["checks"]["broker"] == "ok").then_some(ready)
    })
    .await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["checks"]["database"], "ok");
}

/// The api serves without the broker (uploads wait in the outbox), so a broker outage must not
/// take it out of a load balancer: readiness reports the broker and stays 200.
#[tokio::test]
async fn the_api_stays_ready_without_the_broker_and_reports_it() {
    let proxy = TcpProxy::start(broker_addr()).await;
    proxy.set_up(true);
    let app = spawn_app_with(Settings { amqp_url: Some(amqp_url_via(proxy.port)), ..Settings::default() }).await;
    let readiness = || async {
        let response = app.client().get(app.url("/readyz")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json::<Value>().await.unwrap()
    };
    eventually("the monitor sees the broker", || async {
        (readiness().await["checks"]["broker"] == "ok").then_some(())
    })
    .await;

    proxy.set_up(false);

    let ready = eventually("the monitor notices the outage", || async {
        let ready = readiness().await;
        (ready["checks"]["broker"] == "unreachable").then_some(ready)
    })
    .await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["checks"]["database"], "ok");
    let metrics = app.client().get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l == "broker_up 0"), "{metrics}");
    let owner = app.register_org().await;
    assert_eq!(owner.upload("during.txt", "queued in the outbox").await.status(), StatusCode::CREATED);
}

/// A worker is ready when it can work: its consumer is attached and the database answers.
#[tokio::test]
async fn the_worker_is_ready_only_while_its_consumer_is_attached() {
    let proxy = TcpProxy::start(broker_addr()).await;
    proxy.set_up(true);
    let app = spawn_app().await;
    let port = unused_port();
    let mut config = app.config.clone();
    config.broker.amqp_url = amqp_url_via(proxy.port);
    config.worker.metrics_bind = Some(format!("127.0.0.1:{port}").parse().unwrap());
    let _worker = app.start_worker_with(config);
    let client = app.client();
    let readiness = || async {
        let response = client.get(format!("http://127.0.0.1:{port}/readyz")).send().await.ok()?;
        Some((response.status(), response.json::<Value>().await.unwrap()))
    };
    eventually("the worker is ready", || async { readiness().await.filter(|(s, _)| *s == StatusCode::OK) }).await;

    proxy.set_up(false);

    let (_, body) = eventually("the worker notices the outage", || async {
        readiness().await.filter(|(s, _)| *s == StatusCode::SERVICE_UNAVAILABLE)
    })
    .await;
    assert_eq!(body["error"]["code"], "not_ready");
    assert!(body["error"]["message"].as_str().unwrap().contains("broker"), "{body}");
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_a_sane_incoming_one_is_kept() {
    let app = spawn_app().await;
    let owner = app.register_org().await;

    let response =
        owner.client.get(app.url("/api/files")).header("X-Request-Id", "trace-42.a_b:c").send().await.unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-42.a_b:c");
    let generated = owner.client.get(app.url("/api/nope")).send().await.unwrap();
    let id = generated.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    let hostile = owner.client.get(app.url("/healthz")).header("X-Request-Id", "a b\"<script>").send().await.unwrap();
    assert_ne!(hostile.headers()["x-request-id"], "a b\"<script>");

    // The id ties an audit entry to the request that made it.
    let upload = owner
        .changing(reqwest::Method::POST, "/api/files/upload")
        .header("X-Request-Id", "upload-req-1")
        .multipart(
            reqwest::multipart::Form::new()
                .part("file", reqwest::multipart::Part::bytes(b"x".to_vec()).file_name("x.txt")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), StatusCode::CREATED);
    let log: Value = owner.get("/api/org/audit").await.json().await.unwrap();
    let entry = log["entries"].as_array().unwrap().iter().find(|e| e["action"] == "file_uploaded").unwrap();
    assert_eq!(entry["request_id"], "upload-req-1");
}

#[tokio::test]
async fn a_database_outage_answers_503_quickly_and_the_service_recovers_by_itself() {
    let proxy = TcpProxy::start(postgres_addr()).await;
    proxy.set_up(true);
    let app =
        spawn_app_with(Settings { app_db_port: Some(proxy.port), db_pool_timeout_ms: 1000, ..Settings::default() })
            .await;
    let owner = app.register_org().await;
    let id = owner.upload_ok("before.txt", "before the outage").await;

    proxy.set_up(false);
    let started = Instant::now();
    let during = owner.get_file(&id).await;
    assert!(started.elapsed() < Duration::from_secs(4), "answered in {:?}", started.elapsed());
    assert_error(during, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    let ready = app.client().get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_ready");
    assert!(body["error"]["message"].as_str().unwrap().contains("database"), "{body}");
    assert!(!body["error"]["message"].as_str().unwrap().contains("broker"), "{body}");
    assert_eq!(app.client().get(app.url("/healthz")).send().await.unwrap().status(), StatusCode::OK, "still alive");

    proxy.set_up(true);
    eventually("the service recovers", || async {
        (owner.get_file(&id).await.status() == StatusCode::OK).then_some(())
    })
    .await;
    assert_eq!(app.client().get(app.url("/readyz")).send().await.unwrap().status(), StatusCode::OK);
}

/// The value of one series (exact label set) in a Prometheus text page, 0 when absent.
fn sample(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map(|value| value.trim().parse().unwrap())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_are_exposed_and_move_with_requests_and_jobs() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let client = app.client();
    let scrape = || async { client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap() };
    let listed = r#"http_requests_total{method="GET",route="/api/files",status="200"}"#;
    let ready = r#"jobs_processed_total{outcome="ready"}"#;
    let before = scrape().await;

    owner.list("").await;
    owner.list("").await;
    let _worker = app.start_worker();
    let id = owner.upload_ok("m.txt", "metrics").await;
    app.wait_for_status(&owner, &id, "ready").await;

    let after = scrape().await;
    // The registry is this app's own: exact counts.
    assert_eq!(sample(&after, listed), sample(&before, listed) + 2.0, "{after}");
    assert_eq!(sample(&after, ready), sample(&before, ready) + 1.0);
    assert_eq!(sample(&after, "jobs_published_total"), 1.0);
    for series in [
        r#"http_request_duration_seconds_count{method="GET",route="/api/files",status="200"}"#,
        r#"db_pool_connections{state="size"}"#,
        r#"db_pool_connections{state="available"}"#,
        r#"db_pool_connections{state="waiting"}"#,
        "outbox_backlog",
        r#"job_duration_seconds_count{outcome="ready"}"#,
    ] {
        assert!(after.lines().any(|l| l.starts_with(series)), "{series} missing");
    }
    assert!(sample(&after, r#"db_pool_connections{state="size"}"#) >= 1.0);
}

/// Any token is a valid HTTP method; metric labels take theirs from a fixed set, so a client
/// cannot mint new series (each is kept for the process's life).
#[tokio::test]
async fn metric_labels_stay_within_known_values_whatever_the_client_sends() {
    let app = spawn_app().await;
    let client = app.client();
    for (method, path) in [("FOOBAR", "/healthz"), ("BAZ-QUUX", "/api/whatever/123"), ("GET", "/api/nope?x=1")] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        client.request(method, app.url(path)).send().await.unwrap();
    }

    let page = client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let labels: Vec<&str> = page.lines().filter(|l| l.starts_with("http_requests_total{")).collect();
    assert!(!page.contains("FOOBAR") && !page.contains("BAZ-QUUX") && !page.contains("whatever"), "{page}");
    assert!(labels.iter().any(|l| l.contains(r#"method="other""#)), "{labels:?}");
    assert!(labels.iter().any(|l| l.contains(r#"route="unmatched""#)), "{labels:?}");
}
