//! The one-node rehearsal of distributing by organization (#28, `sql/rehearsal/`): the tables
//! that grow with the files, hash-partitioned by organization_id. `make test-partitioned` runs
//! the whole api suite on such databases; here, what only a partitioned database can show: a
//! tenant's statements, which never name the organization (the policy does), read one
//! partition, under the generic plans the service's prepared statements use.

use std::collections::BTreeSet;

use crate::helpers::{partition_by_organization, spawn_app, TestApp, TestUser};

const PARTITIONS: u32 = 8;

/// The plan of `sql` run as `user` through the app role, generic (as a prepared statement
/// reused by the pool is), with what was executed.
async fn executed_plan(app: &TestApp, user: &TestUser, sql: &str) -> String {
    let db = app.app_role_as(user).await;
    db.batch_execute(&format!("set local plan_cache_mode = force_generic_plan; prepare statement as {sql};"))
        .await
        .unwrap();
    let rows = db.query("explain (analyze, costs off, timing off, summary off) execute statement", &[]).await.unwrap();
    rows.iter().map(|row| row.get::<_, String>(0)).collect::<Vec<_>>().join("\n")
}

/// The partitions of `table` the plan names (its scans' and their indexes' lines), and of
/// those the ones it ran (not "never executed").
fn partitions(plan: &str, table: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let prefix = format!("{table}_p");
    let named = |line: &str| {
        let (_, after) = line.split_once(&format!(" on {prefix}"))?;
        let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
        Some(format!("{prefix}{digits}"))
    };
    let listed = plan.lines().filter_map(named).collect();
    let ran = plan.lines().filter(|line| !line.contains("never executed")).filter_map(named).collect();
    (listed, ran)
}

#[tokio::test]
async fn a_tenants_statements_read_one_partition_under_generic_plans() {
    let app = spawn_app().await;
    partition_by_organization(&app.db_name, PARTITIONS).await;
    // Organizations enough that they fill several partitions, each with files and audit entries.
    let mut users = Vec::new();
    for n in 0..6 {
        let user = app.register_org().await;
        user.upload_ok(&format!("report-{n}.txt"), format!("bytes of {n}")).await;
        users.push(user);
    }
    let a = &users[0];
    let a_file: String = a.listed_ids("").await.remove(0);
    // A larger organization among smaller ones, as the list page's own test has them.
    app.insert_files(a, "bulk-", 3000).await;
    for other in &users[1..] {
        app.insert_files(other, "bulk-", 300).await;
    }
    app.superuser().await.batch_execute("analyze app.files").await.unwrap();

    let statements = [
        // The list page's walk: newest first, no organization named.
        ("files", "select id from app.files where deleted_at is null order by uploaded_at desc, id desc limit 50"),
        ("files", &format!("select id, filename from app.files where id = '{a_file}'")),
        ("audit_log", "select id from app.audit_log order by created_at desc, id desc limit 50"),
        ("file_name_suffixes", "select file_id from app.file_name_suffixes where suffix >= 'port' and suffix < 'poru'"),
    ];
    for (table, sql) in statements {
        let plan = executed_plan(&app, a, sql).await;
        let (listed, ran) = partitions(&plan, table);
        // The generic plan cannot know the organization, so it lists every partition; the
        // policy's value, known when it runs, leaves one.
        assert_eq!(listed.len(), PARTITIONS as usize, "{sql}\n{plan}");
        assert_eq!(ran.len(), 1, "{sql}\n{plan}");
        // (An empty partition may be planned as a scan of all of it: it never runs.)
        let ran_a_scan_of_all = plan.lines().any(|line| line.contains("Seq Scan") && !line.contains("never executed"));
        assert!(!ran_a_scan_of_all, "{sql}\n{plan}");
    }
    // The page is walked in order down the organization's index, in its one partition: no
    // sort node (a Merge Append of the partitions' ordered scans keeps their order).
    let page = executed_plan(&app, a, statements[0].1).await;
    assert!(!page.contains("Sort Method") && page.contains("organization_id_uploaded_at"), "{page}");

    // And it still reads only its own organization: the same statement as another tenant sees
    // that tenant's file, never A's.
    let rows = app.app_role_as(&users[1]).await.query("select id::text from app.files", &[]).await.unwrap();
    let b_ids: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    assert_eq!(b_ids.len(), 1 + 300, "B's upload and B's bulk");
    assert!(!b_ids.contains(&a_file));
}

#[tokio::test]
async fn the_rehearsal_keeps_every_row_policy_grant_trigger_and_key() {
    let app = spawn_app().await;
    let user = app.register_org().await;
    let stored = user.upload_ok("before.txt", "stored before the move").await;
    let before = catalog(&app).await;
    partition_by_organization(&app.db_name, PARTITIONS).await;
    let after = catalog(&app).await;
    assert_eq!(before, after);

    // The service goes on over the moved rows: the file is there, and a new upload lands.
    let added = user.upload_ok("after.txt", "stored after the move").await;
    let mut listed = user.listed_ids("").await;
    listed.sort();
    let mut expected = vec![stored, added];
    expected.sort();
    assert_eq!(listed, expected);

    let db = app.superuser().await;
    let partitioned: i64 = db
        .query_one(
            "select count(*) from pg_partitioned_table p join pg_class c on c.oid = p.partrelid
              where c.relnamespace = 'app'::regnamespace",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(partitioned, 7, "files, audit_log, outbox, file_name_suffixes, share_links, events, webhook_deliveries");
}

/// What the conversion must keep, read from the catalog of the parents (partitions left out).
async fn catalog(app: &TestApp) -> Vec<String> {
    let db = app.superuser().await;
    let rows = db
        .query(
            "select format('policy %s on %s: %s %s %s %s', policyname, tablename, permissive, cmd, qual, with_check)
               from pg_policies where schemaname = 'app'
             union all
             select format('constraint %s on %s: %s', conname, conrelid::regclass, pg_get_constraintdef(oid))
               from pg_constraint where connamespace = 'app'::regnamespace and conparentid = 0
                and conrelid <> 0 and not (select relispartition from pg_class where oid = conrelid)
             union all
             select format('index %s: %s', indexrelid::regclass, replace(pg_get_indexdef(indexrelid), ' ON ONLY ', ' ON '))
               from pg_index i join pg_class c on c.oid = i.indrelid
              where c.relnamespace = 'app'::regnamespace and not c.relispartition
             union all
             select format('trigger %s on %s: %s', tgname, tgrelid::regclass, pg_get_triggerdef(t.oid))
               from pg_trigger t join pg_class c on c.oid = t.tgrelid
              where c.relnamespace = 'app'::regnamespace and not t.tgisinternal and not c.relispartition
             union all
             select format('grant %s on %s to %s', privilege_type, table_name, grantee)
               from information_schema.role_table_grants
              where table_schema = 'app' and table_name not like '%\\_p_'
             union all
             select format('grant %s (%s) on %s to %s', privilege_type, column_name, table_name, grantee)
               from information_schema.column_privileges
              where table_schema = 'app' and table_name not like '%\\_p_'
             union all
             select format('table %s: rls %s forced %s', oid::regclass, relrowsecurity, relforcerowsecurity)
               from pg_class where relnamespace = 'app'::regnamespace and relkind in ('r', 'p') and not relispartition
             order by 1",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|row| row.get(0)).collect()
}
