use reqwest::{header, multipart, Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::{assert_error, spawn_app, spawn_app_with, Settings, TestApp, TestUser};

/// Marks a file ready as the validation worker would (without running one).
async fn mark_ready(app: &TestApp, user: &TestUser, id: &str) {
    app.as_user(
        user,
        &format!(
            "update app.files set status = 'ready', mime_type = 'text/plain', processed_at = now() where id = '{id}'"
        ),
    )
    .await;
}

#[tokio::test]
async fn upload_stores_the_bytes_under_org_and_id_as_its_row_says_and_records_size_and_sha256() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let bytes = b"quarterly numbers\n".repeat(1000);

    let response = owner.upload("report.csv", bytes.clone()).await;

    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["filename"], "report.csv");
    assert_eq!(body["status"], "pending");
    let id = body["file_id"].as_str().unwrap();
    let stored = app.store.read(&owner, id).await.expect("stored under {org}/{id}");
    assert_eq!(stored, bytes);
    app.assert_stored_files(1).await; // no part file left next to it
                                      // The row names where its bytes are, for a DBA holding it (generated from the ids, V21).
    let file_path: String = app
        .superuser()
        .await
        .query_one("select file_path from app.files where id = $1::text::uuid", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(app.store.keys().await, [file_path]);

    let detail: Value = owner.get_file(id).await.json().await.unwrap();
    assert_eq!(detail["size"], bytes.len());
    assert_eq!(detail["sha256"], hex::encode(Sha256::digest(&bytes)));
    assert_eq!(detail["status"], "pending");
    assert_eq!(detail["uploaded_by_email"], owner.email);
    assert!(detail["mime_type"].is_null() && detail["processed_at"].is_null() && detail["error_message"].is_null());
}

#[tokio::test]
async fn upload_keeps_unicode_names_and_refuses_hostile_ones_leaving_nothing_behind() {
    let app = spawn_app().await;
    let owner = app.register_org().await;

    let unicode = "résumé 履歴書 سيرة.txt";
    let id = owner.upload_ok(unicode, "hello").await;
    let detail: Value = owner.get_file(&id).await.json().await.unwrap();
    assert_eq!(detail["filename"], unicode);

    let ten_kb = "a".repeat(10 * 1024);
    for (hostile, code) in [
        ("../../etc/passwd", "invalid_filename"),
        ("..\\..\\windows\\win.ini", "invalid_filename"),
        ("invoice\u{202E}fdp.exe", "invalid_filename"),
        (ten_kb.as_str(), "invalid_filename"),
        ("..", "invalid_filename"),
        // A NUL cannot even appear in a multipart header: the parser refuses the part.
        ("nul\0byte.txt", "invalid_multipart"),
    ] {
        let response = owner.upload(hostile, "payload").await;
        assert_error(response, StatusCode::BAD_REQUEST, code).await;
    }
    assert_eq!(app.count_file_rows().await, 1);
    app.assert_stored_files(1).await;
}

#[tokio::test]
async fn upload_refuses_malformed_requests_with_4xx_and_writes_nothing() {
    let app = spawn_app().await;
    let owner = app.register_org().await;

    let no_file = multipart::Form::new().text("note", "no file here");
    assert_error(owner.upload_form(no_file).await, StatusCode::BAD_REQUEST, "missing_file").await;

    let wrong_field = multipart::Form::new().part("document", multipart::Part::bytes(b"x".to_vec()).file_name("a.txt"));
    assert_error(owner.upload_form(wrong_field).await, StatusCode::BAD_REQUEST, "missing_file").await;

    let no_name = multipart::Form::new().part("file", multipart::Part::bytes(b"x".to_vec()));
    assert_error(owner.upload_form(no_name).await, StatusCode::BAD_REQUEST, "missing_filename").await;

    assert_error(owner.upload("empty.txt", Vec::new()).await, StatusCode::BAD_REQUEST, "empty_file").await;

    let not_multipart =
        owner.changing(Method::POST, "/api/files/upload").json(&json!({ "file": "data" })).send().await.unwrap();
    assert_error(not_multipart, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;

    let truncated = owner
        .changing(Method::POST, "/api/files/upload")
        .header(header::CONTENT_TYPE, "multipart/form-data; boundary=XYZ")
        .body("--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\npartial data")
        .send()
        .await
        .unwrap();
    assert_error(truncated, StatusCode::BAD_REQUEST, "invalid_multipart").await;

    assert_eq!(app.count_file_rows().await, 0);
    app.assert_stored_files(0).await;
}

#[tokio::test]
async fn upload_over_the_size_limit_answers_413_and_leaves_nothing() {
    let app = spawn_app_with(Settings { max_file_size_mb: 1, ..Settings::default() }).await;
    let owner = app.register_org().await;

    let exactly = vec![7u8; 1_048_576];
    assert_eq!(owner.upload("exact.bin", exactly).await.status(), StatusCode::CREATED);

    let over = vec![7u8; 1_048_577];
    assert_error(owner.upload("over.bin", over).await, StatusCode::PAYLOAD_TOO_LARGE, "file_too_large").await;
    let far_over = vec![7u8; 3 * 1_048_576];
    assert_error(owner.upload("far.bin", far_over).await, StatusCode::PAYLOAD_TOO_LARGE, "file_too_large").await;

    assert_eq!(app.count_file_rows().await, 1);
    app.assert_stored_files(1).await; // only the accepted file
}

#[tokio::test]
async fn file_endpoints_require_a_session_and_state_changes_require_the_csrf_token() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let id = owner.upload_ok("a.txt", "data").await;
    let anonymous = app.client();
    let file_url = app.url(&format!("/api/files/{id}"));

    for request in [
        anonymous.get(app.url("/api/files")),
        anonymous.get(&file_url),
        anonymous.get(format!("{file_url}/download")),
        anonymous.patch(&file_url).json(&json!({ "filename": "b.txt" })),
        anonymous.delete(&file_url),
        anonymous.post(app.url("/api/files/bulk-delete")).json(&json!({ "ids": [id] })),
        anonymous
            .post(app.url("/api/files/upload"))
            .multipart(multipart::Form::new().part("file", multipart::Part::bytes(b"x".to_vec()).file_name("x.txt"))),
    ] {
        assert_error(request.send().await.unwrap(), StatusCode::UNAUTHORIZED, "unauthenticated").await;
    }

    // Signed in, but without the header: a cross-site form post looks exactly like this.
    let c = &owner.client;
    for request in [
        c.patch(&file_url).json(&json!({ "filename": "b.txt" })),
        c.delete(&file_url),
        c.post(app.url("/api/files/bulk-delete")).json(&json!({ "ids": [id] })),
        c.post(app.url("/api/files/upload"))
            .multipart(multipart::Form::new().part("file", multipart::Part::bytes(b"x".to_vec()).file_name("x.txt"))),
        c.delete(&file_url).header("X-CSRF-Token", "forged"),
    ] {
        assert_error(request.send().await.unwrap(), StatusCode::FORBIDDEN, "csrf_failed").await;
    }

    let detail: Value = owner.get_file(&id).await.json().await.unwrap();
    assert_eq!(detail["filename"], "a.txt", "nothing changed");
    assert_eq!(app.count_file_rows().await, 1);
}

#[tokio::test]
async fn list_pages_newest_first_with_total_and_filters_by_status() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(owner.upload_ok(&format!("f{n}.txt"), format!("content {n}")).await);
    }
    mark_ready(&app, &owner, &ids[1]).await;

    let page1: Value = owner.list("?page=1&limit=2").await.json().await.unwrap();
    assert_eq!(page1["total"], 5);
    assert_eq!((page1["page"].as_u64(), page1["limit"].as_u64()), (Some(1), Some(2)));
    let names: Vec<&str> = page1["files"].as_array().unwrap().iter().map(|f| f["filename"].as_str().unwrap()).collect();
    assert_eq!(names, ["f4.txt", "f3.txt"]);
    let first = &page1["files"][0];
    assert_eq!(first["size"], 9);
    assert_eq!(first["status"], "pending");
    assert_eq!(first["uploaded_by_email"], owner.email);
    assert!(first["uploaded_at"].is_string());

    assert_eq!(owner.listed_ids("?page=3&limit=2").await, [ids[0].clone()]);
    assert!(owner.listed_ids("?page=9&limit=2").await.is_empty());
    let ready: Value = owner.list("?status=ready").await.json().await.unwrap();
    assert_eq!(ready["total"], 1);
    assert_eq!(ready["files"][0]["id"], ids[1]);
    let defaults: Value = owner.list("?status=").await.json().await.unwrap();
    assert_eq!(
        (defaults["total"].as_u64(), defaults["page"].as_u64(), defaults["limit"].as_u64()),
        (Some(5), Some(1), Some(20))
    );

    for bad in ["?limit=0", "?limit=101", "?page=0", "?page=-1", "?limit=abc", "?status=deleted"] {
        assert_error(owner.list(bad).await, StatusCode::BAD_REQUEST, "invalid_query").await;
    }
    // Parameters this server does not know are refused, not ignored: a client asking for
    // something the list does not do must not receive a page as if it had been done.
    for unknown in ["?search=report", "?sort_by=size", "?page=1&direction=desc", "?Limit=5"] {
        assert_error(owner.list(unknown).await, StatusCode::BAD_REQUEST, "invalid_query").await;
    }
    let members = owner.get("/api/org/users?role=admin").await;
    assert_error(members, StatusCode::BAD_REQUEST, "invalid_query").await;
}

#[tokio::test]
async fn detail_of_a_malformed_or_unknown_id_is_404() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    for id in ["not-a-uuid", "00000000-0000-0000-0000-000000000000", &uuid::Uuid::new_v4().to_string(), "%00", "1"] {
        assert_error(owner.get_file(id).await, StatusCode::NOT_FOUND, "not_found").await;
    }
}

#[tokio::test]
async fn download_waits_for_ready_then_sends_the_bytes_as_a_safe_attachment() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let name = "naïve \"quote\" report.txt";
    let id = owner.upload_ok(name, "the bytes").await;

    assert_error(owner.download(&id).await, StatusCode::CONFLICT, "file_not_ready").await;

    mark_ready(&app, &owner, &id).await;
    let response = owner.download(&id).await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert!(headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/plain"));
    let disposition = headers[header::CONTENT_DISPOSITION].to_str().unwrap();
    assert!(disposition.starts_with("attachment"), "{disposition}");
    assert!(disposition.contains("filename*=UTF-8''na%C3%AFve%20%22quote%22%20report.txt"), "{disposition}");
    assert!(disposition.contains("filename=\"na_ve _quote_ report.txt\""), "{disposition}");
    assert_eq!(response.bytes().await.unwrap(), "the bytes");
}

/// HEAD answers like GET without a body: a download client learns size and type first. And it
/// is refused exactly like GET: another tenant's file is 404.
#[tokio::test]
async fn head_answers_like_get_without_a_body() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let stranger = app.register_org().await;
    let id = owner.upload_ok("ten.txt", "0123456789").await;
    mark_ready(&app, &owner, &id).await;

    let download = owner.client.head(app.url(&format!("/api/files/{id}/download"))).send().await.unwrap();
    assert_eq!(download.status(), StatusCode::OK);
    assert_eq!(download.headers()[header::CONTENT_LENGTH], "10");
    assert!(download.headers()[header::CONTENT_DISPOSITION].to_str().unwrap().starts_with("attachment"));
    assert!(download.bytes().await.unwrap().is_empty());
    let detail = owner.client.head(app.url(&format!("/api/files/{id}"))).send().await.unwrap();
    assert_eq!(detail.status(), StatusCode::OK);
    assert!(detail.bytes().await.unwrap().is_empty());

    let foreign = stranger.client.head(app.url(&format!("/api/files/{id}/download"))).send().await.unwrap();
    assert_eq!(foreign.status(), StatusCode::NOT_FOUND);
    let anonymous = app.client().head(app.url("/api/files")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let metrics = app.client().get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let series = r#"http_requests_total{method="HEAD",route="/api/files/{id}/download",status="200"} 1"#;
    assert!(metrics.lines().any(|l| l == series), "HEAD is counted as HEAD");
}

/// Unknown query parameters are refused on every route, including those that take none, and
/// whatever the method (HEAD included); declared ones pass.
#[tokio::test]
async fn unknown_query_parameters_are_refused_on_every_route() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let id = owner.upload_ok("q.txt", "q").await;

    for path in [format!("/api/files/{id}?fields=all"), "/api/auth/me?verbose=1".into(), "/api/org?x".into()] {
        assert_error(owner.get(&path).await, StatusCode::BAD_REQUEST, "invalid_query").await;
    }
    let head = owner.client.head(app.url(&format!("/api/files/{id}?debug=1"))).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::BAD_REQUEST);
    let rename = owner.changing(Method::PATCH, &format!("/api/files/{id}?force=true"));
    assert_error(
        rename.json(&json!({ "filename": "r.txt" })).send().await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_query",
    )
    .await;
    assert_eq!(owner.list("?page=1&limit=5&status=pending").await.status(), StatusCode::OK);
    assert_eq!(app.client().get(app.url("/healthz")).send().await.unwrap().status(), StatusCode::OK);
    let detail: Value = owner.get_file(&id).await.json().await.unwrap();
    assert_eq!(detail["filename"], "q.txt", "the refused rename changed nothing");
}

/// Ranges and preconditions answer with their own statuses (and the JSON error body), never a
/// generic 400 that tells a resuming client nothing.
#[tokio::test]
async fn download_keeps_range_and_precondition_statuses() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let id = owner.upload_ok("ten.txt", "0123456789").await;
    mark_ready(&app, &owner, &id).await;
    let url = app.url(&format!("/api/files/{id}/download"));

    let partial = owner.client.get(&url).header(header::RANGE, "bytes=2-4").send().await.unwrap();
    assert_eq!(partial.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(partial.bytes().await.unwrap(), "234");

    let beyond = owner.client.get(&url).header(header::RANGE, "bytes=50-60").send().await.unwrap();
    assert_eq!(beyond.headers()[header::CONTENT_RANGE], "bytes */10");
    assert_error(beyond, StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable").await;

    let stale = owner.client.get(&url).header(header::IF_MATCH, "\"not-the-etag\"").send().await.unwrap();
    assert_error(stale, StatusCode::PRECONDITION_FAILED, "precondition_failed").await;
}

/// The validators are the file's SHA-256 and upload time, the same on every api host and for
/// every store; conditional requests answer from them without reading the bytes.
#[tokio::test]
async fn download_validators_answer_conditional_requests() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let id = owner.upload_ok("ten.txt", "0123456789").await;
    mark_ready(&app, &owner, &id).await;
    let url = app.url(&format!("/api/files/{id}/download"));
    let get = |name: header::HeaderName, value: String| owner.client.get(&url).header(name, value).send();

    let first = owner.download(&id).await;
    let etag = first.headers()[header::ETAG].to_str().unwrap().to_owned();
    let modified = first.headers()[header::LAST_MODIFIED].to_str().unwrap().to_owned();
    assert_eq!(etag, format!("\"{}\"", hex::encode(Sha256::digest(b"0123456789"))));
    assert_eq!(first.headers()[header::ACCEPT_RANGES], "bytes");

    let unchanged = get(header::IF_NONE_MATCH, etag.clone()).await.unwrap();
    assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(unchanged.headers()[header::ETAG], etag.as_str());
    assert_eq!(get(header::IF_MODIFIED_SINCE, modified.clone()).await.unwrap().status(), StatusCode::NOT_MODIFIED);
    assert_eq!(get(header::IF_NONE_MATCH, "\"other\"".into()).await.unwrap().status(), StatusCode::OK);
    assert_eq!(get(header::IF_MATCH, etag.clone()).await.unwrap().status(), StatusCode::OK);
    let stale = get(header::IF_UNMODIFIED_SINCE, "Mon, 01 Jan 2001 00:00:00 GMT".into()).await.unwrap();
    assert_error(stale, StatusCode::PRECONDITION_FAILED, "precondition_failed").await;

    // A resumed download whose copy is outdated gets the whole file instead of a range.
    let resumed =
        owner.client.get(&url).header(header::RANGE, "bytes=5-").header(header::IF_RANGE, &etag).send().await.unwrap();
    assert_eq!(resumed.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(resumed.bytes().await.unwrap(), "56789");
    let outdated = owner
        .client
        .get(&url)
        .header(header::RANGE, "bytes=5-")
        .header(header::IF_RANGE, "\"outdated\"")
        .send()
        .await
        .unwrap();
    assert_eq!(outdated.status(), StatusCode::OK);
    assert_eq!(outdated.bytes().await.unwrap(), "0123456789");
}

#[tokio::test]
async fn rename_changes_only_the_name_and_refuses_every_other_field() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let id = owner.upload_ok("old.txt", "data").await;

    let response = owner.rename(&id, json!({ "filename": "  new name.txt " })).await;
    assert_eq!(response.status(), StatusCode::OK);
    let detail: Value = response.json().await.unwrap();
    assert_eq!(detail["filename"], "new name.txt");
    assert_eq!(detail["id"], id);

    for body in [
        json!({ "filename": "x.txt", "status": "ready" }),
        json!({ "filename": "x.txt", "organization_id": uuid::Uuid::new_v4() }),
        json!({ "size": 1 }),
        json!({ "uploaded_by": owner.user_id }),
        json!({ "filename": 42 }),
        json!({}),
    ] {
        assert_error(owner.rename(&id, body).await, StatusCode::BAD_REQUEST, "invalid_body").await;
    }
    for hostile in ["../x", "a\0b", "", "evil\u{202E}txt.exe"] {
        assert_error(
            owner.rename(&id, json!({ "filename": hostile })).await,
            StatusCode::BAD_REQUEST,
            "invalid_filename",
        )
        .await;
    }
    let detail: Value = owner.get_file(&id).await.json().await.unwrap();
    assert_eq!((detail["filename"].as_str(), detail["status"].as_str()), (Some("new name.txt"), Some("pending")));
}

#[tokio::test]
async fn a_deleted_file_is_gone_from_every_endpoint_and_cannot_come_back() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let id = owner.upload_ok("doomed.txt", "data").await;
    mark_ready(&app, &owner, &id).await;

    assert_eq!(owner.delete(&id).await.status(), StatusCode::NO_CONTENT);

    assert_error(owner.get_file(&id).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_error(owner.download(&id).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_error(owner.rename(&id, json!({ "filename": "back.txt" })).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_error(owner.delete(&id).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_error(owner.bulk_delete(&[&id]).await, StatusCode::NOT_FOUND, "not_found").await;
    assert!(owner.listed_ids("").await.is_empty());
    let total: Value = owner.list("").await.json().await.unwrap();
    assert_eq!(total["total"], 0);

    // Not even the database lets it come back (the row stays, deleted).
    let db = app.superuser().await;
    let undelete = db.execute("update app.files set deleted_at = null where id = $1::text::uuid", &[&id]).await;
    assert!(undelete.is_err(), "a deleted file must be final");
    assert_eq!(app.count_file_rows().await, 1);
}

#[tokio::test]
async fn members_change_only_their_own_files_while_admins_and_owners_change_any() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let member = app.add_user(&owner, "member").await;
    let other_member = app.add_user(&owner, "member").await;
    let admin = app.add_user(&owner, "admin").await;
    let owners_file = owner.upload_ok("owner.txt", "o").await;
    let members_file = member.upload_ok("member.txt", "m").await;
    let others_file = other_member.upload_ok("other.txt", "x").await;

    // The whole organization sees every file...
    assert_eq!(member.listed_ids("").await.len(), 3);
    assert_eq!(member.get_file(&owners_file).await.status(), StatusCode::OK);
    // ...but a member changes only their own.
    assert_error(member.delete(&owners_file).await, StatusCode::FORBIDDEN, "forbidden").await;
    assert_error(
        member.rename(&others_file, json!({ "filename": "mine.txt" })).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_error(member.bulk_delete(&[&members_file, &others_file]).await, StatusCode::FORBIDDEN, "forbidden").await;
    assert_eq!(member.get_file(&members_file).await.status(), StatusCode::OK, "bulk delete is all or nothing");
    assert_eq!(member.rename(&members_file, json!({ "filename": "renamed.txt" })).await.status(), StatusCode::OK);

    assert_eq!(admin.delete(&others_file).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(owner.delete(&members_file).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(member.listed_ids("").await, [owners_file]);
}

#[tokio::test]
async fn bulk_delete_deletes_all_listed_files_or_none() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let a = owner.upload_ok("a.txt", "a").await;
    let b = owner.upload_ok("b.txt", "b").await;
    let c = owner.upload_ok("c.txt", "c").await;

    let unknown = uuid::Uuid::new_v4().to_string();
    assert_error(owner.bulk_delete(&[&a, &unknown]).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_error(owner.bulk_delete(&[&a, "not-a-uuid"]).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_error(owner.bulk_delete(&[]).await, StatusCode::BAD_REQUEST, "invalid_ids").await;
    let too_many: Vec<String> = (0..101).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let too_many: Vec<&str> = too_many.iter().map(String::as_str).collect();
    assert_error(owner.bulk_delete(&too_many).await, StatusCode::BAD_REQUEST, "invalid_ids").await;
    assert_eq!(owner.listed_ids("").await.len(), 3, "refused bulk deletes deleted nothing");

    let response = owner.bulk_delete(&[&a, &b, &a]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({ "deleted": 2 }));
    assert_eq!(owner.listed_ids("").await, [c]);
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json_errors() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    assert_error(owner.client.get(app.url("/api/nope")).send().await.unwrap(), StatusCode::NOT_FOUND, "not_found")
        .await;
    assert_error(owner.client.get(app.url("/")).send().await.unwrap(), StatusCode::NOT_FOUND, "not_found").await;
    let put = owner.changing(Method::PUT, "/api/files").send().await.unwrap();
    assert_error(put, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn list_totals_kept_by_the_database_match_the_rows_through_every_change() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let member = app.add_user(&owner, "member").await;
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(member.upload_ok(&format!("{n}.txt"), format!("{n}")).await);
    }
    mark_ready(&app, &owner, &ids[0]).await;
    mark_ready(&app, &owner, &ids[1]).await;
    app.as_user(&owner, &format!("update app.files set status = 'failed' where id = '{}'", ids[2])).await;
    owner.delete(&ids[1]).await; // a ready one
    owner.delete(&ids[3]).await; // a pending one
    member.bulk_delete(&[&ids[4]]).await;

    let db = app.superuser().await;
    for status in ["", "pending", "ready", "failed"] {
        let listed: Value = owner.list(&format!("?status={status}")).await.json().await.unwrap();
        let counted: i64 = db
            .query_one(
                "select count(*) from app.files where organization_id = $1::text::uuid and deleted_at is null \
                 and ($2 = '' or status = $2)",
                &[&owner.org_id, &status],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(listed["total"], counted, "status={status}");
    }
    // Left: ids[0] ready, ids[2] failed, ids[5] pending.
    let totals: Value = owner.list("").await.json().await.unwrap();
    assert_eq!(totals["total"], 3);
    let failed: Value = owner.list("?status=failed").await.json().await.unwrap();
    assert_eq!(failed["total"], 1);
}
