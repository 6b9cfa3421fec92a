//! The S3 backend against a real S3 engine (the SeaweedFS `make test` starts), whatever the
//! run's default backend: files larger than a part, uploads abandoned after parts went up, the
//! store going away, and settings that cannot work. (`TEST_STORAGE=s3` also runs every other
//! test against it.)

use reqwest::{header, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{
    helpers::{
        assert_error, eventually, s3_endpoint, spawn_app, spawn_app_with, Settings, TcpProxy, TestApp, S3_BUCKET,
    },
    stored::s3_addr,
};

/// 12 MiB of bytes that differ from part to part (a part mixed up or lost would show).
fn large_file() -> Vec<u8> {
    (0..12 * 1024 * 1024u32).map(|i| (i / 4096 % 251) as u8).collect()
}

async fn org_usage(app: &TestApp, org_id: &str) -> (i64, i64, i32) {
    let row = app
        .superuser()
        .await
        .query_one(
            "select storage_used_bytes, storage_reserved_bytes, (select count(*)::int from app.upload_reservations r where r.organization_id = o.id and r.receiving_until > now())
               from app.organizations o where id = $1::text::uuid",
            &[&org_id],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

/// Multipart uploads the bucket still holds under the test's prefix (begun, neither completed
/// nor aborted). SeaweedFS answers this listing without a signature.
async fn unfinished_uploads(app: &TestApp) -> usize {
    let url = format!("{}/{S3_BUCKET}?uploads&prefix={}/", s3_endpoint(), app.db_name);
    let listing = reqwest::get(url).await.unwrap().text().await.unwrap();
    listing.matches("<UploadId>").count()
}

#[tokio::test]
async fn a_file_larger_than_a_part_goes_up_in_parts_and_comes_back_whole() {
    let app = spawn_app_with(Settings { s3: true, max_file_size_mb: 20, ..Settings::default() }).await;
    let owner = app.register_org().await;
    let bytes = large_file();

    let id = owner.upload_ok("large.bin", bytes.clone()).await;

    assert_eq!(app.store.read(&owner, &id).await.as_deref(), Some(bytes.as_slice()), "stored under {{org}}/{{id}}");
    assert_eq!(unfinished_uploads(&app).await, 0);
    // The worker hashes it streaming from the bucket.
    assert_eq!(app.drain_jobs().await, 1);
    let detail = app.wait_for_status(&owner, &id, "ready").await;
    assert_eq!(detail["sha256"], hex::encode(Sha256::digest(&bytes)));

    let whole = owner.download(&id).await;
    assert_eq!(whole.status(), StatusCode::OK);
    assert_eq!(whole.headers()[header::CONTENT_LENGTH], bytes.len().to_string());
    assert_eq!(whole.bytes().await.unwrap(), bytes);
    let url = app.url(&format!("/api/files/{id}/download"));
    let tail = owner.client.get(&url).header(header::RANGE, "bytes=10000000-").send().await.unwrap();
    assert_eq!(tail.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(tail.headers()[header::CONTENT_RANGE], format!("bytes 10000000-{}/{}", bytes.len() - 1, bytes.len()));
    assert_eq!(tail.bytes().await.unwrap(), bytes[10_000_000..]);
}

/// Refused after its first part went up: the multipart upload is aborted, and nothing is
/// left in the bucket, the table or the organization's counters.
#[tokio::test]
async fn an_upload_refused_after_parts_went_up_leaves_no_object_row_or_quota() {
    let app = spawn_app_with(Settings { s3: true, max_file_size_mb: 8, ..Settings::default() }).await;
    let owner = app.register_org().await;

    let refused = owner.upload("too-large.bin", large_file()).await;

    assert_error(refused, StatusCode::PAYLOAD_TOO_LARGE, "file_too_large").await;
    eventually("the begun upload is aborted", || async { (unfinished_uploads(&app).await == 0).then_some(()) }).await;
    app.assert_stored_files(0).await;
    assert_eq!(app.count_file_rows().await, 0);
    assert_eq!(org_usage(&app, &owner.org_id).await, (0, 0, 0));
}

/// The bytes go in place before the file's record, which commits in one statement: a record the
/// database refuses then (here the quota, lowered while the file was on its way, as a trigger
/// that refuses exactly like the quota check) removes the placed bytes before the refusal is
/// answered, and leaves no row, no reservation and no usage.
#[tokio::test]
async fn a_record_refused_once_the_bytes_are_in_place_leaves_no_object_row_or_quota() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    app.superuser()
        .await
        .batch_execute(
            "create function app.test_quota_lowered() returns trigger language plpgsql as
               $$ begin
                    raise exception 'over quota' using errcode = 'check_violation', constraint = 'organizations_within_quota';
                  end $$;
             create trigger test_quota_lowered before insert on app.files
               for each row execute function app.test_quota_lowered();",
        )
        .await
        .unwrap();

    let refused = owner.upload("late.txt", "refused after it was stored").await;

    assert_error(refused, StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded").await;
    app.assert_stored_files(0).await;
    assert_eq!(app.count_file_rows().await, 0);
    assert_eq!(org_usage(&app, &owner.org_id).await, (0, 0, 0));
}

/// Readiness names the store when it does not answer; an upload meanwhile is a 503 that leaves
/// nothing behind, and the same app works again once the store is back.
#[tokio::test]
async fn without_its_store_the_api_is_not_ready_and_refuses_uploads_cleanly() {
    let proxy = TcpProxy::start(s3_addr()).await;
    proxy.set_up(true);
    let endpoint = format!("http://127.0.0.1:{}", proxy.port);
    let app =
        spawn_app_with(Settings { s3_endpoint: Some(endpoint), max_file_size_mb: 20, ..Settings::default() }).await;
    let owner = app.register_org().await;
    let kept = owner.upload_ok("before.txt", "stored before the outage").await;
    let ready: Value = app.client().get(app.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["checks"]["storage"], "ok");

    proxy.set_up(false);

    let readiness = app.client().get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(readiness.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = readiness.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_ready");
    assert!(body["error"]["message"].as_str().unwrap().contains("storage"), "{body}");
    // Over a part, so the upload would have begun a multipart upload, and a small one.
    for (name, bytes) in [("large.bin", large_file()), ("small.txt", b"small".to_vec())] {
        let refused = owner.upload(name, bytes).await;
        assert_error(refused, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    }
    assert_eq!(app.count_file_rows().await, 1);
    let (used, reserved, in_flight) = org_usage(&app, &owner.org_id).await;
    assert_eq!((used, reserved, in_flight), ("stored before the outage".len() as i64, 0, 0));

    proxy.set_up(true);

    assert_eq!(app.client().get(app.url("/readyz")).send().await.unwrap().status(), StatusCode::OK);
    owner.upload_ok("after.txt", "stored after").await;
    app.assert_stored_files(2).await;
    assert_eq!(app.store.read(&owner, &kept).await.as_deref(), Some(&b"stored before the outage"[..]));
}

/// A setting that cannot work stops the process at start with one line naming it.
#[tokio::test]
async fn s3_settings_that_cannot_work_stop_the_process_with_one_line_naming_them() {
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[], "missing S3_BUCKET: required when STORAGE=s3"),
        (&[("S3_BUCKET", "tf")], "invalid S3_BUCKET \"tf\""),
        (&[("S3_BUCKET", "tenant-files"), ("S3_ENDPOINT", "127.0.0.1:38333")], "invalid S3_ENDPOINT"),
        (&[("S3_BUCKET", "tenant-files"), ("AWS_ACCESS_KEY_ID", "AKIDNOTTOBESHOWN")], "missing AWS_SECRET_ACCESS_KEY"),
    ];
    for (env, expected) in cases {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenant-files"))
            .arg("--mode=api")
            .env_clear()
            .env("STORAGE", "s3")
            .envs(env.iter().copied())
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(expected), "{expected:?} in {stderr}");
        assert!(!stderr.contains("AKIDNOTTOBESHOWN"), "no credential echoed: {stderr}");
    }
}
