//! The quota is a database fact: concurrent uploads cannot push usage past it.

use futures_util::future::join_all;
use reqwest::StatusCode;

use crate::helpers::{assert_error, eventually, spawn_app, TestApp, TestUser};

async fn usage(app: &TestApp, org_id: &str) -> (i64, i64) {
    let row = app
        .superuser()
        .await
        .query_one(
            "select storage_used_bytes, storage_quota_mb * 1048576 from app.organizations where id = $1::text::uuid",
            &[&org_id],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn concurrent_uploads_near_the_quota_never_exceed_it_and_deletes_give_it_back() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    app.superuser()
        .await
        .execute("update app.organizations set storage_quota_mb = 1 where id = $1::text::uuid", &[&owner.org_id])
        .await
        .unwrap();
    let size = 150 * 1024; // 6 fit into 1 MiB, 7 do not

    let responses = join_all((0..12).map(|n| owner.upload(format!("part{n}.bin").leak(), vec![n as u8; size]))).await;

    let mut accepted = 0;
    for response in responses {
        match response.status() {
            StatusCode::CREATED => accepted += 1,
            _ => assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded").await,
        }
    }
    assert_eq!(accepted, 6, "exactly as many as fit");
    let (used, quota) = usage(&app, &owner.org_id).await;
    assert_eq!(used, 6 * size as i64);
    assert!(used <= quota);
    assert_eq!(app.count_file_rows().await, 6);
    app.assert_stored_files(6).await; // refused uploads leave no bytes

    let ids = owner.listed_ids("").await;
    assert_eq!(owner.delete(&ids[0]).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(usage(&app, &owner.org_id).await.0, 5 * size as i64);
    assert_eq!(owner.upload("fits-again.bin", vec![1u8; size]).await.status(), StatusCode::CREATED);
}

/// The organization's reserved bytes and uploads receiving bytes (slots held), as the database counts them.
async fn reserved(app: &TestApp, org_id: &str) -> (i64, i32) {
    let row = app
        .superuser()
        .await
        .query_one(
            "select storage_reserved_bytes, (select count(*)::int from app.upload_reservations r where r.organization_id = o.id and r.receiving_until > now()) from app.organizations o where id = $1::text::uuid",
            &[&org_id],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

async fn set_org(app: &TestApp, owner: &TestUser, assignment: &str) {
    app.superuser()
        .await
        .execute(&format!("update app.organizations set {assignment} where id = $1::text::uuid"), &[&owner.org_id])
        .await
        .unwrap();
}

/// An upload in progress holds its quota from its first byte: another upload that would pass
/// the quota beside it is refused at once, before any of its bytes are written, instead of both
/// filling the disk and one being refused at the end.
#[tokio::test]
async fn an_upload_in_progress_holds_its_quota_so_a_competing_one_is_refused_up_front() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    set_org(&app, &owner, "storage_quota_mb = 1").await;
    let big = 700 * 1024;
    let (feed, first) = owner.upload_slowly("big.bin", big as u64);
    feed.send(vec![1u8; 64 * 1024]).await.unwrap();
    eventually("the first upload holds its reservation", || async {
        (reserved(&app, &owner.org_id).await.1 == 1).then_some(())
    })
    .await;

    let competing = owner.upload("competing.bin", vec![2u8; 400 * 1024]).await;

    assert_error(competing, StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded").await;
    feed.send(vec![1u8; big - 64 * 1024]).await.unwrap();
    drop(feed);
    assert_eq!(first.await.unwrap().status(), StatusCode::CREATED);
    assert_eq!(usage(&app, &owner.org_id).await.0, big as i64);
    assert_eq!(reserved(&app, &owner.org_id).await, (0, 0), "the reservation went with the file row");
}

/// An organization's uploads in flight are capped (a database fact, like the quota); a refused
/// or failed upload gives its slot and bytes back.
#[tokio::test]
async fn uploads_in_flight_are_capped_per_organization_and_given_back_on_every_path() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let other_org = app.register_org().await;
    set_org(&app, &owner, "max_concurrent_uploads = 1").await;
    let (feed, first) = owner.upload_slowly("slow.bin", 2048);
    feed.send(vec![1u8; 1024]).await.unwrap();
    eventually("the first upload is in flight", || async {
        (reserved(&app, &owner.org_id).await.1 == 1).then_some(())
    })
    .await;

    assert_error(owner.upload("second.txt", "waits its turn").await, StatusCode::TOO_MANY_REQUESTS, "too_many_uploads")
        .await;
    assert_eq!(other_org.upload("elsewhere.txt", "not affected").await.status(), StatusCode::CREATED);

    feed.send(vec![1u8; 1024]).await.unwrap();
    drop(feed);
    assert_eq!(first.await.unwrap().status(), StatusCode::CREATED);
    assert_eq!(owner.upload("second.txt", "its turn").await.status(), StatusCode::CREATED);
    // A refused upload (empty file) and a broken-off one release what they reserved.
    assert_error(owner.upload("empty.txt", "").await, StatusCode::BAD_REQUEST, "empty_file").await;
    let (feed, broken) = owner.upload_slowly("broken.bin", 4096);
    feed.send(vec![1u8; 1024]).await.unwrap();
    eventually("the broken upload is in flight", || async {
        (reserved(&app, &owner.org_id).await.1 == 1).then_some(())
    })
    .await;
    broken.abort();
    drop(feed);
    eventually("every reservation is given back", || async {
        (reserved(&app, &owner.org_id).await == (0, 0)).then_some(())
    })
    .await;
    app.assert_stored_files(3).await;
}
