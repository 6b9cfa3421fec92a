//! Behind a transaction-mode pooler: PgBouncer (1.18, Debian's) with two server connections
//! shared by many clients, the service with `DB_POOLER=transaction`. Consecutive transactions of
//! one client land on any server connection, and one server connection serves many clients in
//! turn: nothing of one request may be found by the next, whoever's it is.

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{pgbouncer_port, spawn_app_with, Settings, TestApp};

async fn behind_pgbouncer() -> TestApp {
    spawn_app_with(Settings {
        app_db_port: Some(pgbouncer_port()),
        db_pooler: "transaction",
        db_pool_size: 16,
        ..Settings::default()
    })
    .await
}

/// Two tenants hammering the same two server connections with reads and writes at once: each
/// sees exactly its own files, every time, and never the other's by id.
#[tokio::test]
async fn tenants_sharing_two_server_connections_see_only_their_own_rows() {
    let app = behind_pgbouncer().await;
    let a = app.register_org().await;
    let b = app.register_org().await;
    let mut files = Vec::new();
    for (user, name) in [(&a, "a"), (&b, "b")] {
        let mut ids = Vec::new();
        for n in 0..3 {
            ids.push(user.upload_ok(&format!("{name}{n}.txt"), format!("{name} {n}")).await);
        }
        ids.sort();
        files.push(ids);
    }
    let (a_files, b_files) = (&files[0], &files[1]);

    let requests = (0..120).map(|n| {
        let (user, own, other) = if n % 2 == 0 { (&a, a_files, b_files) } else { (&b, b_files, a_files) };
        async move {
            let mut listed = user.listed_ids("").await;
            listed.sort();
            assert_eq!(&listed, own, "request {n} listed another tenant's files");
            let foreign = user.get_file(&other[n % 3]).await;
            assert_eq!(foreign.status(), StatusCode::NOT_FOUND, "request {n} reached another tenant's file");
            let renamed = user.rename(&own[n % 3], serde_json::json!({ "filename": format!("r{n}.txt") })).await;
            assert_eq!(renamed.status(), StatusCode::OK, "request {n}");
        }
    });
    join_all(requests).await;

    // And the worker, through the same pooler, validates each file once.
    assert_eq!(app.drain_jobs().await, 6);
    let detail: Value = a.get_file(&a_files[0]).await.json().await.unwrap();
    assert_eq!(detail["status"], "ready");
}

/// What a request leaves on a server connection is what the next client there finds: no tenant
/// setting, no prepared statement, no temporary object. (With prepared statements by name,
/// `pg_prepared_statements` would list the service's here, and the next transaction elsewhere
/// would fail to find them.)
#[tokio::test]
async fn a_shared_server_connection_keeps_nothing_of_the_requests_it_served() {
    let app = behind_pgbouncer().await;
    let owner = app.register_org().await;
    let id = owner.upload_ok("x.txt", "x").await;
    join_all((0..40).map(|_| owner.get_file(&id))).await;
    join_all((0..40).map(|_| owner.list(""))).await;

    // Raw clients through the same pooler, each in its own transaction: every server connection
    // of the pool is seen, none has anything left.
    let url = format!("postgres://tenant_files_app@127.0.0.1:{}/{}", pgbouncer_port(), app.db_name);
    let clients = join_all((0..4).map(|_| async {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client
    }))
    .await;
    for client in &clients {
        let rows = client
            .simple_query(
                "select coalesce(current_setting('app.org_id', true), ''),
                        (select count(*) from pg_prepared_statements),
                        (select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace
                          where n.nspname like 'pg_temp%'),
                        (select count(*) from app.files)",
            )
            .await
            .unwrap();
        let row = rows.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        });
        let row = row.expect("one row");
        let values: Vec<&str> = (0..4).map(|i| row.get(i).unwrap()).collect();
        assert_eq!(values, ["", "0", "0", "0"], "setting, prepared statements, temp objects, visible files");
    }
}
