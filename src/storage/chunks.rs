//! The chunks of resumable (tus) uploads in progress: stored one object per write as they
//! arrive, read back in order when the upload completes, and found again by listing when the
//! worker sweeps those no upload refers to.

use std::io;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::{StreamExt, TryStreamExt};
use object_store::{path::Path, ObjectStoreExt, PutPayload};

use super::{delete_object, local, read_object, ByteStream, FileStore, StorageError};
use crate::{
    domain::{Chunk, FileId, OrgId},
    telemetry::spawn_blocking_with_tracing,
};

/// A chunk object as found in the store: whose upload it is, and which write of it.
#[derive(Debug, Clone)]
pub struct StoredChunk {
    pub org: OrgId,
    pub upload: FileId,
    pub nonce: uuid::Uuid,
    location: Path,
}

impl StoredChunk {
    /// `{organization_id}/tus/{upload_id}/{offset}-{nonce}`; anything else is not a chunk.
    fn parse(location: Path) -> Option<Self> {
        let parts: Vec<_> = location.parts().collect();
        let [org, tus, upload, name] = parts.as_slice() else { return None };
        if tus.as_ref() != "tus" {
            return None;
        }
        let (_offset, nonce) = name.as_ref().split_once('-')?;
        Some(Self {
            org: OrgId::from_uuid(org.as_ref().parse().ok()?),
            upload: FileId::from_uuid(upload.as_ref().parse().ok()?),
            nonce: nonce.parse().ok()?,
            location,
        })
    }
}

impl FileStore {
    /// A chunk's key: `{organization_id}/tus/{upload_id}/{offset}-{nonce}`, ids the server made,
    /// and a nonce per write, so a PATCH that lost a race for an offset never overwrites the
    /// winner's chunk.
    fn chunk_location(org: OrgId, upload: FileId, chunk: &Chunk) -> Path {
        Path::from(format!("{org}/tus/{upload}/{:020}-{}", chunk.offset, chunk.nonce))
    }

    /// Stores one chunk of an upload in one request.
    pub async fn put_chunk(
        &self,
        org: OrgId,
        upload: FileId,
        chunk: &Chunk,
        bytes: Vec<Bytes>,
    ) -> Result<(), StorageError> {
        let payload: PutPayload = bytes.into_iter().collect();
        self.objects.put(&Self::chunk_location(org, upload, chunk), payload).await?;
        Ok(())
    }

    /// The upload's bytes so far, chunk after chunk, as one stream.
    pub(super) fn read_chunks(&self, org: OrgId, upload: FileId, chunks: Vec<Chunk>) -> ByteStream {
        let objects = self.objects.clone();
        futures_util::stream::iter(chunks)
            .then(move |chunk| {
                let objects = objects.clone();
                async move {
                    let location = Self::chunk_location(org, upload, &chunk);
                    read_object(&objects, &location, None).await.map_err(io::Error::other)
                }
            })
            .try_flatten()
            .boxed()
    }

    /// Chunk objects of every organization last written before `before`, at most `limit` of
    /// them: what the worker's sweep checks against the uploads that still refer to chunks. One
    /// listing of the organizations, then one of each organization's `tus/` prefix.
    pub async fn chunks_written_before(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<StoredChunk>, StorageError> {
        let organizations = self.objects.list_with_delimiter(None).await?.common_prefixes;
        let mut found = Vec::new();
        for organization in organizations {
            let prefix = organization.clone().join("tus");
            let mut listed = self.objects.list(Some(&prefix));
            while let Some(meta) = listed.next().await {
                let meta = match meta {
                    Err(object_store::Error::NotFound { .. }) => break,
                    meta => meta?,
                };
                if meta.last_modified >= before {
                    continue;
                }
                if let Some(chunk) = StoredChunk::parse(meta.location) {
                    found.push(chunk);
                    if found.len() == limit {
                        return Ok(found);
                    }
                }
            }
        }
        Ok(found)
    }

    /// Removes what writes cut off before `before` left behind, that no listing shows: the
    /// local backend's staging files (`{key}#{n}`, renamed into place when a write completes),
    /// of chunks and of files. An S3 `PUT` cut off leaves nothing; an S3 multipart upload cut
    /// off is the bucket's lifecycle rule's (docs/deploy.md). How many were removed.
    pub async fn remove_cut_off_writes(&self, before: DateTime<Utc>) -> Result<usize, StorageError> {
        let Some(root) = self.local_root.clone() else { return Ok(0) };
        let removed = spawn_blocking_with_tracing(move || local::remove_staging_files(&root, before.into()))
            .await
            .map_err(|e| StorageError::Failed(e.into()))??;
        Ok(removed)
    }

    /// Removes a chunk object found by [`FileStore::chunks_written_before`].
    pub async fn remove_stored_chunk(&self, chunk: &StoredChunk) -> Result<(), StorageError> {
        delete_object(&self.objects, &chunk.location).await
    }

    /// Removes an upload's chunks (missing ones are fine).
    pub async fn remove_chunks(&self, org: OrgId, upload: FileId, chunks: &[Chunk]) -> Result<(), StorageError> {
        for chunk in chunks {
            delete_object(&self.objects, &Self::chunk_location(org, upload, chunk)).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_chunks_key_reads_as_a_chunk() {
        let (org, upload, nonce) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        let chunk = Chunk { offset: 8_388_608, size: 1, nonce };
        let key = FileStore::chunk_location(OrgId::from_uuid(org), FileId::from_uuid(upload), &chunk);
        let found = StoredChunk::parse(key).expect("a chunk's key");
        assert_eq!((found.org, found.upload, found.nonce), (OrgId::from_uuid(org), FileId::from_uuid(upload), nonce));

        for other in [
            format!("{org}/{upload}"),
            format!("{org}/files/{upload}/00000000000000000000-{nonce}"),
            format!("{org}/tus/{upload}/00000000000000000000-not-a-uuid"),
            format!("{org}/tus/not-a-uuid/00000000000000000000-{nonce}"),
            format!("{org}/tus/{upload}/00000000000000000000-{nonce}/more"),
        ] {
            assert!(StoredChunk::parse(Path::from(other.as_str())).is_none(), "{other}");
        }
    }
}
