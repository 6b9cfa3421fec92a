//! tus-js-client, the tus reference JavaScript client (npm, pinned in tests/tus), beside tuspy:
//! cut off and resumed, and finishing after its last answer was lost or its connection reset
//! right after the last byte — each ending with exactly one ready file of its bytes.

use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{
    helpers::{spawn_app_with, Settings, TestApp, TestUser},
    tus::{only_file, Tus},
    tus_integrity::reset_after_sending,
};

/// Runs tests/tus/js-client.mjs; its last JSON line.
async fn js_client(args: &[&str]) -> Value {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tus/js-client.mjs");
    let run = tokio::process::Command::new("node")
        .arg(&script)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| panic!("node: {e} (`make test` installs tus-js-client into tests/tus)"));
    let printed = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(run.status.success(), "{printed}{}", String::from_utf8_lossy(&run.stderr));
    serde_json::from_str(printed.lines().last().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}: {printed}"))
}

async fn setup(max_file_size_mb: u64) -> (TestApp, TestUser, Tus, String, tempfile::TempDir) {
    let app = spawn_app_with(Settings { max_file_size_mb, ..Settings::default() }).await;
    let owner = app.register_org().await;
    let tus = Tus::new(&app, &owner).await;
    let secret = tus.bearer.secret.clone();
    (app, owner, tus, secret, tempfile::tempdir().unwrap())
}

async fn ends_as_one_ready_file(app: &TestApp, owner: &TestUser, bytes: &[u8]) {
    let file = only_file(owner).await;
    assert_eq!(file["sha256"], hex::encode(Sha256::digest(bytes)));
    app.drain_jobs().await;
    app.wait_for_status(owner, file["id"].as_str().unwrap(), "ready").await;
}

#[tokio::test]
async fn tus_js_client_aborts_and_resumes_to_one_ready_file() {
    let (app, owner, _, secret, dir) = setup(5).await;
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let path = dir.path().join("aborted.bin");
    std::fs::write(&path, &bytes).unwrap();

    let endpoint = app.url("/api/files/tus");
    let finished = js_client(&["abort-and-resume", &endpoint, &secret, path.to_str().unwrap(), "100000"]).await;

    assert_eq!(finished["step"], "finished");
    assert_eq!(finished["sent"], 200_000, "resumed from the server's offset: {finished}");
    ends_as_one_ready_file(&app, &owner, &bytes).await;
}

/// A client whose final answer was lost starts again from the upload's URL: HEAD says whole, so
/// it sends nothing and reports success — no second copy, no second quota.
#[tokio::test]
async fn tus_js_client_whose_last_answer_was_lost_finishes_without_sending_again() {
    let (app, owner, tus, secret, dir) = setup(5).await;
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
    let path = dir.path().join("lost-answer.bin");
    std::fs::write(&path, &bytes).unwrap();
    let upload = tus.create_ok(bytes.len(), "lost-answer.bin").await;
    assert_eq!(tus.patch(&upload, 0, bytes.clone()).await.status(), reqwest::StatusCode::NO_CONTENT);

    let finished =
        js_client(&["resume", &app.url("/api/files/tus"), &secret, path.to_str().unwrap(), &app.url(&upload)]).await;

    assert_eq!((finished["step"].as_str(), finished["sent"].as_u64()), (Some("finished"), Some(0)), "{finished}");
    ends_as_one_ready_file(&app, &owner, &bytes).await;
}

/// The whole file in one PATCH, the connection reset right after the last byte; the client
/// starts again from the upload's URL and ends with the one file, whether the server had
/// completed it or kept it resumable.
#[tokio::test]
async fn tus_js_client_finishes_after_a_reset_right_after_its_last_byte() {
    let (app, owner, tus, secret, dir) = setup(32).await;
    let bytes: Vec<u8> = (0..16 * 1024 * 1024u32).map(|i| (i / 991) as u8).collect();
    let path = dir.path().join("reset.bin");
    std::fs::write(&path, &bytes).unwrap();
    let upload = tus.create_ok(bytes.len(), "reset.bin").await;
    reset_after_sending(&app, &tus, &upload, &bytes, Duration::from_millis(20)).await;

    // tus-js-client retries a 423 (the reset PATCH may still hold the upload for a moment).
    let finished =
        js_client(&["resume", &app.url("/api/files/tus"), &secret, path.to_str().unwrap(), &app.url(&upload)]).await;

    assert_eq!(finished["step"], "finished", "{finished}");
    ends_as_one_ready_file(&app, &owner, &bytes).await;
}
