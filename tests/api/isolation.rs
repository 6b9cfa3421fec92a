//! Cross-tenant: another organization's file is, on every endpoint, indistinguishable from a
//! file that never existed.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app};

#[tokio::test]
async fn another_organizations_file_is_404_on_every_endpoint_and_never_listed() {
    let app = spawn_app().await;
    let alice = app.register_org().await;
    let mallory = app.register_org().await;
    let secret = alice.upload_ok("secret.txt", "alice's data").await;
    app.as_user(&alice, &format!("update app.files set status = 'ready' where id = '{secret}'")).await;
    let own = mallory.upload_ok("own.txt", "mallory's data").await;
    let random = uuid::Uuid::new_v4().to_string();

    for id in [&secret, &random] {
        assert_error(mallory.get_file(id).await, StatusCode::NOT_FOUND, "not_found").await;
        assert_error(mallory.download(id).await, StatusCode::NOT_FOUND, "not_found").await;
        assert_error(mallory.rename(id, json!({ "filename": "pwned.txt" })).await, StatusCode::NOT_FOUND, "not_found")
            .await;
        assert_error(mallory.delete(id).await, StatusCode::NOT_FOUND, "not_found").await;
        assert_error(mallory.bulk_delete(&[id]).await, StatusCode::NOT_FOUND, "not_found").await;
    }
    // A foreign id answers byte for byte like a random one: nothing to enumerate.
    assert_eq!(
        mallory.get_file(&secret).await.text().await.unwrap(),
        mallory.get_file(&random).await.text().await.unwrap()
    );

    // Mixing an own file with a foreign one deletes neither.
    assert_error(mallory.bulk_delete(&[&own, &secret]).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(mallory.listed_ids("").await, [own]);
    let list: Value = mallory.list("?limit=100").await.json().await.unwrap();
    assert_eq!(list["total"], 1);

    // Alice's file is untouched.
    let detail: Value = alice.get_file(&secret).await.json().await.unwrap();
    assert_eq!(detail["filename"], "secret.txt");
    assert_eq!(alice.download(&secret).await.bytes().await.unwrap(), "alice's data");
    assert_eq!(alice.listed_ids("").await, [secret]);
}

#[tokio::test]
async fn me_shows_each_user_only_their_own_organization() {
    let app = spawn_app().await;
    let alice = app.register_org().await;
    let bob = app.register_org().await;
    let me: Value = bob.me().await.json().await.unwrap();
    assert_eq!(me["organization_id"], bob.org_id);
    assert_ne!(me["organization_id"], alice.org_id);
}
