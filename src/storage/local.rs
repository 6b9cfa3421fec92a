//! The local backend: files under a root directory (`UPLOAD_DIR/{organization_id}/{file_id}`),
//! the embedded default for one host. Writes are synced (file and directory) before they count
//! as stored; reads of a local file skip the stream `object_store` would build and go straight
//! to the blocking pool in large chunks.

use std::{
    io::{self, Read, Seek, SeekFrom},
    ops::Range,
    path::Path,
    time::SystemTime,
};

use futures_util::StreamExt;
use object_store::local::LocalFileSystem;
use tokio::io::AsyncReadExt;

use super::{ByteStream, Digesting, FileStore, Inspection};

/// Bytes read per blocking call when streaming or hashing a local file.
const READ_CHUNK: usize = 256 * 1024;

impl FileStore {
    /// A store rooted at `root`, created if missing.
    pub fn local(root: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(root)?;
        let objects = LocalFileSystem::new_with_prefix(root).map_err(io::Error::other)?.with_fsync(true);
        Ok(Self { local_root: Some(std::sync::Arc::new(root.to_owned())), ..Self::new(objects) })
    }
}

/// Removes the staging files (`{name}#{digits}`) under `root/*/` (files' writes) and
/// `root/*/tus/*/` (chunks' writes) last modified before `before`: a write cut off by a killed
/// process leaves one, which `object_store` never lists (a live write touches its file as its
/// bytes come, and a body that goes quiet is ended long before). How many were removed.
pub(super) fn remove_staging_files(root: &Path, before: SystemTime) -> io::Result<usize> {
    let mut removed = 0;
    for organization in std::fs::read_dir(root)? {
        let organization = organization?.path();
        removed += remove_staging_in(&organization, before)?;
        let Ok(uploads) = std::fs::read_dir(organization.join("tus")) else { continue };
        for upload in uploads {
            removed += remove_staging_in(&upload?.path(), before)?;
        }
    }
    Ok(removed)
}

fn remove_staging_in(dir: &Path, before: SystemTime) -> io::Result<usize> {
    let Ok(files) = std::fs::read_dir(dir) else { return Ok(0) };
    let mut removed = 0;
    for file in files {
        let file = file?;
        let name = file.file_name();
        let staging = name
            .to_str()
            .and_then(|name| name.rsplit_once('#'))
            .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        // (One that vanished meanwhile was a write completing: it is renamed into place.)
        let Ok(modified) = file.metadata().and_then(|meta| meta.modified()) else { continue };
        if staging && modified < before {
            match std::fs::remove_file(file.path()) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(removed)
}

/// `range` of an open file as a stream of large chunks.
pub(super) fn stream_range(mut file: std::fs::File, range: Range<u64>) -> io::Result<ByteStream> {
    // A seek only moves the offset; it never waits on the disk.
    file.seek(SeekFrom::Start(range.start))?;
    let bytes = tokio::fs::File::from_std(file).take(range.end - range.start);
    Ok(tokio_util::io::ReaderStream::with_capacity(bytes, READ_CHUNK).boxed())
}

/// Size, SHA-256 and first bytes of a local file of about `size` bytes, read on the calling
/// (blocking) thread.
pub(super) fn inspect(mut file: std::fs::File, size: u64) -> io::Result<Inspection> {
    let mut digest = Digesting::default();
    // No larger than the file: most are small, and zeroing 256 KiB per job showed in the worker's
    // profile. (Read to the end either way: the size only chooses the chunk.)
    let mut buffer = vec![0u8; (size as usize).clamp(1, READ_CHUNK)];
    loop {
        match file.read(&mut buffer) {
            Ok(0) => return Ok(digest.finish()),
            Ok(n) => digest.update(&buffer[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}
