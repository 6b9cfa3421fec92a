//! Beyond one host: two api and two worker processes (the real binary, each on its own port)
//! sharing one PostgreSQL, one RabbitMQ and one S3 bucket, as a scaled-out deployment does.
//! Nothing one process knows is missing in another: sessions, files, jobs. Killing a worker and
//! an api mid-run loses no accepted upload and processes nothing twice.

use std::{
    collections::HashSet,
    process::Stdio,
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use futures_util::{stream, StreamExt};
use reqwest::{multipart, Method, StatusCode};
use serde_json::{json, Value};
use tokio::process::{Child, Command};

use crate::helpers::{random_email, spawn_app_with, unused_port, Settings, TestApp, TestUser, PASSWORD};

const UPLOADS: usize = 200;
/// Uploads in flight at once, spread over both apis.
const CONCURRENCY: usize = 8;

/// One process of the cluster, killed (SIGKILL) when dropped.
pub struct Process {
    pub child: Child,
    /// Where its HTTP server (api) or its metrics and health endpoints (worker) listen.
    pub address: String,
}

impl Process {
    pub fn start(app: &TestApp, mode: &str) -> Self {
        let port = unused_port();
        let listen = match mode {
            "api" => format!("--bind=127.0.0.1:{port}"),
            _ => format!("--metrics-bind=127.0.0.1:{port}"),
        };
        let child = Command::new(env!("CARGO_BIN_EXE_tenant-files"))
            // The in-process test app's settings, but its own port.
            .args(app.args[1..].iter().filter(|arg| !arg.starts_with("--bind=")))
            .arg(format!("--mode={mode}"))
            // The same SESSION_KEY too: every api process reads the session cookies (and the
            // cursors) the others hand out.
            .arg(listen)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start the tenant-files binary");
        Self { child, address: format!("http://127.0.0.1:{port}") }
    }

    pub async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let ready = client.get(format!("{}/readyz", self.address)).send().await;
            if ready.is_ok_and(|r| r.status() == StatusCode::OK) {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "{} never became ready", self.address);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A new organization's owner, signed in through the api process at `address`.
async fn register_through(app: &TestApp, address: &str) -> TestUser {
    let client = app.client();
    let email = random_email();
    let registered: Value = client
        .post(format!("{address}/api/auth/register"))
        .json(&json!({ "email": email, "password": PASSWORD, "organization_name": "cluster" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let field = |name: &str| registered[name].as_str().unwrap_or_else(|| panic!("{name} in {registered}")).to_owned();
    TestUser {
        address: address.to_owned(),
        csrf: field("csrf_token"),
        user_id: field("user_id"),
        org_id: field("organization_id"),
        client,
        email,
    }
}

/// The same signed-in user, talking to another api process.
fn via(user: &TestUser, address: &str) -> TestUser {
    TestUser {
        address: address.to_owned(),
        client: user.client.clone(),
        csrf: user.csrf.clone(),
        user_id: user.user_id.clone(),
        org_id: user.org_id.clone(),
        email: user.email.clone(),
    }
}

async fn count(app: &TestApp, sql: &str, org_id: &str) -> i64 {
    app.superuser().await.query_one(sql, &[&org_id]).await.unwrap().get(0)
}

#[tokio::test]
async fn two_apis_and_two_workers_share_sessions_files_and_jobs_and_lose_nothing_to_sigkill() {
    // The in-process app only prepares the database; the cluster serves.
    let app = spawn_app_with(Settings { s3: true, ..Settings::default() }).await;
    let apis = [Process::start(&app, "api"), Process::start(&app, "api")];
    let mut workers = [Process::start(&app, "worker"), Process::start(&app, "worker")];
    for process in apis.iter().chain(&workers) {
        process.wait_ready().await;
    }
    let registered = register_through(&app, &apis[0].address).await;
    let [first, second] = [via(&registered, &apis[0].address), via(&registered, &apis[1].address)];
    // Beyond the default of 8: a killed api's uploads hold their slots until their deadline.
    app.superuser()
        .await
        .execute(
            "update app.organizations set max_concurrent_uploads = 1000 where id = $1::text::uuid",
            &[&first.org_id],
        )
        .await
        .unwrap();

    // Uploaded through one api: listed, detailed and downloaded through the other, with the
    // session the first one issued.
    let id = first.upload_ok("shared.txt", "written through api 1").await;
    let ready = eventually_ready(&second, std::slice::from_ref(&id)).await;
    assert_eq!(ready, 1);
    assert!(second.listed_ids("").await.contains(&id));
    let download = second.download(&id).await;
    assert_eq!(download.status(), StatusCode::OK);
    assert_eq!(download.bytes().await.unwrap(), "written through api 1");

    // Many uploads over both apis; a worker and an api are killed a third of the way in. An
    // upload the killed api did not answer is sent again through the other, as a client
    // behind a load balancer would.
    let users = [first, second];
    let mut killed = false;
    let mut accepted: Vec<String> = Vec::new();
    let resent = AtomicUsize::new(0);
    let mut uploads = stream::iter(0..UPLOADS)
        .map(|n| {
            let (users, resent) = (&users, &resent);
            async move {
                let name = format!("file-{n}.txt");
                let body = format!("upload number {n}");
                let part = multipart::Part::bytes(body.clone().into_bytes()).file_name(name.clone());
                let request = users[n % 2].changing(Method::POST, "/api/files/upload");
                match request.multipart(multipart::Form::new().part("file", part)).send().await {
                    Ok(answer) if answer.status() == StatusCode::CREATED => answer.json::<Value>().await.unwrap(),
                    // Refused by a dying process, or no answer at all: not accepted.
                    _ => {
                        resent.fetch_add(1, Ordering::Relaxed);
                        users[0].upload(&name, body).await.json::<Value>().await.unwrap()
                    }
                }
            }
        })
        .buffer_unordered(CONCURRENCY);
    while let Some(created) = uploads.next().await {
        accepted.push(created["file_id"].as_str().expect("accepted upload").to_owned());
        if !killed && accepted.len() == UPLOADS / 3 {
            workers[0].child.kill().await.expect("SIGKILL a worker");
            // The api's own uploads in flight fail at the client, and are sent again.
            kill_api(&apis[1]).await;
            killed = true;
        }
    }
    drop(uploads);
    assert_eq!(accepted.len(), UPLOADS);
    // Half of what followed the kill went to the dead api first.
    assert!(resent.load(Ordering::Relaxed) >= UPLOADS / 4, "the api was killed mid-run");
    assert_eq!(accepted.iter().collect::<HashSet<_>>().len(), UPLOADS, "one file per accepted upload");

    // Every accepted upload ends ready, through the surviving api and worker.
    let surviving = &users[0];
    assert_eq!(eventually_ready(surviving, &accepted).await, UPLOADS);
    // An upload the killed api had committed but could not answer was sent again: stored
    // twice (plain POST has no idempotency key), never lost.
    let org = &surviving.org_id;
    let files = "select count(*) from app.files where organization_id = $1::text::uuid and deleted_at is null";
    let stored = count(&app, files, org).await;
    let at_most = (UPLOADS + 1 + resent.load(Ordering::Relaxed)) as i64;
    assert!((UPLOADS as i64 + 1..=at_most).contains(&stored), "{stored} files stored");
    // Each was processed once: every stored file ends ready, counted once, its bytes once.
    let pending = "select files_pending from app.organizations where id = $1::text::uuid";
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while count(&app, pending, org).await > 0 {
        assert!(std::time::Instant::now() < deadline, "files stay pending");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let counters = app
        .superuser()
        .await
        .query_one(
            "select files_ready, files_failed, storage_used_bytes,
                    (select sum(file_size_bytes) from app.files where organization_id = o.id)::bigint
               from app.organizations o where id = $1::text::uuid",
            &[org],
        )
        .await
        .unwrap();
    let (ready, failed): (i64, i64) = (counters.get(0), counters.get(1));
    assert_eq!((ready, failed), (stored, 0));
    assert_eq!(counters.get::<_, i64>(2), counters.get::<_, i64>(3), "stored bytes counted once each");
    let uploaded_events =
        "select count(*) from app.audit_log where organization_id = $1::text::uuid and action = 'file_uploaded'";
    assert_eq!(count(&app, uploaded_events, org).await, stored);
    workers[1].wait_ready().await;
}

async fn kill_api(api: &Process) {
    let pid = nix::unistd::Pid::from_raw(api.child.id().expect("running") as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).expect("SIGKILL an api");
}

/// Waits (60 s at most) until every one of `ids` is ready, as `user` sees them; returns how many.
async fn eventually_ready(user: &TestUser, ids: &[String]) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut waiting: HashSet<&String> = ids.iter().collect();
    loop {
        let mut still = HashSet::new();
        for id in waiting {
            let detail: Value = user.get_file(id).await.json().await.unwrap();
            assert_ne!(detail["status"], "failed", "{detail}");
            if detail["status"] != "ready" {
                still.insert(id);
            }
        }
        waiting = still;
        if waiting.is_empty() {
            return ids.len();
        }
        assert!(std::time::Instant::now() < deadline, "{} files never became ready", waiting.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
