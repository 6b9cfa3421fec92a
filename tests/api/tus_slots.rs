//! What uploads hold of what an organization's members share (#22): an idle resumable upload
//! holds no upload slot (only a `PATCH` receiving bytes does), its quota reservation lives as
//! long as the upload is active, owners and admins see and end their members' uploads, and
//! deactivating a user ends theirs.

use std::time::Duration;

use reqwest::{header, StatusCode};
use serde_json::Value;

use crate::{
    helpers::{assert_error, begin_as, eventually, spawn_app, spawn_app_with, Settings, TestApp, TestUser},
    tus::{content, org_usage, Tus},
    tus_integrity::{leased, leased_by_a_dead_process, patch_by_hand},
};

async fn set_slots(app: &TestApp, user: &TestUser, slots: i32) {
    app.superuser()
        .await
        .execute(
            "update app.organizations set max_concurrent_uploads = $2 where id = $1::text::uuid",
            &[&user.org_id, &slots],
        )
        .await
        .unwrap();
}

/// The review's case, and what a slot is now: eight uploads created by a member and never
/// written to leave the owner free to upload; two `PATCH`es receiving at once hold both slots
/// of an organization allowed two, so a third upload of any kind is refused at once (429,
/// nothing read) until one of them ends, by completing or by going quiet.
#[tokio::test]
async fn idle_uploads_hold_no_slot_and_a_receiving_patch_holds_one() {
    let app = spawn_app_with(Settings { upload_idle_timeout_seconds: 1, ..Settings::default() }).await;
    let owner = app.register_org().await;
    let member = app.add_user(&owner, "member").await;
    set_slots(&app, &owner, 2).await;
    let tus = Tus::new(&app, &member).await;
    let bytes = content(20_000);
    let mut uploads = Vec::new();
    for n in 0..8 {
        uploads.push(tus.create_ok(bytes.len(), &format!("idle-{n}.txt")).await);
    }
    assert_eq!(org_usage(&app, &owner.org_id).await.2, 0, "created, not receiving: no slot");
    assert_eq!(owner.upload("mine.txt", "goes in").await.status(), StatusCode::CREATED);

    let (first_body, first) = patch_by_hand(&tus, &uploads[0], 0);
    first_body.send(bytes[..5_000].to_vec()).await.unwrap();
    let (second_body, second) = patch_by_hand(&tus, &uploads[1], 0);
    second_body.send(bytes[..5_000].to_vec()).await.unwrap();
    eventually("both PATCHes receive", || async {
        (leased(&app, &uploads[0]).await && leased(&app, &uploads[1]).await).then_some(())
    })
    .await;
    assert_eq!(org_usage(&app, &owner.org_id).await.2, 2);
    assert_error(tus.patch(&uploads[2], 0, bytes.clone()).await, StatusCode::TOO_MANY_REQUESTS, "too_many_uploads")
        .await;
    assert!(!leased(&app, &uploads[2]).await, "a refused PATCH holds nothing");
    assert_eq!(tus.offset_ok(&uploads[2]).await, 0);
    assert_error(owner.upload("waits.txt", "its turn later").await, StatusCode::TOO_MANY_REQUESTS, "too_many_uploads")
        .await;

    // The first completes: its slot is free again.
    first_body.send(bytes[5_000..].to_vec()).await.unwrap();
    drop(first_body);
    assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(owner.upload("its-turn.txt", "now").await.status(), StatusCode::CREATED);
    // The second goes quiet: ended after the idle timeout, its slot given back, its bytes kept.
    let _ = tokio::time::timeout(Duration::from_secs(10), second).await.expect("ended by the server");
    drop(second_body);
    assert_eq!(tus.offset_ok(&uploads[1]).await, 5_000);
    assert_eq!(org_usage(&app, &owner.org_id).await.2, 0);
    assert_eq!(tus.patch(&uploads[2], 0, bytes.clone()).await.status(), StatusCode::NO_CONTENT);
}

/// Idle uploads hold no slot, so their number is bounded otherwise: a user has at most
/// TUS_MAX_OPEN_UPLOADS unfinished ones, exactly even when they are created all at once, while
/// another member of the organization still creates theirs; finishing or terminating one makes
/// room again.
#[tokio::test]
async fn a_user_opens_at_most_their_share_of_unfinished_uploads() {
    let app = spawn_app_with(Settings { tus_max_open_uploads: 3, ..Settings::default() }).await;
    let owner = app.register_org().await;
    let member = app.add_user(&owner, "member").await;
    let tus = Tus::new(&app, &member).await;
    let created = futures_util::future::join_all((0..10).map(|n| {
        let tus = &tus;
        async move { tus.create(10, &format!("burst-{n}.txt")).await.status() }
    }))
    .await;
    assert_eq!(created.iter().filter(|s| **s == StatusCode::CREATED).count(), 3, "{created:?}");
    assert!(created.iter().all(|s| *s == StatusCode::CREATED || *s == StatusCode::TOO_MANY_REQUESTS));
    assert_error(tus.create(10, "one-more.txt").await, StatusCode::TOO_MANY_REQUESTS, "too_many_open_uploads").await;
    assert_eq!(org_usage(&app, &owner.org_id).await.1, 30, "the refused ones reserved nothing");

    let owner_tus = Tus::new(&app, &owner).await;
    owner_tus.create_ok(10, "the-owners.txt").await;
    let listed = listed(&member).await;
    let first = listed[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(tus.terminate(&format!("/api/files/tus/{first}")).await.status(), StatusCode::NO_CONTENT);
    tus.create_ok(10, "room-again.txt").await;
}

/// A plain upload's slot is a lease too, and its body has the same idle timeout: a multipart
/// upload that stops sending is ended (408, nothing kept) and frees the organization's only
/// slot within seconds, not at its hour-long deadline; one that keeps sending keeps its slot
/// (renewed) past the lease's first term.
#[tokio::test]
async fn a_stalled_plain_upload_ends_and_gives_its_slot_back() {
    let app = spawn_app_with(Settings { upload_idle_timeout_seconds: 1, ..Settings::default() }).await;
    let owner = app.register_org().await;
    set_slots(&app, &owner, 1).await;

    let (feed, slow) = owner.upload_slowly("slow-but-alive.bin", 4 * 1024);
    for _ in 0..4 {
        feed.send(vec![1u8; 1024]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(org_usage(&app, &owner.org_id).await.2, 1, "a body that keeps sending keeps its slot");
    }
    drop(feed);
    assert_eq!(slow.await.unwrap().status(), StatusCode::CREATED);

    let (feed, stalled) = owner.upload_slowly("stalled.bin", 4 * 1024);
    feed.send(vec![1u8; 1024]).await.unwrap();
    eventually("the upload holds the slot", || async { (org_usage(&app, &owner.org_id).await.2 == 1).then_some(()) })
        .await;
    assert_error(owner.upload("blocked.txt", "x").await, StatusCode::TOO_MANY_REQUESTS, "too_many_uploads").await;
    let ended = tokio::time::timeout(Duration::from_secs(10), stalled).await.expect("ended by the server").unwrap();
    assert_error(ended, StatusCode::REQUEST_TIMEOUT, "request_timeout").await;
    assert_eq!(owner.upload("free.txt", "x").await.status(), StatusCode::CREATED);
    drop(feed);
    app.assert_stored_files(2).await;
}

/// A slot is the lease: one left by a process that died (a lease nobody gives back) is free
/// again once the lease lapses, without anyone releasing it.
#[tokio::test]
async fn a_dead_processs_slot_lapses_with_its_lease() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    set_slots(&app, &owner, 1).await;
    let tus = Tus::new(&app, &owner).await;
    let upload = tus.create_ok(10, "held.txt").await;
    leased_by_a_dead_process(&app, &upload, 1.0).await;
    assert_error(owner.upload("blocked.txt", "x").await, StatusCode::TOO_MANY_REQUESTS, "too_many_uploads").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(owner.upload("free.txt", "x").await.status(), StatusCode::CREATED);
}

fn expires(response: &reqwest::Response) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc2822(response.headers()["Upload-Expires"].to_str().unwrap()).unwrap()
}

/// An upload (and the quota it reserved) expires TUS_EXPIRY_SECONDS after its last byte, not
/// after its creation: an active one lives on, an abandoned one lets its quota go.
#[tokio::test]
async fn an_upload_and_its_reservation_expire_after_the_last_byte_not_the_creation() {
    let app = spawn_app_with(Settings { tus_expiry_seconds: 3, ..Settings::default() }).await;
    let owner = app.register_org().await;
    let tus = Tus::new(&app, &owner).await;
    let bytes = content(20_000);
    let upload = tus.create_ok(bytes.len(), "active.txt").await;
    let created = expires(&tus.offset(&upload).await);

    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(tus.patch(&upload, 0, bytes[..5_000].to_vec()).await.status(), StatusCode::NO_CONTENT);
    let head = tus.offset(&upload).await;
    assert!(expires(&head) > created, "the last byte moved the expiry");
    let id = upload.rsplit('/').next().unwrap();
    let same: bool = app
        .superuser()
        .await
        .query_one(
            "select r.expires_at = t.expires_at from app.tus_uploads t join app.upload_reservations r using (id) where t.id = $1::text::uuid",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert!(same, "the reservation expires with its upload");

    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(tus.offset_ok(&upload).await, 5_000, "four seconds after its creation, two after its last byte: alive");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(tus.offset(&upload).await.status(), StatusCode::NOT_FOUND, "abandoned: expired");
    let live: i64 = app
        .superuser()
        .await
        .query_one("select count(*) from app.upload_reservations where expires_at > now()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(live, 0, "its reservation is past its deadline too (the worker prunes it)");
}

async fn listed(user: &TestUser) -> Vec<Value> {
    let response = user.get("/api/files/tus").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    let body: Value = response.json().await.unwrap();
    body["items"].as_array().unwrap().clone()
}

fn ids(items: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = items.iter().map(|item| item["id"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    ids
}

fn upload_id(path: &str) -> String {
    path.rsplit('/').next().unwrap().to_owned()
}

/// Owners and admins list every member's uploads in progress and terminate any of them (its
/// reservation goes with it); members see their own; another organization sees none. The tus
/// requests themselves stay the creator's: a manager cannot send or read an upload's bytes.
#[tokio::test]
async fn managers_see_and_end_members_uploads_and_members_see_their_own() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let admin = app.add_user(&owner, "admin").await;
    let member = app.add_user(&owner, "member").await;
    let stranger = app.register_org().await;
    let (owner_tus, admin_tus, member_tus, stranger_tus) = (
        Tus::new(&app, &owner).await,
        Tus::new(&app, &admin).await,
        Tus::new(&app, &member).await,
        Tus::new(&app, &stranger).await,
    );
    let members = member_tus.create_ok(3_000, "members.txt").await;
    assert_eq!(member_tus.patch(&members, 0, content(1_000)).await.status(), StatusCode::NO_CONTENT);
    let owners = owner_tus.create_ok(2_000, "owners.txt").await;
    let strangers = stranger_tus.create_ok(500, "strangers.txt").await;

    let seen = listed(&owner).await;
    let mut expected = vec![upload_id(&members), upload_id(&owners)];
    expected.sort();
    assert_eq!(ids(&seen), expected);
    let entry = seen.iter().find(|item| item["id"] == upload_id(&members)).unwrap();
    assert_eq!(entry["user_id"], member.user_id.as_str());
    assert_eq!(entry["user_email"], member.email.as_str());
    assert_eq!(
        (entry["filename"].as_str(), entry["length"].as_i64(), entry["offset"].as_i64()),
        (Some("members.txt"), Some(3_000), Some(1_000))
    );
    assert_eq!(entry["receiving"], false);
    assert!(entry["last_activity_at"].is_string() && entry["expires_at"].is_string());
    assert_eq!(ids(&listed(&admin).await), expected);
    assert_eq!(ids(&listed(&member).await), vec![upload_id(&members)]);
    assert_eq!(ids(&listed(&stranger).await), vec![upload_id(&strangers)]);

    // A member cannot touch another's upload; a manager ends it but does not write to it.
    assert_eq!(member_tus.offset(&owners).await.status(), StatusCode::NOT_FOUND);
    assert_error(member_tus.terminate(&owners).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_error(stranger_tus.terminate(&owners).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_error(stranger_tus.terminate(&members).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(admin_tus.offset(&members).await.status(), StatusCode::NOT_FOUND);
    assert_error(admin_tus.patch(&members, 1_000, content(2_000)).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(admin_tus.terminate(&members).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(member_tus.offset(&members).await.status(), StatusCode::NOT_FOUND, "terminated");
    assert_eq!(org_usage(&app, &owner.org_id).await, (0, 2_000, 0), "only the owner's upload is reserved");
    assert_eq!(ids(&listed(&owner).await), vec![upload_id(&owners)]);

    // The database, not the handler, draws these lines.
    let db = app.app_role().await;
    begin_as(&db, &admin).await;
    let seen: i64 = db.query_one("select count(*) from app.tus_uploads", &[]).await.unwrap().get(0);
    assert_eq!(seen, 1, "an admin's context sees the owner's upload");
    let written = db.execute("update app.tus_uploads set chunks = '[]'", &[]).await.unwrap();
    assert_eq!(written, 0, "but writes to none it did not create");
    db.execute("rollback", &[]).await.unwrap();
    begin_as(&db, &member).await;
    let seen: i64 = db.query_one("select count(*) from app.tus_uploads", &[]).await.unwrap().get(0);
    assert_eq!(seen, 0, "a member's context sees no one else's");
    let removed = db.execute("delete from app.tus_uploads", &[]).await.unwrap();
    assert_eq!(removed, 0);
}

/// Deactivating a member ends their unfinished uploads and gives back everything they
/// reserved, resumable and plain alike (the database does it, whatever deactivates them).
#[tokio::test]
async fn deactivating_a_user_ends_their_uploads_and_gives_back_their_reservations() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let member = app.add_user(&owner, "member").await;
    let tus = Tus::new(&app, &member).await;
    let written = tus.create_ok(3_000, "written.txt").await;
    assert_eq!(tus.patch(&written, 0, content(1_000)).await.status(), StatusCode::NO_CONTENT);
    tus.create_ok(2_000, "idle.txt").await;
    let (feed, plain) = member.upload_slowly("plain.bin", 4_096);
    feed.send(vec![1u8; 1_024]).await.unwrap();
    eventually("the plain upload receives", || async { (org_usage(&app, &owner.org_id).await.2 == 1).then_some(()) })
        .await;

    assert_eq!(owner.deactivate(&member.user_id).await.status(), StatusCode::OK);
    assert_eq!(org_usage(&app, &owner.org_id).await, (0, 0, 0), "nothing reserved, no slot held");
    let left: i64 = app
        .superuser()
        .await
        .query_one("select count(*) from app.tus_uploads where created_by = $1::text::uuid", &[&member.user_id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    assert!(listed(&owner).await.is_empty());
    plain.abort();
}
