//! Resumable uploads (tus 1.0 under /api/files/tus): with a real tus client (tuspy, from PyPI)
//! and by hand, interrupted and resumed, across a restart of the api process, within quota,
//! within one organization and one user, and cleaned up once expired.

use std::time::Duration;

use reqwest::{header, Method, Response, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{
    cluster::Process,
    helpers::{assert_error, begin_as, eventually, spawn_app, spawn_app_with, Bearer, Settings, TestApp, TestUser},
};

pub(crate) const TUS: &str = "Tus-Resumable";
pub(crate) const OFFSET_TYPE: &str = "application/offset+octet-stream";

fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// A client of the tus endpoints, signed in with a bearer token (what scripts and tus clients
/// use; a browser session works the same, with its CSRF token).
pub(crate) struct Tus {
    pub(crate) bearer: Bearer,
}

impl Tus {
    pub(crate) async fn new(app: &TestApp, user: &TestUser) -> Self {
        let (_, secret) = user.create_token("tus").await;
        Self { bearer: Bearer::new(app, &secret) }
    }

    pub(crate) fn at(&self, address: &str) -> Self {
        Self { bearer: self.bearer.at(address) }
    }

    pub(crate) async fn create(&self, length: usize, filename: &str) -> Response {
        self.bearer
            .request(Method::POST, "/api/files/tus")
            .header(TUS, "1.0.0")
            .header("Upload-Length", length.to_string())
            .header("Upload-Metadata", format!("filename {},filetype {}", b64(filename), b64("text/plain")))
            .send()
            .await
            .unwrap()
    }

    /// The path of a new upload (from its absolute `Location`).
    pub(crate) async fn create_ok(&self, length: usize, filename: &str) -> String {
        let created = self.create(length, filename).await;
        assert_eq!(created.status(), StatusCode::CREATED);
        assert!(created.headers().contains_key("Upload-Expires"));
        let location = created.headers()[header::LOCATION].to_str().unwrap().to_owned();
        location.split_once("/api/").map(|(_, path)| format!("/api/{path}")).expect("an absolute URL")
    }

    pub(crate) async fn offset(&self, path: &str) -> Response {
        self.bearer.request(Method::HEAD, path).header(TUS, "1.0.0").send().await.unwrap()
    }

    pub(crate) async fn offset_ok(&self, path: &str) -> u64 {
        let head = self.offset(path).await;
        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(head.headers()[header::CACHE_CONTROL], "no-store");
        head.headers()["Upload-Offset"].to_str().unwrap().parse().unwrap()
    }

    /// A `PATCH` at `offset`, its body still to be given.
    pub(crate) fn patch_request(&self, path: &str, offset: usize) -> reqwest::RequestBuilder {
        self.bearer
            .request(Method::PATCH, path)
            .header(TUS, "1.0.0")
            .header("Upload-Offset", offset.to_string())
            .header(header::CONTENT_TYPE, OFFSET_TYPE)
    }

    pub(crate) async fn patch(&self, path: &str, offset: usize, bytes: impl Into<reqwest::Body>) -> Response {
        self.patch_request(path, offset).body(bytes).send().await.unwrap()
    }

    pub(crate) async fn terminate(&self, path: &str) -> Response {
        self.bearer.request(Method::DELETE, path).header(TUS, "1.0.0").send().await.unwrap()
    }
}

pub(crate) fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| b"resumable "[i % 10]).collect()
}

pub(crate) async fn org_usage(app: &TestApp, org_id: &str) -> (i64, i64, i32) {
    let row = app
        .superuser()
        .await
        .query_one(
            "select storage_used_bytes, storage_reserved_bytes, (select count(*)::int from app.upload_reservations r where r.organization_id = o.id and r.receiving_until > now()) from app.organizations o where id = $1::text::uuid",
            &[&org_id],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

/// The file an upload became: the one in the list, with its detail.
pub(crate) async fn only_file(user: &TestUser) -> Value {
    let listed: Value = user.list("").await.json().await.unwrap();
    assert_eq!(listed["total"], 1, "{listed}");
    let id = listed["files"][0]["id"].as_str().unwrap().to_owned();
    user.get_file(&id).await.json().await.unwrap()
}

#[tokio::test]
async fn an_upload_in_pieces_becomes_an_ordinary_file_with_nothing_left_over() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let tus = Tus::new(&app, &owner).await;
    let bytes = content(3000);

    let upload = tus.create_ok(bytes.len(), "pieces.txt").await;
    assert_eq!(
        org_usage(&app, &owner.org_id).await,
        (0, 3000, 0),
        "the length is reserved at creation, and no slot is held while no PATCH receives"
    );
    assert_eq!(tus.offset_ok(&upload).await, 0);
    assert_eq!(tus.patch(&upload, 0, bytes[..1000].to_vec()).await.status(), StatusCode::NO_CONTENT);
    // A PATCH at the wrong offset changes nothing.
    assert_error(tus.patch(&upload, 500, bytes[500..1500].to_vec()).await, StatusCode::CONFLICT, "offset_mismatch")
        .await;
    assert_eq!(tus.offset_ok(&upload).await, 1000);
    assert_eq!(owner.list("").await.json::<Value>().await.unwrap()["total"], 0, "not a file before its last byte");

    let last = tus.patch(&upload, 1000, bytes[1000..].to_vec()).await;
    assert_eq!(last.status(), StatusCode::NO_CONTENT);
    assert_eq!(last.headers()["Upload-Offset"], "3000");
    assert_eq!(last.headers()[TUS], "1.0.0");

    let file = only_file(&owner).await;
    assert_eq!(
        (file["filename"].as_str(), file["status"].as_str(), file["size"].as_i64()),
        (Some("pieces.txt"), Some("pending"), Some(3000))
    );
    assert_eq!(file["sha256"], hex::encode(Sha256::digest(&bytes)));
    assert_eq!(org_usage(&app, &owner.org_id).await, (3000, 0, 0), "the reservation became stored bytes");
    // HEAD keeps telling a client whose last answer was lost that the upload is whole, and
    // which file it became; PATCH and DELETE have nothing more to do.
    let head = tus.offset(&upload).await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(
        (head.headers()["Upload-Offset"].to_str().unwrap(), head.headers()["Upload-Length"].to_str().unwrap()),
        ("3000", "3000")
    );
    assert_eq!(head.headers()["Upload-File-Id"], file["id"].as_str().unwrap());
    let again = tus.patch(&upload, 3000, Vec::new()).await;
    assert_eq!((again.status(), again.headers()["Upload-Offset"].to_str().unwrap()), (StatusCode::NO_CONTENT, "3000"));
    let terminate = tus.bearer.request(Method::DELETE, &upload).header(TUS, "1.0.0").send().await.unwrap();
    assert_error(terminate, StatusCode::CONFLICT, "upload_complete").await;
    app.assert_stored_files(1).await; // the file, and no chunk left
    assert_eq!(app.drain_jobs().await, 1, "enqueued through the outbox like any upload");
    let id = file["id"].as_str().unwrap();
    let ready = app.wait_for_status(&owner, id, "ready").await;
    assert_eq!(ready["mime_type"], "text/plain");
    assert_eq!(owner.download(id).await.bytes().await.unwrap(), bytes);
}

/// A real tus client, cut off after its first chunk and resumed by a new client from the
/// server's offset.
#[tokio::test]
async fn a_tus_client_is_cut_off_and_resumes_to_a_ready_file() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let (_, token) = owner.create_token("tuspy").await;
    let bytes = content(300_000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.bin");
    std::fs::write(&path, &bytes).unwrap();

    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".dev/venv/bin/python");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tus/resume.py");
    let run = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(app.url("/api/files/tus"))
        .arg(&token)
        .arg(&path)
        .arg("100000")
        .output()
        .await
        .unwrap_or_else(|e| panic!("{}: {e} (`make test` installs tuspy into .dev/venv)", python.display()));
    let printed = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{printed}{}", String::from_utf8_lossy(&run.stderr));
    assert!(printed.contains("resumed at 100000"), "{printed}");

    let file = only_file(&owner).await;
    assert_eq!(file["filename"], "report.bin");
    assert_eq!(file["sha256"], hex::encode(Sha256::digest(&bytes)));
    app.drain_jobs().await;
    app.wait_for_status(&owner, file["id"].as_str().unwrap(), "ready").await;
}

/// A PATCH whose connection breaks keeps the bytes that arrived: the client resumes from there.
#[tokio::test]
async fn a_broken_patch_keeps_what_arrived() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let tus = Tus::new(&app, &owner).await;
    let bytes = content(3 * 1024 * 1024);
    let upload = tus.create_ok(bytes.len(), "broken.bin").await;

    let sent = bytes[..1024 * 1024].to_vec();
    let breaking = futures_util::stream::iter([
        Ok(bytes::Bytes::from(sent)),
        Err(std::io::Error::other("the connection is lost")),
    ]);
    let request = tus
        .bearer
        .request(Method::PATCH, &upload)
        .header(TUS, "1.0.0")
        .header("Upload-Offset", "0")
        .header(header::CONTENT_TYPE, OFFSET_TYPE)
        .body(reqwest::Body::wrap_stream(breaking))
        .send()
        .await;
    assert!(request.is_err(), "the client gave up mid-body");

    let offset = eventually("the bytes that arrived are kept", || async {
        let offset = tus.offset_ok(&upload).await;
        (offset > 0).then_some(offset)
    })
    .await as usize;
    assert!(offset <= 1024 * 1024);
    assert_eq!(tus.patch(&upload, offset, bytes[offset..].to_vec()).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(only_file(&owner).await["sha256"], hex::encode(Sha256::digest(&bytes)));
}

/// The offset lives in the database and the bytes in the store: an upload begun on an api
/// process that is then killed is finished on another.
#[tokio::test]
async fn an_upload_survives_its_api_process() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let tus = Tus::new(&app, &owner).await;
    let bytes = content(20_000);
    let mut first = Process::start(&app, "api");
    first.wait_ready().await;
    let on_first = tus.at(&first.address);
    let upload = on_first.create_ok(bytes.len(), "survivor.txt").await;
    assert_eq!(on_first.patch(&upload, 0, bytes[..12_000].to_vec()).await.status(), StatusCode::NO_CONTENT);

    first.child.kill().await.unwrap();
    let second = Process::start(&app, "api");
    second.wait_ready().await;
    let on_second = tus.at(&second.address);

    assert_eq!(on_second.offset_ok(&upload).await, 12_000);
    assert_eq!(on_second.patch(&upload, 12_000, bytes[12_000..].to_vec()).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(only_file(&owner).await["sha256"], hex::encode(Sha256::digest(&bytes)));
}

/// The declared length is held against the quota from creation, and given back on termination.
#[tokio::test]
async fn quota_is_reserved_at_creation_and_released_on_termination() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let tus = Tus::new(&app, &owner).await;
    app.superuser()
        .await
        .execute("update app.organizations set storage_quota_mb = 1 where id = $1::text::uuid", &[&owner.org_id])
        .await
        .unwrap();

    assert_error(tus.create(1_048_577, "too-big.bin").await, StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded").await;
    let upload = tus.create_ok(800_000, "fits.bin").await;
    assert_eq!(tus.patch(&upload, 0, content(1000)).await.status(), StatusCode::NO_CONTENT);
    // Another upload would pass the quota together with the reserved one.
    assert_error(tus.create(300_000, "second.bin").await, StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded").await;

    assert_eq!(tus.terminate(&upload).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(org_usage(&app, &owner.org_id).await, (0, 0, 0));
    app.assert_stored_files(0).await;
    assert_eq!(tus.offset(&upload).await.status(), StatusCode::NOT_FOUND, "HEAD has no body");
    assert_error(tus.terminate(&upload).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(tus.create(300_000, "second.bin").await.status(), StatusCode::CREATED);
}

/// Another organization, and another user of the same one, find nothing at an upload's URL.
#[tokio::test]
async fn an_upload_url_is_its_creators_alone() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    // (An owner or admin sees and ends a member's upload: tus_slots.rs.)
    let colleague = app.add_user(&owner, "member").await;
    let stranger = app.register_org().await;
    let tus = Tus::new(&app, &owner).await;
    let upload = tus.create_ok(10, "mine.txt").await;

    for other in [&stranger, &colleague] {
        let theirs = Tus::new(&app, other).await;
        assert_eq!(theirs.offset(&upload).await.status(), StatusCode::NOT_FOUND, "HEAD has no body");
        assert_error(theirs.patch(&upload, 0, "0123456789").await, StatusCode::NOT_FOUND, "not_found").await;
        assert_error(theirs.terminate(&upload).await, StatusCode::NOT_FOUND, "not_found").await;
    }
    assert_eq!(tus.offset_ok(&upload).await, 0, "untouched");
    // The database, not the handler, keeps it apart: the stranger's context sees no row.
    let db = app.app_role().await;
    begin_as(&db, &stranger).await;
    let seen: i64 = db.query_one("select count(*) from app.tus_uploads", &[]).await.unwrap().get(0);
    assert_eq!(seen, 0);
}

/// The headers of one request.
type Headers = Vec<(&'static str, String)>;

#[tokio::test]
async fn bad_tus_requests_are_refused_with_a_clear_error_and_change_nothing() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let tus = Tus::new(&app, &owner).await;
    let post = |headers: &[(&str, &str)]| {
        let mut request = tus.bearer.request(Method::POST, "/api/files/tus");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };
    let named = format!("filename {}", b64("a.txt"));
    let cases: Vec<(Headers, StatusCode, &str)> = vec![
        (
            vec![("Upload-Length", "10".into()), ("Upload-Metadata", named.clone())],
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
        ),
        (
            vec![(TUS, "0.2.2".into()), ("Upload-Length", "10".into()), ("Upload-Metadata", named.clone())],
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
        ),
        (
            vec![(TUS, "1.0.0".into()), ("Upload-Metadata", named.clone())],
            StatusCode::BAD_REQUEST,
            "invalid_upload_length",
        ),
        (
            vec![(TUS, "1.0.0".into()), ("Upload-Length", "-1".into()), ("Upload-Metadata", named.clone())],
            StatusCode::BAD_REQUEST,
            "invalid_upload_length",
        ),
        (
            vec![(TUS, "1.0.0".into()), ("Upload-Length", "0".into()), ("Upload-Metadata", named.clone())],
            StatusCode::BAD_REQUEST,
            "empty_file",
        ),
        (
            vec![(TUS, "1.0.0".into()), ("Upload-Length", "6000000".into()), ("Upload-Metadata", named.clone())],
            StatusCode::PAYLOAD_TOO_LARGE,
            "file_too_large",
        ),
        (
            vec![(TUS, "1.0.0".into()), ("Upload-Defer-Length", "1".into()), ("Upload-Metadata", named.clone())],
            StatusCode::BAD_REQUEST,
            "defer_length_unsupported",
        ),
        (vec![(TUS, "1.0.0".into()), ("Upload-Length", "10".into())], StatusCode::BAD_REQUEST, "missing_filename"),
        (
            vec![(TUS, "1.0.0".into()), ("Upload-Length", "10".into()), ("Upload-Metadata", "filename !!!".into())],
            StatusCode::BAD_REQUEST,
            "invalid_metadata",
        ),
        (
            vec![
                (TUS, "1.0.0".into()),
                ("Upload-Length", "10".into()),
                ("Upload-Metadata", format!("filename {}", b64("../../etc/passwd"))),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_filename",
        ),
        (
            vec![
                (TUS, "1.0.0".into()),
                ("Upload-Length", "10".into()),
                ("Upload-Metadata", format!("filename {}", b64(&"x".repeat(300)))),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_filename",
        ),
        (
            vec![
                (TUS, "1.0.0".into()),
                ("Upload-Length", "10".into()),
                ("Upload-Metadata", format!("filename {}", b64(&"y".repeat(10_000)))),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_metadata",
        ),
    ];
    for (headers, status, code) in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        assert_error(post(&headers).await.unwrap(), status, code).await;
    }
    let unicode = tus.create_ok(4, "résumé ✓.txt").await;
    assert_eq!(tus.patch(&unicode, 0, "abcd").await.status(), StatusCode::NO_CONTENT);

    let upload = tus.create_ok(10, "b.txt").await;
    let wrong_type = tus
        .bearer
        .request(Method::PATCH, &upload)
        .header(TUS, "1.0.0")
        .header("Upload-Offset", "0")
        .header(header::CONTENT_TYPE, "text/plain")
        .body("0123456789")
        .send()
        .await
        .unwrap();
    assert_error(wrong_type, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;
    let no_offset = tus
        .bearer
        .request(Method::PATCH, &upload)
        .header(TUS, "1.0.0")
        .header(header::CONTENT_TYPE, OFFSET_TYPE)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_error(no_offset, StatusCode::BAD_REQUEST, "invalid_upload_offset").await;
    assert_error(tus.patch(&upload, 0, "0123456789 and more").await, StatusCode::PAYLOAD_TOO_LARGE, "file_too_large")
        .await;
    assert_error(tus.patch("/api/files/tus/not-a-uuid", 0, "x").await, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(only_file(&owner).await["filename"], "résumé ✓.txt", "nothing else became a file");
    let unauthenticated = app.client().head(app.url(&upload)).header(TUS, "1.0.0").send().await.unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    let options = app.client().request(Method::OPTIONS, app.url("/api/files/tus")).send().await.unwrap();
    assert_eq!(options.status(), StatusCode::NO_CONTENT);
    assert_eq!(options.headers()["Tus-Version"], "1.0.0");
    assert_eq!(options.headers()["Tus-Extension"], "creation,termination,expiration");
    assert_eq!(options.headers()["Tus-Max-Size"], (5 * 1_048_576).to_string());
}

/// Uploads that expire unfinished are refused at once and removed by the worker: rows, bytes
/// and the quota they held.
#[tokio::test]
async fn expired_uploads_are_cleaned_by_the_worker() {
    let app = spawn_app_with(Settings { tus_expiry_seconds: 1, ..Settings::default() }).await;
    let owner = app.register_org().await;
    let tus = Tus::new(&app, &owner).await;
    let upload = tus.create_ok(100, "late.txt").await;
    assert_eq!(tus.patch(&upload, 0, content(40)).await.status(), StatusCode::NO_CONTENT);
    app.assert_stored_files(1).await; // the chunk

    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(tus.offset(&upload).await.status(), StatusCode::NOT_FOUND, "HEAD has no body");
    assert_error(tus.patch(&upload, 40, content(60)).await, StatusCode::NOT_FOUND, "not_found").await;

    let _worker = app.start_worker();
    app.assert_stored_files(0).await;
    eventually("the row and the reservation are gone", || async {
        let rows: i64 =
            app.superuser().await.query_one("select count(*) from app.tus_uploads", &[]).await.unwrap().get(0);
        (rows == 0 && org_usage(&app, &owner.org_id).await == (0, 0, 0)).then_some(())
    })
    .await;
}
