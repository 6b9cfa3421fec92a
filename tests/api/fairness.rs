//! Fair share of what organizations use together (#25): one organization's backlog of
//! validation jobs does not hold back another's.

use reqwest::{header, StatusCode};

use crate::helpers::{assert_error, eventually, spawn_app, spawn_app_with, Settings, TestApp, TestUser};

/// A backlog of `count` validation jobs of `user`'s organization, as a bulk import leaves it:
/// pending files (rows only: each job ends as "the stored file is missing", a real outcome of
/// the worker's) and their outbox jobs, oldest first.
async fn backlog(app: &TestApp, user: &TestUser, count: u32) {
    app.insert_files(user, "backlog-", count).await;
    app.as_user(
        user,
        "insert into app.outbox (id, organization_id, file_id, user_id, created_at)
         select gen_random_uuid(), organization_id, id, uploaded_by, now() - interval '1 minute'
           from app.files where filename like 'backlog-%'",
    )
    .await;
}

async fn pending(app: &TestApp, user: &TestUser) -> i64 {
    app.superuser()
        .await
        .query_one("select files_pending from app.organizations where id = $1::text::uuid", &[&user.org_id])
        .await
        .unwrap()
        .get(0)
}

const BACKLOG: u32 = 600;

/// A worker whose relay keeps at most a few jobs in the queue (the default keeps 1,000, which
/// at test scale would be all of them).
fn fair_worker(app: &TestApp) -> crate::helpers::RunningWorker {
    let mut config = app.config.clone();
    config.worker.relay_queue_depth = 10;
    app.start_worker_with(config)
}

/// The backlog formed in the outbox (a broker outage, a stopped worker) and B's upload came
/// after it: once the worker is back, B's job goes out in its first batch, and B's file is
/// ready while most of A's backlog still waits; then all of A's drains.
#[tokio::test]
async fn an_upload_overtakes_another_organizations_backlog_in_the_outbox() {
    let app = spawn_app().await;
    let (a, b) = (app.register_org().await, app.register_org().await);
    backlog(&app, &a, BACKLOG).await;
    let file = b.upload_ok("b.txt", "b's one file").await;

    let _worker = fair_worker(&app);
    app.wait_for_status(&b, &file, "ready").await;
    let left = pending(&app, &a).await;
    assert!(left > i64::from(BACKLOG) / 2, "B waited behind A's backlog: {left} of A's jobs left");
    eventually("A's backlog drains", || async { (pending(&app, &a).await == 0).then_some(()) }).await;
}

/// The backlog is being worked off when B uploads: B's job waits behind the few jobs in the
/// queue, not behind the rest of A's.
#[tokio::test]
async fn an_upload_overtakes_a_backlog_being_worked_off() {
    let app = spawn_app().await;
    let (a, b) = (app.register_org().await, app.register_org().await);
    backlog(&app, &a, BACKLOG).await;

    let _worker = fair_worker(&app);
    eventually("A's backlog is being worked off", || async {
        (pending(&app, &a).await < i64::from(BACKLOG)).then_some(())
    })
    .await;
    let file = b.upload_ok("b.txt", "b's one file").await;
    app.wait_for_status(&b, &file, "ready").await;
    let left = pending(&app, &a).await;
    assert!(left > i64::from(BACKLOG) / 2, "B waited behind A's backlog: {left} of A's jobs left");
    eventually("A's backlog drains", || async { (pending(&app, &a).await == 0).then_some(()) }).await;
}

/// The relay's claim takes organizations in turns: each one's oldest job, then each one's
/// second oldest, and so on, oldest first within a turn.
#[tokio::test]
async fn the_relay_claims_jobs_in_turns_across_organizations() {
    let app = spawn_app().await;
    let (a, b, c) = (app.register_org().await, app.register_org().await, app.register_org().await);
    for (user, count, minutes_ago) in [(&a, 5, 30), (&b, 2, 20), (&c, 1, 10)] {
        app.insert_files(user, "job-", count).await;
        app.as_user(
            user,
            &format!(
                "insert into app.outbox (id, organization_id, file_id, user_id, created_at)
                 select gen_random_uuid(), organization_id, id, uploaded_by,
                        now() - interval '{minutes_ago} minutes' + row_number() over (order by filename) * interval '1 second'
                   from app.files"
            ),
        )
        .await;
    }

    let mut db = app.superuser().await;
    let tx = db.transaction().await.unwrap();
    let claimed: Vec<String> = tx
        .query("select organization_id::text from app.outbox_claim(6)", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let org = |user: &TestUser| user.org_id.clone();
    assert_eq!(claimed, [org(&a), org(&b), org(&c), org(&a), org(&b), org(&a)]);
    // Rows another relay holds are skipped, not waited for: a second claim meanwhile gets the rest.
    let other = app.superuser().await;
    let rest = other.query("select organization_id::text from app.outbox_claim(10)", &[]).await.unwrap();
    assert_eq!(rest.iter().map(|row| row.get::<_, String>(0)).collect::<Vec<_>>(), [org(&a), org(&a)]);
}

/// One organization's requests hold at most its share of the api's pool (here 4 of 8): past
/// it, its next request waits briefly for one of its own and gets 429 `organization_busy` with
/// `Retry-After`, while another organization's requests are served; once its own come back, so
/// is it, and the requests that waited lose nothing.
#[tokio::test]
async fn an_organization_past_its_share_of_connections_gets_429_while_another_is_served() {
    // Straight to PostgreSQL in every pass: behind the test's PgBouncer (two server
    // connections) the pooler's own pool would be what A's waiting uploads exhaust, not the
    // api's (docs/scaling.md: size a pooler for N api processes' shares).
    let direct = crate::helpers::postgres_addr().port();
    let settings = Settings {
        db_pool_size: 8,
        db_pool_org_share: 50,
        db_org_wait_ms: 300,
        app_db_port: Some(direct),
        ..Default::default()
    };
    let app = spawn_app_with(settings).await;
    let (a, b) = (app.register_org().await, app.register_org().await);
    assert_eq!(a.list("").await.status(), StatusCode::OK, "A's session is known to the pool from here on");

    // A's uploads each hold a connection while they wait for A's organization row, which a
    // DBA's transaction holds: four of them are all of A's share.
    let mut dba = app.superuser().await;
    let lock = dba.transaction().await.unwrap();
    lock.execute("select 1 from app.organizations where id = $1::text::uuid for update", &[&a.org_id]).await.unwrap();
    let names: Vec<String> = (0..4).map(|n| format!("held-{n}.txt")).collect();
    let uploads = futures_util::future::join_all(names.iter().map(|name| a.upload(name, "held")));
    let meanwhile = async {
        let observer = app.superuser().await;
        eventually("four of A's uploads wait for the lock", || async {
            let waiting: i64 = observer
                .query_one(
                    "select count(*) from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            (waiting == 4).then_some(())
        })
        .await;
        let refused = a.list("").await;
        assert_eq!(refused.headers().get(header::RETRY_AFTER).map(|v| v.to_str().unwrap()), Some("2"));
        assert_error(refused, StatusCode::TOO_MANY_REQUESTS, "organization_busy").await;
        assert_eq!(b.list("").await.status(), StatusCode::OK, "another organization is served meanwhile");
        assert_eq!(b.upload("b.txt", "b").await.status(), StatusCode::CREATED);
        lock.commit().await.unwrap();
    };
    let (answers, ()) = tokio::join!(uploads, meanwhile);
    assert!(answers.iter().all(|answer| answer.status() == StatusCode::CREATED), "{answers:?}");
    assert_eq!(a.list("").await.status(), StatusCode::OK);
    crate::budgets::eventually_refused(&a, "connections", 1).await;
    crate::budgets::eventually_refused(&b, "connections", 0).await;
}
