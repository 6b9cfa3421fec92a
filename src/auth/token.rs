//! Bearer secrets (API tokens, invitation tokens): 256 random bits shown once, stored only as
//! their SHA-256, so a database read never yields a usable secret.

use sha2::{Digest, Sha256};

/// A new secret with a recognizable prefix (so leaked ones are easy to scan for) and its digest.
pub fn new_secret(prefix: &str) -> (String, Vec<u8>) {
    let secret = format!("{prefix}{}", hex::encode(rand::random::<[u8; 32]>()));
    let digest = digest(&secret);
    (secret, digest)
}

pub fn digest(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}
