//! bcrypt, always on a blocking thread: at cost 12 one hash takes ~250 ms of CPU, which would
//! stall every request sharing an async worker.

use anyhow::Context;

use crate::{domain::Password, telemetry::spawn_blocking_with_tracing};

pub async fn hash(password: Password, cost: u32) -> anyhow::Result<String> {
    spawn_blocking_with_tracing(move || bcrypt::hash(password.expose(), cost))
        .await
        .context("password hashing task failed")?
        .context("password hashing failed")
}

/// True when `password` matches `hash`. A malformed stored hash counts as a mismatch (and is
/// logged): it must never let anyone in, nor turn a login into a 500 that tells them apart.
pub async fn verify(password: String, hash: String) -> anyhow::Result<bool> {
    let result = spawn_blocking_with_tracing(move || bcrypt::verify(password, &hash))
        .await
        .context("password verification task failed")?;
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
