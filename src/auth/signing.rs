//! Values the server hands out and takes back (list cursors) are signed, so a client can hold
//! them but not make or change them: HMAC-SHA256 with a key derived from `SESSION_KEY`, so
//! rotating that secret rotates this one too (docs/security.md, "Cursors").

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the tag kept: 128 bits is beyond guessing and keeps cursors short.
const TAG_BYTES: usize = 16;

#[derive(Clone)]
pub struct SigningKey([u8; 32]);

impl SigningKey {
    /// The key for one purpose (`label`), derived from the process's master secret: a value
    /// signed for one purpose never verifies for another.
    pub fn derive(master: &[u8], label: &str) -> Self {
        Self(mac(master, label.as_bytes()))
    }

    /// The key of list cursors (`http::files` hands them out), from the session key's bytes.
    pub fn for_cursors(session_key: &[u8]) -> Self {
        Self::derive(session_key, "tenant-files list cursor v1")
    }

    /// The key of sessions' CSRF tokens (`auth::session`), from the session key's bytes.
    pub fn for_csrf(session_key: &[u8]) -> Self {
        Self::derive(session_key, "tenant-files csrf token v1")
    }

    /// The whole tag of `message`.
    pub fn tag(&self, message: &[u8]) -> [u8; 32] {
        mac(&self.0, message)
    }

    /// `message` followed by its tag.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let mut signed = message.to_vec();
        signed.extend_from_slice(&mac(&self.0, message)[..TAG_BYTES]);
        signed
    }

    /// The message of a value this key signed; `None` for anything else.
    pub fn verify<'a>(&self, signed: &'a [u8]) -> Option<&'a [u8]> {
        let split = signed.len().checked_sub(TAG_BYTES)?;
        let (message, tag) = signed.split_at(split);
        bool::from(mac(&self.0, message)[..TAG_BYTES].ct_eq(tag)).then_some(message)
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

fn mac(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(message);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_value_verifies_only_unchanged_and_under_its_own_key() {
        let key = SigningKey::derive(b"master secret", "cursor");
        let signed = key.sign(b"position");
        assert_eq!(key.verify(&signed), Some(&b"position"[..]));

        let mut tampered = signed.clone();
        tampered[0] ^= 1;
        assert_eq!(key.verify(&tampered), None);
        assert_eq!(key.verify(&signed[..signed.len() - 1]), None);
        assert_eq!(key.verify(b"short"), None);
        assert_eq!(SigningKey::derive(b"master secret", "other purpose").verify(&signed), None);
        assert_eq!(SigningKey::derive(b"another master", "cursor").verify(&signed), None);
    }
}
