//! The validation worker against real RabbitMQ and PostgreSQL.

use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{
    helpers::{eventually, spawn_app, spawn_app_with, Settings, TestApp},
    stored::StorageFault,
};

const PNG: &[u8] = &[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D, b'I', b'H', b'D', b'R', 1, 2, 3];

/// A job message for a file, as the relay would publish it.
fn job(file_id: &str, org_id: &str, user_id: &str) -> Value {
    json!({ "job_id": Uuid::new_v4(), "file_id": file_id, "organization_id": org_id, "user_id": user_id, "attempt": 1 })
}

/// How many jobs of this test's app ended with `outcome` (its own metrics registry).
fn outcome_count(app: &TestApp, outcome: &str) -> u64 {
    app.metrics.jobs_processed.with_label_values(&[outcome]).get()
}

#[tokio::test]
async fn an_upload_is_validated_to_ready_and_can_then_be_downloaded() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let id = owner.upload_ok("logo.png", PNG).await;

    assert_eq!(app.drain_jobs().await, 1);

    let detail: Value = owner.get_file(&id).await.json().await.unwrap();
    assert_eq!(detail["status"], "ready");
    assert_eq!(detail["mime_type"], "image/png");
    assert!(detail["processed_at"].is_string());
    assert!(detail["error_message"].is_null());
    let download = owner.download(&id).await;
    assert_eq!(download.status(), StatusCode::OK);
    assert_eq!(download.headers()["content-type"], "image/png");
    assert_eq!(download.bytes().await.unwrap(), PNG);
    assert_eq!(app.queue_depth(&app.topology().dead_queue).await, 0);
}

#[tokio::test]
async fn files_changed_on_disk_or_lying_about_their_type_fail_with_a_clear_message() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let grown = owner.upload_ok("grown.txt", "original").await;
    let altered = owner.upload_ok("altered.txt", "original").await;
    let fake_png = owner.upload_ok("photo.png", "this is text, not a picture").await;
    app.store.write(&owner, &grown, "original plus more").await;
    app.store.write(&owner, &altered, "ORIGINAL").await;

    assert_eq!(app.drain_jobs().await, 3);

    let detail = |id: String| {
        let owner = &owner;
        async move {
            let detail: Value = owner.get_file(&id).await.json().await.unwrap();
            assert_eq!(detail["status"], "failed", "{detail}");
            detail
        }
    };
    let grown = detail(grown).await;
    assert!(grown["error_message"].as_str().unwrap().contains("18 bytes but 8 bytes were uploaded"), "{grown}");
    let altered = detail(altered).await;
    assert!(altered["error_message"].as_str().unwrap().contains("sha256"), "{altered}");
    let fake_png = detail(fake_png).await;
    assert!(fake_png["error_message"].as_str().unwrap().contains("does not match the .png extension"), "{fake_png}");
    assert!(fake_png["processed_at"].is_string());
    assert_eq!(owner.download(fake_png["id"].as_str().unwrap()).await.status(), StatusCode::CONFLICT);
}

#[tokio::test]
async fn forged_messages_change_nothing_and_are_acknowledged() {
    let app = spawn_app().await;
    let alice = app.register_org().await;
    let bob = app.register_org().await;
    let file = alice.upload_ok("alice.txt", "alice's").await;
    app.lose_job(&file).await; // only the forged messages below will name this file

    for forged in [
        job(&file, &bob.org_id, &bob.user_id), // another organization claims it
        job(&file, &alice.org_id, &Uuid::new_v4().to_string()), // a user who does not exist
        job(&file, &alice.org_id, &bob.user_id), // a user of another organization
        job(&file, &Uuid::new_v4().to_string(), &alice.user_id), // an organization that does not exist
    ] {
        app.publish_raw(forged.to_string().as_bytes()).await;
    }
    assert_eq!(app.drain_jobs().await, 4);

    let detail: Value = alice.get_file(&file).await.json().await.unwrap();
    assert_eq!(detail["status"], "pending", "no forged message may process the file");
    assert!(detail["processed_at"].is_null());
    assert_eq!(outcome_count(&app, "refused"), 4, "each was taken, found stale and acknowledged");
    let topology = app.topology();
    assert_eq!(app.queue_depth(&topology.work_queue).await, 0, "all acknowledged");
    assert_eq!(app.queue_depth(&topology.dead_queue).await, 0, "acknowledged, not dead-lettered");
}

#[tokio::test]
async fn jobs_of_a_deactivated_user_or_a_deleted_file_are_refused() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let member = app.add_user(&owner, "member").await;
    let members_file = member.upload_ok("member.txt", "m").await;
    let deleted_file = owner.upload_ok("deleted.txt", "d").await;
    app.as_user(&owner, &format!("update app.users set is_active = false where id = '{}'", member.user_id)).await;
    assert_eq!(owner.delete(&deleted_file).await.status(), StatusCode::NO_CONTENT);

    assert_eq!(app.drain_jobs().await, 2);

    assert_eq!(outcome_count(&app, "refused"), 2);
    let detail: Value = owner.get_file(&members_file).await.json().await.unwrap();
    assert_eq!(detail["status"], "pending", "a deactivated user's job is refused");
    let db = app.superuser().await;
    let status: String =
        db.query_one("select status from app.files where id = $1::text::uuid", &[&deleted_file]).await.unwrap().get(0);
    assert_eq!(status, "pending", "a deleted file is never processed");
}

#[tokio::test]
async fn malformed_messages_go_to_the_dead_letter_queue_and_the_worker_carries_on() {
    let app = spawn_app().await;
    let owner = app.register_org().await;

    let huge = format!(r#"{{"job_id": "{}", "padding": "{}"}}"#, Uuid::new_v4(), "x".repeat(1_000_000));
    let bodies: Vec<Vec<u8>> = vec![
        b"not json at all".to_vec(),
        json!({ "job_id": Uuid::new_v4(), "file_id": Uuid::new_v4() }).to_string().into_bytes(),
        json!({ "job_id": 1, "file_id": "x", "organization_id": [], "user_id": null, "attempt": "one" })
            .to_string()
            .into_bytes(),
        huge.into_bytes(),
        vec![0xFF, 0xFE, 0x00],
    ];
    for body in &bodies {
        app.publish_raw(body).await;
    }
    let id = owner.upload_ok("after.txt", "the worker carries on").await;

    assert_eq!(app.drain_jobs().await, bodies.len() + 1);

    assert_eq!(outcome_count(&app, "malformed"), bodies.len() as u64);
    assert_eq!(app.queue_depth(&app.topology().dead_queue).await, bodies.len() as u32);
    let after: Value = owner.get_file(&id).await.json().await.unwrap();
    assert_eq!(after["status"], "ready");
}

#[tokio::test]
async fn a_duplicated_message_is_processed_once() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let id = owner.upload_ok("once.txt", "once").await;
    assert_eq!(app.drain_jobs().await, 1);
    let first: Value = owner.get_file(&id).await.json().await.unwrap();
    assert_eq!(first["status"], "ready");

    let duplicate = job(&id, &owner.org_id, &owner.user_id);
    app.publish_raw(duplicate.to_string().as_bytes()).await;
    app.publish_raw(duplicate.to_string().as_bytes()).await;
    assert_eq!(app.drain_jobs().await, 2);

    assert_eq!(outcome_count(&app, "refused"), 2, "a file no longer pending is not processed again");
    let after: Value = owner.get_file(&id).await.json().await.unwrap();
    assert_eq!(after["processed_at"], first["processed_at"], "the duplicates changed nothing");
    assert_eq!(after["status"], "ready");
    assert_eq!(app.queue_depth(&app.topology().dead_queue).await, 0);
}

#[tokio::test]
async fn transient_read_errors_are_retried_until_the_file_can_be_read() {
    let fault = StorageFault::prepare().await;
    let app = spawn_app_with(fault.settings(Settings::default())).await;
    let owner = app.register_org().await;
    let id = owner.upload_ok("later.txt", "readable later").await;
    let broken = fault.break_file(&app, &owner, &id).await;

    assert_eq!(app.drain_jobs().await, 1);

    assert_eq!(outcome_count(&app, "retry"), 1);
    let detail: Value = owner.get_file(&id).await.json().await.unwrap();
    assert_eq!(detail["status"], "pending");
    fault.repair(broken).await;

    // The retry comes back from its delay queue (100 ms here) and then succeeds.
    eventually("the retried job validates the file", || async {
        app.drain_jobs().await;
        (outcome_count(&app, "ready") == 1).then_some(())
    })
    .await;
    app.wait_for_status(&owner, &id, "ready").await;
    assert_eq!(app.queue_depth(&app.topology().dead_queue).await, 0);
}

#[tokio::test]
async fn a_job_out_of_attempts_marks_the_file_failed_and_is_dead_lettered() {
    let fault = StorageFault::prepare().await;
    let app = spawn_app_with(fault.settings(Settings::default())).await;
    let owner = app.register_org().await;
    let id = owner.upload_ok("never.txt", "never readable").await;
    let _broken = fault.break_file(&app, &owner, &id).await;
    let _worker = app.start_worker();

    let detail = app.wait_for_status(&owner, &id, "failed").await;
    assert_eq!(detail["error_message"], "validation could not complete after 3 attempts");
    eventually("the exhausted job reaches the dead-letter queue", || async {
        (app.queue_depth(&app.topology().dead_queue).await == 1).then_some(())
    })
    .await;
}

/// An error that no attempt can get past (here a statement the database refuses: a broken
/// deployment, or a bug) fails the file at once and dead-letters the job, instead of burning
/// every retry on it; only transient errors are retried.
#[tokio::test]
async fn a_permanent_error_fails_the_file_at_once_without_retries() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let id = owner.upload_ok("doomed.txt", "never validated").await;
    app.superuser().await.batch_execute("revoke select on app.organizations from tenant_files_app").await.unwrap();

    let _worker = app.start_worker();

    let detail = app.wait_for_status(&owner, &id, "failed").await;
    assert_eq!(detail["error_message"], "validation could not complete (an internal error; see the worker's log)");
    let outcomes = &app.metrics.jobs_processed;
    assert_eq!(
        (outcomes.with_label_values(&["permanent"]).get(), outcomes.with_label_values(&["retry"]).get()),
        (1, 0)
    );
    eventually("the job reaches the dead-letter queue", || async {
        (app.queue_depth(&app.topology().dead_queue).await == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn deleted_files_bytes_are_purged_in_the_background() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let _worker = app.start_worker();
    let id = owner.upload_ok("purge-me.txt", "bytes").await;
    let kept = owner.upload_ok("keep-me.txt", "bytes").await;
    app.wait_for_status(&owner, &id, "ready").await;
    assert!(app.store.read(&owner, &id).await.is_some());

    assert_eq!(owner.delete(&id).await.status(), StatusCode::NO_CONTENT);

    eventually("the bytes of the deleted file are purged", || async {
        app.store.read(&owner, &id).await.is_none().then_some(())
    })
    .await;
    assert!(app.store.read(&owner, &kept).await.is_some(), "other files stay");
    assert_eq!(app.count_file_rows().await, 2, "the deleted row stays, deleted");
}

#[tokio::test]
async fn a_file_whose_job_was_lost_is_re_enqueued_by_the_sweep() {
    let app = spawn_app_with(Settings { pending_sweep_after_seconds: 1, ..Settings::default() }).await;
    let owner = app.register_org().await;
    let id = owner.upload_ok("lost.txt", "lost job").await;
    app.lose_job(&id).await;

    let _worker = app.start_worker();

    app.wait_for_status(&owner, &id, "ready").await;
}

/// Nobody can validate the pending files of a deactivated uploader (every job is re-authorized
/// as its uploader and refused); the sweep settles them as failed instead of re-enqueueing
/// them every period, forever.
#[tokio::test]
async fn a_deactivated_uploaders_pending_file_fails_instead_of_looping() {
    let app = spawn_app_with(Settings { pending_sweep_after_seconds: 1, ..Settings::default() }).await;
    let owner = app.register_org().await;
    let member = app.add_user(&owner, "member").await;
    let id = member.upload_ok("orphan.txt", "uploaded, then the uploader left").await;
    assert_eq!(owner.deactivate(&member.user_id).await.status(), StatusCode::OK);

    let _worker = app.start_worker();

    let detail = app.wait_for_status(&owner, &id, "failed").await;
    assert!(detail["error_message"].as_str().unwrap().contains("deactivated"), "{detail}");
    let queued: i64 = app
        .superuser()
        .await
        .query_one("select count(*) from app.outbox where file_id = $1::text::uuid", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(queued, 0, "nothing is enqueued for it any more");
}

/// Expired sessions, finished throttling windows (for any email anyone typed) and the quota
/// reservations of uploads past their deadline (an api process died mid-upload) are pruned by
/// the maintenance loop; live ones stay.
#[tokio::test]
async fn maintenance_prunes_expired_sessions_login_windows_and_reservations() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let superuser = app.superuser().await;
    superuser
        .batch_execute(&format!(
            "insert into app.sessions (key_hash, organization_id, user_id, state, expires_at)
             values ('\\x01', '{org}', '{user}', '{{}}', now() - interval '1 second');
             insert into app.login_attempts (email_key, attempts, window_started)
             values ('typo@example.com', 3, now() - interval '1 day'),
                    ('recent@example.com', 1, now());
             insert into app.upload_reservations (id, organization_id, user_id, bytes, expires_at)
             values (gen_random_uuid(), '{org}', '{user}', 4096, now() - interval '1 second')",
            user = owner.user_id,
            org = owner.org_id,
        ))
        .await
        .unwrap();
    let count = |sql: &'static str| {
        let superuser = &superuser;
        async move { superuser.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };

    let _worker = app.start_worker();

    eventually("expired rows are pruned", || async {
        (count("select count(*) from app.sessions where expires_at <= now()").await == 0).then_some(())
    })
    .await;
    eventually("old windows are pruned", || async {
        (count("select count(*) from app.login_attempts where email_key = 'typo@example.com'").await == 0).then_some(())
    })
    .await;
    eventually("the dead upload's quota is given back", || async {
        (count("select storage_reserved_bytes + (select count(*) from app.upload_reservations) from app.organizations")
            .await
            == 0)
            .then_some(())
    })
    .await;
    assert_eq!(count("select count(*) from app.login_attempts where email_key = 'recent@example.com'").await, 1);
    assert_eq!(owner.me().await.status(), StatusCode::OK, "the live session stays");
}

/// QUEUE_TYPE=quorum (the replicated queues of a RabbitMQ cluster) carries jobs, retries and
/// dead letters like classic queues, on the same code.
#[tokio::test]
async fn quorum_queues_carry_jobs_retries_and_dead_letters() {
    let fault = StorageFault::prepare().await;
    let app = spawn_app_with(fault.settings(Settings { queue_type: "quorum", ..Settings::default() })).await;
    let owner = app.register_org().await;
    let ready = owner.upload_ok("ready.txt", "fine at once").await;
    let mut drained = app.drain_jobs().await;
    // This one cannot be read (a transient error, retried), and a malformed message arrives.
    let later = owner.upload_ok("later.txt", "readable later").await;
    let broken = fault.break_file(&app, &owner, &later).await;
    app.publish_raw(b"not a job").await;
    drained += app.drain_jobs().await;

    assert_eq!(drained, 3);

    assert_eq!(
        (outcome_count(&app, "ready"), outcome_count(&app, "retry"), outcome_count(&app, "malformed")),
        (1, 1, 1)
    );
    let detail: Value = owner.get_file(&ready).await.json().await.unwrap();
    assert_eq!(detail["status"], "ready");
    assert_eq!(app.queue_depth(&app.topology().dead_queue).await, 1);
    fault.repair(broken).await;
    eventually("the retry comes back through the quorum retry queue", || async {
        app.drain_jobs().await;
        (outcome_count(&app, "ready") == 2).then_some(())
    })
    .await;

    // They are quorum queues: the broker refuses to see the work queue as a classic one.
    let (_connection, channel) = app.broker().await;
    let classic = channel
        .queue_declare(
            app.topology().work_queue.as_str().into(),
            lapin::options::QueueDeclareOptions { durable: true, ..Default::default() },
            lapin::types::FieldTable::default(),
        )
        .await;
    assert!(classic.is_err(), "declaring the quorum work queue as classic must be refused");
}

/// The organization's status counters, and the same counted from its rows: they must agree
/// whatever happened to the batches that changed them.
pub async fn counters_and_rows(app: &TestApp, org_id: &str) -> ((i64, i64, i64), (i64, i64, i64)) {
    let row = app
        .superuser()
        .await
        .query_one(
            "select files_pending, files_ready, files_failed,
                    (select count(*) from app.files f where f.organization_id = o.id and f.deleted_at is null and f.status = 'pending'),
                    (select count(*) from app.files f where f.organization_id = o.id and f.deleted_at is null and f.status = 'ready'),
                    (select count(*) from app.files f where f.organization_id = o.id and f.deleted_at is null and f.status = 'failed')
               from app.organizations o where id = $1::text::uuid",
            &[&org_id],
        )
        .await
        .unwrap();
    ((row.get(0), row.get(1), row.get(2)), (row.get(3), row.get(4), row.get(5)))
}

/// Outcomes are committed in batches (one statement for the jobs that finished meanwhile). A
/// batch whose statement fails part-way (here the database refuses one of its rows) must not
/// take its neighbours down with it: each outcome is then committed alone, the refused file
/// alone fails, and the counters stay exact. (Which jobs share a batch depends on timing; the
/// split itself is tested deterministically in `worker::outcomes`.)
#[tokio::test]
async fn a_batch_refused_part_way_commits_its_other_outcomes_and_fails_only_its_own_file() {
    let app = spawn_app_with(Settings { worker_prefetch: 8, ..Settings::default() }).await;
    let owner = app.register_org().await;
    let mut files = Vec::new();
    for i in 0..11 {
        files.push(owner.upload_ok(&format!("fine-{i}.txt"), "validated in a batch").await);
    }
    let poison = owner.upload_ok("poison.txt", "refused by the database").await;
    // Every outcome statement takes half a second, so that the jobs finishing meanwhile pile up
    // into batches; the database refuses to mark `poison.txt` ready.
    app.superuser()
        .await
        .batch_execute(
            "create function app.test_slow_statement() returns trigger language plpgsql as
               $$ begin perform pg_sleep(0.5); return null; end $$;
             create trigger test_slow_statement before update on app.files
               for each statement execute function app.test_slow_statement();
             create function app.test_refuse_poison() returns trigger language plpgsql as
               $$ begin
                    if new.filename = 'poison.txt' and new.status = 'ready' then raise exception 'refused'; end if;
                    return new;
                  end $$;
             create trigger test_refuse_poison before update on app.files
               for each row execute function app.test_refuse_poison();",
        )
        .await
        .unwrap();

    let _worker = app.start_worker();

    for id in &files {
        app.wait_for_status(&owner, id, "ready").await;
    }
    let detail = app.wait_for_status(&owner, &poison, "failed").await;
    assert_eq!(detail["error_message"], "validation could not complete (an internal error; see the worker's log)");
    assert!(app.metrics.outcome_batch_size.get_sample_sum() >= 12.0, "every outcome was committed in some batch");
    let (counters, rows) = counters_and_rows(&app, &owner.org_id).await;
    assert_eq!(counters, (0, 11, 1));
    assert_eq!(counters, rows);
}
