//! Standard Webhooks signing: the secret is `whsec_` and the base64 of its random bytes; each
//! request carries `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`,
//! `v1,` and the base64 of HMAC-SHA256 over `id.timestamp.body`, one per secret that signs
//! (space-separated: after a rotation the old secret signs too, for an overlap).

use base64::{engine::general_purpose::STANDARD, Engine};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// Random bytes in a new secret (the specification asks for 24 to 64).
const SECRET_BYTES: usize = 32;

/// An endpoint's signing key, as the database keeps it (never shown after creation).
pub struct Secret(pub Vec<u8>);

/// A new secret: what the caller is shown once (`whsec_…`) and what is kept.
pub fn new_secret() -> (String, Secret) {
    let mut bytes = vec![0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    (format!("whsec_{}", STANDARD.encode(&bytes)), Secret(bytes))
}

/// The `webhook-signature` header value for a message signed by each of `secrets`.
pub fn sign(secrets: &[&Secret], message_id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|secret| {
            // HMAC takes a key of any length: this cannot fail.
            let mut mac = Hmac::<Sha256>::new_from_slice(&secret.0).expect("HMAC accepts any key length");
            mac.update(format!("{message_id}.{timestamp}.").as_bytes());
            mac.update(body);
            format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The specification's own example (standard-webhooks, spec/standard-webhooks.md):
    /// secret `whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw`, id `msg_p5jXN8AQM9LWM0D4loKWxJek`,
    /// timestamp 1614265330, body `{"test": 2432232314}`.
    #[test]
    fn signs_as_the_specification_example() {
        let key = STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signature = sign(&[&Secret(key)], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn new_secrets_are_prefixed_random_and_decode_to_their_bytes() {
        let (shown, kept) = new_secret();
        let (other, _) = new_secret();
        assert_ne!(shown, other);
        let encoded = shown.strip_prefix("whsec_").unwrap();
        assert_eq!(STANDARD.decode(encoded).unwrap(), kept.0);
        assert!(kept.0.len() >= 24);
    }

    #[test]
    fn every_secret_that_signs_adds_a_signature() {
        let (a, b) = (Secret(vec![1; 32]), Secret(vec![2; 32]));
        let both = sign(&[&a, &b], "msg_1", 1, b"{}");
        let parts: Vec<&str> = both.split(' ').collect();
        assert_eq!(parts, [sign(&[&a], "msg_1", 1, b"{}"), sign(&[&b], "msg_1", 1, b"{}")]);
    }
}
