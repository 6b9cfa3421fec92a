//! `GET /api/files`: search (`q`), sort and order, and cursor pages beside numbered ones.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::Value;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use tenant_files::auth::signing::SigningKey;

use crate::helpers::{assert_error, begin_as, spawn_app, TestUser, TEST_SESSION_KEY};

async fn list(user: &TestUser, query: &str) -> Value {
    let response = user.list(query).await;
    assert_eq!(response.status(), StatusCode::OK, "{query}");
    response.json().await.unwrap()
}

fn names(page: &Value) -> Vec<String> {
    page["files"].as_array().unwrap().iter().map(|f| f["filename"].as_str().unwrap().to_owned()).collect()
}

/// Every page of a listing, following `next_cursor` from the first.
async fn all_pages(user: &TestUser, query: &str) -> Vec<String> {
    let mut page = list(user, query).await;
    let mut seen = names(&page);
    while let Some(cursor) = page["next_cursor"].as_str() {
        page = list(user, &format!("{query}&cursor={cursor}")).await;
        seen.extend(names(&page));
    }
    seen
}

async fn upload_all(user: &TestUser, files: &[(&str, usize)]) {
    for (name, size) in files {
        user.upload_ok(name, "x".repeat(*size)).await;
    }
}

#[tokio::test]
async fn search_sort_and_cursor_pages_show_what_was_asked_for() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    upload_all(
        &owner,
        &[
            ("report-2024.pdf", 30),
            ("notes.txt", 10),
            ("annual report.txt", 20),
            ("100%_done.txt", 5),
            ("zeta.bin", 40),
        ],
    )
    .await;

    // Case-insensitive substring; `%` and `_` are literal characters, not wildcards.
    let found = list(&owner, "?q=REPORT&sort=filename").await;
    assert_eq!(names(&found), ["annual report.txt", "report-2024.pdf"]);
    assert_eq!((found["total"].as_i64(), found["total_capped"].as_bool()), (Some(2), Some(false)));
    assert_eq!(names(&list(&owner, "?q=%25").await), ["100%_done.txt"]);
    assert_eq!(names(&list(&owner, "?q=_").await), ["100%_done.txt"]);
    assert_eq!(list(&owner, "?q=nothing-like-it").await["total"], 0);

    assert_eq!(
        names(&list(&owner, "?sort=filename").await),
        ["100%_done.txt", "annual report.txt", "notes.txt", "report-2024.pdf", "zeta.bin"]
    );
    assert_eq!(
        names(&list(&owner, "?sort=size").await),
        ["zeta.bin", "report-2024.pdf", "annual report.txt", "notes.txt", "100%_done.txt"]
    );
    assert_eq!(names(&list(&owner, "?sort=uploaded_at&order=asc&limit=2").await), ["report-2024.pdf", "notes.txt"]);
    assert_eq!(names(&list(&owner, "?status=pending&q=.txt&sort=size&order=asc&limit=1").await), ["100%_done.txt"]);

    // Cursor pages: every file once, in order, two at a time, for each sort and search.
    let by_size = all_pages(&owner, "?sort=size&order=asc&limit=2").await;
    assert_eq!(by_size, ["100%_done.txt", "notes.txt", "annual report.txt", "report-2024.pdf", "zeta.bin"]);
    assert_eq!(all_pages(&owner, "?sort=filename&order=desc&limit=2").await.len(), 5);
    assert_eq!(all_pages(&owner, "?limit=2").await.len(), 5);
    assert_eq!(all_pages(&owner, "?q=.txt&limit=1").await.len(), 3);
}

/// A cursor page starts after the last file seen, wherever new files land: nothing is shown
/// twice, as it would be with page numbers.
#[tokio::test]
async fn cursor_pages_are_stable_while_files_are_added() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    upload_all(&owner, &[("a.txt", 1), ("b.txt", 1), ("c.txt", 1), ("d.txt", 1)]).await;
    let first = list(&owner, "?limit=2").await;
    assert_eq!(names(&first), ["d.txt", "c.txt"]);

    owner.upload_ok("new.txt", "arrives between two pages").await;

    let cursor = first["next_cursor"].as_str().unwrap();
    let second = list(&owner, &format!("?limit=2&cursor={cursor}")).await;
    assert_eq!(names(&second), ["b.txt", "a.txt"]);
    assert!(second["page"].is_null());
    assert!(second["next_cursor"].is_null(), "nothing after the oldest");
    let by_number = list(&owner, "?limit=2&page=2").await;
    assert_eq!(names(&by_number), ["c.txt", "b.txt"], "page numbers shift; the cursor did not");
}

#[tokio::test]
async fn bad_list_parameters_are_refused_with_a_clear_error() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    owner.upload_ok("a.txt", "a").await;
    owner.upload_ok("b.txt", "b").await;
    let cursor = list(&owner, "?limit=1&sort=size").await["next_cursor"].as_str().unwrap().to_owned();

    for query in [
        "?sort=owner".to_owned(),
        "?order=up".to_owned(),
        "?q=".to_owned(),
        "?q=%20%20".to_owned(),
        format!("?q={}", "x".repeat(101)),
        "?q=%00".to_owned(),
        format!("?cursor={cursor}&sort=size&page=2"),
    ] {
        assert_error(owner.list(&query).await, StatusCode::BAD_REQUEST, "invalid_query").await;
    }
    for query in [
        "?cursor=zz".to_owned(),
        "?cursor=7b7d".to_owned(),
        format!("?cursor={cursor}"),
        format!("?cursor={cursor}&sort=size&order=asc"),
    ] {
        assert_error(owner.list(&query).await, StatusCode::BAD_REQUEST, "invalid_cursor").await;
    }
    assert_eq!(owner.list(&format!("?cursor={cursor}&sort=size")).await.status(), StatusCode::OK);
}

/// A search or a cursor never reaches another organization's files: the search runs in the
/// caller's tenant transaction, and a cursor carries a position, not a tenant.
#[tokio::test]
async fn search_and_cursors_stay_within_the_callers_organization() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let stranger = app.register_org().await;
    upload_all(&owner, &[("secret plan.txt", 3), ("secret budget.txt", 4)]).await;
    stranger.upload_ok("own.txt", "own").await;

    assert_eq!(list(&stranger, "?q=secret").await["total"], 0);
    // The database, not the handler, keeps the search's own table apart: through the app role,
    // with no filter at all, the stranger's context sees none of our names' suffixes.
    let db = app.app_role().await;
    for (user, expected) in [(&stranger, false), (&owner, true)] {
        begin_as(&db, user).await;
        let row = db.query_one("select count(*) > 0 from app.file_name_suffixes where suffix like 'secret%'", &[]);
        assert_eq!(row.await.unwrap().get::<_, bool>(0), expected);
        db.batch_execute("rollback").await.unwrap();
    }
    let cursor = list(&owner, "?q=secret&limit=1").await["next_cursor"].as_str().unwrap().to_owned();
    let crossed = list(&stranger, &format!("?limit=1&cursor={cursor}")).await;
    let ours: HashSet<String> = names(&crossed).into_iter().collect();
    assert!(!ours.contains("secret plan.txt") && !ours.contains("secret budget.txt"), "{crossed}");
}

/// Counting a search's matches stops at 1,000: a common term in a large organization costs
/// no count over all of its files.
#[tokio::test]
async fn a_search_counts_its_matches_up_to_a_thousand() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    app.insert_files(&owner, "bulk-", 1_001).await;

    let many = list(&owner, "?q=bulk").await;
    assert_eq!((many["total"].as_i64(), many["total_capped"].as_bool()), (Some(1_000), Some(true)));
    assert_eq!(many["files"].as_array().unwrap().len(), 20);
    let few = list(&owner, "?q=bulk-100").await;
    // bulk-100, bulk-1000 and bulk-1001: through the suffix table, exactly.
    assert_eq!((few["total"].as_i64(), few["total_capped"].as_bool()), (Some(3), Some(false)));
    assert_eq!(list(&owner, "").await["total"], 1_001, "without a search, the total is exact");
}

/// The search follows renames and deletions at once: a file is found by its current name only,
/// and not at all once deleted.
#[tokio::test]
async fn search_finds_files_by_their_current_name_only() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let id = owner.upload_ok("draft-quarterly.txt", "q").await;
    let gone = owner.upload_ok("obsolete-quarterly.txt", "o").await;
    assert_eq!(list(&owner, "?q=QUARTERLY").await["total"], 2);

    let renamed = owner.rename(&id, serde_json::json!({ "filename": "final-annual.txt" })).await;
    assert_eq!(renamed.status(), StatusCode::OK);
    assert_eq!(owner.delete(&gone).await.status(), StatusCode::NO_CONTENT);

    assert_eq!(list(&owner, "?q=quarterly").await["total"], 0);
    assert_eq!(names(&list(&owner, "?q=annual").await), ["final-annual.txt"]);
    // A term longer than the 24 characters a suffix keeps is still matched exactly.
    let long = owner.upload_ok("a-very-long-name-for-the-minutes-of-the-meeting.txt", "m").await;
    let found = list(&owner, "?q=long-name-for-the-minutes-of-the").await;
    assert_eq!(found["files"][0]["id"], long.as_str());
    assert_eq!(list(&owner, "?q=long-name-for-the-minutes-of-thX").await["total"], 0);
}

/// A cursor as the service would write it for `key`, signed with `signer` (or not at all).
fn crafted_cursor(sort: &str, order: &str, key: &str, signer: Option<&SigningKey>) -> String {
    let body = serde_json::to_vec(&serde_json::json!({
        "sort": sort, "order": order, "key": key, "id": uuid::Uuid::new_v4(),
    }))
    .unwrap();
    match signer {
        Some(signer) => URL_SAFE_NO_PAD.encode(signer.sign(&body)),
        None => hex::encode(body),
    }
}

/// Values PostgreSQL refuses (year 0, an offset beyond ±15:59, a NUL in text) once answered
/// 500 from inside a well-formed cursor. A cursor is now the server's own: unsigned, forged,
/// tampered or from another deployment, it is a 400; and even one signed with the service's
/// key is range-checked before its value reaches SQL.
#[tokio::test]
async fn crafted_cursors_are_400_and_never_reach_the_database() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    owner.upload_ok("a.txt", "a").await;
    owner.upload_ok("b.txt", "b").await;
    let ours = SigningKey::for_cursors(TEST_SESSION_KEY.as_bytes());
    let theirs = SigningKey::for_cursors(&[7; 64]);
    let hostile = [
        ("uploaded_at", "desc", "0000-01-01T00:00:00Z"),
        ("uploaded_at", "desc", "2024-01-01T00:00:00+20:00"),
        ("filename", "asc", "a\u{0}b"),
        ("filename", "asc", "nul\0 inside"),
        ("size", "desc", "-1"),
        ("size", "desc", "99999999999999999999"),
    ];
    for (sort, order, key) in hostile {
        for signer in [None, Some(&theirs), Some(&ours)] {
            let cursor = crafted_cursor(sort, order, key, signer);
            let response = owner.list(&format!("?sort={sort}&order={order}&cursor={cursor}")).await;
            assert_error(response, StatusCode::BAD_REQUEST, "invalid_cursor").await;
        }
    }

    // One the service handed out works; changed in any byte, it does not.
    let cursor = list(&owner, "?limit=1").await["next_cursor"].as_str().unwrap().to_owned();
    assert_eq!(list(&owner, &format!("?limit=1&cursor={cursor}")).await["files"].as_array().unwrap().len(), 1);
    let mut bytes = URL_SAFE_NO_PAD.decode(&cursor).unwrap();
    for i in [0, bytes.len() / 2, bytes.len() - 1] {
        bytes[i] ^= 0x20;
        let tampered = URL_SAFE_NO_PAD.encode(&bytes);
        assert_error(owner.list(&format!("?cursor={tampered}")).await, StatusCode::BAD_REQUEST, "invalid_cursor").await;
        bytes[i] ^= 0x20;
    }
    // A signed cursor with an ordinary key is one of ours: accepted.
    let fine = crafted_cursor("uploaded_at", "desc", "2024-01-01T00:00:00.000000Z", Some(&ours));
    assert_eq!(owner.list(&format!("?cursor={fine}")).await.status(), StatusCode::OK);
}
