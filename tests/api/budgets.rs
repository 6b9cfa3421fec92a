//! Each organization's budgets (#25): its request rate, and what it can see of its own use.

use reqwest::{Method, Response, StatusCode};
use serde_json::json;

use crate::helpers::{assert_error, eventually, spawn_app_with, Bearer, Settings, TestApp, TestUser};

fn field<'a>(response: &'a Response, name: &str) -> &'a str {
    response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_else(|| panic!("no {name} header"))
}

/// `r`, what is left, in a `RateLimit` field (`"org";r=7;t=12`).
fn remaining(response: &Response) -> u32 {
    let state = field(response, "ratelimit");
    let r = state.split(';').find_map(|param| param.strip_prefix("r=")).expect("r= in RateLimit");
    r.parse().expect("r is a number")
}

/// `GET /api/org/usage` as `user`.
async fn usage(user: &TestUser) -> serde_json::Value {
    let response = user.get("/api/org/usage").await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// Waits until `user`'s organization's usage shows `count` refusals by `budget` (the api
/// processes add their counts every few hundred milliseconds in tests).
pub async fn eventually_refused(user: &TestUser, budget: &str, count: i64) {
    eventually(&format!("{count} refusals by {budget} are counted"), || async {
        (usage(user).await["refused"][budget] == count).then_some(())
    })
    .await;
}

async fn set_plan_rate(app: &TestApp, user: &TestUser, per_minute: i32) {
    app.superuser()
        .await
        .execute(
            "update app.organizations set requests_per_minute = $2 where id = $1::text::uuid",
            &[&user.org_id, &per_minute],
        )
        .await
        .unwrap();
}

/// An organization that has spent its minute's requests gets 429 `request_budget_exceeded`,
/// with when to retry and its `RateLimit` fields, on reads and writes, whichever credential
/// it uses (a bearer token's very first request included: it is counted once the read says
/// whose the token is); another organization's requests go through meanwhile. Every answer
/// before said what was left.
#[tokio::test]
async fn an_organization_over_its_request_budget_is_refused_while_another_goes_through() {
    let app = spawn_app_with(Settings { org_requests_per_minute: 12, ..Settings::default() }).await;
    let (a, b) = (app.register_org().await, app.register_org().await);
    let (_, secret) = a.create_token("script").await;

    let mut left = None;
    let refused = loop {
        let response = a.list("").await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            break response;
        }
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(field(&response, "ratelimit-policy"), "\"org\";q=12;w=60");
        let now = remaining(&response);
        if let Some(before) = left {
            assert_eq!(now, before - 1, "each request takes one");
        }
        left = Some(now);
    };
    assert_eq!(left, Some(0), "refused only once nothing was left");
    let retry_after: u64 = field(&refused, "retry-after").parse().unwrap();
    assert!((1..=5).contains(&retry_after), "one request comes back every 5 s: {retry_after}");
    assert_eq!(field(&refused, "ratelimit-policy"), "\"org\";q=12;w=60");
    assert_eq!(remaining(&refused), 0);
    assert_error(refused, StatusCode::TOO_MANY_REQUESTS, "request_budget_exceeded").await;

    let write = a.post("/api/org/invitations", json!({"email": "x@example.com", "role": "member"})).await;
    assert_error(write, StatusCode::TOO_MANY_REQUESTS, "request_budget_exceeded").await;
    let token = Bearer::new(&app, &secret).request(Method::GET, "/api/files").send().await.unwrap();
    assert_error(token, StatusCode::TOO_MANY_REQUESTS, "request_budget_exceeded").await;

    let other = b.list("").await;
    assert_eq!(other.status(), StatusCode::OK, "another organization has its own budget");
    assert_eq!(remaining(&other), 12 - 1, "this list was its first request");

    let metrics = app.client().get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("budget_refusals_total{budget=\"requests\"} 3"), "no organization label: {metrics}");
}

/// A plan's own rate (`organizations.requests_per_minute`) replaces the default once the
/// process has reloaded the plans, and every rate is divided among the api processes.
#[tokio::test]
async fn a_plan_sets_an_organizations_rate_and_the_processes_share_it() {
    let app = spawn_app_with(Settings { org_requests_per_minute: 600, api_processes: 3, ..Settings::default() }).await;
    let (planned, other) = (app.register_org().await, app.register_org().await);
    assert_eq!(field(&planned.list("").await, "ratelimit-policy"), "\"org\";q=200;w=60", "a third of 600");

    set_plan_rate(&app, &planned, 6_000).await;
    eventually("the plan's rate applies", || async {
        (field(&planned.list("").await, "ratelimit-policy") == "\"org\";q=2000;w=60").then_some(())
    })
    .await;
    assert_eq!(field(&other.list("").await, "ratelimit-policy"), "\"org\";q=200;w=60");
}

/// With a process budget of 10 MB for upload bodies and a share of half of it per organization,
/// an organization whose first large upload holds most of its share has its second one wait
/// (its body is not read) while another organization's upload of the same size goes straight
/// through; the waiting one completes, intact, once its organization's first is stored.
#[tokio::test]
async fn an_organizations_large_uploads_wait_for_its_share_while_anothers_proceed() {
    let app =
        spawn_app_with(Settings { upload_memory_mb: 10, upload_memory_org_share: 50, ..Settings::default() }).await;
    let (a, b) = (app.register_org().await, app.register_org().await);
    let (_, secret) = a.create_token("second uploader").await;
    const LENGTH: usize = 4 * 1024 * 1024;
    let reservations = |user: &TestUser| {
        let (app, org) = (&app, user.org_id.clone());
        async move {
            let row = app
                .superuser()
                .await
                .query_one(
                    "select count(*) from app.upload_reservations where organization_id = $1::text::uuid",
                    &[&org],
                )
                .await
                .unwrap();
            row.get::<_, i64>(0)
        }
    };

    let (feed, first) = a.upload_slowly("first.bin", LENGTH as u64);
    feed.send(vec![1u8; 64 * 1024]).await.unwrap();
    eventually("the first upload is receiving", || async { (reservations(&a).await == 1).then_some(()) }).await;
    let second = {
        let form = reqwest::multipart::Form::new()
            .part("file", reqwest::multipart::Part::bytes(vec![2u8; LENGTH]).file_name("second.bin"));
        let request = Bearer::new(&app, &secret).request(Method::POST, "/api/files/upload").multipart(form);
        tokio::spawn(async move { request.send().await.unwrap() })
    };
    eventually("the second upload has its slot", || async { (reservations(&a).await == 2).then_some(()) }).await;

    let other = tokio::time::timeout(std::time::Duration::from_secs(20), b.upload("b.bin", vec![3u8; LENGTH])).await;
    assert_eq!(other.expect("another organization's upload does not wait").status(), StatusCode::CREATED);
    assert!(!second.is_finished(), "the organization's second upload waits for its share");

    for _ in 1..LENGTH / (64 * 1024) {
        feed.send(vec![1u8; 64 * 1024]).await.unwrap();
    }
    drop(feed);
    assert_eq!(first.await.unwrap().status(), StatusCode::CREATED);
    let second: serde_json::Value = second.await.unwrap().json().await.unwrap();
    let detail: serde_json::Value = a.get_file(second["file_id"].as_str().unwrap()).await.json().await.unwrap();
    assert_eq!(detail["size"], LENGTH, "stored whole once there was room");
    eventually_refused(&a, "upload_memory", 1).await;
    eventually_refused(&b, "upload_memory", 0).await;
}

/// An organization's usage is its own: what it stores and reserves, its uploads, its files by
/// validation state, its request budget and what each budget refused it, counted exactly as the
/// client saw the refusals; another organization sees only its own (zeros), a member gets 403,
/// and the database is what keeps the refusal counts apart.
#[tokio::test]
async fn an_organizations_usage_is_its_own_and_counts_what_it_was_refused() {
    let app = spawn_app_with(Settings { org_requests_per_minute: 600, ..Settings::default() }).await;
    let (a, b) = (app.register_org().await, app.register_org().await);
    let member = app.add_user(&a, "member").await;
    a.upload_ok("kept.txt", "twelve bytes").await;
    app.superuser()
        .await
        .execute("update app.organizations set max_concurrent_uploads = 1 where id = $1::text::uuid", &[&a.org_id])
        .await
        .unwrap();
    let (feed, slow) = a.upload_slowly("slow.bin", 1024);
    feed.send(vec![1u8; 512]).await.unwrap();
    eventually("the slow upload holds the slot", || async {
        (usage(&a).await["uploads"]["receiving"] == 1).then_some(())
    })
    .await;
    assert_error(a.upload("refused.txt", "no slot").await, StatusCode::TOO_MANY_REQUESTS, "too_many_uploads").await;
    feed.send(vec![1u8; 512]).await.unwrap();
    drop(feed);
    assert_eq!(slow.await.unwrap().status(), StatusCode::CREATED);

    // Spend the minute's requests, then read the usage until it answers: every 429 the client
    // saw, those of the reads included, is counted.
    while member.list("").await.status() != StatusCode::TOO_MANY_REQUESTS {}
    let refused = std::sync::atomic::AtomicI64::new(1);
    let seen = eventually("the usage counts every refusal the client saw", || async {
        let response = a.get("/api/org/usage").await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return None;
        }
        let body: serde_json::Value = response.json().await.unwrap();
        (body["refused"]["requests"] == refused.load(std::sync::atomic::Ordering::Relaxed)).then_some(body)
    })
    .await;
    assert_eq!(seen["refused"]["upload_slots"], 1);
    assert_eq!(seen["refused"]["connections"], 0);
    assert_eq!(seen["storage"]["used_bytes"], 12 + 1024);
    assert_eq!(seen["storage"]["reserved_bytes"], 0);
    assert_eq!(seen["storage"]["quota_bytes"], 1000 * 1_048_576);
    assert_eq!(seen["uploads"], json!({"receiving": 0, "max_concurrent": 1, "unfinished": 0}));
    assert_eq!(seen["jobs"], json!({"pending": 2, "processed": 0}), "no worker runs");
    assert_eq!(seen["requests"], json!({"per_minute": 600, "from_plan": false}));

    let other = usage(&b).await;
    assert_eq!(other["refused"], json!({"requests": 0, "connections": 0, "upload_slots": 0, "upload_memory": 0}));
    assert_eq!(other["storage"]["used_bytes"], 0);
    assert_eq!(other["jobs"], json!({"pending": 0, "processed": 0}));
    set_plan_rate(&app, &b, 60).await;
    eventually("the plan shows", || async { (usage(&b).await["requests"]["from_plan"] == true).then_some(()) }).await;
    assert_eq!(usage(&b).await["requests"]["per_minute"], 60);

    let member_of_b = app.add_user(&b, "member").await;
    assert_error(member_of_b.get("/api/org/usage").await, StatusCode::FORBIDDEN, "forbidden").await;

    // An unfiltered read of the counts as B, straight through the app role: B's rows only (none).
    let raw = app.app_role().await;
    crate::helpers::begin_as(&raw, &b).await;
    let rows = raw.query("select organization_id::text from app.budget_refusals", &[]).await.unwrap();
    assert!(rows.is_empty(), "B sees none of A's refusals: {:?}", rows.len());
    raw.batch_execute("rollback").await.unwrap();
    crate::helpers::begin_as(&raw, &a).await;
    let orgs: Vec<String> = raw
        .query("select organization_id::text from app.budget_refusals", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(orgs, [a.org_id.clone(), a.org_id.clone()], "A's own two budgets");
}
