//! `FileStore`: every file byte goes through here, whichever backend holds it — a local
//! directory ([`local`], the embedded default) or an S3-compatible bucket ([`s3`]), both behind
//! `object_store`'s one trait. Objects are keyed `{organization_id}/{file_id}`, built from ids
//! only, never from names a client sent, so no filename can reach outside the organization's
//! prefix.
//!
//! An upload is streamed in parts (memory stays flat whatever the size), hashed on a blocking
//! thread as it arrives, and becomes visible only when [`Staged::persist`] completes it: a
//! reader never sees half a file. Whatever path a request takes (error, client gone, quota
//! refused, timeout), an upload that is not persisted is aborted when dropped, and a persisted
//! one whose database row did not commit is deleted when its [`Placed`] guard is dropped.

mod chunks;
pub mod local;
pub mod s3;
mod staging;

pub use chunks::StoredChunk;
use staging::PartWriter;
pub use staging::{Placed, Staged};

use std::{io, ops::Range, sync::Arc, time::Duration};

use bytes::Bytes;
use futures_util::{stream::BoxStream, Stream, StreamExt, TryStreamExt};
use object_store::{path::Path, GetOptions, GetResultPayload, ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::{
    domain::{Chunk, FileId, OrgId},
    telemetry::spawn_blocking_with_tracing,
};

/// Size of one uploaded part: S3's minimum for all but the last part. A file smaller than
/// this is written in one request when it is persisted.
const PART_BYTES: usize = 5 * 1024 * 1024;
/// Parts of one upload being sent at once while the next one fills: with [`PART_BYTES`], an
/// upload holds at most about 15 MiB, whatever its size.
const PARTS_IN_FLIGHT: usize = 2;
/// The most of one upload's body [`FileStore::receive`] holds in memory: the part filling and
/// those on their way (what the upload service takes from its memory budget for it).
pub const MAX_HELD_BYTES: usize = PART_BYTES * (PARTS_IN_FLIGHT + 1);
/// Chunks queued for the hashing thread (actix and S3 deliver chunks of a few tens of KiB).
const HASH_QUEUE_CHUNKS: usize = 16;
/// Enough of a file's start for every signature `infer` knows.
const SNIFF_BYTES: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("file exceeds {limit_bytes} bytes")]
    TooLarge { limit_bytes: u64 },
    /// The client's body broke off or was malformed.
    #[error("{0}")]
    Body(String),
    /// No object under this key.
    #[error("stored object not found")]
    NotFound,
    /// The store did not do what was asked (unreachable, refused, i/o failed).
    #[error("file storage failed")]
    Failed(#[source] anyhow::Error),
}

impl From<object_store::Error> for StorageError {
    fn from(err: object_store::Error) -> Self {
        match err {
            object_store::Error::NotFound { .. } => StorageError::NotFound,
            other => StorageError::Failed(other.into()),
        }
    }
}

impl From<io::Error> for StorageError {
    fn from(err: io::Error) -> Self {
        StorageError::Failed(err.into())
    }
}

/// Where file bytes live: one `object_store` backend, shared by every request of the process.
#[derive(Debug, Clone)]
pub struct FileStore {
    objects: Arc<dyn ObjectStore>,
    /// The local backend's directory: the one place where a write cut off by a killed process
    /// leaves something `object_store` does not list (its staging file).
    local_root: Option<Arc<std::path::PathBuf>>,
}

/// Size and SHA-256 of what was received, computed while it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub size: u64,
    pub sha256: String,
}

/// What validation reads from a stored file.
#[derive(Debug, Clone)]
pub struct Inspection {
    pub size: u64,
    pub sha256: String,
    /// The first bytes, for type sniffing.
    pub head: Vec<u8>,
}

/// A byte stream read from the store (a download's body).
pub type ByteStream = BoxStream<'static, io::Result<Bytes>>;

impl FileStore {
    fn new(objects: impl ObjectStore) -> Self {
        Self { objects: Arc::new(objects), local_root: None }
    }

    /// The object key of a file (also what the database records as its path).
    pub fn key(org: OrgId, file: FileId) -> String {
        format!("{org}/{file}")
    }

    fn location(org: OrgId, file: FileId) -> Path {
        Path::from(Self::key(org, file))
    }

    /// Streams `body` to the store in parts, hashing as it goes, and gives up with
    /// [`StorageError::TooLarge`] as soon as more than `limit_bytes` arrived. Nothing is
    /// visible until the returned [`Staged`] is persisted; dropped, it is aborted. A body that
    /// breaks off is the client's ([`StorageError::Body`]).
    pub async fn receive<S, E>(
        &self,
        org: OrgId,
        file: FileId,
        body: S,
        limit_bytes: u64,
    ) -> Result<(Staged, Received), StorageError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let body = body.map_err(|e| StorageError::Body(format!("upload body broke off: {e}")));
        self.write_stream(org, file, body, limit_bytes).await
    }

    /// A resumable upload's chunks, in order, streamed into the file of the same id as
    /// [`FileStore::receive`] does; a chunk that cannot be read is the store's failure
    /// ([`StorageError::Failed`], a retryable 503), never the client's.
    pub async fn assemble(
        &self,
        org: OrgId,
        upload: FileId,
        chunks: Vec<Chunk>,
        limit_bytes: u64,
    ) -> Result<(Staged, Received), StorageError> {
        let body = self.read_chunks(org, upload, chunks).map_err(|e| StorageError::Failed(e.into()));
        self.write_stream(org, upload, body, limit_bytes).await
    }

    async fn write_stream<S>(
        &self,
        org: OrgId,
        file: FileId,
        mut body: S,
        limit_bytes: u64,
    ) -> Result<(Staged, Received), StorageError>
    where
        S: Stream<Item = Result<Bytes, StorageError>> + Unpin,
    {
        let mut hasher = Hasher::spawn();
        let mut parts = PartWriter::new(self.objects.clone(), Self::location(org, file));
        let mut received: u64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            received += chunk.len() as u64;
            if received > limit_bytes {
                return Err(StorageError::TooLarge { limit_bytes });
            }
            hasher.update(chunk.clone()).await?;
            parts.push(chunk).await?;
        }
        let digest = hasher.finish().await?;
        let staged = parts.finish().await?;
        Ok((staged, Received { size: digest.size, sha256: digest.sha256 }))
    }

    /// Streams `range` of a stored file (the whole file when `None`).
    pub async fn read(&self, org: OrgId, file: FileId, range: Option<Range<u64>>) -> Result<ByteStream, StorageError> {
        read_object(&self.objects, &Self::location(org, file), range).await
    }

    /// Reads a stored file once, streaming: its size, SHA-256 and first bytes. Hashing runs
    /// on a blocking thread; memory stays flat whatever the size.
    pub async fn inspect(&self, org: OrgId, file: FileId) -> Result<Inspection, StorageError> {
        let result = self.objects.get(&Self::location(org, file)).await?;
        match result.payload {
            // A local file is read and hashed on one blocking thread, without a stream between.
            GetResultPayload::File(file, _) => {
                let size = result.meta.size;
                Ok(spawn_blocking_with_tracing(move || local::inspect(file, size))
                    .await
                    .map_err(io::Error::other)??)
            }
            GetResultPayload::Stream(mut stream) => {
                let mut hasher = Hasher::spawn();
                while let Some(chunk) = stream.next().await {
                    hasher.update(chunk?).await?;
                }
                hasher.finish().await
            }
        }
    }

    /// Removes a stored file's bytes. Missing already is fine (purge is idempotent).
    pub async fn remove(&self, org: OrgId, file: FileId) -> Result<(), StorageError> {
        delete_object(&self.objects, &Self::location(org, file)).await
    }

    /// Whether the store answers within `timeout` (readiness): a listing under a prefix no file
    /// can have costs one small request, and fails if the bucket is missing or the credentials
    /// are wrong.
    pub async fn reachable(&self, timeout: Duration) -> bool {
        let prefix = Path::from("readiness-probe");
        let probe = self.objects.list_with_delimiter(Some(&prefix));
        match tokio::time::timeout(timeout, probe).await {
            Ok(Ok(_)) => true,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "file storage does not answer");
                false
            }
            Err(_) => false,
        }
    }
}

/// Deletes an object; one that is missing already counts as deleted (removal is idempotent).
pub(crate) async fn delete_object(objects: &Arc<dyn ObjectStore>, location: &Path) -> Result<(), StorageError> {
    match objects.delete(location).await {
        Err(object_store::Error::NotFound { .. }) | Ok(()) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Streams `range` of an object (all of it when `None`). A local file is read in large chunks
/// on the blocking pool rather than through the small-chunk stream `object_store` would build.
pub(crate) async fn read_object(
    objects: &Arc<dyn ObjectStore>,
    location: &Path,
    range: Option<Range<u64>>,
) -> Result<ByteStream, StorageError> {
    let options = GetOptions { range: range.map(Into::into), ..GetOptions::default() };
    let result = objects.get_opts(location, options).await?;
    Ok(match result.payload {
        GetResultPayload::File(file, _) => local::stream_range(file, result.range)?,
        GetResultPayload::Stream(stream) => stream.map_err(io::Error::other).boxed(),
    })
}

/// SHA-256, size and first bytes of a stream, computed on a blocking thread fed through a
/// bounded queue, so hashing never holds an async worker thread.
struct Hasher {
    chunks: mpsc::Sender<Bytes>,
    digest: tokio::task::JoinHandle<Inspection>,
}

impl Hasher {
    fn spawn() -> Self {
        let (chunks, mut incoming) = mpsc::channel::<Bytes>(HASH_QUEUE_CHUNKS);
        let digest = spawn_blocking_with_tracing(move || {
            let mut digest = Digesting::default();
            while let Some(chunk) = incoming.blocking_recv() {
                digest.update(&chunk);
            }
            digest.finish()
        });
        Self { chunks, digest }
    }

    async fn update(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        self.chunks.send(chunk).await.map_err(|_| StorageError::Failed(anyhow::anyhow!("the hashing thread ended")))
    }

    async fn finish(self) -> Result<Inspection, StorageError> {
        drop(self.chunks);
        Ok(self.digest.await.map_err(io::Error::other)?)
    }
}

/// The running state of an [`Inspection`].
#[derive(Default)]
struct Digesting {
    hasher: Sha256,
    size: u64,
    head: Vec<u8>,
}

impl Digesting {
    fn update(&mut self, chunk: &[u8]) {
        if self.head.len() < SNIFF_BYTES {
            let take = (SNIFF_BYTES - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
        }
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
    }

    fn finish(self) -> Inspection {
        Inspection { size: self.size, sha256: hex::encode(self.hasher.finalize()), head: self.head }
    }
}
