use reqwest::{header, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_error, random_email, spawn_app, spawn_app_with, Settings, PASSWORD};

#[tokio::test]
async fn register_creates_an_organization_owned_by_the_caller_and_signs_them_in() {
    let app = spawn_app().await;
    let client = app.client();
    let email = random_email();

    let response = client
        .post(app.url("/api/auth/register"))
        .json(&json!({ "email": email, "password": PASSWORD, "organization_name": "Acme Widgets" }))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["email"], email);
    assert_eq!(body["role"], "owner");
    assert!(body["csrf_token"].as_str().unwrap().len() >= 32);
    let me: Value = client.get(app.url("/api/auth/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["user_id"], body["user_id"]);
    assert_eq!(me["organization_id"], body["organization_id"]);
    assert_eq!(me["organization_name"], "Acme Widgets");
    assert_eq!(me["role"], "owner");
    assert_eq!(me["csrf_token"], body["csrf_token"]);
}

#[tokio::test]
async fn register_refuses_an_existing_organization_name_or_email_case_insensitively() {
    let app = spawn_app().await;
    let register = |email: String, org: &'static str| {
        let client = app.client();
        let url = app.url("/api/auth/register");
        async move {
            client
                .post(url)
                .json(&json!({ "email": email, "password": PASSWORD, "organization_name": org }))
                .send()
                .await
                .unwrap()
        }
    };
    let email = random_email();
    assert_eq!(register(email.clone(), "Globex").await.status(), StatusCode::CREATED);

    assert_error(register(random_email(), "gLOBEX").await, StatusCode::CONFLICT, "organization_name_taken").await;
    assert_error(register(email.to_uppercase(), "Initech").await, StatusCode::CONFLICT, "email_taken").await;

    // Nobody joined Globex and the refused registrations left no organization behind.
    let db = app.superuser().await;
    let orgs: i64 = db.query_one("select count(*) from app.organizations", &[]).await.unwrap().get(0);
    let users: i64 = db.query_one("select count(*) from app.users", &[]).await.unwrap().get(0);
    assert_eq!((orgs, users), (1, 1));
}

#[tokio::test]
async fn register_rejects_bad_input_with_400_and_writes_nothing() {
    let app = spawn_app().await;
    let client = app.client();
    let url = app.url("/api/auth/register");
    let valid = json!({ "email": random_email(), "password": PASSWORD, "organization_name": "Valid" });
    let with = |field: &str, value: Value| {
        let mut body = valid.clone();
        body[field] = value;
        body
    };
    let cases = [
        (with("password", json!("short")), "invalid_password"),
        (with("password", json!("a".repeat(73))), "invalid_password"),
        (with("password", json!("€".repeat(25))), "invalid_password"),
        (with("email", json!("not-an-email")), "invalid_email"),
        (with("organization_name", json!("   ")), "invalid_organization_name"),
        (with("organization_name", json!("a".repeat(201))), "invalid_organization_name"),
        (with("email", json!(42)), "invalid_body"),
        (json!({ "email": random_email(), "password": PASSWORD }), "invalid_body"),
        (with("organization_id", json!("00000000-0000-0000-0000-000000000000")), "invalid_body"),
    ];
    for (body, code) in cases {
        let response = client.post(&url).json(&body).send().await.unwrap();
        assert_error(response, StatusCode::BAD_REQUEST, code).await;
    }

    let malformed = client
        .post(&url)
        .header(header::CONTENT_TYPE, "application/json")
        .body(r#"{"email": "a@b.c", "#)
        .send()
        .await
        .unwrap();
    assert_error(malformed, StatusCode::BAD_REQUEST, "invalid_json").await;

    let not_json = client.post(&url).body("email=a@b.c").send().await.unwrap();
    assert_error(not_json, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;

    let huge = client
        .post(&url)
        .header(header::CONTENT_TYPE, "application/json")
        .body(format!(r#"{{"email": "{}"}}"#, "a".repeat(200 * 1024)))
        .send()
        .await
        .unwrap();
    assert_error(huge, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large").await;

    let db = app.superuser().await;
    let orgs: i64 = db.query_one("select count(*) from app.organizations", &[]).await.unwrap().get(0);
    assert_eq!(orgs, 0);
}

#[tokio::test]
async fn login_answers_the_same_401_for_unknown_email_wrong_password_and_deactivated_user() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let deactivated = app.add_user(&owner, "member").await;
    app.as_user(&owner, &format!("update app.users set is_active = false where id = '{}'", deactivated.user_id)).await;
    let client = app.client();

    let mut bodies = Vec::new();
    for (email, password) in [
        (random_email(), PASSWORD.to_owned()),
        (owner.email.clone(), "wrong password".to_owned()),
        (deactivated.email.clone(), PASSWORD.to_owned()),
    ] {
        let response = app.post_login(&client, &email, &password).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{email}");
        bodies.push(response.text().await.unwrap());
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "identical bodies: {bodies:?}");
    let body: Value = serde_json::from_str(&bodies[0]).unwrap();
    assert_eq!(body["error"]["code"], "invalid_credentials");
}

#[tokio::test]
async fn login_with_any_case_of_the_email_signs_in_and_rotates_the_session_id() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let client = app.client();

    let first = app.post_login(&client, &owner.email.to_uppercase(), PASSWORD).await;
    assert_eq!(first.status(), StatusCode::OK);
    let first_cookie = session_cookie(&first);
    let second = app.post_login(&client, &owner.email, PASSWORD).await;
    assert_eq!(second.status(), StatusCode::OK);
    let second_cookie = session_cookie(&second);

    assert_ne!(first_cookie, second_cookie, "a login must issue a new session id");
    let body: Value = second.json().await.unwrap();
    assert_eq!(body["user_id"], owner.user_id);
    assert_eq!(body["role"], "owner");
    // The session replaced by the second login is gone server-side.
    let replay = app.client().get(app.url("/api/auth/me")).header(header::COOKIE, first_cookie).send().await.unwrap();
    assert_error(replay, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    let current = app.client().get(app.url("/api/auth/me")).header(header::COOKIE, second_cookie).send().await.unwrap();
    assert_eq!(current.status(), StatusCode::OK);
}

#[tokio::test]
async fn repeated_failed_logins_answer_429_even_for_the_right_password() {
    let app = spawn_app_with(Settings { login_max_failures: 3, ..Settings::default() }).await;
    let owner = app.register_org().await;
    let client = app.client();
    for _ in 0..3 {
        let response = app.post_login(&client, &owner.email, "wrong password").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }

    assert_error(
        app.post_login(&client, &owner.email, "wrong password").await,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
    )
    .await;
    assert_error(
        app.post_login(&client, &owner.email, PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
    )
    .await;
    // Another account is not affected.
    let other = app.register_org().await;
    assert_eq!(app.post_login(&client, &other.email, PASSWORD).await.status(), StatusCode::OK);
}

/// Every attempt takes its slot before the password is checked: parallel guesses cannot all
/// be evaluated because each read "no failures yet" before any of them was counted.
#[tokio::test]
async fn parallel_wrong_guesses_are_evaluated_at_most_the_limit() {
    let app = spawn_app_with(Settings { login_max_failures: 5, ..Settings::default() }).await;
    let owner = app.register_org().await;

    let guesses = (0..30).map(|_| {
        let client = app.client();
        let (app, email) = (&app, owner.email.clone());
        async move { app.post_login(&client, &email, "wrong password").await.status() }
    });
    let statuses = futures_util::future::join_all(guesses).await;

    let evaluated = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    let throttled = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!((evaluated, throttled), (5, 25), "statuses: {statuses:?}");
    // The failed guesses are in the audit log; the throttled ones never reached the password.
    let logged: i64 = app
        .superuser()
        .await
        .query_one("select count(*) from app.audit_log where action = 'login_failed'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(logged, 5);
}

/// A success gives the email its attempts back.
#[tokio::test]
async fn a_successful_login_resets_the_attempts() {
    let app = spawn_app_with(Settings { login_max_failures: 2, ..Settings::default() }).await;
    let owner = app.register_org().await;
    let client = app.client();
    for _ in 0..3 {
        assert_eq!(app.post_login(&client, &owner.email, "wrong password").await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(app.post_login(&client, &owner.email, PASSWORD).await.status(), StatusCode::OK);
    }
}

/// One address cannot spend the process's bcrypt slots on sign-ins without bound, whatever
/// emails it tries; other endpoints are not limited.
#[tokio::test]
async fn sign_ins_from_one_address_are_rate_limited() {
    let app = spawn_app_with(Settings { auth_rate_burst: 3, auth_rate_per_minute: 1, ..Settings::default() }).await;
    let client = app.client();
    for _ in 0..3 {
        let response = app.post_login(&client, &random_email(), "wrong password").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }

    assert_error(
        app.post_login(&client, &random_email(), PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
    )
    .await;
    let register = client
        .post(app.url("/api/auth/register"))
        .json(&json!({ "email": random_email(), "password": PASSWORD, "organization_name": "late" }))
        .send()
        .await
        .unwrap();
    assert_error(register, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    assert_eq!(client.get(app.url("/healthz")).send().await.unwrap().status(), StatusCode::OK);
}

/// The session is saved after the handler's own work has committed (a registration's user row,
/// a login's audit entry). A database blip at that moment is "retry later", a 503 with the
/// JSON body, never an opaque 500; nothing half-done stops the retry from working.
#[tokio::test]
async fn a_database_blip_while_saving_the_session_answers_503_json() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    // Every session write fails as a terminated connection would (SQLSTATE 57P01).
    app.superuser()
        .await
        .batch_execute(
            "create function app.test_blip() returns trigger language plpgsql as
               $$ begin raise exception 'blip' using errcode = '57P01'; end $$;
             create trigger test_blip before insert or update on app.sessions
               for each row execute function app.test_blip();",
        )
        .await
        .unwrap();

    let register = app
        .client()
        .post(app.url("/api/auth/register"))
        .json(&json!({ "email": random_email(), "password": PASSWORD, "organization_name": "blip" }))
        .send()
        .await
        .unwrap();
    assert_error(register, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    let login = app.post_login(&app.client(), &owner.email, PASSWORD).await;
    assert_error(login, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;

    app.superuser().await.batch_execute("drop trigger test_blip on app.sessions").await.unwrap();
    assert_eq!(app.post_login(&app.client(), &owner.email, PASSWORD).await.status(), StatusCode::OK);
}

/// No connection slot left (SQLSTATE 53300, what a pooler passes on when PostgreSQL is full) is
/// "retry later" too: a 503, never a 500.
#[tokio::test]
async fn a_database_out_of_connection_slots_answers_503_json() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    app.superuser()
        .await
        .batch_execute(
            "create function app.test_full() returns trigger language plpgsql as
               $$ begin raise exception 'full' using errcode = '53300'; end $$;
             create trigger test_full before insert on app.files
               for each row execute function app.test_full();",
        )
        .await
        .unwrap();
    assert_error(owner.upload("notes.txt", "words").await, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    app.superuser().await.batch_execute("drop trigger test_full on app.files").await.unwrap();
    assert_eq!(owner.upload("notes.txt", "words").await.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn logout_ends_the_session_server_side() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let client = app.client();
    let login = app.post_login(&client, &owner.email, PASSWORD).await;
    let cookie = session_cookie(&login);
    let csrf = login.json::<Value>().await.unwrap()["csrf_token"].as_str().unwrap().to_owned();

    let response = client.post(app.url("/api/auth/logout")).header("X-CSRF-Token", &csrf).send().await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({ "success": true }));
    // Replaying the old cookie (as a thief who copied it would) no longer works.
    let replay = app.client().get(app.url("/api/auth/me")).header(header::COOKIE, cookie).send().await.unwrap();
    assert_error(replay, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    let sessions: i64 = app
        .superuser()
        .await
        .query_one(
            "select count(*) from app.sessions s join app.users u on u.organization_id = s.organization_id and u.id = s.user_id where u.email = $1",
            &[&owner.email],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(sessions, 1, "only the helper's own session of this user remains");
}

/// A CSRF token belongs to its session: two sign-ins of one user get two tokens, `me` hands
/// each session its own, one session's token does not pass for the other's, and the database
/// (a leaked `sessions` table, say) holds neither.
#[tokio::test]
async fn a_csrf_token_is_its_sessions_own_and_stored_nowhere() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let (first, second) = (app.client(), app.client());
    let mut tokens = Vec::new();
    for client in [&first, &second] {
        let login = app.post_login(client, &owner.email, PASSWORD).await;
        tokens.push(login.json::<Value>().await.unwrap()["csrf_token"].as_str().unwrap().to_owned());
    }
    assert_ne!(tokens[0], tokens[1]);
    for (client, token) in [(&first, &tokens[0]), (&second, &tokens[1])] {
        let me: Value = client.get(app.url("/api/auth/me")).send().await.unwrap().json().await.unwrap();
        assert_eq!(me["csrf_token"].as_str(), Some(token.as_str()));
    }

    let crossed = first.post(app.url("/api/auth/logout")).header("X-CSRF-Token", &tokens[1]).send().await.unwrap();
    assert_error(crossed, StatusCode::FORBIDDEN, "csrf_failed").await;
    let stored: Vec<String> = app
        .superuser()
        .await
        .query("select s.state::text || s.key_hash::text from app.sessions s", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(!stored.is_empty());
    assert!(stored.iter().all(|row| tokens.iter().all(|token| !row.contains(token.as_str()))), "{stored:?}");
    let own = first.post(app.url("/api/auth/logout")).header("X-CSRF-Token", &tokens[0]).send().await.unwrap();
    assert_eq!(own.status(), StatusCode::OK);
}

#[tokio::test]
async fn auth_endpoints_require_a_session_and_logout_requires_the_csrf_token() {
    let app = spawn_app().await;
    let anonymous = app.client();
    assert_error(
        anonymous.get(app.url("/api/auth/me")).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
    assert_error(
        anonymous.post(app.url("/api/auth/logout")).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;

    let owner = app.register_org().await;
    let no_token = owner.client.post(app.url("/api/auth/logout")).send().await.unwrap();
    assert_error(no_token, StatusCode::FORBIDDEN, "csrf_failed").await;
    let wrong_token =
        owner.client.post(app.url("/api/auth/logout")).header("X-CSRF-Token", "0".repeat(64)).send().await.unwrap();
    assert_error(wrong_token, StatusCode::FORBIDDEN, "csrf_failed").await;
    assert_eq!(owner.me().await.status(), StatusCode::OK, "the refused logouts changed nothing");
}

#[tokio::test]
async fn a_deactivated_users_live_session_stops_working_at_once() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let member = app.add_user(&owner, "member").await;
    assert_eq!(member.me().await.status(), StatusCode::OK);

    app.as_user(&owner, &format!("update app.users set is_active = false where id = '{}'", member.user_id)).await;

    assert_error(member.me().await, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    assert_error(member.list("").await, StatusCode::UNAUTHORIZED, "unauthenticated").await;
}

/// Reads resolve the session in their own transaction, other requests before anything runs:
/// an expired session is refused the same way by both, and a read refused that way shows
/// nothing (the database refuses before the read's statement runs).
#[tokio::test]
async fn an_expired_session_is_refused_by_reads_and_writes_alike() {
    let app = spawn_app().await;
    let owner = app.register_org().await;
    let file = owner.upload_ok("kept.txt", "kept").await;
    assert_eq!(owner.get(&format!("/api/files/{file}")).await.status(), StatusCode::OK);

    app.superuser()
        .await
        .execute(
            "update app.sessions set expires_at = now() - interval '1 second' where user_id = $1::text::uuid",
            &[&owner.user_id],
        )
        .await
        .unwrap();

    for read in [
        format!("/api/files/{file}"),
        format!("/api/files/{file}/download"),
        "/api/files".to_owned(),
        "/api/auth/me".to_owned(),
        "/api/org".to_owned(),
        "/api/tokens".to_owned(),
        "/api/org/users".to_owned(),
    ] {
        assert_error(owner.get(&read).await, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    }
    let rename = owner.patch(&format!("/api/files/{file}"), json!({ "filename": "renamed.txt" })).await;
    assert_error(rename, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    let name: String = app
        .superuser()
        .await
        .query_one("select filename from app.files where id = $1::text::uuid", &[&file])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "kept.txt");
}

#[tokio::test]
async fn session_cookie_is_http_only_lax_and_host_prefixed_when_secure() {
    let dev = spawn_app().await;
    let dev_login = dev
        .client()
        .post(dev.url("/api/auth/register"))
        .json(&json!({ "email": random_email(), "password": PASSWORD, "organization_name": "Dev" }))
        .send()
        .await
        .unwrap();
    let dev_cookie = set_cookie(&dev_login);
    assert!(dev_cookie.starts_with("tf_session="), "{dev_cookie}");
    assert!(
        dev_cookie.contains("HttpOnly") && dev_cookie.contains("SameSite=Lax") && dev_cookie.contains("Path=/"),
        "{dev_cookie}"
    );
    assert!(!dev_cookie.contains("Secure"), "{dev_cookie}");

    let secure = spawn_app_with(Settings { cookie_secure: true, ..Settings::default() }).await;
    let login = secure
        .client()
        .post(secure.url("/api/auth/register"))
        .json(&json!({ "email": random_email(), "password": PASSWORD, "organization_name": "Prod" }))
        .send()
        .await
        .unwrap();
    let cookie = set_cookie(&login);
    assert!(cookie.starts_with("__Host-tf_session="), "{cookie}");
    assert!(cookie.contains("Secure") && cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(!cookie.contains("Domain="), "a __Host- cookie is host-only: {cookie}");
}

fn set_cookie(response: &reqwest::Response) -> String {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.contains("tf_session="))
        .expect("a session cookie is set")
}

/// `name=value` of the session cookie a response set, ready for a Cookie header.
fn session_cookie(response: &reqwest::Response) -> String {
    set_cookie(response).split(';').next().unwrap().to_owned()
}
