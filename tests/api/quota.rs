//! The quota is a database fact: concurrent uploads cannot push usage past it.

use futures_util::future::join_all;
use reqwest::StatusCode;

use crate::helpers::{assert_error, spawn_app, TestApp};

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
    assert_eq!(app.stored_files().len(), 6, "refused uploads leave no bytes");

    let ids = owner.listed_ids("").await;
    assert_eq!(owner.delete(&ids[0]).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(usage(&app, &owner.org_id).await.0, 5 * size as i64);
    assert_eq!(owner.upload("fits-again.bin", vec![1u8; size]).await.status(), StatusCode::CREATED);
}
