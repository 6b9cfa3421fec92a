//! Upload reservations: the bytes an upload may write and its slot among the organization's
//! uploads in flight, held in the database from before the first byte is written until the file
//! row commits, the upload fails, or its deadline passes (then the maintenance loop prunes it).
//! The `upload_reservations_track` trigger refuses a reservation over the quota or over the
//! organization's `max_concurrent_uploads` (V9).

use super::{Db, DbError, TenantCtx, Writing};
use crate::domain::FileId;

/// Reserves `bytes` for the upload that will become `file_id`, until `deadline_seconds` from now.
/// Refused with `organizations_within_quota` or `organizations_uploads_in_flight`.
#[tracing::instrument(name = "db.uploads.reserve", skip_all, fields(file_id = %file_id, bytes))]
pub async fn reserve(
    tx: impl Into<Writing<'_>>,
    file_id: FileId,
    bytes: i64,
    deadline_seconds: i64,
) -> Result<(), DbError> {
    let tx = tx.into();
    let ctx = *tx.ctx();
    tx.execute(
        r#"
        insert into app.upload_reservations (id, organization_id, user_id, bytes, expires_at)
        values ($1, $2, $3, $4, now() + make_interval(secs => $5))
        "#,
        &[file_id.as_uuid(), ctx.org_id.as_uuid(), ctx.user_id.as_uuid(), &bytes, &(deadline_seconds as f64)],
    )
    .await?;
    Ok(())
}

/// Gives the reservation back (its bytes now count as stored, or were never kept).
#[tracing::instrument(name = "db.uploads.release", skip_all, fields(file_id = %file_id))]
pub async fn release(tx: impl Into<Writing<'_>>, file_id: FileId) -> Result<(), DbError> {
    let tx = tx.into();
    tx.execute("delete from app.upload_reservations where id = $1", &[file_id.as_uuid()]).await?;
    Ok(())
}

/// A reservation held by a request. Released with the file row ([`Reservation::released`]
/// once that committed), or, dropped on any other path (an error, a refused file, a client
/// that went away), released in the background; should that fail too, its deadline frees it.
pub struct Reservation {
    db: Db,
    ctx: TenantCtx,
    file_id: FileId,
    held: bool,
}

impl Reservation {
    pub async fn take(
        db: &Db,
        ctx: TenantCtx,
        file_id: FileId,
        bytes: u64,
        deadline_seconds: u64,
    ) -> Result<Self, DbError> {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        let deadline = i64::try_from(deadline_seconds).unwrap_or(i64::MAX);
        reserve(db.write(&ctx).await?, file_id, bytes, deadline).await?;
        Ok(Self { db: db.clone(), ctx, file_id, held: true })
    }

    /// The file row committed together with [`release`]: nothing is left to give back.
    pub fn released(mut self) {
        self.held = false;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.held {
            return;
        }
        let (db, ctx, file_id) = (self.db.clone(), self.ctx, self.file_id);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let released = async { release(db.write(&ctx).await?, file_id).await }.await;
                if let Err(e) = released {
                    tracing::warn!(file_id = %file_id, error = %e, "upload reservation not released; it expires at its deadline");
                }
            });
        }
    }
}
