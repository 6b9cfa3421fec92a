//! Resumable uploads that never lose what a client was told is stored (#22): the upload's end
//! commits with its file, whatever cuts the completion off (a client reset after its last
//! byte, the api process killed at any moment, the store failing); one `PATCH` at a time; a
//! stalled body ends and keeps what arrived; bodies stay within the memory budget.

use std::time::Duration;

use reqwest::{header, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::{
    cluster::Process,
    helpers::{assert_error, eventually, spawn_app_with, Settings, TcpProxy, TestApp, TestUser},
    stored::s3_addr,
    tus::{content, only_file, Tus, OFFSET_TYPE},
};

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Whether any `PATCH` holds the upload's lease now.
pub(crate) async fn leased(app: &TestApp, upload: &str) -> bool {
    let id = upload.rsplit('/').next().unwrap();
    app.superuser()
        .await
        .query_one("select lease_until > now() is true from app.tus_uploads where id = $1::text::uuid", &[&id])
        .await
        .unwrap()
        .get(0)
}

/// As if a process holding the upload had been killed: a lease nobody gives back, live for
/// `seconds` more.
pub(crate) async fn leased_by_a_dead_process(app: &TestApp, upload: &str, seconds: f64) {
    let id = upload.rsplit('/').next().unwrap();
    app.superuser()
        .await
        .execute(
            "update app.tus_uploads set lease_holder = gen_random_uuid(), lease_until = now() + make_interval(secs => $2) where id = $1::text::uuid",
            &[&id, &seconds],
        )
        .await
        .unwrap();
}

/// The invariant a client relies on: HEAD says whole only when the file exists (and names it);
/// otherwise the upload resumes from where HEAD says and becomes the file. Either way, exactly
/// one file with the upload's bytes.
///
/// A 423 is retried after a moment, as tus clients do: a killed process's last statement (sent
/// with its COMMIT) may still commit a lease renewal on the server after the process is gone,
/// on a loaded machine after the lease seemed to have lapsed. Then HEAD is asked again.
async fn finish_and_check(tus: &Tus, owner: &TestUser, upload: &str, bytes: &[u8]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let head = tus.offset(upload).await;
        assert_eq!(head.status(), StatusCode::OK);
        let offset: usize = head.headers()["Upload-Offset"].to_str().unwrap().parse().unwrap();
        if offset == bytes.len() {
            let file_id = head.headers()["Upload-File-Id"].to_str().unwrap().to_owned();
            assert!(upload.ends_with(&file_id), "the file has the upload's id");
            break;
        }
        assert!(head.headers().get("Upload-File-Id").is_none(), "not whole, no file");
        let resumed = tus.patch(upload, offset, bytes[offset..].to_vec()).await;
        if resumed.status() == StatusCode::LOCKED && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        assert_eq!(resumed.status(), StatusCode::NO_CONTENT, "resumes from {offset}");
        break;
    }
    let file = only_file(owner).await;
    assert_eq!(
        (file["sha256"].as_str(), file["size"].as_u64()),
        (Some(sha256(bytes).as_str()), Some(bytes.len() as u64))
    );
}

/// The whole of `bytes` in one `PATCH` from offset 0, then, after `pause`, the connection reset
/// (RST, not FIN): the client is gone before any answer.
pub(crate) async fn reset_after_sending(app: &TestApp, tus: &Tus, upload: &str, bytes: &[u8], pause: Duration) {
    let port: u16 = app.address.rsplit(':').next().unwrap().parse().unwrap();
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let head = format!(
        "PATCH {upload} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\nTus-Resumable: 1.0.0\r\n\
         Upload-Offset: 0\r\nContent-Type: {OFFSET_TYPE}\r\nContent-Length: {}\r\n\r\n",
        tus.bearer.secret,
        bytes.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(bytes).await.unwrap();
    tokio::time::sleep(pause).await;
    socket.set_zero_linger().unwrap();
    drop(socket);
}

/// A `PATCH` whose body is fed by hand: the sender, and the request's answer to come.
pub(crate) fn patch_by_hand(
    tus: &Tus,
    upload: &str,
    offset: usize,
) -> (tokio::sync::mpsc::Sender<Vec<u8>>, tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>) {
    let (sender, receiver) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let body = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let chunk = receiver.recv().await?;
        Some((Ok::<_, std::io::Error>(chunk), receiver))
    });
    let request = tus.patch_request(upload, offset).body(reqwest::Body::wrap_stream(body));
    (sender, tokio::spawn(request.send()))
}

/// tusd's rule: one writer per upload. A second `PATCH` while the first is receiving gets 423
/// at once (it buffers nothing); a lease left by a process that died lapses after twice the
/// idle timeout, and the next `PATCH` takes the upload over.
#[tokio::test]
async fn a_second_patch_meanwhile_is_423_and_a_dead_holders_lease_lapses() {
    let app = spawn_app_with(Settings { upload_idle_timeout_seconds: 1, ..Settings::default() }).await;
    let owner = app.register_org().await;
    let tus = Tus::new(&app, &owner).await;
    let bytes = content(30_000);
    let upload = tus.create_ok(bytes.len(), "one-writer.txt").await;

    let (sender, first) = patch_by_hand(&tus, &upload, 0);
    sender.send(bytes[..10_000].to_vec()).await.unwrap();
    eventually("the first PATCH holds the lease", || async { leased(&app, &upload).await.then_some(()) }).await;
    let second = tus.patch(&upload, 0, bytes[..10_000].to_vec()).await;
    assert_eq!(second.headers()[header::RETRY_AFTER], "2");
    assert_error(second, StatusCode::LOCKED, "upload_locked").await;
    assert_error(tus.terminate(&upload).await, StatusCode::LOCKED, "upload_locked").await;
    drop(sender);
    let first = first.await.unwrap().unwrap();
    assert_eq!((first.status(), first.headers()["Upload-Offset"].to_str().unwrap()), (StatusCode::NO_CONTENT, "10000"));
    assert!(!leased(&app, &upload).await, "given back when the PATCH ended");

    // As if a process holding it had been killed: its lease is still live for a moment.
    leased_by_a_dead_process(&app, &upload, 1.5).await;
    assert_error(tus.patch(&upload, 10_000, bytes[10_000..].to_vec()).await, StatusCode::LOCKED, "upload_locked").await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(tus.patch(&upload, 10_000, bytes[10_000..].to_vec()).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(only_file(&owner).await["sha256"], sha256(&bytes));
}

/// A body that goes quiet is ended after the idle timeout: what arrived is stored, the lease is
/// given back, and the client resumes at once.
#[tokio::test]
async fn a_stalled_body_ends_after_the_idle_timeout_and_keeps_what_arrived() {
    let app = spawn_app_with(Settings { upload_idle_timeout_seconds: 1, ..Settings::default() }).await;
    let owner = app.register_org().await;
    let tus = Tus::new(&app, &owner).await;
    let bytes = content(20_000);
    let upload = tus.create_ok(bytes.len(), "stalled.txt").await;

    let (sender, stalled) = patch_by_hand(&tus, &upload, 0);
    sender.send(bytes[..7_000].to_vec()).await.unwrap();
    let started = std::time::Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(10), stalled).await.expect("ended by the server").unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "ended after about a second: {:?}", started.elapsed());
    if let Ok(answer) = answer {
        assert_error(answer, StatusCode::REQUEST_TIMEOUT, "request_timeout").await;
    }
    drop(sender);

    assert_eq!(tus.offset_ok(&upload).await, 7_000);
    assert!(!leased(&app, &upload).await);
    assert_eq!(tus.patch(&upload, 7_000, bytes[7_000..].to_vec()).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(only_file(&owner).await["sha256"], sha256(&bytes));
}

/// The review's case: a whole upload in one `PATCH` whose connection is reset right after the
/// last byte. Before, HEAD could say whole while no file existed. Now, whatever moment the reset
/// hits, HEAD says whole only once the file is committed, or the upload resumes.
#[tokio::test]
async fn a_client_reset_after_its_last_byte_never_loses_the_upload() {
    let app = spawn_app_with(Settings { max_file_size_mb: 32, ..Settings::default() }).await;
    let owner = app.register_org().await;
    let tus = Tus::new(&app, &owner).await;
    for (round, pause_ms) in [0u64, 30, 150].into_iter().enumerate() {
        let bytes: Vec<u8> = (0..20 * 1024 * 1024u32).map(|i| (i / 997 + round as u32) as u8).collect();
        let upload = tus.create_ok(bytes.len(), &format!("reset-{round}.bin")).await;
        reset_after_sending(&app, &tus, &upload, &bytes, Duration::from_millis(pause_ms)).await;

        eventually("the PATCH is over", || async { (!leased(&app, &upload).await).then_some(()) }).await;
        finish_and_check(&tus, &owner, &upload, &bytes).await;
        // Done with this round's file: the next round's check counts one file again.
        let id = upload.rsplit('/').next().unwrap();
        assert_eq!(owner.delete(id).await.status(), StatusCode::NO_CONTENT);
    }
}

/// The api process SIGKILLed at a different moment of a whole-file `PATCH` each round (before,
/// during and after the body, during the completion, and at random): every upload ends as exactly one file
/// with its bytes, either because HEAD says whole and names it, or by resuming from HEAD's
/// offset on another process.
#[tokio::test]
async fn an_api_killed_at_any_moment_of_an_upload_leaves_it_whole_or_resumable() {
    let app =
        spawn_app_with(Settings { max_file_size_mb: 32, upload_idle_timeout_seconds: 1, ..Settings::default() }).await;
    let owner = app.register_org().await;
    let tus = Tus::new(&app, &owner).await;

    // Five chosen moments, then three at random (logged, to replay a failure).
    let random = (0..3).map(|_| (uuid::Uuid::new_v4().as_u128() % 1_200) as u64);
    for (round, kill_after_ms) in [5u64, 60, 200, 450, 900].into_iter().chain(random).enumerate() {
        eprintln!("round {round}: the api is killed {kill_after_ms} ms into the PATCH");
        let bytes: Vec<u8> = (0..12 * 1024 * 1024u32).map(|i| (i / 1013 + round as u32 * 7) as u8).collect();
        let mut doomed = Process::start(&app, "api");
        doomed.wait_ready().await;
        let on_doomed = tus.at(&doomed.address);
        let upload = on_doomed.create_ok(bytes.len(), &format!("killed-{round}.bin")).await;
        let sending = tokio::spawn(on_doomed.patch_request(&upload, 0).body(bytes.clone()).send());
        tokio::time::sleep(Duration::from_millis(kill_after_ms)).await;
        doomed.child.kill().await.unwrap();
        let _ = sending.await;

        // Any process takes over once the dead one's lease lapses (twice the idle timeout).
        eventually("the dead process's lease lapses", || async { (!leased(&app, &upload).await).then_some(()) }).await;
        finish_and_check(&tus, &owner, &upload, &bytes).await;
        let id = upload.rsplit('/').next().unwrap();
        assert_eq!(owner.delete(id).await.status(), StatusCode::NO_CONTENT);
    }
}

/// No chunk outlives its upload: the api SIGKILLed mid-chunk round after round (chunks stored
/// and never recorded, writes cut off), a chunk left by a process that died between storing it
/// and recording it, and a member's upload ended by their deactivation (the database ends it,
/// its chunks stay in the store): once the uploads end, the worker's expiry and its sweep of
/// unreferenced chunks leave no chunk object, on either backend.
#[tokio::test]
async fn an_api_killed_mid_chunk_again_and_again_leaves_no_chunk_once_uploads_end() {
    let app = spawn_app_with(Settings {
        max_file_size_mb: 64,
        upload_idle_timeout_seconds: 1,
        chunk_sweep_grace_seconds: 1,
        ..Settings::default()
    })
    .await;
    let owner = app.register_org().await;
    let tus = Tus::new(&app, &owner).await;
    let bytes = content(40 * 1024 * 1024);
    let upload = tus.create_ok(bytes.len(), "killed-again.bin").await;
    for kill_after_ms in [150u64, 300, 450, 600, 800, 1000] {
        let mut doomed = Process::start(&app, "api");
        doomed.wait_ready().await;
        let offset = tus.offset_ok(&upload).await as usize;
        // Never the last byte: the upload stays unfinished, to be abandoned.
        let body = bytes[offset..bytes.len() - 1].to_vec();
        let sending = tokio::spawn(tus.at(&doomed.address).patch_request(&upload, offset).body(body).send());
        tokio::time::sleep(Duration::from_millis(kill_after_ms)).await;
        doomed.child.kill().await.unwrap();
        let _ = sending.await;
        eventually("the dead process's lease lapses", || async { (!leased(&app, &upload).await).then_some(()) }).await;
    }
    let id = upload.rsplit('/').next().unwrap();
    let unrecorded = format!("{}/tus/{id}/{:020}-{}", owner.org_id, 0, uuid::Uuid::new_v4());
    app.store.put(&unrecorded, b"stored, never recorded".to_vec()).await;

    let member = app.add_user(&owner, "member").await;
    let member_tus = Tus::new(&app, &member).await;
    let ended = member_tus.create_ok(20_000, "ended.txt").await;
    assert_eq!(member_tus.patch(&ended, 0, content(5_000)).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(owner.deactivate(&member.user_id).await.status(), StatusCode::OK);
    assert!(app.store.keys().await.len() >= 2, "chunks are left in the store");

    // The owner's upload is abandoned: it expires (as if an hour went by).
    app.superuser()
        .await
        .execute("update app.tus_uploads set expires_at = now() - interval '1 second'", &[])
        .await
        .unwrap();
    let _worker = app.start_worker();
    app.assert_stored_files(0).await;
}

/// A store that fails while the last bytes are turned into the file is the store's failure: a
/// retryable 503 (`Retry-After`), never a 400, and the upload stays where it was, resumable.
#[tokio::test]
async fn a_store_failing_during_completion_is_a_503_and_the_upload_resumes() {
    let proxy = TcpProxy::start(s3_addr()).await;
    proxy.set_up(true);
    let endpoint = format!("http://127.0.0.1:{}", proxy.port);
    let app = spawn_app_with(Settings { s3_endpoint: Some(endpoint), ..Settings::default() }).await;
    let owner = app.register_org().await;
    let tus = Tus::new(&app, &owner).await;
    let bytes = content(50_000);
    let upload = tus.create_ok(bytes.len(), "outage.txt").await;
    assert_eq!(tus.patch(&upload, 0, bytes[..20_000].to_vec()).await.status(), StatusCode::NO_CONTENT);

    proxy.set_up(false);
    let refused = tus.patch(&upload, 20_000, bytes[20_000..].to_vec()).await;
    assert!(refused.headers().contains_key(header::RETRY_AFTER));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert!(!body.to_string().contains("127.0.0.1"), "no store error text reaches the client: {body}");
    proxy.set_up(true);

    assert_eq!(tus.offset_ok(&upload).await, 20_000, "not whole: the file was never committed");
    assert_eq!(owner.list("").await.json::<Value>().await.unwrap()["total"], 0);
    finish_and_check(&tus, &owner, &upload, &bytes).await;
}

/// With a budget far below what the bodies in flight send, uploads still complete, each with
/// its own bytes: a body that finds the budget spent stores what it holds and waits for room.
#[tokio::test]
async fn bodies_beyond_the_memory_budget_wait_and_still_complete_intact() {
    let app = spawn_app_with(Settings { upload_memory_mb: 1, max_file_size_mb: 8, ..Settings::default() }).await;
    let owner = app.register_org().await;
    let tus = Tus::new(&app, &owner).await;
    let files: Vec<Vec<u8>> =
        (0..3u32).map(|n| (0..3 * 1024 * 1024u32).map(|i| (i / 509 + n * 31) as u8).collect()).collect();
    let mut uploads = Vec::new();
    for (n, bytes) in files.iter().enumerate() {
        uploads.push(tus.create_ok(bytes.len(), &format!("budget-{n}.bin")).await);
    }
    let sending = files.iter().zip(&uploads).map(|(bytes, upload)| tus.patch(upload, 0, bytes.clone()));
    for answer in futures_util::future::join_all(sending).await {
        assert_eq!(answer.status(), StatusCode::NO_CONTENT);
    }
    let listed: Value = owner.list("?limit=10").await.json().await.unwrap();
    let mut stored: Vec<String> =
        listed["files"].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap().to_owned()).collect();
    stored.sort();
    for (bytes, upload) in files.iter().zip(&uploads) {
        let id = upload.rsplit('/').next().unwrap();
        assert!(stored.iter().any(|s| s == id));
        let detail: Value = owner.get_file(id).await.json().await.unwrap();
        assert_eq!(detail["sha256"], sha256(bytes), "{id}");
    }
}
