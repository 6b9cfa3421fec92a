//! `FileStore`: every file byte goes through here. Paths are built from ids only
//! (`root/{organization_id}/{file_id}`), never from names a client sent, so no filename can
//! reach outside the root. Writes go to a hidden part file and are renamed into place only once
//! complete, so a reader never sees half a file; a part file that is not persisted is removed
//! when dropped, whatever path the request took (error, client gone, quota refused).

use std::{
    io::{self, Write},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::{
    domain::{FileId, OrgId},
    telemetry::spawn_blocking_with_tracing,
};

/// Chunks in flight between the network and the writer thread: memory stays flat whatever
/// the file size (actix delivers chunks of at most a few tens of KiB).
const CHANNEL_CHUNKS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("file exceeds {limit_bytes} bytes")]
    TooLarge { limit_bytes: u64 },
    /// The client's body broke off or was malformed.
    #[error("{0}")]
    Body(String),
    #[error("storage i/o failed")]
    Io(#[from] io::Error),
}

#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
}

/// Size and SHA-256 of what was received, computed while writing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub size: u64,
    pub sha256: String,
}

impl FileStore {
    pub fn new(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(Self { root })
    }

    /// Where a file's bytes live, relative to the root (what the database records).
    pub fn relative_path(org: OrgId, file: FileId) -> String {
        format!("{org}/{file}")
    }

    pub fn path(&self, org: OrgId, file: FileId) -> PathBuf {
        self.root.join(org.to_string()).join(file.to_string())
    }

    /// Streams `body` into a part file next to its final place, hashing as it goes, and gives
    /// up with [`StorageError::TooLarge`] as soon as more than `limit_bytes` arrived. Writing
    /// and hashing run on a blocking thread; this task only moves chunks.
    pub async fn receive<S, E>(
        &self,
        org: OrgId,
        file: FileId,
        mut body: S,
        limit_bytes: u64,
    ) -> Result<(PartFile, Received), StorageError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let dir = self.root.join(org.to_string());
        tokio::fs::create_dir_all(&dir).await?;
        let part = PartFile { path: dir.join(format!(".{file}.part")), target: self.path(org, file), armed: true };
        // Created here, before any writing starts, so that dropping `part` always has a file
        // to remove and the writer never recreates one after that.
        let handle = tokio::fs::File::create(&part.path).await?.into_std().await;

        let (chunks, mut incoming) = mpsc::channel::<Bytes>(CHANNEL_CHUNKS);
        let complete = Arc::new(AtomicBool::new(false));
        let body_complete = complete.clone();
        let writer = spawn_blocking_with_tracing(move || write_and_hash(handle, &mut incoming, &body_complete));

        let mut received: u64 = 0;
        let mut outcome = Ok(());
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    outcome = Err(StorageError::Body(format!("upload body broke off: {e}")));
                    break;
                }
            };
            received += chunk.len() as u64;
            if received > limit_bytes {
                outcome = Err(StorageError::TooLarge { limit_bytes });
                break;
            }
            if chunks.send(chunk).await.is_err() {
                break; // the writer failed; its error is reported below
            }
        }
        // Only a body that arrived whole is worth flushing and syncing; the writer drops the
        // rest as it is (the part file is removed either way).
        complete.store(outcome.is_ok(), Ordering::SeqCst);
        drop(chunks);
        let written = writer.await.map_err(io::Error::other)?;
        outcome?;
        let received = written?;
        Ok((part, received))
    }

    /// Reads a stored file once, streaming, on a blocking thread: its size, SHA-256 and first
    /// bytes (for type sniffing). Memory stays flat whatever the size.
    pub async fn inspect(&self, org: OrgId, file: FileId) -> io::Result<Inspection> {
        let path = self.path(org, file);
        spawn_blocking_with_tracing(move || inspect_file(&path)).await.map_err(io::Error::other)?
    }

    /// Removes a stored file's bytes. Missing already is fine (purge is idempotent).
    pub async fn remove(&self, org: OrgId, file: FileId) -> io::Result<()> {
        match tokio::fs::remove_file(self.path(org, file)).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Enough of a file's start for every signature `infer` knows.
const SNIFF_BYTES: usize = 8192;

/// What validation reads from a stored file.
#[derive(Debug, Clone)]
pub struct Inspection {
    pub size: u64,
    pub sha256: String,
    pub head: Vec<u8>,
}

fn inspect_file(path: &Path) -> io::Result<Inspection> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    let mut size = 0u64;
    loop {
        let n = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = &buffer[..n];
        if head.len() < SNIFF_BYTES {
            let take = (SNIFF_BYTES - head.len()).min(n);
            head.extend_from_slice(&chunk[..take]);
        }
        hasher.update(chunk);
        size += n as u64;
    }
    Ok(Inspection { size, sha256: hex::encode(hasher.finalize()), head })
}

/// Writes and hashes chunks until the channel closes; then, if the body is `complete`, flushes
/// and syncs. An abandoned body (over the limit, broken off) is not synced: its bytes are about
/// to be removed, and an fsync of up to the size limit would only cost the disk.
fn write_and_hash(
    file: std::fs::File,
    incoming: &mut mpsc::Receiver<Bytes>,
    complete: &AtomicBool,
) -> io::Result<Received> {
    let mut out = io::BufWriter::with_capacity(256 * 1024, file);
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = incoming.blocking_recv() {
        hasher.update(&chunk);
        out.write_all(&chunk)?;
        size += chunk.len() as u64;
    }
    if !complete.load(Ordering::SeqCst) {
        return Err(io::Error::other("upload abandoned"));
    }
    let file = out.into_inner().map_err(|e| e.into_error())?;
    // Durable before the database row says the file exists.
    file.sync_data()?;
    Ok(Received { size, sha256: hex::encode(hasher.finalize()) })
}

/// A completely received upload not yet in place. Dropped without [`PartFile::persist`], it
/// deletes itself.
#[derive(Debug)]
pub struct PartFile {
    path: PathBuf,
    target: PathBuf,
    /// Whether dropping still has a part file to remove.
    armed: bool,
}

impl PartFile {
    /// Moves the bytes to their final path. The returned guard removes them again if dropped
    /// before [`Placed::keep`] (e.g. the database commit that records them failed).
    pub async fn persist(mut self) -> io::Result<Placed> {
        tokio::fs::rename(&self.path, &self.target).await?;
        self.armed = false;
        Ok(Placed { path: Some(std::mem::take(&mut self.target)) })
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if self.armed {
            remove_in_background(std::mem::take(&mut self.path));
        }
    }
}

/// A file in its final place whose database row is not committed yet.
#[derive(Debug)]
pub struct Placed {
    path: Option<PathBuf>,
}

impl Placed {
    /// The row is committed: the bytes stay.
    pub fn keep(mut self) {
        self.path = None;
    }
}

impl Drop for Placed {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            remove_in_background(path);
        }
    }
}

/// Removal from a `Drop`, which may run on an async worker thread: the unlink (which can block
/// on a busy disk) goes to the blocking pool when there is a runtime, and happens in place
/// only when there is none.
fn remove_in_background(path: PathBuf) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn_blocking(move || remove_quietly(&path))),
        Err(_) => remove_quietly(&path),
    }
}

fn remove_quietly(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "could not remove an abandoned upload");
        }
    }
}
