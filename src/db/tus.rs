//! Resumable (tus) uploads in progress, and completed ones until their expiry. Under the
//! `tus_uploads_own` policy an upload is its creator's alone; its quota reservation
//! (`db::uploads`) has the same id. One `PATCH` at a time holds an upload's lease (V18); every
//! write of a `PATCH` names its lease, so one that lost it changes nothing. Removing expired
//! ones across tenants is in the registry (`system::tus_expire`).

use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use uuid::Uuid;

use super::{decode, DbError, Reading, Tx, Writing};
use crate::{
    domain::{FileId, Filename},
    storage::Chunk,
};

#[derive(Debug, Clone)]
pub struct TusRow {
    pub id: FileId,
    pub filename: String,
    pub length: u64,
    pub offset: u64,
    pub chunks: Vec<Chunk>,
    pub expires_at: DateTime<Utc>,
    /// Whole: committed as this file (its id is the upload's).
    pub file_id: Option<FileId>,
}

impl TusRow {
    fn from_row(row: &Row) -> Result<Self, DbError> {
        let unsigned = |value: i64| u64::try_from(value).map_err(|e| DbError::Decode(e.into()));
        Ok(Self {
            id: FileId::from_uuid(decode(row.try_get("id"))?),
            filename: decode(row.try_get("filename"))?,
            length: unsigned(decode(row.try_get("upload_length"))?)?,
            offset: unsigned(decode(row.try_get("upload_offset"))?)?,
            chunks: chunks(decode(row.try_get("chunks"))?)?,
            expires_at: decode(row.try_get("expires_at"))?,
            file_id: decode(row.try_get::<_, Option<uuid::Uuid>>("file_id"))?.map(FileId::from_uuid),
        })
    }
}

pub(super) fn chunks(value: serde_json::Value) -> Result<Vec<Chunk>, DbError> {
    serde_json::from_value(value).map_err(|e| DbError::Decode(e.into()))
}

const COLUMNS: &str = "id, filename, upload_length, upload_offset, chunks, expires_at, file_id";

#[tracing::instrument(name = "db.tus.create", skip_all, fields(upload_id = %id))]
pub async fn create(
    tx: &Tx,
    id: FileId,
    filename: &Filename,
    length: i64,
    expires_at: DateTime<Utc>,
) -> Result<(), DbError> {
    let ctx = *tx.ctx();
    tx.execute(
        r#"
        insert into app.tus_uploads (id, organization_id, created_by, filename, upload_length, expires_at)
        values ($1, $2, $3, $4, $5, $6)
        "#,
        &[id.as_uuid(), ctx.org_id.as_uuid(), ctx.user_id.as_uuid(), &filename.as_str(), &length, &expires_at],
    )
    .await?;
    Ok(())
}

/// The caller's upload, unless it expired (a completed one too, until then).
#[tracing::instrument(name = "db.tus.find", skip_all, fields(upload_id = %id))]
pub async fn find(tx: impl Into<Reading<'_>>, id: FileId) -> Result<Option<TusRow>, DbError> {
    let tx = tx.into();
    let sql = format!("select {COLUMNS} from app.tus_uploads where id = $1 and expires_at > now()");
    tx.query_opt(&sql, &[id.as_uuid()]).await?.as_ref().map(TusRow::from_row).transpose()
}

/// Takes the upload's lease for `holder` until `seconds` from now, if nobody else holds a
/// live one and the upload is still open: `false` when another `PATCH` holds it (423).
#[tracing::instrument(name = "db.tus.take_lease", skip_all, fields(upload_id = %id))]
pub async fn take_lease(tx: impl Into<Writing<'_>>, id: FileId, holder: Uuid, seconds: f64) -> Result<bool, DbError> {
    let taken = tx
        .into()
        .execute(
            r#"
            update app.tus_uploads
               set lease_holder = $2,
                   lease_until = now() + make_interval(secs => $3)
             where id = $1
               and file_id is null
               and expires_at > now()
               and (lease_until is null or lease_until < now() or lease_holder = $2)
            "#,
            &[id.as_uuid(), &holder, &seconds],
        )
        .await?;
    Ok(taken == 1)
}

/// Extends `holder`'s lease by `seconds` from now: `false` when it lapsed and another took it.
#[tracing::instrument(name = "db.tus.renew_lease", skip_all, fields(upload_id = %id))]
pub async fn renew_lease(tx: impl Into<Writing<'_>>, id: FileId, holder: Uuid, seconds: f64) -> Result<bool, DbError> {
    let renewed = tx
        .into()
        .execute(
            r#"
            update app.tus_uploads
               set lease_until = now() + make_interval(secs => $3)
             where id = $1
               and lease_holder = $2
            "#,
            &[id.as_uuid(), &holder, &seconds],
        )
        .await?;
    Ok(renewed == 1)
}

/// Gives `holder`'s lease back (nothing if it lapsed and another took it).
#[tracing::instrument(name = "db.tus.release_lease", skip_all, fields(upload_id = %id))]
pub async fn release_lease(tx: impl Into<Writing<'_>>, id: FileId, holder: Uuid) -> Result<(), DbError> {
    tx.into()
        .execute(
            r#"
            update app.tus_uploads
               set lease_holder = null,
                   lease_until = null
             where id = $1
               and lease_holder = $2
            "#,
            &[id.as_uuid(), &holder],
        )
        .await?;
    Ok(())
}

/// Records a stored chunk and extends the lease, if `holder` still holds it and the upload is
/// still at the chunk's offset: `false` otherwise. Never the last chunk: reaching the length
/// takes the file with it ([`complete`]; the `tus_uploads_whole_only_with_its_file` check
/// refuses anything else).
#[tracing::instrument(name = "db.tus.advance", skip_all, fields(upload_id = %id))]
pub async fn advance(
    tx: impl Into<Writing<'_>>,
    id: FileId,
    chunk: &Chunk,
    holder: Uuid,
    lease_seconds: f64,
) -> Result<bool, DbError> {
    let tx = tx.into();
    let (offset, size) = (signed(chunk.offset)?, signed(chunk.size)?);
    let entry = serde_json::to_value(chunk).map_err(|e| DbError::Decode(e.into()))?;
    let advanced = tx
        .execute(
            r#"
            update app.tus_uploads
               set upload_offset = upload_offset + $3,
                   chunks = chunks || $4,
                   lease_until = now() + make_interval(secs => $6)
             where id = $1
               and upload_offset = $2
               and lease_holder = $5
               and expires_at > now()
            "#,
            &[id.as_uuid(), &offset, &size, &entry, &holder, &lease_seconds],
        )
        .await?;
    Ok(advanced == 1)
}

/// Records the last chunk and marks the upload whole, as the file of the same id, ending the
/// lease: in the transaction that then records that file (`db::files::record_upload`), so the
/// offset reaches the length only in the commit that creates the file. `false` when `holder`
/// lost the lease or the upload is no longer where the chunk starts.
#[tracing::instrument(name = "db.tus.complete", skip_all, fields(upload_id = %id))]
pub async fn complete(tx: &Tx, id: FileId, last: &Chunk, holder: Uuid) -> Result<bool, DbError> {
    let (offset, size) = (signed(last.offset)?, signed(last.size)?);
    let entry = serde_json::to_value(last).map_err(|e| DbError::Decode(e.into()))?;
    let completed = tx
        .execute(
            r#"
            update app.tus_uploads
               set upload_offset = upload_offset + $3,
                   chunks = chunks || $4,
                   file_id = id,
                   lease_holder = null,
                   lease_until = null
             where id = $1
               and upload_offset = $2
               and upload_offset + $3 = upload_length
               and lease_holder = $5
               and expires_at > now()
            "#,
            &[id.as_uuid(), &offset, &size, &entry, &holder],
        )
        .await?;
    Ok(completed == 1)
}

/// Removes the caller's unfinished upload (terminated), unless a `PATCH` holds its lease; its
/// chunks, for the caller to delete from the store once this commits.
#[tracing::instrument(name = "db.tus.remove", skip_all, fields(upload_id = %id))]
pub async fn remove(tx: &Tx, id: FileId) -> Result<Option<Vec<Chunk>>, DbError> {
    let row = tx
        .query_opt(
            r#"
            delete from app.tus_uploads
             where id = $1
               and file_id is null
               and (lease_until is null or lease_until < now())
            returning chunks
            "#,
            &[id.as_uuid()],
        )
        .await?;
    row.map(|row| chunks(decode(row.try_get("chunks"))?)).transpose()
}

fn signed(value: u64) -> Result<i64, DbError> {
    i64::try_from(value).map_err(|e| DbError::Decode(e.into()))
}
