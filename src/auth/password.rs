//! bcrypt, always on a blocking thread and never more than a few at once: at cost 12 one hash
//! takes ~250 ms of CPU. On async workers it would stall every request sharing them; unbounded
//! on blocking threads, a burst of logins would take every core and starve the reads. So hashes
//! run on blocking threads, at most `HASH_CONCURRENCY` at a time; more logins wait their turn
//! (their latency grows, everyone else's does not).

use std::sync::{Arc, LazyLock};

use anyhow::Context;
use tokio::sync::Semaphore;

use crate::{domain::Password, telemetry::spawn_blocking_with_tracing};

/// Half the cores (at least one) may hash at once; the rest stay free for requests.
static HASH_CONCURRENCY: LazyLock<Arc<Semaphore>> = LazyLock::new(|| Arc::new(Semaphore::new(hash_permits())));

fn hash_permits() -> usize {
    let cores = std::thread::available_parallelism().map(usize::from).unwrap_or(2);
    (cores / 2).max(1)
}

/// The permit travels with the work and is released when the hash is done, not when the
/// request is: a client that gives up (a timeout, a closed connection) drops its future, but
/// a blocking thread cannot be stopped, and releasing the permit then would let the next login
/// start a second hash beside the orphaned one.
async fn off_thread<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
    let permit = HASH_CONCURRENCY.clone().acquire_owned().await.context("password hashing is shut down")?;
    spawn_blocking_with_tracing(move || {
        let _permit = permit;
        work()
    })
    .await
    .context("password hashing task failed")
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

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::{AtomicUsize, Ordering},
        time::Duration,
    };

    use super::*;

    /// A client that gives up mid-hash must not free a slot while its hash still runs.
    #[tokio::test]
    async fn an_abandoned_hash_keeps_its_slot_until_it_ends() {
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let work = |running: Arc<AtomicUsize>, most: Arc<AtomicUsize>| {
            move || {
                most.fetch_max(running.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(200));
                running.fetch_sub(1, Ordering::SeqCst);
            }
        };
        let abandoned: Vec<_> =
            (0..hash_permits()).map(|_| tokio::spawn(off_thread(work(running.clone(), most.clone())))).collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        abandoned.iter().for_each(|task| task.abort());

        off_thread(work(running.clone(), most.clone())).await.unwrap();
        assert_eq!(most.load(Ordering::SeqCst), hash_permits(), "more hashes ran at once than there are slots");
    }
}
