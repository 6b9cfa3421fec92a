//! Resumable (tus) uploads in progress. Under the `tus_uploads_own` policy an upload is its
//! creator's alone; its quota reservation (`db::uploads`) has the same id. Removing expired
//! ones across tenants is in the registry (`system::tus_expire`).

use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use super::{decode, DbError, Reading, Tx, Writing};
use crate::{
    domain::{FileId, Filename},
    storage::Chunk,
};

pub struct TusRow {
    pub id: FileId,
    pub filename: String,
    pub length: u64,
    pub offset: u64,
    pub chunks: Vec<Chunk>,
    pub expires_at: DateTime<Utc>,
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
        })
    }
}

pub(super) fn chunks(value: serde_json::Value) -> Result<Vec<Chunk>, DbError> {
    serde_json::from_value(value).map_err(|e| DbError::Decode(e.into()))
}

const COLUMNS: &str = "id, filename, upload_length, upload_offset, chunks, expires_at";

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

/// The caller's upload, unless it expired.
#[tracing::instrument(name = "db.tus.find", skip_all, fields(upload_id = %id))]
pub async fn find(tx: impl Into<Reading<'_>>, id: FileId) -> Result<Option<TusRow>, DbError> {
    let tx = tx.into();
    let sql = format!("select {COLUMNS} from app.tus_uploads where id = $1 and expires_at > now()");
    tx.query_opt(&sql, &[id.as_uuid()]).await?.as_ref().map(TusRow::from_row).transpose()
}

/// Records a stored chunk, if the upload is still at the chunk's offset (another PATCH may have
/// moved it meanwhile): `false` otherwise.
#[tracing::instrument(name = "db.tus.advance", skip_all, fields(upload_id = %id))]
pub async fn advance(tx: impl Into<Writing<'_>>, id: FileId, chunk: &Chunk) -> Result<bool, DbError> {
    let tx = tx.into();
    let (offset, size) = (signed(chunk.offset)?, signed(chunk.size)?);
    let entry = serde_json::to_value(chunk).map_err(|e| DbError::Decode(e.into()))?;
    let advanced = tx
        .execute(
            r#"
            update app.tus_uploads
               set upload_offset = upload_offset + $3,
                   chunks = chunks || $4
             where id = $1
               and upload_offset = $2
               and expires_at > now()
            "#,
            &[id.as_uuid(), &offset, &size, &entry],
        )
        .await?;
    Ok(advanced == 1)
}

/// Removes the caller's upload (terminated, or completed into a file); its chunks, for the
/// caller to delete from the store once this commits.
#[tracing::instrument(name = "db.tus.remove", skip_all, fields(upload_id = %id))]
pub async fn remove(tx: &Tx, id: FileId) -> Result<Option<Vec<Chunk>>, DbError> {
    let row = tx.query_opt("delete from app.tus_uploads where id = $1 returning chunks", &[id.as_uuid()]).await?;
    row.map(|row| chunks(decode(row.try_get("chunks"))?)).transpose()
}

fn signed(value: u64) -> Result<i64, DbError> {
    i64::try_from(value).map_err(|e| DbError::Decode(e.into()))
}
