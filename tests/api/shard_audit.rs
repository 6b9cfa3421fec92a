//! Check 15 of the audit (`sql/audit/15_shard_key.sql`, #28): what distributing the tenant
//! tables by organization would break. Today's schema is ready (V25-V27 closed the 17 gaps the
//! first version of the check found), and each kind of gap, planted in a scratch database, is
//! reported as exactly that finding.

use std::{collections::BTreeSet, process::Command};

use tenant_files::rls_audit;

use crate::{
    helpers::{as_superuser, db_url, migrated_database},
    rls_audit::psql_file,
};

async fn findings(db: &str) -> BTreeSet<(String, String)> {
    let owner: tokio_postgres::Config = db_url("tenant_files_owner", db).parse().unwrap();
    let report = rls_audit::run(&owner, "tenant_files_app", "tenant_files_definer").await.unwrap();
    report.findings.into_iter().filter(|f| f.check == "shard_key").map(|f| (f.object, f.reason)).collect()
}

/// The object and the start of the reason (the constraint named), for comparing.
fn short(findings: &BTreeSet<(String, String)>) -> BTreeSet<String> {
    findings
        .iter()
        .map(|(object, reason)| {
            let head: Vec<&str> = reason.split(' ').take(3).collect();
            format!("{object}: {}", head.join(" "))
        })
        .collect()
}

#[tokio::test]
async fn todays_schema_is_ready_to_shard_by_organization() {
    let db = migrated_database().await;
    assert_eq!(findings(&db).await, BTreeSet::new());
    // The same file, as a DBA runs it.
    assert_eq!(psql_file(&db, "15_shard_key.sql", "tenant_files_app"), "");

    // A gap fails the audit the binary runs (and so `make test`), naming it.
    as_superuser(&db, "create unique index users_email_everywhere on app.users (lower(email))").await;
    let binary = Command::new(env!("CARGO_BIN_EXE_tenant-files"))
        .arg("--mode=rls-audit")
        .arg(format!("--audit-database-url={}", db_url("tenant_files_owner", &db)))
        .output()
        .expect("run the binary");
    assert!(!binary.status.success(), "a finding fails the mode");
    let text = String::from_utf8(binary.stdout).unwrap();
    assert!(
        text.contains(
            "FAIL    shard_key: unique index users_email_everywhere (lower(email)) does not include organization_id"
        ),
        "{text}"
    );
}

/// Each kind of gap, planted, with the findings it must add (object and the reason's start);
/// the last one is a reference that carries the organization, which adds nothing.
const PLANTED: &[(&str, &[&str])] = &[
    // (A primary key makes its columns NOT NULL, and every tenant table's includes the key.)
    ("create table app.drafts (organization_id uuid, body text)", &["table app.drafts: organization_id may be"]),
    (
        "create unique index api_tokens_name_key on app.api_tokens (name, id)",
        &["table app.api_tokens: unique index api_tokens_name_key"],
    ),
    (
        // (Since V25 no unique index on users' id alone remains to reference; files are not
        // used here because a partitioned files table, `make test-partitioned`, refuses one.)
        "create unique index users_id_key on app.users (id);
         alter table app.api_tokens add constraint api_tokens_user_alone foreign key (user_id) references app.users (id)",
        &["table app.users: unique index users_id_key", "table app.api_tokens: foreign key api_tokens_user_alone"],
    ),
    (
        "create table app.plans (id int primary key);
         alter table app.organizations add column plan_id int constraint organizations_plan_fkey references app.plans",
        &["table app.organizations: foreign key organizations_plan_fkey"],
    ),
    (
        // A directory (V27) is distributed by its own key: it can join no table by reference.
        "alter table app.user_emails add constraint user_emails_user_fkey
           foreign key (organization_id, user_id) references app.users (organization_id, id)",
        &["table app.user_emails: foreign key user_emails_user_fkey"],
    ),
    (
        "create table app.notes (id int primary key, org uuid constraint notes_org_fkey references app.organizations (id))",
        &["table app.notes: foreign key notes_org_fkey"],
    ),
    (
        "alter table app.share_links add constraint share_links_file_again
           foreign key (organization_id, file_id) references app.files (organization_id, id)",
        &[],
    ),
];

#[tokio::test]
async fn each_kind_of_gap_is_reported_as_exactly_that_finding() {
    for (gap, expected) in PLANTED {
        let db = migrated_database().await;
        let before = findings(&db).await;
        as_superuser(&db, gap).await;
        let after = findings(&db).await;

        assert!(before.is_subset(&after), "{gap} removed a finding");
        let added: BTreeSet<(String, String)> = after.difference(&before).cloned().collect();
        assert_eq!(short(&added), expected.iter().map(|e| (*e).to_owned()).collect(), "{gap}: {added:?}");
    }
}

/// docs/scaling.md says, for every function of the audited registry, what it reads across
/// organizations and how it runs once the tables are distributed (a function added to the
/// registry without its line there fails here).
#[test]
fn the_distribution_plan_covers_every_registry_function() {
    let sql = include_str!("../../sql/audit/08_definer_functions.sql");
    let registered: BTreeSet<String> = sql
        .lines()
        .filter_map(|l| l.trim().strip_prefix("('app.").map(|rest| rest.split('(').next().unwrap().to_owned()))
        .collect();
    let docs = include_str!("../../docs/scaling.md");
    let plan = docs.split("**What the definer registry becomes**").nth(1).expect("the plan's registry table");
    let table: Vec<&str> = plan
        .lines()
        .skip_while(|l| !l.trim_start().starts_with('|'))
        .take_while(|l| l.trim_start().starts_with('|'))
        .collect();
    let first_column = |row: &&str| row.trim_start().trim_start_matches('|').split('|').next().unwrap_or("").to_owned();
    let documented: String = table.iter().map(first_column).collect();
    let missing: Vec<&String> = registered.iter().filter(|name| !documented.contains(&format!("`{name}`"))).collect();
    assert!(!registered.is_empty());
    assert!(missing.is_empty(), "not in docs/scaling.md's registry table: {missing:?}");
}
