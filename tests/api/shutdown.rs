//! The API as a real process: SIGTERM lets in-flight requests finish, then it exits 0.

use std::{process::Stdio, time::Duration};

use bytes::Bytes;
use futures_util::stream;
use reqwest::StatusCode;
use tokio::process::Command;

use crate::helpers::{eventually, spawn_app, TestApp};

/// Starts `tenant-files --mode api` as its own process with the test app's configuration on a
/// free port (plus `env`), waits until it answers, and returns it with its base URL.
async fn spawn_api_process(app: &TestApp, env: &[(&str, &str)], stderr: Stdio) -> (tokio::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let api = Command::new(env!("CARGO_BIN_EXE_tenant-files"))
        .args(app.args[1..].iter().filter(|arg| !arg.starts_with("--bind=")))
        .args(["--mode=api", &format!("--bind=127.0.0.1:{port}")])
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let health = format!("{base}/healthz");
    eventually("the API comes up", || async { client.get(&health).send().await.ok().map(|_| ()) }).await;
    (api, base)
}

#[tokio::test]
async fn sigterm_finishes_the_request_in_flight_then_the_api_exits_0() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let (mut api, base) = spawn_api_process(&app, &[], Stdio::null()).await;
    let client = reqwest::Client::new();
    // The same database and session store: the test's session works against this process too
    // (same SESSION_KEY is needed for the cookie, so authenticate with a token instead).
    let (_, secret) = owner.create_token("shutdown").await;

    // An upload that trickles in over ~1.5 s.
    let chunks = stream::unfold(0, |n| async move {
        if n == 15 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        Some((Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 1024])), n + 1))
    });
    let part = reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(chunks)).file_name("slow.txt");
    let upload = tokio::spawn(
        client
            .post(format!("{base}/api/files/upload"))
            .bearer_auth(&secret)
            .multipart(reqwest::multipart::Form::new().part("file", part))
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(400)).await;

    let pid = nix::unistd::Pid::from_raw(api.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();

    let response = upload.await.unwrap().expect("the in-flight upload is answered");
    assert_eq!(response.status(), StatusCode::CREATED);
    let exit = tokio::time::timeout(Duration::from_secs(15), api.wait()).await.expect("exits").unwrap();
    assert_eq!(exit.code(), Some(0));
    assert!(client.get(format!("{base}/healthz")).send().await.is_err(), "no longer accepting");
}

/// With LOG_FORMAT=json every line is a JSON object; each request ends with one line carrying
/// method, route, status, duration, request id, organization and user, and nothing secret.
#[tokio::test]
async fn json_logs_have_one_line_per_request_and_no_secrets() {
    let app = spawn_app().await;
    let (api, base) = spawn_api_process(&app, &[("LOG_FORMAT", "json"), ("RUST_LOG", "info")], Stdio::piped()).await;
    let client = reqwest::Client::builder().cookie_store(true).build().unwrap();
    let password = "a very secret password";
    let registered: serde_json::Value = client
        .post(format!("{base}/api/auth/register"))
        .json(&serde_json::json!({ "email": crate::helpers::random_email(), "password": password, "organization_name": uuid::Uuid::new_v4().to_string() }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let csrf = registered["csrf_token"].as_str().unwrap().to_owned();
    let listed =
        client.get(format!("{base}/api/files?page=1")).header("X-Request-Id", "json-log-1").send().await.unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
    let token: serde_json::Value = client
        .post(format!("{base}/api/tokens"))
        .header("X-CSRF-Token", &csrf)
        .json(&serde_json::json!({ "name": "t", "expires_in_days": 1 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = token["secret"].as_str().unwrap().to_owned();
    client.get(format!("{base}/api/files")).bearer_auth(&secret).send().await.unwrap();

    let pid = nix::unistd::Pid::from_raw(api.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let output = tokio::time::timeout(Duration::from_secs(15), api.wait_with_output()).await.unwrap().unwrap();
    let logs = String::from_utf8(output.stderr).unwrap();

    let lines: Vec<serde_json::Value> =
        logs.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    let finished: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["message"] == "request finished" && l["span"]["request_id"] == "json-log-1")
        .collect();
    assert_eq!(finished.len(), 1, "one line for the request");
    let span = &finished[0]["span"];
    assert_eq!((span["method"].as_str(), span["route"].as_str()), (Some("GET"), Some("/api/files")));
    assert_eq!(span["org_id"], registered["organization_id"]);
    assert_eq!(span["user_id"], registered["user_id"]);
    assert_eq!(finished[0]["status"], 200);
    assert!(finished[0]["duration_ms"].is_number());
    for secret_value in [password, &csrf, &secret, "tf_session="] {
        assert!(!logs.contains(secret_value), "a secret reached the logs");
    }
}
