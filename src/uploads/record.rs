//! Recording a completely received file: its bytes go in place, then its row, validation job,
//! reservation release and audit entry commit in one statement (`db::files::record_upload`).

use anyhow::Context;

use super::{Uploader, Uploads};
use crate::{
    db::{self, files::NewFile, tus::LeaseTerms},
    domain::{Chunk, FileId, Filename, JobId},
    error::ApiError,
    storage::{Received, Staged},
};

/// A resumable upload whose last chunk is recorded in the same commit as its file.
pub struct Completing<'a> {
    pub last: &'a Chunk,
    pub lease: &'a LeaseTerms,
}

impl Uploads {
    /// Records a completely received file and commits: makes its bytes visible in the store,
    /// then, in a transaction begun only now (no pooled connection waits on the store), sends
    /// the file row, its validation job, the release of its reservation and the audit entry as
    /// one statement with the commit; for a resumable upload, after the statement that records
    /// its last chunk and its end (`completing`). On any error nothing is kept: no row, no
    /// object — unless the commit's outcome is unknown and the file may be committed after all
    /// (see [`Uploads::discard_unless_committed`]).
    pub async fn record_file(
        &self,
        uploader: &Uploader,
        file_id: FileId,
        filename: &Filename,
        staged: Staged,
        received: &Received,
        completing: Option<Completing<'_>>,
    ) -> Result<(), ApiError> {
        let size = i64::try_from(received.size).context("file size out of range")?;
        let new_file = NewFile { id: file_id, filename, size, sha256: &received.sha256 };
        // The bytes go in place first, so that a committed row always has them, and are removed
        // again if the record fails. (Placing them after the row's insert and before its commit
        // would hold the organization's row for the store's write.)
        let placed = staged.persist().await?;
        let recorded = async {
            let tx = self.db.begin(&uploader.ctx).await?;
            if let Some(completing) = &completing {
                if !db::tus::complete(&tx, file_id, completing.last, completing.lease).await? {
                    // Another PATCH took the upload over (this one's lease lapsed).
                    return Err(ApiError::Locked);
                }
            }
            db::files::record_upload(tx, &new_file, JobId::new(), uploader.uploaded(file_id, filename, size)).await?;
            Ok(())
        };
        match recorded.await {
            Ok(()) => {
                placed.keep();
                Ok(())
            }
            Err(e) if completing.is_some() => {
                // The file's key is the upload's id: bytes another PATCH committed there are
                // not this one's to remove.
                self.discard_unless_committed(uploader, file_id, placed).await;
                Err(e)
            }
            Err(e) => {
                placed.discard().await;
                Err(e)
            }
        }
    }

    /// A resumable upload's file that this request could not record: removed, unless the
    /// upload reads as whole (committed by another `PATCH`, or by this one's commit whose answer
    /// was lost). When even that cannot be read, the bytes stay: an object no row names is
    /// cheaper than a committed file without its bytes.
    async fn discard_unless_committed(&self, uploader: &Uploader, file_id: FileId, placed: crate::storage::Placed) {
        let committed = async { db::tus::find(self.db.read(&uploader.ctx).await?, file_id).await }.await;
        match committed {
            Ok(Some(upload)) if upload.file_id.is_some() => placed.keep(),
            Ok(_) => placed.discard().await,
            Err(e) => {
                tracing::warn!(upload_id = %file_id, error = %e, "cannot tell whether the upload committed; its bytes stay");
                placed.keep();
            }
        }
    }
}
