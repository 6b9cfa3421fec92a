//! The transactional outbox: a validation job is written in the same tenant transaction as its
//! file row, so it exists if and only if the upload committed. Publishing and removing jobs is
//! the relay's, across tenants, through the registry (`system::outbox_claim`, `outbox_delete`).

use super::{DbError, Writing};
use crate::domain::FileId;

/// Adds the validation job for a file written in the same transaction (the foreign key to the
/// file is checked at commit, so the two may be sent in either order).
#[tracing::instrument(name = "db.outbox.enqueue", skip_all, fields(file_id = %file_id))]
pub async fn enqueue(tx: impl Into<Writing<'_>>, job_id: uuid::Uuid, file_id: FileId) -> Result<(), DbError> {
    let tx = tx.into();
    let ctx = *tx.ctx();
    tx.execute(
        r#"
        insert into app.outbox (id, organization_id, file_id, user_id)
        values ($1, $2, $3, $4)
        "#,
        &[&job_id, ctx.org_id.as_uuid(), file_id.as_uuid(), ctx.user_id.as_uuid()],
    )
    .await?;
    Ok(())
}
