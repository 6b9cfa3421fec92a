//! Server-side sessions in PostgreSQL, behind actix-session's `SessionStore`.
//!
//! The cookie holds only a random key (encrypted by actix-session); the database holds the
//! key's SHA-256 and the state (the user). The session's CSRF token is stored nowhere: it is
//! derived from the key's hash ([`csrf_token`]), so checking it costs no read and a database
//! that leaks cannot hand one out. The store does not read the database when actix-session loads
//! a session: it hands over only the key's hash, and the session is resolved where it is used
//! (`http::extract`), with the user's *current* organization and role and nothing at all once
//! the user is deactivated, so authorization never trusts what was true at login time. Either
//! up front (`app.credential('session', …)`: a state-changing request needs the CSRF token first) or inside
//! the read's own transaction (`app.credential_context`: a read costs one round trip in all).

use std::collections::HashMap;

use actix_session::{
    storage::{LoadError, SaveError, SessionKey, SessionStore, UpdateError},
    Session,
};
use actix_web::cookie::time::Duration;
use anyhow::anyhow;
use rand::{distributions::Alphanumeric, Rng};
use sha2::{Digest, Sha256};

use super::signing::SigningKey;
use crate::{
    db::{system, Credential, Db, DbError, TenantCtx},
    domain::{OrgId, Role, UserId},
};

/// Keys we keep in the state: the user, and their organization (a session row names both, so
/// that it references the user by its primary key).
const USER_ID: &str = "user_id";
const ORG_ID: &str = "organization_id";
/// The key's SHA-256 (hex) and the organization the key names, all a load puts in the state;
/// never persisted.
const KEY_HASH: &str = "key_hash";
const KEY_ORG: &str = "key_org";
/// The key a new session is to be saved under, chosen by [`start`] so that its CSRF token is
/// known before the response is sent; never persisted.
const NEW_KEY: &str = "new_key";

/// actix-session keeps state as a map of JSON-encoded strings.
type State = HashMap<String, String>;

#[derive(Clone)]
pub struct PgSessionStore {
    db: Db,
}

impl PgSessionStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

fn key_hash(key: &SessionKey) -> Vec<u8> {
    Sha256::digest(key.as_ref().as_bytes()).to_vec()
}

/// A new key of a session in `org`: the organization, then 64 random alphanumerics. Like every
/// secret since V26 it names its organization, so that the session's row is found in that
/// organization's keys (see `auth::token`); keys from before name none.
fn new_key(org: OrgId) -> SessionKey {
    let random: String = rand::thread_rng().sample_iter(&Alphanumeric).take(64).map(char::from).collect();
    SessionKey::try_from(format!("{}.{random}", org.as_uuid().simple())).expect("a valid session key")
}

fn key_org(key: &SessionKey) -> Option<OrgId> {
    let (org, _random) = key.as_ref().split_once('.')?;
    super::token::organization_in(org)
}

fn credential(key: &SessionKey) -> Credential {
    Credential::new(key_org(key), key_hash(key))
}

/// Splits the state into what we persist and the user it belongs to.
fn persisted(state: State) -> anyhow::Result<(TenantCtx, serde_json::Value)> {
    let user_id: UserId = from_state(&state, USER_ID)?;
    let org_id: OrgId = from_state(&state, ORG_ID)?;
    let kept: serde_json::Map<String, serde_json::Value> = state
        .into_iter()
        .filter(|(k, _)| k != KEY_HASH && k != KEY_ORG && k != NEW_KEY)
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    Ok((TenantCtx { org_id, user_id }, serde_json::Value::Object(kept)))
}

fn from_state<T: serde::de::DeserializeOwned>(state: &State, key: &str) -> anyhow::Result<T> {
    let value = state.get(key).ok_or_else(|| anyhow!("session state has no {key}"))?;
    Ok(serde_json::from_str(value)?)
}

impl PgSessionStore {
    async fn store(&self, key: &SessionKey, state: State, ttl: &Duration) -> anyhow::Result<()> {
        let (user, state) = persisted(state)?;
        let conn = self.db.system_conn().await?;
        if !system::session_save(&conn, &key_hash(key), user, &state, ttl.whole_seconds()).await? {
            return Err(anyhow!("session user is gone or inactive"));
        }
        Ok(())
    }
}

impl SessionStore for PgSessionStore {
    /// No database here: who the key belongs to is resolved by whoever needs it (see the module
    /// comment). A key that is not, or no longer, valid fails there with 401, as it would here.
    async fn load(&self, key: &SessionKey) -> Result<Option<State>, LoadError> {
        let mut state = State::from([(KEY_HASH.to_owned(), to_json(&hex::encode(key_hash(key))))]);
        state.extend(key_org(key).map(|org| (KEY_ORG.to_owned(), to_json(&org))));
        Ok(Some(state))
    }

    async fn save(&self, mut state: State, ttl: &Duration) -> Result<SessionKey, SaveError> {
        let chosen = state.remove(NEW_KEY).and_then(|json| serde_json::from_str::<String>(&json).ok());
        let key = match chosen.and_then(|key| SessionKey::try_from(key).ok()) {
            Some(key) => key,
            None => new_key(from_state(&state, ORG_ID).map_err(SaveError::Other)?),
        };
        self.store(&key, state, ttl).await.map_err(SaveError::Other)?;
        Ok(key)
    }

    async fn update(&self, key: SessionKey, state: State, ttl: &Duration) -> Result<SessionKey, UpdateError> {
        self.store(&key, state, ttl).await.map_err(UpdateError::Other)?;
        Ok(key)
    }

    async fn update_ttl(&self, key: &SessionKey, ttl: &Duration) -> anyhow::Result<()> {
        let conn = self.db.system_conn().await?;
        system::session_touch(&conn, &credential(key), ttl.whole_seconds()).await?;
        Ok(())
    }

    async fn delete(&self, key: &SessionKey) -> anyhow::Result<()> {
        let conn = self.db.system_conn().await?;
        system::session_delete(&conn, &credential(key)).await?;
        Ok(())
    }
}

/// Ids, roles and strings always serialize; actix-session keeps values JSON-encoded.
fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// The session's key as a credential (its SHA-256 and the organization it names), if the
/// request came with a session cookie.
pub fn credential_of(session: &Session) -> Option<Credential> {
    let hex_hash: String = session.get(KEY_HASH).ok()??;
    let org: Option<OrgId> = session.get(KEY_ORG).ok()?;
    Some(Credential::new(org, hex::decode(hex_hash).ok()?))
}

/// The signed-in user as the session knows them.
#[derive(Debug, Clone)]
pub struct SessionUser {
    pub ctx: TenantCtx,
    pub role: Role,
}

/// The user of the session whose key is `credential`, loaded from the database; `None` when it
/// is not valid (expired, logged out, user deactivated).
pub async fn current(db: &Db, credential: &Credential) -> Result<Option<SessionUser>, DbError> {
    let row = system::session_load(&db.system_conn().await?, credential).await?;
    Ok(row.map(|row| SessionUser { ctx: TenantCtx { org_id: row.org_id, user_id: row.user_id }, role: row.role }))
}

/// The CSRF token of the session whose key has SHA-256 `key_hash`: an HMAC of that hash under a
/// key derived from `SESSION_KEY`. Only the holder of the cookie can learn it (from the
/// sign-in's answer or `GET /api/auth/me`), and it changes with the key, at every sign-in.
pub fn csrf_token(csrf_key: &SigningKey, key_hash: &[u8]) -> String {
    hex::encode(csrf_key.tag(key_hash))
}

/// Starts a fresh session for `user` (a new key: the session id rotates at every login) and
/// returns its CSRF token.
pub fn start(session: &Session, user: TenantCtx, csrf_key: &SigningKey) -> anyhow::Result<String> {
    let key = new_key(user.org_id);
    session.renew();
    session.insert(USER_ID, user.user_id).map_err(|e| anyhow!("{e}"))?;
    session.insert(ORG_ID, user.org_id).map_err(|e| anyhow!("{e}"))?;
    session.insert(NEW_KEY, key.as_ref()).map_err(|e| anyhow!("{e}"))?;
    Ok(csrf_token(csrf_key, &key_hash(&key)))
}

/// Ends the session here and in the database.
pub fn end(session: &Session) {
    session.purge();
}
