//! `--mode rls-explain` (#26): why may, or may not, this user do that to this file? Four members
//! of one organization (owner, admin, the member who uploaded the file, another member) and a
//! member of another organization, each asked about each command on the file.

use tenant_files::rls_explain;
use uuid::Uuid;

use crate::helpers::{db_url, spawn_app, TestApp, TestUser};

async fn explain(app: &TestApp, user: &TestUser, file: &str) -> rls_explain::Explanation {
    let superuser: tokio_postgres::Config = db_url("postgres", &app.db_name).parse().unwrap();
    let user = Uuid::parse_str(&user.user_id).unwrap();
    rls_explain::run(&superuser, "tenant_files_app", user, "files", Some(Uuid::parse_str(file).unwrap())).await.unwrap()
}

/// (allowed, the start of the reason) per command, in SELECT, INSERT, UPDATE, DELETE order.
fn decisions(explained: &rls_explain::Explanation) -> Vec<(bool, String)> {
    explained.commands.iter().map(|c| c.decision.clone().expect("a row was given")).collect()
}

#[tokio::test]
async fn each_role_gets_the_answer_its_policies_give_for_each_command_on_a_file() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let admin = app.add_user(&owner, "admin").await;
    let uploader = app.add_user(&owner, "member").await;
    let member = app.add_user(&owner, "member").await;
    let outsider = app.register_org().await;
    let file = uploader.upload_ok("theirs.txt", "bytes").await;

    let (yes, no) = (true, false);
    let tenant = "no permissive policy admits the row (false: tenant_isolation";
    let not_self = "refused by restrictive files_insert_as_self";
    let not_theirs = "refused by restrictive files_change_by_uploader_or_manager";
    let no_delete = "the app role holds no DELETE privilege on app.files";
    let expected: [(&TestUser, [(bool, &str); 4]); 5] = [
        (&owner, [(yes, "admitted by tenant_isolation"), (no, not_self), (yes, "admitted"), (no, no_delete)]),
        (&admin, [(yes, "admitted by tenant_isolation"), (no, not_self), (yes, "admitted"), (no, no_delete)]),
        (&uploader, [(yes, "admitted by tenant_isolation"), (yes, "admitted"), (yes, "admitted"), (no, no_delete)]),
        (&member, [(yes, "admitted by tenant_isolation"), (no, not_self), (no, not_theirs), (no, no_delete)]),
        (&outsider, [(no, tenant), (no, tenant), (no, tenant), (no, no_delete)]),
    ];
    for (user, answers) in expected {
        let explained = explain(&app, user, &file).await;
        let got = decisions(&explained);
        for ((command, (allowed, why)), (want_allowed, want_why)) in
            ["SELECT", "INSERT", "UPDATE", "DELETE"].iter().zip(&got).zip(answers)
        {
            assert_eq!(*allowed, want_allowed, "{command} for {}: {why}\n{}", user.email, explained.to_text());
            assert!(why.starts_with(want_why), "{command} for {}: {why}", user.email);
        }
    }

    // What the support engineer reads: every command, its predicate, and this row's answer.
    let text = explain(&app, &member, &file).await.to_text();
    assert!(text.contains("(member) in organization"), "{text}");
    let update = text.split("\nUPDATE\n").nth(1).and_then(|rest| rest.lines().next()).unwrap_or_default();
    for policy in [
        "restrictive files_change_by_uploader_or_manager (USING)",
        "permissive tenant_isolation (WITH CHECK)",
        "permissive tenant_isolation (USING, as the SELECT the command makes)",
    ] {
        assert!(update.contains(policy), "{policy} in {update}");
    }
    assert!(text.contains("this row: REFUSED: refused by restrictive files_change_by_uploader_or_manager"), "{text}");
    assert!(text.contains("DELETE  (not granted to the app role)"), "{text}");
}

/// Without a row it still says what applies; a connection that is itself bound by RLS cannot
/// see what it would explain, and says so.
#[tokio::test]
async fn without_a_row_it_lists_the_predicates_and_it_refuses_a_role_bound_by_rls() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let superuser: tokio_postgres::Config = db_url("postgres", &app.db_name).parse().unwrap();
    let user = Uuid::parse_str(&owner.user_id).unwrap();
    let explained = rls_explain::run(&superuser, "tenant_files_app", user, "files", None).await.unwrap();
    assert!(explained.commands.iter().all(|c| c.decision.is_none()));
    let insert = &explained.commands[1];
    assert!(
        insert.predicate.contains("organization_id = ") && insert.predicate.contains("uploaded_by = "),
        "{}",
        insert.predicate
    );

    let owner_role: tokio_postgres::Config = db_url("tenant_files_owner", &app.db_name).parse().unwrap();
    let refused = rls_explain::run(&owner_role, "tenant_files_app", user, "files", None).await.unwrap_err();
    assert!(refused.to_string().contains("bypasses RLS"), "{refused}");
}
