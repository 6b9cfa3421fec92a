//! Calls into the cross-tenant registry: one function per SECURITY DEFINER function, each of
//! which is listed with its justification in docs/rls.md. Nothing else in the crate reads
//! across tenants.

use tokio_postgres::Row;

use super::{decode, files::StoredFile, Credential, DbError, SystemQuery, TenantCtx};
use crate::domain::{Chunk, FileId, JobId, OrgId, Role, UserId};

mod webhooks;

pub use webhooks::{
    webhook_attempt_begin, webhook_attempt_finish, webhook_deliveries_claim, WebhookAttempt, WebhookOutcome,
};

/// One round trip as the app role: the database is reachable and accepts our login.
pub async fn ping(conn: impl SystemQuery) -> Result<(), DbError> {
    conn.query("select 1", &[]).await?;
    Ok(())
}

/// Jobs waiting in the outbox, across tenants (a count only).
pub async fn outbox_backlog(conn: impl SystemQuery) -> Result<i64, DbError> {
    let row = conn
        .query_opt("select app.outbox_backlog() as backlog", &[])
        .await?
        .ok_or_else(|| DbError::Decode(anyhow::anyhow!("outbox_backlog returned no row")))?;
    decode(row.try_get("backlog"))
}

/// What a live session resolves to right now: the user's current org and role.
pub struct SessionRow {
    pub user_id: UserId,
    pub org_id: OrgId,
    pub role: Role,
}

/// Loads a session by the SHA-256 of its key. `None` when unknown, expired, or the user is no
/// longer active (so deactivation ends sessions at once).
pub async fn session_load(conn: impl SystemQuery, key: &Credential) -> Result<Option<SessionRow>, DbError> {
    let row = conn
        .query_opt(
            r#"
            select user_id, organization_id, role
              from app.credential('session', $1, $2)
            "#,
            &[&key.org_param(), &key.hash()],
        )
        .await?;
    row.map(|row| {
        Ok(SessionRow {
            user_id: UserId::from_uuid(decode(row.try_get("user_id"))?),
            org_id: OrgId::from_uuid(decode(row.try_get("organization_id"))?),
            role: role(&row)?,
        })
    })
    .transpose()
}

/// Creates or replaces a session; `false` when the user does not exist or is inactive.
pub async fn session_save(
    conn: impl SystemQuery,
    key_hash: &[u8],
    user: TenantCtx,
    state: &serde_json::Value,
    ttl_seconds: i64,
) -> Result<bool, DbError> {
    let row = conn
        .query_opt(
            "select app.session_save($1, $2, $3, $4, $5) as saved",
            &[&key_hash, user.org_id.as_uuid(), user.user_id.as_uuid(), state, &ttl_seconds],
        )
        .await?;
    Ok(row.map(|r| decode(r.try_get::<_, Option<bool>>("saved"))).transpose()?.flatten().unwrap_or(false))
}

pub async fn session_touch(conn: impl SystemQuery, key: &Credential, ttl_seconds: i64) -> Result<(), DbError> {
    conn.query("select app.session_touch($1, $2, $3)", &[&key.org_param(), &key.hash(), &ttl_seconds]).await?;
    Ok(())
}

pub async fn session_delete(conn: impl SystemQuery, key: &Credential) -> Result<(), DbError> {
    conn.query("select app.session_delete($1, $2)", &[&key.org_param(), &key.hash()]).await?;
    Ok(())
}

/// A login attempt, counted before the password is checked. The user fields are `None` when no
/// user has this email; `allowed` is false once the email used up its attempts in the window.
pub struct LoginAttempt {
    pub user: Option<LoginUser>,
    pub allowed: bool,
}

pub struct LoginUser {
    pub user_id: UserId,
    pub org_id: OrgId,
    pub password_hash: String,
    pub role: Role,
    pub is_active: bool,
}

/// Takes one of the email's `max_attempts` slots in the window, atomically (concurrent attempts
/// for one email queue on its throttling row), and returns who the email belongs to.
pub async fn login_attempt(
    conn: impl SystemQuery,
    email: &str,
    window_seconds: i64,
    max_attempts: i32,
) -> Result<LoginAttempt, DbError> {
    let rows = conn
        .query(
            r#"
            select user_id, organization_id, password_hash, role, is_active, allowed
              from app.login_attempt($1, $2, $3)
            "#,
            &[&email, &window_seconds, &max_attempts],
        )
        .await?;
    let row = rows.first().ok_or_else(|| DbError::Decode(anyhow::anyhow!("login_attempt returned no row")))?;
    let user = match decode(row.try_get::<_, Option<uuid::Uuid>>("user_id"))? {
        None => None,
        Some(user_id) => Some(LoginUser {
            user_id: UserId::from_uuid(user_id),
            org_id: OrgId::from_uuid(decode(row.try_get("organization_id"))?),
            password_hash: decode(row.try_get("password_hash"))?,
            role: role(row)?,
            is_active: decode(row.try_get("is_active"))?,
        }),
    };
    Ok(LoginAttempt { user, allowed: decode(row.try_get("allowed"))? })
}

/// After the password check: a success gives the email its attempts back; either way the
/// attempt goes to the audit log of the email's organization.
pub async fn login_finish(conn: impl SystemQuery, email: &str, success: bool, request_id: &str) -> Result<(), DbError> {
    conn.query("select app.login_finish($1, $2, $3)", &[&email, &success, &request_id]).await?;
    Ok(())
}

/// Removes expired sessions, finished throttling windows, reservations past their deadline and
/// events past their retention, at most `limit` of each; returns how many rows went.
pub async fn prune_expired(
    conn: impl SystemQuery,
    login_window_seconds: i64,
    event_retention_seconds: i64,
    limit: i32,
) -> Result<i32, DbError> {
    let row = conn
        .query_opt(
            "select app.prune_expired($1, $2, $3) as pruned",
            &[&login_window_seconds, &event_retention_seconds, &limit],
        )
        .await?
        .ok_or_else(|| DbError::Decode(anyhow::anyhow!("prune_expired returned no row")))?;
    decode(row.try_get("pruned"))
}

/// Who a bearer token acts as, right now: `None` once it expired or was revoked, or its user
/// was deactivated.
pub async fn token_load(conn: impl SystemQuery, token: &Credential) -> Result<Option<(UserId, OrgId, Role)>, DbError> {
    let row = conn
        .query_opt(
            "select user_id, organization_id, role from app.credential('token', $1, $2)",
            &[&token.org_param(), &token.hash()],
        )
        .await?;
    row.map(|row| {
        Ok((
            UserId::from_uuid(decode(row.try_get("user_id"))?),
            OrgId::from_uuid(decode(row.try_get("organization_id"))?),
            role(&row)?,
        ))
    })
    .transpose()
}

/// The file a share link grants, while it does (unexpired, unrevoked, file live and ready,
/// creator active); each opening is audited in the file's organization.
pub async fn share_link_open(
    conn: impl SystemQuery,
    secret: &Credential,
    request_id: &str,
) -> Result<Option<StoredFile>, DbError> {
    let row = conn
        .query_opt(
            "select organization_id, file_id as id, filename, file_size_bytes, mime_type, sha256, uploaded_at
               from app.share_link_open($1, $2, $3)",
            &[&secret.org_param(), &secret.hash(), &request_id],
        )
        .await?;
    row.as_ref().map(StoredFile::from_row).transpose()
}

/// Whether an invitation token is usable by `email` right now (checked before the password is
/// hashed, so a bad token costs no bcrypt time).
pub async fn invitation_valid(conn: impl SystemQuery, token: &Credential, email: &str) -> Result<bool, DbError> {
    let row = conn
        .query_opt("select app.invitation_valid($1, $2, $3) as valid", &[&token.org_param(), &token.hash(), &email])
        .await?
        .ok_or_else(|| DbError::Decode(anyhow::anyhow!("invitation_valid returned no row")))?;
    decode(row.try_get("valid"))
}

/// Consumes an invitation for `email` and creates the user; `None` when the token is unknown,
/// used, expired or meant for another email. A taken email fails with `users_email_key`.
pub async fn invitation_accept(
    conn: impl SystemQuery,
    token: &Credential,
    email: &str,
    user_id: UserId,
    password_hash: &str,
    request_id: &str,
) -> Result<Option<(OrgId, Role)>, DbError> {
    let row = conn
        .query_opt(
            "select organization_id, role from app.invitation_accept($1, $2, $3, $4, $5, $6)",
            &[&token.org_param(), &token.hash(), &email, user_id.as_uuid(), &password_hash, &request_id],
        )
        .await?;
    row.map(|row| Ok((OrgId::from_uuid(decode(row.try_get("organization_id"))?), role(&row)?))).transpose()
}

pub(super) fn role(row: &Row) -> Result<Role, DbError> {
    let value: String = decode(row.try_get("role"))?;
    Role::from_db(&value).ok_or_else(|| DbError::Decode(anyhow::anyhow!("unknown role {value:?}")))
}

/// A validation job waiting in the outbox.
pub struct OutboxJob {
    pub job_id: JobId,
    pub org_id: OrgId,
    pub file_id: FileId,
    pub user_id: UserId,
}

/// Claims (locks until `tx` ends) up to `limit` of the oldest unpublished jobs of all tenants.
pub async fn outbox_claim(tx: impl SystemQuery, limit: i32) -> Result<Vec<OutboxJob>, DbError> {
    let rows = tx.query("select id, organization_id, file_id, user_id from app.outbox_claim($1)", &[&limit]).await?;
    rows.iter()
        .map(|row| {
            Ok(OutboxJob {
                job_id: JobId::from_uuid(decode(row.try_get("id"))?),
                org_id: OrgId::from_uuid(decode(row.try_get("organization_id"))?),
                file_id: FileId::from_uuid(decode(row.try_get("file_id"))?),
                user_id: UserId::from_uuid(decode(row.try_get("user_id"))?),
            })
        })
        .collect()
}

/// Removes published jobs, each named by its organization and id.
pub async fn outbox_delete(tx: impl SystemQuery, jobs: &[(OrgId, JobId)]) -> Result<(), DbError> {
    let (orgs, ids) = by_organization(jobs.iter().map(|(org, job)| (org, job.as_uuid())));
    tx.query("select app.outbox_delete($1, $2)", &[&orgs, &ids]).await?;
    Ok(())
}

/// Rows named by (organization, id), as the two arrays the registry functions take.
fn by_organization<'a>(rows: impl Iterator<Item = (&'a OrgId, &'a uuid::Uuid)>) -> (Vec<uuid::Uuid>, Vec<uuid::Uuid>) {
    rows.map(|(org, id)| (*org.as_uuid(), *id)).unzip()
}

/// Writes new jobs for files pending longer than `older_than_seconds`; returns how many.
pub async fn requeue_stale_pending(
    conn: impl SystemQuery,
    older_than_seconds: i64,
    limit: i32,
) -> Result<i32, DbError> {
    let row = conn
        .query_opt("select app.requeue_stale_pending($1, $2) as queued", &[&older_than_seconds, &limit])
        .await?
        .ok_or_else(|| DbError::Decode(anyhow::anyhow!("requeue_stale_pending returned no row")))?;
    decode(row.try_get("queued"))
}

/// Claims (locks until `tx` ends) deleted files whose bytes are still to be removed.
pub async fn purge_claim(tx: impl SystemQuery, limit: i32) -> Result<Vec<(OrgId, FileId)>, DbError> {
    let rows = tx.query("select file_id, organization_id from app.purge_claim($1)", &[&limit]).await?;
    rows.iter()
        .map(|row| {
            Ok((
                OrgId::from_uuid(decode(row.try_get("organization_id"))?),
                FileId::from_uuid(decode(row.try_get("file_id"))?),
            ))
        })
        .collect()
}

/// Removes up to `limit` tus uploads that expired before completing, in the caller's
/// transaction: commit it once their chunks are deleted from the store.
pub async fn tus_expire(tx: impl SystemQuery, limit: i32) -> Result<Vec<(OrgId, FileId, Vec<Chunk>)>, DbError> {
    let rows = tx.query("select organization_id, id, chunks from app.tus_expire($1)", &[&limit]).await?;
    rows.iter()
        .map(|row| {
            Ok((
                OrgId::from_uuid(decode(row.try_get("organization_id"))?),
                FileId::from_uuid(decode(row.try_get("id"))?),
                super::tus::chunks(decode(row.try_get("chunks"))?)?,
            ))
        })
        .collect()
}

/// What an upload found in the store still refers to (`app.tus_chunks_in_use`).
#[derive(Debug)]
pub struct ChunksInUse {
    pub org: OrgId,
    /// The nonces of the chunks its row records.
    pub nonces: std::collections::HashSet<uuid::Uuid>,
    /// A `PATCH` holds it: a chunk it stored may not be recorded yet.
    pub leased: bool,
}

/// Of the uploads `ids`, those that still exist, with what they refer to.
pub async fn tus_chunks_in_use(
    conn: impl SystemQuery,
    uploads: &[(OrgId, FileId)],
) -> Result<std::collections::HashMap<FileId, ChunksInUse>, DbError> {
    let (orgs, ids) = by_organization(uploads.iter().map(|(org, id)| (org, id.as_uuid())));
    let rows = conn
        .query("select organization_id, id, chunks, leased from app.tus_chunks_in_use($1, $2)", &[&orgs, &ids])
        .await?;
    rows.iter()
        .map(|row| {
            let chunks = super::tus::chunks(decode(row.try_get("chunks"))?)?;
            Ok((
                FileId::from_uuid(decode(row.try_get("id"))?),
                ChunksInUse {
                    org: OrgId::from_uuid(decode(row.try_get("organization_id"))?),
                    nonces: chunks.iter().map(|chunk| chunk.nonce).collect(),
                    leased: decode(row.try_get("leased"))?,
                },
            ))
        })
        .collect()
}

/// Forgets purged files, each named by its organization and id.
pub async fn purge_done(tx: impl SystemQuery, files: &[(OrgId, FileId)]) -> Result<(), DbError> {
    let (orgs, ids) = by_organization(files.iter().map(|(org, id)| (org, id.as_uuid())));
    tx.query("select app.purge_done($1, $2)", &[&orgs, &ids]).await?;
    Ok(())
}

/// The organizations whose plan sets a request rate of their own, with it (per minute, across
/// every api process).
pub async fn request_budgets(conn: impl SystemQuery) -> Result<Vec<(OrgId, u32)>, DbError> {
    let rows = conn.query("select organization_id, requests_per_minute from app.request_budgets()", &[]).await?;
    rows.iter()
        .map(|row| {
            let per_minute: i32 = decode(row.try_get("requests_per_minute"))?;
            let per_minute = u32::try_from(per_minute).map_err(|e| DbError::Decode(e.into()))?;
            Ok((OrgId::from_uuid(decode(row.try_get("organization_id"))?), per_minute))
        })
        .collect()
}

/// Adds refusals to the organizations' counts (`app.budget_refusals`), all in one statement.
pub async fn budget_refusals_add(
    conn: impl SystemQuery,
    refused: &std::collections::HashMap<(OrgId, super::refusals::Budget), u64>,
) -> Result<(), DbError> {
    let orgs: Vec<uuid::Uuid> = refused.keys().map(|(org, _)| *org.as_uuid()).collect();
    let budgets: Vec<&str> = refused.keys().map(|(_, budget)| budget.name()).collect();
    let counts: Vec<i64> = refused.values().map(|count| i64::try_from(*count).unwrap_or(i64::MAX)).collect();
    conn.query("select app.budget_refusals_add($1, $2, $3)", &[&orgs, &budgets, &counts]).await?;
    Ok(())
}
