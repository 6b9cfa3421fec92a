//! Server-side sessions in PostgreSQL, behind actix-session's `SessionStore`.
//!
//! The cookie holds only a random key (encrypted by actix-session); the database holds the
//! key's SHA-256 and the state. The store does not read the database when actix-session loads
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

use crate::{
    db::{system, Db, DbError, TenantCtx},
    domain::{Role, UserId},
};

/// Keys we keep in the state.
const USER_ID: &str = "user_id";
const CSRF_TOKEN: &str = "csrf_token";
/// The key's SHA-256 (hex), all a load puts in the state; never persisted.
const KEY_HASH: &str = "key_hash";

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

fn new_key() -> SessionKey {
    let key: String = rand::thread_rng().sample_iter(&Alphanumeric).take(64).map(char::from).collect();
    SessionKey::try_from(key).expect("64 alphanumerics are a valid session key")
}

/// Splits the state into what we persist and the user it belongs to.
fn persisted(state: State) -> anyhow::Result<(UserId, serde_json::Value)> {
    let user_id: UserId = state
        .get(USER_ID)
        .map(|v| serde_json::from_str(v))
        .transpose()?
        .ok_or_else(|| anyhow!("session state has no user"))?;
    let kept: serde_json::Map<String, serde_json::Value> =
        state.into_iter().filter(|(k, _)| k != KEY_HASH).map(|(k, v)| (k, serde_json::Value::String(v))).collect();
    Ok((user_id, serde_json::Value::Object(kept)))
}

impl PgSessionStore {
    async fn store(&self, key: &SessionKey, state: State, ttl: &Duration) -> anyhow::Result<()> {
        let (user_id, state) = persisted(state)?;
        let conn = self.db.system_conn().await?;
        if !system::session_save(&conn, &key_hash(key), user_id, &state, ttl.whole_seconds()).await? {
            return Err(anyhow!("session user is gone or inactive"));
        }
        Ok(())
    }
}

impl SessionStore for PgSessionStore {
    /// No database here: who the key belongs to is resolved by whoever needs it (see the module
    /// comment). A key that is not, or no longer, valid fails there with 401, as it would here.
    async fn load(&self, key: &SessionKey) -> Result<Option<State>, LoadError> {
        Ok(Some(State::from([(KEY_HASH.to_owned(), to_json(&hex::encode(key_hash(key))))])))
    }

    async fn save(&self, state: State, ttl: &Duration) -> Result<SessionKey, SaveError> {
        let key = new_key();
        self.store(&key, state, ttl).await.map_err(SaveError::Other)?;
        Ok(key)
    }

    async fn update(&self, key: SessionKey, state: State, ttl: &Duration) -> Result<SessionKey, UpdateError> {
        self.store(&key, state, ttl).await.map_err(UpdateError::Other)?;
        Ok(key)
    }

    async fn update_ttl(&self, key: &SessionKey, ttl: &Duration) -> anyhow::Result<()> {
        let conn = self.db.system_conn().await?;
        system::session_touch(&conn, &key_hash(key), ttl.whole_seconds()).await?;
        Ok(())
    }

    async fn delete(&self, key: &SessionKey) -> anyhow::Result<()> {
        let conn = self.db.system_conn().await?;
        system::session_delete(&conn, &key_hash(key)).await?;
        Ok(())
    }
}

/// Ids, roles and strings always serialize; actix-session keeps values JSON-encoded.
fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// The SHA-256 of the session's key, if the request came with a session cookie.
pub fn key_hash_of(session: &Session) -> Option<Vec<u8>> {
    let hex_hash: String = session.get(KEY_HASH).ok()??;
    hex::decode(hex_hash).ok()
}

/// The signed-in user as the session knows them.
#[derive(Debug, Clone)]
pub struct SessionUser {
    pub ctx: TenantCtx,
    pub role: Role,
    pub csrf_token: String,
}

/// The session's user, loaded from the database; `None` when there is no session or it is not
/// valid (expired, logged out, user deactivated). A state we cannot read counts as none.
pub async fn current(db: &Db, session: &Session) -> Result<Option<SessionUser>, DbError> {
    let Some(key_hash) = key_hash_of(session) else { return Ok(None) };
    let Some(row) = system::session_load(&db.system_conn().await?, &key_hash).await? else { return Ok(None) };
    Ok(csrf_token(&row.state).map(|csrf_token| SessionUser {
        ctx: TenantCtx { org_id: row.org_id, user_id: row.user_id },
        role: row.role,
        csrf_token,
    }))
}

/// The CSRF token in a session's stored state.
pub fn csrf_token(state: &serde_json::Value) -> Option<String> {
    let encoded = state.get(CSRF_TOKEN)?.as_str()?;
    serde_json::from_str(encoded).ok()
}

/// Starts a fresh session for `user_id` (a new key: the session id rotates at every login)
/// and returns its CSRF token.
pub fn start(session: &Session, user_id: UserId) -> anyhow::Result<String> {
    let csrf_token = hex::encode(rand::random::<[u8; 32]>());
    session.renew();
    session.insert(USER_ID, user_id).map_err(|e| anyhow!("{e}"))?;
    session.insert(CSRF_TOKEN, &csrf_token).map_err(|e| anyhow!("{e}"))?;
    Ok(csrf_token)
}

/// Ends the session here and in the database.
pub fn end(session: &Session) {
    session.purge();
}
