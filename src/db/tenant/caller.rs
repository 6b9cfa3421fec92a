//! Who a transaction acts for, and the context statement that makes it the transaction's tenant.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
};

use super::TenantCtx;
use crate::{db::DbError, domain::OrgId};

/// Credentials remembered at most; the memory is cleared when full (an unknown credential's
/// first request is then not counted against its organization's shares and budget).
const REMEMBERED_CREDENTIALS: usize = 10_000;

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

impl From<&TenantCtx> for Caller {
    fn from(ctx: &TenantCtx) -> Self {
        Caller::Known(*ctx)
    }
}

/// A secret the caller presented: its SHA-256, and the organization it names (V26: every secret
/// handed out names one, so that its lookup is one organization's; `None` for a secret from
/// before, looked up by its hash alone). The organization is a claim until the registry finds
/// the hash, which covers it: it decides nothing before that.
#[derive(Debug, Clone)]
pub struct Credential {
    org: Option<OrgId>,
    hash: Vec<u8>,
}

impl Credential {
    pub fn new(org: Option<OrgId>, hash: Vec<u8>) -> Self {
        Self { org, hash }
    }

    pub fn org(&self) -> Option<OrgId> {
        self.org
    }

    pub fn hash(&self) -> &[u8] {
        &self.hash
    }

    /// The organization as the registry functions take it (NULL: none named).
    pub(in crate::db) fn org_param(&self) -> Option<uuid::Uuid> {
        self.org.map(|org| *org.as_uuid())
    }
}

/// The organization each credential turned out to be for, as this process has seen: a read made
/// with a credential learns whose it is only from the database, in its own transaction, so
/// the per-organization shares and budgets that must be applied before it (the connection
/// share, the request rate) know its organization from that credential's second request on.
#[derive(Debug, Default)]
pub(in crate::db) struct KnownOrgs(Mutex<HashMap<Vec<u8>, OrgId>>);

impl KnownOrgs {
    /// `caller`'s organization, when known: its own ids, or what its credential resolved to.
    pub(in crate::db) fn of(&self, caller: &Caller) -> Option<OrgId> {
        match caller {
            Caller::Known(ctx) => Some(ctx.org_id),
            Caller::Session(credential) | Caller::Token(credential) => {
                self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(credential.hash()).copied()
            }
        }
    }

    /// Remembers which organization a credential was for.
    pub(in crate::db) fn learn(&self, caller: &Caller, org: OrgId) {
        let (Caller::Session(credential) | Caller::Token(credential)) = caller else { return };
        let mut known = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if known.len() >= REMEMBERED_CREDENTIALS {
            known.clear();
        }
        known.insert(credential.hash().to_vec(), org);
    }
}

/// Where a credential's context statement puts who the credential turned out to be, for
/// [`Db::read_as`](crate::db::Db::read_as) to return once the read is done. Made for one read
/// and gone with it.
#[derive(Debug, Default)]
pub(in crate::db) struct Resolution(Arc<OnceLock<TenantCtx>>);

impl Resolution {
    pub(in crate::db) fn set(&self, ctx: TenantCtx) {
        // A credential is one user's: a second resolution could only find the same ids.
        let _ = self.0.set(ctx);
    }

    /// Who `caller` is, after a read made for it.
    pub(in crate::db) fn of(self, caller: &Caller) -> Result<TenantCtx, DbError> {
        match caller {
            Caller::Known(ctx) => Ok(*ctx),
            Caller::Session(_) | Caller::Token(_) => self.0.get().copied().ok_or_else(|| {
                DbError::Decode(anyhow::anyhow!("the read sent no statement to resolve its credential"))
            }),
        }
    }
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
            "select c.organization_id, c.user_id, set_config('plan_cache_mode', $2, true), \
             set_config('transaction_read_only', $3, true) from app.credential_context('",
            $kind,
            "', $4, $1) c"
        )
    };
}
const SET_SESSION_CONTEXT: &str = set_credential_context!("session");
const SET_TOKEN_CONTEXT: &str = set_credential_context!("token");

/// What the context statement sets: known ids, or what a credential resolves to.
pub(in crate::db) enum Context {
    Known { ids: [String; 2] },
    Credential { sql: &'static str, hash: Vec<u8>, org: Option<uuid::Uuid>, resolved: Resolution },
}

impl Context {
    pub(in crate::db) fn known(ctx: &TenantCtx) -> Self {
        Context::Known { ids: [ctx.org_id.to_string(), ctx.user_id.to_string()] }
    }

    /// The context for `caller`; a credential's resolution goes to `resolved`.
    pub(in crate::db) fn new(caller: &Caller, resolved: &Resolution) -> Self {
        let credential = |sql, credential: &Credential| Context::Credential {
            sql,
            hash: credential.hash.clone(),
            org: credential.org_param(),
            resolved: Resolution(resolved.0.clone()),
        };
        match caller {
            Caller::Known(ctx) => Context::known(ctx),
            Caller::Session(c) => credential(SET_SESSION_CONTEXT, c),
            Caller::Token(c) => credential(SET_TOKEN_CONTEXT, c),
        }
    }

    pub(in crate::db) fn sql(&self) -> &'static str {
        match self {
            Context::Known { .. } => SET_TENANT_CONTEXT,
            Context::Credential { sql, .. } => sql,
        }
    }
}
