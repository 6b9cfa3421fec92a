//! bcrypt, always on a blocking thread and never more than a few at once: at cost 12 one hash
//! takes ~250 ms of CPU. On async workers it would stall every request sharing them; unbounded
//! on blocking threads, a burst of logins would take every core and starve the reads. So hashes
//! run on blocking threads, at most [`HASH_CONCURRENCY`] at a time; more logins wait their turn
//! (their latency grows, everyone else's does not).

use std::sync::LazyLock;

use anyhow::Context;
use tokio::sync::Semaphore;

use crate::{domain::Password, telemetry::spawn_blocking_with_tracing};

/// Half the cores (at least one) may hash at once; the rest stay free for requests.
static HASH_CONCURRENCY: LazyLock<Semaphore> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map(usize::from).unwrap_or(2);
    Semaphore::new((cores / 2).max(1))
});

async fn off_thread<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
    let _permit = HASH_CONCURRENCY.acquire().await.context("password hashing is shut down")?;
    spawn_blocking_with_tracing(work).await.context("password hashing task failed")
}

pub async fn hash(password: Password, cost: u32) -> anyhow::Result<String> {
    off_thread(move || bcrypt::hash(password.expose(), cost)).await?.context("password hashing failed")
}

/// True when `password` matches `hash`. A malformed stored hash counts as a mismatch (and is
/// logged): it must never let anyone in, nor turn a login into a 500 that tells them apart.
pub async fn verify(password: String, hash: String) -> anyhow::Result<bool> {
    let result = off_thread(move || bcrypt::verify(password, &hash)).await?;
    Ok(result.unwrap_or_else(|e| {
        tracing::error!(error = %e, "stored password hash is not valid bcrypt");
        false
    }))
}

/// A real hash of a random password at the configured cost. Logins for unknown emails are
/// verified against it so they take as long as logins for known ones.
pub async fn decoy_hash(cost: u32) -> anyhow::Result<String> {
    let random = hex::encode(rand::random::<[u8; 16]>());
    hash(Password::parse(random).expect("32 hex characters are a valid password"), cost).await
}
