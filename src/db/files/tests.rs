//! The file queries against a scratch database.

use super::*;
use crate::db::testing::{scratch_db_and_owner, tenant};

/// The plan PostgreSQL caches for `sql` (generic, as every tenant transaction asks), with
/// `args` as the values.
async fn cached_plan(db: &crate::db::Db, ctx: &super::super::TenantCtx, sql: &str, args: &str) -> String {
    let tx = db.begin(ctx).await.unwrap();
    tx.execute(&format!("prepare worker_statement as {sql}"), &[]).await.unwrap();
    let rows = tx.query(&format!("explain (format json) execute worker_statement({args})"), &[]).await.unwrap();
    tx.execute("deallocate worker_statement", &[]).await.unwrap(); // prepared for the session
    rows[0].get::<_, serde_json::Value>(0).to_string()
}

/// `count` more pending files for `ctx`'s organization, in one statement.
async fn add_pending_files(db: &crate::db::Db, ctx: &super::super::TenantCtx, count: i32) {
    let tx = db.begin(ctx).await.unwrap();
    tx.execute(
        "insert into app.files (id, organization_id, filename, file_size_bytes, sha256, uploaded_by)
         select gen_random_uuid(), $1, 'burst-' || g || '.txt', 1, repeat('0', 64), $2
           from generate_series(1, $3) g",
        &[ctx.org_id.as_uuid(), ctx.user_id.as_uuid(), &count],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

/// A first page of ten, newest first, of every status.
fn first_page() -> Listing {
    Listing {
        status: None,
        search: None,
        sort: SortKey::UploadedAt,
        direction: Direction::Desc,
        start: Start::Offset(0),
        limit: 10,
    }
}

/// The backstop behind the cursor's own checks: a value PostgreSQL refuses as data (the
/// three that once answered 500 from a crafted cursor) is `InvalidValue`, a 400 to the
/// client, and the connection goes back to the pool usable.
#[tokio::test]
async fn a_value_postgres_refuses_is_the_clients_400_not_a_500() {
    let db = crate::db::testing::scratch_db(1).await;
    let (ctx, _) = tenant(&db, "a.txt").await;
    let cases = [
        (SortKey::UploadedAt, "0000-01-01T00:00:00Z"),
        (SortKey::UploadedAt, "2024-01-01T00:00:00+20:00"),
        (SortKey::Filename, "nul\0inside"),
    ];
    for (sort, key) in cases {
        let start = Start::After(Position { key: key.to_owned(), id: uuid::Uuid::new_v4() });
        let listing = Listing { sort, start, ..first_page() };
        let refused = list_page(db.read(&ctx).await.unwrap(), &listing).await.err().expect("refused");
        assert!(matches!(refused, DbError::InvalidValue(_)), "{key:?}: {refused:?}");
        let answer = crate::error::ApiError::from(refused);
        assert_eq!(actix_web::ResponseError::status_code(&answer), actix_web::http::StatusCode::BAD_REQUEST);
    }
    assert_eq!(list_page(db.read(&ctx).await.unwrap(), &first_page()).await.unwrap().files.len(), 1);
}

/// Statistics taken while nothing was pending, then a burst of pending files: the worker's
/// re-check and its outcome statement must still find each file by its primary key, not by
/// walking the partial index of pending files that the statistics say is empty.
#[tokio::test]
async fn the_workers_lookups_stay_on_the_primary_key_after_a_burst_of_uploads() {
    let (db, owner) = scratch_db_and_owner(1).await;
    let (ctx, file) = tenant(&db, "first.txt").await;
    let done = Validation { file_id: file, status: FileStatus::Ready, mime_type: None, error_message: None };
    assert_eq!(record_outcomes(db.write(&ctx).await.unwrap(), &[done]).await.unwrap(), [file]);
    owner.batch_execute("analyze app.files").await.unwrap();
    add_pending_files(&db, &ctx, 2000).await;

    let user = ctx.user_id; // any values would do: the plan is the generic one
    let find = cached_plan(&db, &ctx, FIND_PENDING, &format!("'{file}', 'pending'")).await;
    let record = cached_plan(
        &db,
        &ctx,
        RECORD_OUTCOMES,
        &format!("array['{file}']::uuid[], array['ready'], array['text/plain'], array[null], '{user}', 'pending'"),
    )
    .await;
    for plan in [find, record] {
        let by_key = ["files_pkey", "files_organization_id_id_key"].iter().any(|key| plan.contains(key));
        assert!(by_key && !plan.contains("files_pending_enqueued_at_idx"), "{plan}");
    }
}

/// The newest-first page, as the service prepared it (read back from the connection's
/// prepared statements), walks the organization's sort index under its generic plan in a
/// table several organizations share, one of them ten times the others' size: no sort of the
/// organization's files. (The trap behind the page's shape, a plan that sorted all of a
/// large organization's files, showed only at 10,000 organizations and 2.2M rows:
/// docs/performance.md.)
#[tokio::test]
async fn a_list_page_walks_the_sort_index_among_many_organizations() {
    let (db, owner) = scratch_db_and_owner(1).await;
    let (a, _) = tenant(&db, "a.txt").await;
    add_pending_files(&db, &a, 5000).await;
    for _ in 0..20 {
        let (other, _) = tenant(&db, "b.txt").await;
        add_pending_files(&db, &other, 500).await;
    }
    owner.batch_execute("analyze").await.unwrap();
    let listing = Listing { limit: 20, ..first_page() };
    assert_eq!(list_page(db.read(&a).await.unwrap(), &listing).await.unwrap().files.len(), 20);

    let tx = db.begin(&a).await.unwrap();
    let prepared = tx
        .query_one(
            "select name from pg_prepared_statements
              where statement like '%order by f.uploaded_at desc%' and statement not like '%pg_prepared%'",
            &[],
        )
        .await
        .unwrap();
    let name: String = prepared.get(0);
    let plan = tx.query(&format!("explain (format json) execute {name}(21, 0)"), &[]).await.unwrap();
    let plan = plan[0].get::<_, serde_json::Value>(0).to_string();
    assert!(plan.contains("files_organization_id_uploaded_at_idx") && !plan.contains(r#""Sort""#), "{plan}");
}

/// The database, not the recorder's grouping, keeps a batch to its tenant: a verdict for
/// another organization's file in a batch committed as `a` changes nothing and is not
/// reported as recorded.
#[tokio::test]
async fn a_batch_of_outcomes_changes_its_own_tenants_files_only() {
    let (db, _owner) = scratch_db_and_owner(1).await;
    let (a, a_file) = tenant(&db, "a.txt").await;
    let (b, b_file) = tenant(&db, "b.txt").await;
    let ready = |file_id| Validation { file_id, status: FileStatus::Ready, mime_type: None, error_message: None };

    let recorded = record_outcomes(db.write(&a).await.unwrap(), &[ready(a_file), ready(b_file)]).await.unwrap();

    assert_eq!(recorded, [a_file]);
    let b_row = find(db.read(&b).await.unwrap(), b_file).await.unwrap().unwrap();
    assert_eq!(b_row.status, FileStatus::Pending);
}
