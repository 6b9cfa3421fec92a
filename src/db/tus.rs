//! Resumable (tus) uploads in progress, and completed ones until their expiry. Only its creator
//! writes to an upload; owners and admins see and end any of their organization's (V19
//! policies). Its quota reservation (`db::uploads`) has the same id, and follows its lease (the
//! slot) and its expiry by trigger. One `PATCH` at a time holds an upload's lease (V18); every
//! write of a `PATCH` names its lease, so one that lost it changes nothing, and extends the
//! upload's expiry (it expires that long after its last byte). Removing expired ones across
//! tenants is in the registry (`system::tus_expire`).

use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use uuid::Uuid;

use super::{decode, DbError, TenantRead, TenantWrite};
use crate::domain::{Chunk, FileId, Filename, UserId};

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

/// Creates an upload, unless the caller already has `max_open` unfinished ones (`false`).
/// Exact under concurrency when the transaction reserved first: the reservation locks the
/// organization's row, so the count here sees every other creation committed before it.
#[tracing::instrument(name = "db.tus.create", skip_all, fields(upload_id = %id))]
pub async fn create(
    tx: impl TenantWrite,
    id: FileId,
    filename: &Filename,
    length: i64,
    expires_at: DateTime<Utc>,
    max_open: i64,
) -> Result<bool, DbError> {
    let ctx = *tx.ctx();
    let created = tx
        .execute(
            r#"
            insert into app.tus_uploads (id, organization_id, created_by, filename, upload_length, expires_at)
            select $1, $2, $3, $4, $5, $6
             where (select count(*) from app.tus_uploads t
                     where t.created_by = $3 and t.file_id is null and t.expires_at > now()) < $7
            "#,
            &[
                id.as_uuid(),
                ctx.org_id.as_uuid(),
                ctx.user_id.as_uuid(),
                &filename.as_str(),
                &length,
                &expires_at,
                &max_open,
            ],
        )
        .await?;
    Ok(created == 1)
}

/// The caller's own upload, unless it expired (a completed one too, until then): what the tus
/// protocol's requests address (a manager sees others' uploads, but does not send their bytes).
#[tracing::instrument(name = "db.tus.find", skip_all, fields(upload_id = %id))]
pub async fn find(tx: impl TenantRead, id: FileId) -> Result<Option<TusRow>, DbError> {
    // The user as every statement names it, not `app.current_user_id()`: a function per call.
    let sql = format!(
        concat!(
            "select {COLUMNS} from app.tus_uploads where id = $1 and created_by = ",
            tenant_user!(),
            " and expires_at > now()"
        ),
        COLUMNS = COLUMNS
    );
    tx.query_opt(&sql, &[id.as_uuid()]).await?.as_ref().map(TusRow::from_row).transpose()
}

/// An upload in progress, as its organization's managers (or its creator) see it.
#[derive(Debug, Clone)]
pub struct InProgress {
    pub id: FileId,
    pub created_by: UserId,
    pub created_by_email: String,
    pub filename: String,
    pub length: i64,
    pub offset: i64,
    /// A `PATCH` is receiving its bytes now (it holds one of the organization's slots).
    pub receiving: bool,
    pub created_at: DateTime<Utc>,
    /// When its last bytes were stored (or it was created).
    pub last_activity: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Most uploads one listing returns, the most recently active first.
pub const LIST_LIMIT: i64 = 1000;

/// The unfinished, unexpired uploads the caller sees: all of the organization's for an owner
/// or admin, their own for a member (the policies decide, not this statement).
#[tracing::instrument(name = "db.tus.list_in_progress", skip_all)]
pub async fn list_in_progress(tx: impl TenantRead) -> Result<Vec<InProgress>, DbError> {
    let rows = tx
        .query(
            r#"
            select t.id, t.created_by, u.email, t.filename, t.upload_length, t.upload_offset,
                   coalesce(t.lease_until > now(), false) as receiving,
                   t.created_at, t.updated_at, t.expires_at
              from app.tus_uploads t
              join app.users u on u.organization_id = t.organization_id and u.id = t.created_by
             where t.file_id is null
               and t.expires_at > now()
             order by t.updated_at desc, t.id
             limit $1
            "#,
            &[&LIST_LIMIT],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(InProgress {
                id: FileId::from_uuid(decode(row.try_get("id"))?),
                created_by: UserId::from_uuid(decode(row.try_get("created_by"))?),
                created_by_email: decode(row.try_get("email"))?,
                filename: decode(row.try_get("filename"))?,
                length: decode(row.try_get("upload_length"))?,
                offset: decode(row.try_get("upload_offset"))?,
                receiving: decode(row.try_get("receiving"))?,
                created_at: decode(row.try_get("created_at"))?,
                last_activity: decode(row.try_get("updated_at"))?,
                expires_at: decode(row.try_get("expires_at"))?,
            })
        })
        .collect()
}

/// How long a `PATCH`'s hold lasts, and how long the upload then lives without another byte.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTerms {
    pub holder: Uuid,
    pub lease_seconds: f64,
    pub expiry_seconds: f64,
}

/// Takes the upload's lease (and so one of the organization's slots, refused with
/// `organizations_uploads_in_flight` when none is free) if nobody else holds a live one and the
/// upload is still open: `false` when another `PATCH` holds it (423).
#[tracing::instrument(name = "db.tus.take_lease", skip_all, fields(upload_id = %id))]
pub async fn take_lease(tx: impl TenantWrite, id: FileId, terms: &LeaseTerms) -> Result<bool, DbError> {
    let taken = tx
        .execute(
            r#"
            update app.tus_uploads
               set lease_holder = $2,
                   lease_until = now() + make_interval(secs => $3),
                   expires_at = now() + make_interval(secs => $4)
             where id = $1
               and file_id is null
               and expires_at > now()
               and (lease_until is null or lease_until < now() or lease_holder = $2)
            "#,
            &[id.as_uuid(), &terms.holder, &terms.lease_seconds, &terms.expiry_seconds],
        )
        .await?;
    Ok(taken == 1)
}

/// Extends the holder's lease and the upload's expiry: `false` when it lapsed and another took it.
#[tracing::instrument(name = "db.tus.renew_lease", skip_all, fields(upload_id = %id))]
pub async fn renew_lease(tx: impl TenantWrite, id: FileId, terms: &LeaseTerms) -> Result<bool, DbError> {
    let renewed = tx
        .execute(
            r#"
            update app.tus_uploads
               set lease_until = now() + make_interval(secs => $3),
                   expires_at = now() + make_interval(secs => $4)
             where id = $1
               and lease_holder = $2
            "#,
            &[id.as_uuid(), &terms.holder, &terms.lease_seconds, &terms.expiry_seconds],
        )
        .await?;
    Ok(renewed == 1)
}

/// Gives `holder`'s lease back (nothing if it lapsed and another took it).
#[tracing::instrument(name = "db.tus.release_lease", skip_all, fields(upload_id = %id))]
pub async fn release_lease(tx: impl TenantWrite, id: FileId, holder: Uuid) -> Result<(), DbError> {
    tx.execute(
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

/// Records a stored chunk and extends the lease and the expiry, if the holder still holds it
/// and the upload is still at the chunk's offset: `false` otherwise. Never the last chunk: reaching the length
/// takes the file with it ([`complete`]; the `tus_uploads_whole_only_with_its_file` check
/// refuses anything else).
#[tracing::instrument(name = "db.tus.advance", skip_all, fields(upload_id = %id))]
pub async fn advance(tx: impl TenantWrite, id: FileId, chunk: &Chunk, terms: &LeaseTerms) -> Result<bool, DbError> {
    let (offset, size) = (signed(chunk.offset)?, signed(chunk.size)?);
    let entry = serde_json::to_value(chunk).map_err(|e| DbError::Decode(e.into()))?;
    let advanced = tx
        .execute(
            r#"
            update app.tus_uploads
               set upload_offset = upload_offset + $3,
                   chunks = chunks || $4,
                   lease_until = now() + make_interval(secs => $6),
                   expires_at = now() + make_interval(secs => $7)
             where id = $1
               and upload_offset = $2
               and lease_holder = $5
               and expires_at > now()
            "#,
            &[id.as_uuid(), &offset, &size, &entry, &terms.holder, &terms.lease_seconds, &terms.expiry_seconds],
        )
        .await?;
    Ok(advanced == 1)
}

/// Records the last chunk and marks the upload whole, as the file of the same id, ending the
/// lease: in the transaction that then records that file (`db::files::record_upload`), so the
/// offset reaches the length only in the commit that creates the file. The row stays for the
/// expiry, for a client whose last answer was lost to find the file. `false` when the holder
/// lost the lease or the upload is no longer where the chunk starts.
#[tracing::instrument(name = "db.tus.complete", skip_all, fields(upload_id = %id))]
pub async fn complete(tx: impl TenantWrite, id: FileId, last: &Chunk, terms: &LeaseTerms) -> Result<bool, DbError> {
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
                   lease_until = null,
                   expires_at = now() + make_interval(secs => $6)
             where id = $1
               and upload_offset = $2
               and upload_offset + $3 = upload_length
               and lease_holder = $5
               and expires_at > now()
            "#,
            &[id.as_uuid(), &offset, &size, &entry, &terms.holder, &terms.expiry_seconds],
        )
        .await?;
    Ok(completed == 1)
}

/// What terminating an upload found.
#[derive(Debug)]
pub enum Removal {
    /// Removed: its chunks, for the caller to delete from the store once this commits.
    Removed(Vec<Chunk>),
    /// None the caller sees (another's, unknown, expired).
    NotFound,
    /// It is a file now.
    Whole,
    /// A `PATCH` holds it.
    Leased,
}

/// Removes an unfinished upload the caller may end (its creator, or an owner or admin: the
/// policies decide), unless a `PATCH` holds its lease; says what it found, in one statement.
#[tracing::instrument(name = "db.tus.remove", skip_all, fields(upload_id = %id))]
pub async fn remove(tx: impl TenantWrite, id: FileId) -> Result<Removal, DbError> {
    let row = tx
        .query_opt(
            r#"
            with target as (
              select id, file_id, lease_until > now() as leased
                from app.tus_uploads
               where id = $1 and expires_at > now()
            ), removed as (
              delete from app.tus_uploads t
               using target
               where t.id = target.id
                 and target.file_id is null
                 and not coalesce(target.leased, false)
              returning t.chunks
            )
            select target.file_id is not null as whole, (select chunks from removed) as chunks
              from target
            "#,
            &[id.as_uuid()],
        )
        .await?;
    let Some(row) = row else { return Ok(Removal::NotFound) };
    if decode(row.try_get("whole"))? {
        return Ok(Removal::Whole);
    }
    match decode::<Option<serde_json::Value>>(row.try_get("chunks"))? {
        Some(value) => Ok(Removal::Removed(chunks(value)?)),
        None => Ok(Removal::Leased),
    }
}

fn signed(value: u64) -> Result<i64, DbError> {
    i64::try_from(value).map_err(|e| DbError::Decode(e.into()))
}
