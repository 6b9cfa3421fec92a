//! Server-side sessions in PostgreSQL, behind actix-session's `SessionStore`.
//!
//! The cookie holds only a random key (encrypted by actix-session); the database holds the
//! key's SHA-256 and the state. Loading goes through `app.session_load`, which also returns
//! the user's *current* organization and role and nothing at all once the user is deactivated,
//! so authorization never trusts what was true at login time.

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
    db::{system, Db, TenantCtx},
    domain::{OrgId, Role, UserId},
};

/// Keys we keep in the state.
const USER_ID: &str = "user_id";
const CSRF_TOKEN: &str = "csrf_token";
/// Keys the store fills from the database on every load; never persisted.
const ORG_ID: &str = "organization_id";
const ROLE: &str = "role";

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
    let kept: serde_json::Map<String, serde_json::Value> = state
        .into_iter()
        .filter(|(k, _)| k != ORG_ID && k != ROLE)
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
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
    async fn load(&self, key: &SessionKey) -> Result<Option<State>, LoadError> {
        let conn = self.db.system_conn().await.map_err(|e| LoadError::Other(e.into()))?;
        let Some(row) = system::session_load(&conn, &key_hash(key)).await.map_err(|e| LoadError::Other(e.into()))?
        else {
            return Ok(None);
        };
        let serde_json::Value::Object(stored) = row.state else {
            return Err(LoadError::Deserialization(anyhow!("session state is not an object")));
        };
        let mut state: State = stored
            .into_iter()
            .filter_map(|(k, v)| match v {
                serde_json::Value::String(s) => Some((k, s)),
                _ => None,
            })
            .collect();
        state.insert(ORG_ID.into(), to_json(&row.org_id));
        state.insert(ROLE.into(), to_json(&row.role));
        state.insert(USER_ID.into(), to_json(&row.user_id));
        Ok(Some(state))
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

/// Ids and roles always serialize; actix-session keeps values JSON-encoded.
fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// The signed-in user as the session knows them.
#[derive(Debug, Clone)]
pub struct SessionUser {
    pub ctx: TenantCtx,
    pub role: Role,
    pub csrf_token: String,
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

/// The session's user, if it holds one. A state we cannot read counts as no session.
pub fn current(session: &Session) -> Option<SessionUser> {
    let user_id: UserId = session.get(USER_ID).ok()??;
    let org_id: OrgId = session.get(ORG_ID).ok()??;
    let role: Role = session.get(ROLE).ok()??;
    let csrf_token: String = session.get(CSRF_TOKEN).ok()??;
    Some(SessionUser { ctx: TenantCtx { org_id, user_id }, role, csrf_token })
}

/// Ends the session here and in the database.
pub fn end(session: &Session) {
    session.purge();
}
