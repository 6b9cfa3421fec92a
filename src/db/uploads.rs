//! Upload reservations: the bytes an upload may write, held in the database from before the
//! first byte is written until the file row commits, the upload fails, or its deadline passes
//! (then the maintenance loop prunes it); and its slot among the organization's uploads in
//! flight, held only while bytes are being received (`receiving_until`: a plain upload's
//! deadline, a resumable upload's lease, which the `tus_uploads_hold_reservation` trigger
//! copies here). The `upload_reservations_track` trigger refuses a reservation over the quota
//! and a slot over the organization's `max_concurrent_uploads` (V9, V19).

use super::{decode, DbError, TenantWrite};
use crate::domain::FileId;

/// How large an upload says it is.
#[derive(Debug, Clone, Copy)]
pub enum Size {
    /// Exactly this many bytes (a resumable upload's `Upload-Length`): more than the
    /// organization accepts is refused (`organizations_max_file_bytes`).
    Exactly(i64),
    /// At most this many (a plain upload's request length, or the service's limit): the
    /// reservation is cut to what the organization accepts, which the caller then enforces on
    /// the bytes as they arrive.
    AtMost(i64),
}

/// Reserves `size` for the upload that will become `file_id`, until `deadline_seconds` from now,
/// with a slot for `receiving_seconds` when it receives from the start (a plain upload, which
/// renews it as it goes: [`renew_slot`]). Returns the organization's largest file
/// (`max_file_bytes`, V28), read in the same statement.
/// Refused with `organizations_within_quota`, `organizations_uploads_in_flight` or
/// `organizations_max_file_bytes`.
#[tracing::instrument(name = "db.uploads.reserve", skip_all, fields(file_id = %file_id, size = ?size))]
pub async fn reserve(
    tx: impl TenantWrite,
    file_id: FileId,
    size: Size,
    deadline_seconds: i64,
    receiving_seconds: Option<f64>,
) -> Result<Option<i64>, DbError> {
    let ctx = *tx.ctx();
    let (bytes, at_most) = match size {
        Size::Exactly(bytes) => (bytes, false),
        Size::AtMost(bytes) => (bytes, true),
    };
    let row = tx
        .query_opt(
            r#"
            with rules as (select o.max_file_bytes from app.organizations o where o.id = $2),
            reserved as (
              insert into app.upload_reservations (id, organization_id, user_id, bytes, expires_at, receiving_until)
              select $1, $2, $3, case when $7 then least($4, coalesce(r.max_file_bytes, $4)) else $4 end,
                     now() + make_interval(secs => $5), now() + make_interval(secs => $6)
                from rules r
              returning 1
            )
            select r.max_file_bytes, (select count(*) from reserved) as reserved from rules r
            "#,
            &[
                file_id.as_uuid(),
                ctx.org_id.as_uuid(),
                ctx.user_id.as_uuid(),
                &bytes,
                &(deadline_seconds as f64),
                &receiving_seconds,
                &at_most,
            ],
        )
        .await?
        .ok_or_else(|| DbError::Decode(anyhow::anyhow!("the caller's organization is not visible")))?;
    decode(row.try_get("max_file_bytes"))
}

/// Keeps a plain upload's slot for `seconds` more: it is renewed while the request lives, so a
/// process killed mid-upload gives the slot back within seconds, not at the upload's deadline.
#[tracing::instrument(name = "db.uploads.renew_slot", skip_all, fields(file_id = %file_id))]
pub async fn renew_slot(tx: impl TenantWrite, file_id: FileId, seconds: f64) -> Result<(), DbError> {
    tx.execute(
        "update app.upload_reservations set receiving_until = now() + make_interval(secs => $2) where id = $1",
        &[file_id.as_uuid(), &seconds],
    )
    .await?;
    Ok(())
}

/// Gives the reservation back (its bytes now count as stored, or were never kept).
#[tracing::instrument(name = "db.uploads.release", skip_all, fields(file_id = %file_id))]
pub async fn release(tx: impl TenantWrite, file_id: FileId) -> Result<(), DbError> {
    tx.execute("delete from app.upload_reservations where id = $1", &[file_id.as_uuid()]).await?;
    Ok(())
}
