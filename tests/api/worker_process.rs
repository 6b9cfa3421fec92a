//! The worker as a real process and the broker as a real network peer: SIGKILL and SIGTERM in
//! the middle of a job, and the broker going away and coming back.

use std::{process::Stdio, time::Duration};

use reqwest::StatusCode;
use tokio::process::{Child, Command};

use crate::{
    helpers::{
        amqp_url_via, broker_addr, eventually, spawn_app, spawn_app_with, Settings, TcpProxy, TestApp, TestUser,
    },
    stored::{Injected, StorageFault},
};

/// Starts `tenant-files --mode worker` with the test app's configuration.
pub(crate) fn spawn_worker_process(app: &TestApp) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tenant-files"))
        .args(&app.args[1..])
        .arg("--mode=worker")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the worker binary")
}

/// Waits until the job left the outbox and the work queue: a worker holds it, unacknowledged.
async fn wait_until_taken(app: &TestApp) {
    eventually("the worker takes the job", || async {
        let in_outbox: i64 =
            app.superuser().await.query_one("select count(*) from app.outbox", &[]).await.unwrap().get(0);
        (in_outbox == 0 && app.queue_depth(&app.topology().work_queue).await == 0).then_some(())
    })
    .await;
}

/// An uploaded file whose reading will hang, mid-job, until the fault is unblocked or repaired.
async fn upload_blocking_file(app: &TestApp, owner: &TestUser, fault: &StorageFault) -> (String, Injected) {
    let id = owner.upload_ok("slow.txt", "content the worker will have to wait for").await;
    let blocked = fault.block_file(app, owner, &id).await;
    (id, blocked)
}

#[tokio::test]
async fn a_worker_killed_mid_job_leaves_the_job_to_be_redelivered_and_finished_once() {
    let fault = StorageFault::prepare().await;
    let app = spawn_app_with(fault.settings(Settings { worker_prefetch: 1, ..Settings::default() })).await;
    let owner = app.register_org().await;
    let (id, blocked) = upload_blocking_file(&app, &owner, &fault).await;
    let mut worker = spawn_worker_process(&app);
    wait_until_taken(&app).await;

    worker.kill().await.expect("SIGKILL");

    fault.repair(blocked).await;
    let _replacement = app.start_worker();
    let detail = app.wait_for_status(&owner, &id, "ready").await;
    assert!(detail["processed_at"].is_string());
    assert_eq!(app.queue_depth(&app.topology().work_queue).await, 0);
    assert_eq!(app.queue_depth(&app.topology().dead_queue).await, 0);
}

#[tokio::test]
async fn sigterm_lets_the_job_in_hand_finish_then_the_worker_exits_0() {
    let fault = StorageFault::prepare().await;
    let app = spawn_app_with(fault.settings(Settings { worker_prefetch: 1, ..Settings::default() })).await;
    let owner = app.register_org().await;
    let (id, blocked) = upload_blocking_file(&app, &owner, &fault).await;
    let mut worker = spawn_worker_process(&app);
    wait_until_taken(&app).await;

    let pid = nix::unistd::Pid::from_raw(worker.id().expect("running") as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(worker.try_wait().unwrap().is_none(), "the worker waits for the job in hand");

    // Let the job finish: the bytes arrive.
    fault.unblock(blocked).await;

    let exit = tokio::time::timeout(Duration::from_secs(15), worker.wait()).await.expect("exits").unwrap();
    assert_eq!(exit.code(), Some(0));
    let detail: serde_json::Value = owner.get_file(&id).await.json().await.unwrap();
    assert_eq!(detail["status"], "ready", "the job in hand completed before exit");
}

#[tokio::test]
async fn uploads_during_a_broker_outage_are_validated_once_it_is_back() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let proxy = TcpProxy::start(broker_addr()).await;
    let mut config = app.config.clone();
    config.broker.amqp_url = amqp_url_via(proxy.port);
    let _worker = app.start_worker_with(config);

    // Broker unreachable: uploads still succeed, their jobs wait in the outbox.
    let first = owner.upload_ok("during-outage.txt", "one").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let detail: serde_json::Value = owner.get_file(&first).await.json().await.unwrap();
    assert_eq!(detail["status"], "pending");

    proxy.set_up(true);
    app.wait_for_status(&owner, &first, "ready").await;

    // It goes away again with the worker connected, and comes back: nothing is lost.
    proxy.set_up(false);
    let second = owner.upload("second.txt", "two").await;
    assert_eq!(second.status(), StatusCode::CREATED);
    let second: serde_json::Value = second.json().await.unwrap();
    let second = second["file_id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.set_up(true);
    app.wait_for_status(&owner, &second, "ready").await;
}

/// A broker that accepts connections but never answers (blocked by a resource alarm, hung)
/// must not keep the relay idle in a transaction that holds its claimed outbox rows: every
/// wait on the broker is bounded, the rows are let go, and the job is published once the
/// broker answers again. The relay here claims without first asking the broker for room in
/// the work queue (`RELAY_QUEUE_DEPTH=0`), so it holds rows while the confirm never comes: the
/// worst instant. (With a depth, the room check hangs first and nothing is claimed at all.)
#[tokio::test]
async fn a_hung_broker_never_leaves_the_relay_idle_in_transaction() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let proxy = TcpProxy::start(broker_addr()).await;
    proxy.set_up(true);
    let mut config = app.config.clone();
    config.broker.amqp_url = amqp_url_via(proxy.port);
    config.broker.broker_timeout_ms = 1000;
    config.worker.relay_queue_depth = 0;
    let _worker = app.start_worker_with(config);
    let first = owner.upload_ok("before.txt", "connected").await;
    app.wait_for_status(&owner, &first, "ready").await;
    let superuser = app.superuser().await;
    let count = |sql: &'static str| {
        let superuser = &superuser;
        async move { superuser.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    // The relay's transaction, by the statement that claimed (other loops open short ones too).
    let idle_in_transaction = "select count(*) from pg_stat_activity where datname = current_database()
                                  and state = 'idle in transaction' and query like '%outbox_claim%'";
    let outbox = "select count(*) from app.outbox";

    proxy.freeze();
    let second = owner.upload_ok("while-hung.txt", "waits in the outbox").await;

    eventually("the relay claims the job and waits for its confirm", || async {
        (count(idle_in_transaction).await > 0).then_some(())
    })
    .await;
    eventually("the relay gives up the claim", || async { (count(idle_in_transaction).await == 0).then_some(()) })
        .await;
    assert_eq!(count(outbox).await, 1, "the job is still in the outbox");

    proxy.set_up(true);
    app.wait_for_status(&owner, &second, "ready").await;
}

/// A worker SIGKILLed while a batch of outcomes is in the database (its statement held there
/// by a slow trigger): whether that batch committed or not, every job is redelivered to the
/// next worker, every file ends ready once, and the counters count each file once.
#[tokio::test]
async fn a_worker_killed_mid_batch_leaves_every_file_validated_and_counted_once() {
    let app = spawn_app_with(Settings { worker_prefetch: 8, ..Settings::default() }).await;
    let owner = app.register_org().await;
    let mut files = Vec::new();
    for i in 0..8 {
        files.push(owner.upload_ok(&format!("batch-{i}.txt"), "validated, killed, validated again").await);
    }
    let db = app.superuser().await;
    db.batch_execute(
        "create function app.test_slow_statement() returns trigger language plpgsql as
           $$ begin perform pg_sleep(2); return null; end $$;
         create trigger test_slow_statement before update on app.files
           for each statement execute function app.test_slow_statement();",
    )
    .await
    .unwrap();
    let mut worker = spawn_worker_process(&app);
    eventually("an outcome statement is running", || async {
        let running: i64 = db
            .query_one(
                "select count(*) from pg_stat_activity
                  where datname = current_database() and state = 'active' and query like '%update app.files f%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        (running > 0).then_some(())
    })
    .await;

    worker.kill().await.expect("SIGKILL");
    db.batch_execute("drop trigger test_slow_statement on app.files").await.unwrap();

    let _replacement = app.start_worker();
    for id in &files {
        app.wait_for_status(&owner, id, "ready").await;
    }
    let (counters, rows) = crate::worker::counters_and_rows(&app, &owner.org_id).await;
    assert_eq!(counters, (0, 8, 0));
    assert_eq!(counters, rows);
    eventually("every delivery is settled", || async {
        (app.queue_depth(&app.topology().work_queue).await == 0).then_some(())
    })
    .await;
}
