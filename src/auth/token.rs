//! Bearer secrets (API tokens, invitation tokens, share links): 256 random bits shown once,
//! stored only as their SHA-256, so a database read never yields a usable secret.
//!
//! Each names its organization (`tfp_<organization>_<random>`, migrations V26), so that looking
//! it up is one organization's lookup — one shard's, once the tables are distributed by
//! organization (docs/scaling.md). The organization is part of what is hashed: a secret whose
//! organization is edited is a secret nobody holds. Secrets from before name none
//! (`tfp_<random>`) and are looked up by their hash alone.

use sha2::{Digest, Sha256};

use crate::{db::Credential, domain::OrgId};

/// A new secret of `org`, with a recognizable prefix (so leaked ones are easy to scan for), and
/// its digest.
pub fn new_secret(prefix: &str, org: OrgId) -> (String, Vec<u8>) {
    let secret = format!("{prefix}{}_{}", org.as_uuid().simple(), hex::encode(rand::random::<[u8; 32]>()));
    let digest = digest(&secret);
    (secret, digest)
}

/// What a presented secret is looked up by: its digest and the organization it names.
pub fn presented(secret: &str) -> Credential {
    Credential::new(organization_named(secret), digest(secret))
}

fn digest(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// The organization in `<prefix>_<organization>_<random>`; `None` for any other shape.
fn organization_named(secret: &str) -> Option<OrgId> {
    let (_prefix, rest) = secret.split_once('_')?;
    let (org, _random) = rest.split_once('_')?;
    organization_in(org)
}

/// An organization's id as secrets write it (32 hex digits, `Uuid::simple`); `None` otherwise.
pub(crate) fn organization_in(written: &str) -> Option<OrgId> {
    (written.len() == 32).then(|| uuid::Uuid::try_parse(written).ok()).flatten().map(OrgId::from_uuid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_secret_names_its_organization_and_hashes_all_of_it() {
        let org = OrgId::new();
        let (secret, digest) = new_secret("tfp_", org);
        let credential = presented(&secret);
        assert_eq!(credential.org(), Some(org));
        assert_eq!(credential.hash(), digest.as_slice());

        // Another organization written into the same secret is another hash.
        let other =
            secret.replacen(&org.as_uuid().simple().to_string(), &OrgId::new().as_uuid().simple().to_string(), 1);
        assert_ne!(presented(&other).hash(), digest.as_slice());
    }

    #[test]
    fn secrets_from_before_and_odd_shapes_name_no_organization() {
        for secret in ["tfp_".to_owned() + &"a".repeat(64), "tfp_unknown".into(), "tfs_guess_x".into(), "".into()] {
            assert_eq!(presented(&secret).org(), None, "{secret}");
        }
    }
}
