//! Builds the HTTP application from a [`Config`]: pool, storage, session middleware, routes.

use std::{net::TcpListener, sync::Arc};

use actix_session::{config::CookieContentSecurity, SessionMiddleware};
use actix_web::{
    cookie::{Key, SameSite},
    dev::Server,
    web, App, HttpServer,
};
use anyhow::Context;
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;
use tracing_actix_web::TracingLogger;
use utoipa_actix_web::AppExt;

use crate::{
    auth::{password, session::PgSessionStore, signing::SigningKey},
    config::{Config, PublicUrl},
    http::{self, ApiRootSpan, AppState, ClientLimiter, QueryParameters, RequestBudgets},
    metrics::Metrics,
    queue::BrokerStatus,
    uploads::{Limits, MemoryBudget, Uploads},
};

/// With `Secure`, the `__Host-` prefix makes browsers refuse the cookie unless it is Secure,
/// host-only and Path=/, so a sibling subdomain cannot plant or overwrite it.
const SECURE_COOKIE_NAME: &str = "__Host-tf_session";
const DEV_COOKIE_NAME: &str = "tf_session";

/// The limits' bookkeeping, every `BUDGET_BOOKKEEPING_MS`, off the request path, until the server
/// stops, and once more then, so the last refusals are counted: the per-address limiters forget
/// the clients within their rate again, the request budgets reload the plans' rates and forget
/// idle organizations, and the budgets' refusals are added to the organizations' counts.
fn keep_the_books(state: web::Data<AppState>, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let interval = std::time::Duration::from_millis(state.config.http.budget_bookkeeping_ms);
        let mut every = tokio::time::interval(interval);
        loop {
            let stopping = tokio::select! {
                _ = stop.cancelled() => true,
                _ = every.tick() => false,
            };
            state.sign_in_limiter.forget_recovered();
            state.share_limiter.forget_recovered();
            state.budgets.forget_idle();
            if let Err(e) = bookkeeping_reads(&state).await {
                tracing::warn!(error = %e, "request budgets not refreshed or refusals not counted; trying again later");
            }
            if stopping {
                break;
            }
        }
    })
}

async fn bookkeeping_reads(state: &AppState) -> Result<(), crate::db::DbError> {
    let conn = state.db.system_conn().await?;
    state.db.refusals().flush(&conn).await?;
    state.budgets.set_plans(crate::db::system::request_budgets(&conn).await?.into_iter().collect());
    Ok(())
}

pub struct Application {
    port: u16,
    server: Server,
    /// Stops the process's background tasks (the broker monitor, the bookkeeping) once the
    /// server has stopped.
    stop: CancellationToken,
    /// The limits' bookkeeping, awaited at the end for its last flush.
    books: tokio::task::JoinHandle<()>,
}

impl Application {
    /// Binds the listener (port 0 picks a free one, as tests do) and prepares the server.
    /// Nothing is served until [`Application::run_until_stopped`].
    /// Counts into `metrics`, which a worker in the same process may share.
    pub async fn build(config: Config, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let (db, store) = crate::resources::open_db_and_store(&config)?;
        // The api bounds each organization's share of its pool; the worker does not (its jobs
        // already go out in turns, and one organization's backlog must drain at full rate).
        let db = match config.database.per_org_connections() {
            Some(per_org) => {
                db.with_org_share(per_org, std::time::Duration::from_millis(config.database.db_org_wait_ms))
            }
            None => db,
        };
        let key = match &config.auth.session_key {
            Some(secret) => Key::try_from(secret.expose_secret().as_bytes()).context("invalid SESSION_KEY")?,
            None => {
                tracing::warn!("APP_ENV=dev: using a generated SESSION_KEY; sessions end when the process restarts");
                Key::generate()
            }
        };
        let (cursor_key, csrf_key) = (SigningKey::for_cursors(key.master()), SigningKey::for_csrf(key.master()));
        let decoy_hash = password::decoy_hash(config.auth.bcrypt_cost).await?;
        let listener = TcpListener::bind(config.http.bind)
            .with_context(|| format!("cannot listen on BIND {}", config.http.bind))?;
        let listener_addr = listener.local_addr()?;
        let port = listener_addr.port();

        let shutdown_timeout = config.shutdown_timeout_seconds;
        let secure = config.cookie_secure();
        let cookie_name = if secure { SECURE_COOKIE_NAME } else { DEV_COOKIE_NAME };
        let openapi = http::openapi();
        let openapi_json: Arc<str> = openapi.to_pretty_json()?.into();
        let query_parameters = QueryParameters::of(&openapi);
        let ipv6_prefix = config.http.rate_limit_ipv6_prefix;
        let workers = config.http.http_workers;
        let sign_in_limiter =
            ClientLimiter::new(config.http.auth_rate_per_minute, config.http.auth_rate_burst, ipv6_prefix);
        let share_limiter =
            ClientLimiter::new(config.http.share_rate_per_minute, config.http.share_rate_burst, ipv6_prefix);
        let budgets = RequestBudgets::new(config.http.org_requests_per_minute, config.http.api_processes);
        let public_url = config.http.public_url.clone().unwrap_or_else(|| PublicUrl::of_listener(listener_addr));
        let stop = CancellationToken::new();
        let broker = BrokerStatus::default();
        broker.watch(config.broker.amqp_url.clone(), config.broker.timeout(), stop.clone());
        let limits = Limits {
            max_file_bytes: config.limits.max_file_size_bytes(),
            upload_timeout: std::time::Duration::from_secs(config.limits.upload_timeout_seconds),
            idle_timeout: std::time::Duration::from_secs(config.limits.upload_idle_timeout_seconds),
            tus_expiry: std::time::Duration::from_secs(config.limits.tus_expiry_seconds),
        };
        let memory = usize::try_from(config.limits.upload_memory_mb * 1_048_576).unwrap_or(usize::MAX);
        let budget = MemoryBudget::new(memory, config.limits.upload_memory_org_share);
        let uploads = Uploads::new(db.clone(), store.clone(), budget, limits);
        let webhooks = crate::webhooks::Sender::new(config.webhooks.timeout(), config.webhooks.webhook_allow_private)?;
        let state = web::Data::new(AppState {
            db: db.clone(),
            store,
            config: Arc::new(config),
            decoy_hash,
            openapi_json,
            sign_in_limiter,
            share_limiter,
            budgets,
            broker,
            metrics,
            query_parameters,
            cursor_key,
            csrf_key,
            public_url,
            uploads,
            webhooks,
        });
        let books = keep_the_books(state.clone(), stop.clone());
        let server = HttpServer::new(move || {
            let sessions = SessionMiddleware::builder(PgSessionStore::new(db.clone()), key.clone())
                .cookie_name(cookie_name.to_owned())
                .cookie_secure(secure)
                .cookie_http_only(true)
                .cookie_same_site(SameSite::Lax)
                .cookie_path("/".to_owned())
                .cookie_content_security(CookieContentSecurity::Private)
                .build();
            App::new()
                .into_utoipa_app()
                .configure(http::routes)
                .into_app()
                .wrap(sessions)
                .wrap(actix_web::middleware::from_fn(http::budget_accounting))
                .wrap(actix_web::middleware::from_fn(http::known_query_parameters))
                .wrap(actix_web::middleware::from_fn(http::head_as_get))
                .wrap(actix_web::middleware::from_fn(http::session_errors))
                .wrap(http::error_bodies())
                .wrap(TracingLogger::<ApiRootSpan>::new())
                .wrap(actix_web::middleware::from_fn(http::request_id))
                .app_data(state.clone())
        })
        // SIGTERM/SIGINT: stop accepting, let in-flight requests finish (bounded), then return.
        .shutdown_timeout(shutdown_timeout);
        let server = match workers {
            Some(workers) => server.workers(usize::from(workers)),
            None => server,
        };
        let server = server.listen(listener)?.run();
        Ok(Self { port, server, stop, books })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server from elsewhere (its workers run on threads of their own, which live
    /// until they are told to stop, with the connections they opened).
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        self.stop.cancel();
        let _ = self.books.await;
        served
    }
}
