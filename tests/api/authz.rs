//! One test (or more) per known multi-tenant authorization flaw, named after it
//! (TMKB-AUTHZ-001…012). docs/security.md maps each to the mechanism that stops it.

use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{
    assert_error, random_email, spawn_app, spawn_app_with, Bearer, Settings, TestApp, TestUser, PASSWORD,
};

/// An organization with an owner, an admin and a member, each with one file, one invitation
/// and a token of the owner's.
struct Org {
    owner: TestUser,
    admin: TestUser,
    member: TestUser,
    owner_file: String,
    member_file: String,
    invitation: String,
    token: String,
}

async fn org(app: &TestApp) -> Org {
    let owner = app.register_org().await;
    let admin = app.add_user(&owner, "admin").await;
    let member = app.add_user(&owner, "member").await;
    let owner_file = owner.upload_ok("owner.txt", "o").await;
    let member_file = member.upload_ok("member.txt", "m").await;
    owner.invite_ok(&random_email(), "member").await;
    let invitation = owner.ids_at("/api/org/invitations", "invitations").await[0].clone();
    let (token, _) = owner.create_token("ci").await;
    Org { owner, admin, member, owner_file, member_file, invitation, token }
}

#[tokio::test]
async fn tmkb_authz_001_a_background_job_does_not_outlive_the_callers_authorization() {
    let app = spawn_app_with(Settings { worker_prefetch: 1, ..Settings::default() }).await;
    let owner = app.register_org().await;
    let member = app.add_user(&owner, "member").await;
    let queued = member.upload_ok("queued.txt", "queued while active").await;
    assert_eq!(owner.deactivate(&member.user_id).await.status(), StatusCode::OK);

    let _worker = app.start_worker();
    let sentinel = owner.upload_ok("sentinel.txt", "after").await;
    app.wait_for_status(&owner, &sentinel, "ready").await;

    let detail: Value = owner.get_file(&queued).await.json().await.unwrap();
    assert_eq!(detail["status"], "pending", "the deactivated user's job was refused");
    // Refused, not merely never delivered: the worker took it, found it stale, and acked it.
    let outcomes = &app.metrics.jobs_processed;
    assert_eq!((outcomes.with_label_values(&["refused"]).get(), outcomes.with_label_values(&["ready"]).get()), (1, 1));
    assert_eq!(app.queue_depth(&app.topology().work_queue).await, 0);
    // (Forged organizations and users: worker::forged_messages_change_nothing_and_are_acknowledged.)
}

#[tokio::test]
async fn tmkb_authz_002_every_listed_id_answers_on_detail_and_no_foreign_or_deleted_one_does() {
    let app = spawn_app().await;
    let a = org(&app).await;
    let b = org(&app).await;
    let gone = a.owner.upload_ok("gone.txt", "g").await;
    a.owner.delete(&gone).await;
    let (revoked, _) = a.owner.create_token("revoked").await;
    a.owner.delete_path(&format!("/api/tokens/{revoked}")).await;

    let resources = [
        ("/api/files", "files", "/api/files"),
        ("/api/org/users", "users", "/api/org/users"),
        ("/api/org/invitations", "invitations", "/api/org/invitations"),
        ("/api/org/audit?limit=100", "entries", "/api/org/audit"),
        ("/api/tokens", "tokens", "/api/tokens"),
    ];
    for (list, key, detail) in resources {
        let own = a.owner.ids_at(list, key).await;
        let foreign = b.owner.ids_at(list, key).await;
        assert!(!own.is_empty() && !foreign.is_empty(), "{list}");
        for id in &own {
            assert_eq!(a.owner.get(&format!("{detail}/{id}")).await.status(), StatusCode::OK, "{detail}/{id}");
        }
        for id in &foreign {
            assert!(!own.contains(id));
            assert_error(a.owner.get(&format!("{detail}/{id}")).await, StatusCode::NOT_FOUND, "not_found").await;
        }
    }
    assert!(!a.owner.ids_at("/api/files", "files").await.contains(&gone));
    assert!(!a.owner.ids_at("/api/tokens", "tokens").await.contains(&revoked));
    assert_error(a.owner.get(&format!("/api/files/{gone}")).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_error(a.owner.get(&format!("/api/tokens/{revoked}")).await, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn tmkb_authz_003_a_soft_deleted_file_cannot_be_resurrected() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let id = owner.upload_ok("deleted.txt", "x").await;
    assert_eq!(owner.delete(&id).await.status(), StatusCode::NO_CONTENT);

    assert_error(owner.rename(&id, json!({ "filename": "back.txt" })).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_error(owner.rename(&id, json!({ "deleted_at": null })).await, StatusCode::BAD_REQUEST, "invalid_body").await;
    assert_error(owner.download(&id).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_error(owner.bulk_delete(&[&id]).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_error(owner.delete(&id).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_error(owner.get_file(&id).await, StatusCode::NOT_FOUND, "not_found").await;
    // The database refuses too, whoever asks.
    let undelete =
        app.superuser().await.execute("update app.files set deleted_at = null where id = $1::text::uuid", &[&id]).await;
    assert!(undelete.is_err());
}

#[tokio::test]
async fn tmkb_authz_004_every_tenant_table_is_guarded_by_the_database() {
    let app = spawn_app().await;
    let a = org(&app).await;
    let _b = org(&app).await;
    let db = app.app_role().await;
    let tables = ["organizations", "users", "files", "invitations", "api_tokens", "audit_log", "upload_reservations"];
    for table in tables {
        let rows: i64 = db.query_one(&format!("select count(*) from app.{table}"), &[]).await.unwrap().get(0);
        assert_eq!(rows, 0, "app.{table} without a tenant context");
    }
    // The queues the worker reads through the registry are not even readable by the app role.
    for table in ["outbox", "purge_queue"] {
        let refused = db.query_one(&format!("select count(*) from app.{table}"), &[]).await.unwrap_err();
        assert_eq!(refused.code(), Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "app.{table}");
    }
    db.batch_execute("begin").await.unwrap();
    db.query(
        "select set_config('app.org_id', $1, true), set_config('app.user_id', $2, true)",
        &[&a.owner.org_id, &a.owner.user_id],
    )
    .await
    .unwrap();
    for table in ["users", "files", "invitations", "api_tokens", "audit_log"] {
        let foreign: i64 = db
            .query_one(
                &format!("select count(*) from app.{table} where organization_id <> $1::text::uuid"),
                &[&a.owner.org_id],
            )
            .await
            .unwrap()
            .get(0);
        let own: i64 = db.query_one(&format!("select count(*) from app.{table}"), &[]).await.unwrap().get(0);
        assert_eq!(foreign, 0, "app.{table} shows another tenant");
        assert!(own > 0, "app.{table} shows the tenant's own rows");
    }
}

#[tokio::test]
async fn tmkb_authz_005_users_never_act_as_one_another() {
    let app = spawn_app().await;
    let o = org(&app).await;
    // Same organization: the member sees the owner's file but may not change it.
    assert_eq!(o.member.get_file(&o.owner_file).await.status(), StatusCode::OK);
    assert_error(o.member.delete(&o.owner_file).await, StatusCode::FORBIDDEN, "forbidden").await;
    assert_error(o.member.rename(&o.owner_file, json!({ "filename": "x" })).await, StatusCode::FORBIDDEN, "forbidden")
        .await;
    assert_eq!(o.admin.rename(&o.member_file, json!({ "filename": "by-admin.txt" })).await.status(), StatusCode::OK);

    // Tokens are their owner's alone: another user (even an admin) neither sees nor revokes them.
    assert!(o.admin.ids_at("/api/tokens", "tokens").await.is_empty());
    assert_error(o.admin.get(&format!("/api/tokens/{}", o.token)).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_error(o.admin.delete_path(&format!("/api/tokens/{}", o.token)).await, StatusCode::NOT_FOUND, "not_found")
        .await;

    // A member's token acts as the member, with the member's rights.
    let (_, secret) = o.member.create_token("mine").await;
    let script = Bearer::new(&app, &secret);
    let me: Value = script.request(Method::GET, "/api/auth/me").send().await.unwrap().json().await.unwrap();
    assert_eq!(me["user_id"], o.member.user_id);
    let delete = script.request(Method::DELETE, &format!("/api/files/{}", o.owner_file)).send().await.unwrap();
    assert_error(delete, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn tmkb_authz_006_mass_assignment_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    let o = org(&app).await;
    for body in [
        json!({ "filename": "x.txt", "organization_id": Uuid::new_v4() }),
        json!({ "filename": "x.txt", "uploaded_by": o.member.user_id }),
        json!({ "filename": "x.txt", "status": "ready" }),
        json!({ "filename": "x.txt", "id": Uuid::new_v4() }),
        json!({ "filename": "x.txt", "size": 1 }),
    ] {
        assert_error(o.owner.rename(&o.owner_file, body).await, StatusCode::BAD_REQUEST, "invalid_body").await;
    }
    for body in [
        json!({ "role": "admin", "is_active": false }),
        json!({ "role": "admin", "organization_id": Uuid::new_v4() }),
        json!({ "role": "admin", "email": "x@example.com" }),
        json!({ "role": "admin", "id": Uuid::new_v4() }),
        json!({ "is_active": false }),
        json!({ "role": "superuser" }),
    ] {
        let response = o.owner.patch(&format!("/api/org/users/{}", o.member.user_id), body).await;
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_body").await;
    }
    // A member may not set a role at all, not even on themselves.
    assert_error(o.member.set_role(&o.member.user_id, "owner").await, StatusCode::FORBIDDEN, "forbidden").await;

    let file: Value = o.owner.get_file(&o.owner_file).await.json().await.unwrap();
    assert_eq!((file["filename"].as_str(), file["status"].as_str()), (Some("owner.txt"), Some("pending")));
    let member: Value = o.owner.get(&format!("/api/org/users/{}", o.member.user_id)).await.json().await.unwrap();
    assert_eq!((member["role"].as_str(), member["is_active"].as_bool()), (Some("member"), Some(true)));
}

#[tokio::test]
async fn tmkb_authz_007_foreign_ids_answer_exactly_like_random_ones() {
    let app = spawn_app().await;
    let a = org(&app).await;
    let b = org(&app).await;
    let b_entry = b.owner.ids_at("/api/org/audit", "entries").await[0].clone();
    for (path, foreign) in [
        ("/api/files", &b.owner_file),
        ("/api/org/users", &b.member.user_id),
        ("/api/org/invitations", &b.invitation),
        ("/api/org/audit", &b_entry),
        ("/api/tokens", &b.token),
    ] {
        let foreign_answer = a.owner.get(&format!("{path}/{foreign}")).await;
        let random_answer = a.owner.get(&format!("{path}/{}", Uuid::new_v4())).await;
        let malformed_answer = a.owner.get(&format!("{path}/1")).await;
        assert_eq!(foreign_answer.status(), StatusCode::NOT_FOUND, "{path}");
        let foreign_body = foreign_answer.text().await.unwrap();
        assert_eq!(foreign_body, random_answer.text().await.unwrap(), "{path}");
        assert_eq!(foreign_body, malformed_answer.text().await.unwrap(), "{path}");
    }
    assert!(Uuid::parse_str(&a.owner_file).unwrap().get_version_num() == 4, "ids are random v4 UUIDs");
}

#[tokio::test]
async fn tmkb_authz_008_method_override_headers_and_parameters_are_ignored() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let id = owner.upload_ok("keep.txt", "k").await;
    for (header, query) in [(Some("DELETE"), ""), (None, "?_method=DELETE"), (Some("PATCH"), "?_method=DELETE")] {
        let mut request = owner.changing(Method::POST, &format!("/api/files/{id}{query}"));
        if let Some(method) = header {
            request = request.header("X-HTTP-Method-Override", method).header("X-Method-Override", method);
        }
        // POST /api/files/{id} is no route, whatever the headers or parameters say.
        assert_error(request.send().await.unwrap(), StatusCode::NOT_FOUND, "not_found").await;
    }
    let get_override = owner
        .client
        .get(app.url(&format!("/api/files/{id}")))
        .header("X-HTTP-Method-Override", "DELETE")
        .send()
        .await
        .unwrap();
    assert_eq!(get_override.status(), StatusCode::OK, "a GET stays a GET");
    assert_eq!(owner.get_file(&id).await.status(), StatusCode::OK, "the file is still there");
}

#[tokio::test]
async fn tmkb_authz_009_only_listed_role_transitions_are_allowed() {
    let app = spawn_app().await;
    let o = org(&app).await;
    let other_member = app.add_user(&o.owner, "member").await;
    let refused = [
        (&o.member, &o.member.user_id, "admin"),     // a member promotes themselves
        (&o.member, &other_member.user_id, "admin"), // a member promotes another
        (&o.admin, &o.member.user_id, "admin"),      // admins grant no admin
        (&o.admin, &o.owner.user_id, "member"),      // admins revoke no owner
        (&o.admin, &o.admin.user_id, "owner"),       // nobody changes their own role
        (&o.owner, &o.owner.user_id, "member"),      // not even the owner (the last one)
    ];
    for (actor, target, role) in refused {
        assert_error(actor.set_role(target, role).await, StatusCode::FORBIDDEN, "forbidden").await;
    }
    // Nobody deactivates the last owner, the owner included; admins touch no owner.
    assert_error(o.owner.deactivate(&o.owner.user_id).await, StatusCode::FORBIDDEN, "forbidden").await;
    assert_error(o.admin.deactivate(&o.owner.user_id).await, StatusCode::FORBIDDEN, "forbidden").await;
    assert_error(o.member.deactivate(&other_member.user_id).await, StatusCode::FORBIDDEN, "forbidden").await;

    // Allowed: an owner grants and revokes owner and admin.
    assert_eq!(o.owner.set_role(&o.admin.user_id, "owner").await.status(), StatusCode::OK);
    let second_owner = app.login(&o.admin.email, PASSWORD).await;
    assert_eq!(second_owner.set_role(&o.owner.user_id, "admin").await.status(), StatusCode::OK);
    assert_eq!(second_owner.set_role(&o.owner.user_id, "owner").await.status(), StatusCode::OK);

    // Two owners demoting each other at the same time: one must lose, an owner remains.
    let first = app.login(&o.owner.email, PASSWORD).await;
    let results =
        join_all([first.set_role(&second_owner.user_id, "member"), second_owner.set_role(&first.user_id, "member")])
            .await;
    let mut answers = Vec::new();
    for response in results {
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        answers.push((status, body["error"]["code"].as_str().unwrap_or("").to_owned()));
    }
    answers.sort();
    // The loser is refused with the contract's body: by the last-owner rule when the two
    // overlap in the database, or by the handler's role check when it already saw the demotion.
    let loser = &answers[1];
    assert_eq!(answers[0].0, StatusCode::OK, "{answers:?}");
    assert!(
        *loser == (StatusCode::CONFLICT, "last_owner".to_owned())
            || *loser == (StatusCode::FORBIDDEN, "forbidden".to_owned()),
        "{answers:?}"
    );
    let owners: i64 = app
        .superuser()
        .await
        .query_one(
            "select count(*) from app.users where organization_id = $1::text::uuid and role = 'owner' and is_active",
            &[&o.owner.org_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owners, 1);
}

#[tokio::test]
async fn tmkb_authz_010_relationship_traversal_into_another_organization_is_404() {
    let app = spawn_app().await;
    let a = org(&app).await;
    let b = org(&app).await;
    let foreign = &b.member.user_id;
    assert_error(a.owner.get(&format!("/api/org/users/{foreign}")).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_error(a.owner.set_role(foreign, "admin").await, StatusCode::NOT_FOUND, "not_found").await;
    assert_error(a.owner.deactivate(foreign).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_error(a.owner.reactivate(foreign).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(b.member.me().await.status(), StatusCode::OK, "nothing happened to them");
}

#[tokio::test]
async fn tmkb_authz_011_every_rule_holds_when_endpoints_are_called_directly() {
    let app = spawn_app().await;
    let o = org(&app).await;
    // No client-side gate to rely on: a member calling the admin endpoints directly.
    for path in
        ["/api/org/users", "/api/org/invitations", "/api/org/audit", &format!("/api/org/users/{}", o.admin.user_id)]
    {
        assert_error(o.member.get(path).await, StatusCode::FORBIDDEN, "forbidden").await;
    }
    assert_error(o.member.deactivate(&o.admin.user_id).await, StatusCode::FORBIDDEN, "forbidden").await;
    // Nor on the handler: through the database directly, as the member, the owner's file cannot
    // be changed and the audit log cannot be read.
    let db = app.app_role().await;
    db.batch_execute("begin").await.unwrap();
    db.query(
        "select set_config('app.org_id', $1, true), set_config('app.user_id', $2, true)",
        &[&o.member.org_id, &o.member.user_id],
    )
    .await
    .unwrap();
    let changed = db
        .execute("update app.files set deleted_at = now() where id = $1::text::uuid", &[&o.owner_file])
        .await
        .unwrap();
    assert_eq!(changed, 0, "the restrictive policy hides the owner's file from the member's update");
    let audit: i64 = db.query_one("select count(*) from app.audit_log", &[]).await.unwrap().get(0);
    assert_eq!(audit, 0, "members read no audit log");
    let promoted = db
        .execute("update app.users set role = 'owner' where id = $1::text::uuid", &[&o.member.user_id])
        .await
        .unwrap();
    assert_eq!(promoted, 0, "members update no users");
}

#[tokio::test]
async fn tmkb_authz_012_a_bulk_operation_with_one_forbidden_id_changes_nothing() {
    let app = spawn_app().await;
    let a = org(&app).await;
    let b = org(&app).await;
    let own = a.member.upload_ok("own.txt", "o").await;
    assert_error(a.member.bulk_delete(&[&own, &b.owner_file]).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_error(a.member.bulk_delete(&[&own, &a.owner_file]).await, StatusCode::FORBIDDEN, "forbidden").await;
    assert_eq!(a.member.get_file(&own).await.status(), StatusCode::OK);
    assert_eq!(a.member.get_file(&a.owner_file).await.status(), StatusCode::OK);
    assert_eq!(b.owner.get_file(&b.owner_file).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn invitation_tokens_are_single_use_bound_to_their_email_and_expire() {
    let app = spawn_app().await;
    let a = app.register_org().await;
    let b = app.register_org().await;
    let invited = random_email();
    let token = a.invite_ok(&invited, "member").await;
    let register = |email: &str, token: &str| {
        let client = app.client();
        let body = json!({ "email": email, "password": PASSWORD, "invitation_token": token });
        let url = app.url("/api/auth/register");
        async move { client.post(url).json(&body).send().await.unwrap() }
    };

    // For another email.
    assert_error(register(&random_email(), &token).await, StatusCode::BAD_REQUEST, "invalid_invitation").await;
    // Used from org B's signed-in session, with B's own email: still bound to the invited email.
    let from_b = b
        .client
        .post(app.url("/api/auth/register"))
        .json(&json!({ "email": b.email, "password": PASSWORD, "invitation_token": token }))
        .send()
        .await
        .unwrap();
    assert_error(from_b, StatusCode::BAD_REQUEST, "invalid_invitation").await;
    let b_me: Value = b.me().await.json().await.unwrap();
    assert_eq!(b_me["organization_id"], b.org_id, "B's user did not move");
    // Accepted once, then reused.
    assert_eq!(register(&invited, &token).await.status(), StatusCode::CREATED);
    assert_error(register(&invited, &token).await, StatusCode::BAD_REQUEST, "invalid_invitation").await;
    // Expired.
    let late = random_email();
    let expired = a.invite_ok(&late, "member").await;
    app.superuser()
        .await
        .execute("update app.invitations set expires_at = now() - interval '1 second' where email = $1", &[&late])
        .await
        .unwrap();
    assert_error(register(&late, &expired).await, StatusCode::BAD_REQUEST, "invalid_invitation").await;
    // Made up.
    assert_error(register(&random_email(), "tfi_0000").await, StatusCode::BAD_REQUEST, "invalid_invitation").await;
}

#[tokio::test]
async fn a_deactivated_users_session_and_token_stop_at_the_next_request() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let member = app.add_user(&owner, "member").await;
    let (_, secret) = member.create_token("script").await;
    let script = Bearer::new(&app, &secret);
    assert_eq!(script.request(Method::GET, "/api/files").send().await.unwrap().status(), StatusCode::OK);

    assert_eq!(owner.deactivate(&member.user_id).await.status(), StatusCode::OK);

    assert_error(member.me().await, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    assert_error(
        script.request(Method::GET, "/api/files").send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
    let login = app.post_login(&app.client(), &member.email, PASSWORD).await;
    assert_error(login, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let sessions: i64 = app
        .superuser()
        .await
        .query_one("select count(*) from app.sessions where user_id = $1::text::uuid", &[&member.user_id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(sessions, 0, "their sessions are deleted, not just refused");
}
