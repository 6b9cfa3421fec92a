//! Who a transaction acts for, and the context statement that makes it the transaction's tenant.

use std::sync::{Arc, OnceLock};

use super::TenantCtx;

/// Who a transaction acts for: ids already known (a resolved caller, a worker's job), or a
/// credential that the transaction's own first statement resolves (a read made with a session
/// cookie or a bearer token), so that the credential costs no round trip of its own.
#[derive(Debug, Clone)]
pub enum Caller {
    Known(TenantCtx),
    /// The SHA-256 of a session's key: `app.credential_context('session', …)`.
    Session(Credential),
    /// The SHA-256 of a bearer token: `app.credential_context('token', …)`.
    Token(Credential),
}

impl Caller {
    /// Who the caller is, once known: at once for known ids, after its first transaction's
    /// context statement for a credential (every clone learns it).
    pub fn resolved(&self) -> Option<TenantCtx> {
        match self {
            Caller::Known(ctx) => Some(*ctx),
            Caller::Session(credential) | Caller::Token(credential) => credential.identity.0.get().map(|r| r.ctx),
        }
    }

    /// A session's stored state, once its first transaction has resolved it.
    pub fn session_state(&self) -> Option<&serde_json::Value> {
        match self {
            Caller::Session(credential) => credential.identity.0.get().and_then(|r| r.state.as_ref()),
            _ => None,
        }
    }
}

impl From<&TenantCtx> for Caller {
    fn from(ctx: &TenantCtx) -> Self {
        Caller::Known(*ctx)
    }
}

/// A credential's hash, and where the ids it stands for go once the database has resolved them.
#[derive(Debug, Clone)]
pub struct Credential {
    pub(super) hash: Vec<u8>,
    pub(super) identity: Identity,
}

impl Credential {
    pub fn new(hash: Vec<u8>) -> Self {
        Self { hash, identity: Identity::default() }
    }
}

/// Who a credential turned out to be: set by the first transaction that resolved it, and shared
/// by the caller's clones (the request's log line reads it when the request ends).
#[derive(Debug, Clone, Default)]
pub(super) struct Identity(pub(super) Arc<OnceLock<Resolved>>);

#[derive(Debug)]
pub(super) struct Resolved {
    pub(super) ctx: TenantCtx,
    /// A session's stored state (its CSRF token); `None` for a token.
    pub(super) state: Option<serde_json::Value>,
}

/// Setting names are fixed here and in the policies' helper functions (migrations/V1).
///
/// `plan_cache_mode` ($3, a [`Plans`]) rides along only to save a statement: it is a performance
/// setting, not part of the security context (the policies hold under any plan). So does the
/// access mode ($4): `on` for a read. Transaction-scoped like the rest.
const SET_TENANT_CONTEXT: &str = r#"
select set_config('app.org_id', $1, true),
       set_config('app.user_id', $2, true),
       set_config('plan_cache_mode', $3, true),
       set_config('transaction_read_only', $4, true)
"#;

/// The same, with the ids resolved from a credential (`app.credential_context`, migrations
/// V20), which raises `invalid_authorization_specification` when it is not valid: the
/// transaction is then aborted before the statement behind it runs. The function runs first (it
/// is the `from`), so a token's `last_used_at` stamp precedes the switch to read-only. The kind
/// is part of the text: one prepared statement per kind.
macro_rules! set_credential_context {
    ($kind:literal) => {
        concat!(
            "select c.organization_id, c.user_id, c.state, set_config('plan_cache_mode', $2, true), \
             set_config('transaction_read_only', $3, true) from app.credential_context('",
            $kind,
            "', $1) c"
        )
    };
}
const SET_SESSION_CONTEXT: &str = set_credential_context!("session");
const SET_TOKEN_CONTEXT: &str = set_credential_context!("token");

/// What the context statement sets: known ids, or what a credential resolves to.
pub(super) enum Context {
    Known { ids: [String; 2] },
    Credential { sql: &'static str, credential: Credential },
}

impl Context {
    pub(super) fn new(caller: Caller) -> Self {
        match caller {
            Caller::Known(ctx) => Context::Known { ids: [ctx.org_id.to_string(), ctx.user_id.to_string()] },
            Caller::Session(credential) => Context::Credential { sql: SET_SESSION_CONTEXT, credential },
            Caller::Token(credential) => Context::Credential { sql: SET_TOKEN_CONTEXT, credential },
        }
    }

    pub(super) fn sql(&self) -> &'static str {
        match self {
            Context::Known { .. } => SET_TENANT_CONTEXT,
            Context::Credential { sql, .. } => sql,
        }
    }
}
