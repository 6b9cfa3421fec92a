//! `spawn_app()` and a small client per signed-in user, one method per endpoint: the app
//! ([`app`]), its users ([`user`]), its worker and broker ([`worker`]), outages on demand
//! ([`proxy`]), and waiting for what happens in the background.

mod app;
mod proxy;
mod receiver;
mod user;
mod worker;

pub use app::*;
pub use proxy::*;
pub use receiver::Receiver;
pub use user::*;
pub use worker::RunningWorker;

pub use crate::stored::{s3_by_default, s3_endpoint, TestStore, S3_ACCESS_KEY, S3_BUCKET, S3_SECRET_KEY};

/// Polls `check` every 50 ms until it returns `Some` (15 s at most) and returns that value: the
/// one way tests wait for something that happens in the background.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The PgBouncer `make test` starts in front of the test cluster (transaction mode, two server
/// connections per database and user).
pub fn pgbouncer_port() -> u16 {
    std::env::var("TEST_PGBOUNCER_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(64329)
}

/// The PostgreSQL address of the test cluster.
pub fn postgres_addr() -> std::net::SocketAddr {
    let admin: tokio_postgres::Config = admin_url().parse().unwrap();
    let port = admin.get_ports().first().copied().unwrap_or(5432);
    format!("127.0.0.1:{port}").parse().unwrap()
}

/// Opens a transaction on a raw app-role connection and sets the tenant as the helper does:
/// whatever it reads then is what the policies let `user` see, with no handler in between.
pub async fn begin_as(client: &tokio_postgres::Client, user: &TestUser) {
    client.batch_execute("begin").await.unwrap();
    client
        .query(
            "select set_config('app.org_id', $1, true), set_config('app.user_id', $2, true)",
            &[&user.org_id, &user.user_id],
        )
        .await
        .unwrap();
}
