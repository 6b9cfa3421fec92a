//! The local backend: files under a root directory (`UPLOAD_DIR/{organization_id}/{file_id}`),
//! the embedded default for one host. Writes are synced (file and directory) before they count
//! as stored; reads of a local file skip the stream `object_store` would build and go straight
//! to the blocking pool in large chunks.

use std::{
    io::{self, Read, Seek, SeekFrom},
    ops::Range,
    path::Path,
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
        Ok(Self::new(objects))
    }
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
