//! A file on its way into the store: its parts sent while the next fills ([`PartWriter`]), the
//! whole not yet visible ([`Staged`]), then in place but not yet committed ([`Placed`]). Each
//! cleans up after itself when dropped, whatever path the request takes.

use std::{io, mem, sync::Arc};

use bytes::Bytes;
use object_store::{path::Path, MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload};
use tokio::task::JoinSet;

use super::{StorageError, PARTS_IN_FLIGHT, PART_BYTES};

/// Parts of an upload on their way to the store: buffered until a part is full, then sent while
/// the next one fills. The multipart upload is begun only once a first part is full, so a small
/// file costs one request, when it is persisted.
pub(super) struct PartWriter {
    objects: Arc<dyn ObjectStore>,
    location: Path,
    buffered: Vec<Bytes>,
    buffered_bytes: usize,
    upload: Option<Upload>,
    in_flight: JoinSet<object_store::Result<()>>,
}

impl PartWriter {
    pub(super) fn new(objects: Arc<dyn ObjectStore>, location: Path) -> Self {
        Self { objects, location, buffered: Vec::new(), buffered_bytes: 0, upload: None, in_flight: JoinSet::new() }
    }

    pub(super) async fn push(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        self.buffered_bytes += chunk.len();
        self.buffered.push(chunk);
        if self.buffered_bytes >= PART_BYTES {
            self.send_part().await?;
        }
        Ok(())
    }

    async fn send_part(&mut self) -> Result<(), StorageError> {
        let upload = match &mut self.upload {
            Some(upload) => upload,
            None => self.upload.insert(Upload(Some(self.objects.put_multipart(&self.location).await?))),
        };
        while self.in_flight.len() >= PARTS_IN_FLIGHT {
            settle(self.in_flight.join_next().await)?;
        }
        let part: PutPayload = mem::take(&mut self.buffered).into_iter().collect();
        self.buffered_bytes = 0;
        self.in_flight.spawn(upload.put_part(part));
        Ok(())
    }

    /// Every part sent (or, for a small file, its bytes kept for one write).
    pub(super) async fn finish(mut self) -> Result<Staged, StorageError> {
        if self.upload.is_some() && self.buffered_bytes > 0 {
            self.send_part().await?;
        }
        while let Some(sent) = self.in_flight.join_next().await {
            settle(Some(sent))?;
        }
        let pending = match self.upload.take() {
            Some(upload) => Pending::Multipart(upload),
            None => Pending::Whole(mem::take(&mut self.buffered).into_iter().collect()),
        };
        Ok(Staged { objects: self.objects.clone(), location: self.location.clone(), pending })
    }
}

fn settle(sent: Option<Result<object_store::Result<()>, tokio::task::JoinError>>) -> Result<(), StorageError> {
    match sent {
        None => Ok(()),
        Some(joined) => Ok(joined.map_err(io::Error::other)??),
    }
}

/// A multipart upload that is aborted (its parts discarded) if dropped before completing.
struct Upload(Option<Box<dyn MultipartUpload>>);

impl Upload {
    fn put_part(&mut self, part: PutPayload) -> object_store::UploadPart {
        self.0.as_mut().expect("an upload is only dropped or completed once").put_part(part)
    }

    async fn complete(mut self) -> object_store::Result<()> {
        let mut upload = self.0.take().expect("an upload is only dropped or completed once");
        match upload.complete().await {
            Ok(_) => Ok(()),
            Err(e) => {
                self.0 = Some(upload); // aborted on drop
                Err(e)
            }
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        let Some(mut upload) = self.0.take() else { return };
        // Without a runtime (process exiting), the parts are left to the bucket's lifecycle
        // rule for incomplete uploads (docs/scaling.md); a local upload removes its own.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = upload.abort().await {
                    tracing::warn!(error = %e, "could not abort an abandoned upload");
                }
            });
        }
    }
}

/// A completely received upload, not yet visible. Dropped without [`Staged::persist`], it is
/// aborted.
pub struct Staged {
    objects: Arc<dyn ObjectStore>,
    location: Path,
    pending: Pending,
}

enum Pending {
    /// A file smaller than one part: written in one request.
    Whole(PutPayload),
    Multipart(Upload),
}

impl std::fmt::Debug for Staged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staged").field("location", &self.location).finish_non_exhaustive()
    }
}

impl Staged {
    /// Makes the bytes visible under their key (durably: a local store syncs file and
    /// directory). The returned guard deletes them again if dropped before [`Placed::keep`]
    /// (e.g. the database commit that records them failed).
    pub async fn persist(self) -> Result<Placed, StorageError> {
        match self.pending {
            Pending::Whole(bytes) => drop(self.objects.put(&self.location, bytes).await?),
            Pending::Multipart(upload) => upload.complete().await?,
        }
        Ok(Placed { objects: self.objects, location: Some(self.location) })
    }
}

/// A file in its final place whose database row is not committed yet.
#[derive(Debug)]
pub struct Placed {
    objects: Arc<dyn ObjectStore>,
    location: Option<Path>,
}

impl Placed {
    /// The row is committed: the bytes stay.
    pub fn keep(mut self) {
        self.location = None;
    }

    /// The row did not commit: removes the bytes, and waits for it, so that the refusal the
    /// client sees leaves nothing behind. (Dropped instead, by a request cancelled meanwhile,
    /// they are removed in the background.)
    pub async fn discard(mut self) {
        if let Some(location) = self.location.take() {
            remove_uncommitted(&self.objects, location).await;
        }
    }
}

impl Drop for Placed {
    fn drop(&mut self) {
        let Some(location) = self.location.take() else { return };
        let objects = self.objects.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { remove_uncommitted(&objects, location).await });
        }
    }
}

async fn remove_uncommitted(objects: &Arc<dyn ObjectStore>, location: Path) {
    if let Err(e) = objects.delete(&location).await {
        tracing::warn!(%location, error = %e, "could not remove the bytes of an upload that did not commit");
    }
}
