//! A resumable (tus) upload's `PATCH`: one at a time per upload (a lease in the database, 423
//! to a second), its bytes held within the process's memory budget and stored in chunks as
//! they arrive, a body that goes quiet ended after the idle timeout (what arrived is kept), and
//! the last bytes turned into the file in one commit that also records the upload's end.
//!
//! What a client sees when something breaks (docs/decisions.md, "Resumable uploads"): every
//! chunk recorded is kept; the offset reaches the length only in the commit that creates the
//! file, so a completion cut off at any step (client reset, the process killed, the database or
//! the store failing) leaves the upload at its last recorded chunk, to be resumed from there;
//! and the completion runs as a task of its own, so a client that goes away after its last byte
//! does not cut it off.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};
use uuid::Uuid;

use super::{
    budget::{Held, MemoryBudget},
    record::Completing,
    Limits, Uploader, Uploads,
};
use crate::{
    db::{
        self,
        refusals::Budget,
        tus::{LeaseTerms, Removal, TusRow},
        Db, TenantCtx,
    },
    domain::{Chunk, FileId, Filename},
    error::ApiError,
};

/// Most bytes one `PATCH` holds before it stores them as a chunk: what a crash of the api
/// process may cost a client (it resumes from the last stored chunk). Under memory pressure
/// chunks are smaller (`budget`).
pub const CHUNK_BYTES: usize = 8 * 1024 * 1024;

/// A `PATCH`'s hold on its upload. Lasts twice the idle timeout and is renewed as bytes keep
/// coming, so a live `PATCH` never loses it (bytes arrive at least once per idle timeout, or
/// the body is ended), and a killed process's lease lapses within seconds.
struct Lease {
    db: Db,
    ctx: TenantCtx,
    upload: FileId,
    terms: LeaseTerms,
    renewed: Instant,
    /// Given back (or ended by the completing commit): nothing to release on drop.
    ended: bool,
}

impl Lease {
    /// Takes the lease of `upload`, found at `offset`: 423 while another `PATCH` holds it, 409
    /// when that one moved the offset meanwhile (or completed the upload), 429 when the
    /// organization receives as many uploads as it may.
    async fn take(db: &Db, ctx: TenantCtx, upload: &TusRow, limits: &Limits) -> Result<Self, ApiError> {
        let terms = LeaseTerms {
            holder: Uuid::new_v4(),
            lease_seconds: 2.0 * limits.idle_timeout.as_secs_f64(),
            expiry_seconds: limits.tus_expiry.as_secs_f64(),
        };
        if !db::tus::take_lease(db.write(&ctx).await?, upload.id, &terms).await? {
            let now = db::tus::find(db.read(&ctx).await?, upload.id).await?;
            return Err(match now {
                Some(now) if now.offset != upload.offset => super::offset_mismatch(),
                _ => ApiError::Locked,
            });
        }
        Ok(Self { db: db.clone(), ctx, upload: upload.id, terms, renewed: Instant::now(), ended: false })
    }

    /// Renews the lease once a third of it has passed; 423 if it lapsed and was taken over.
    async fn renew_if_due(&mut self) -> Result<(), ApiError> {
        if self.renewed.elapsed().as_secs_f64() < self.terms.lease_seconds / 3.0 {
            return Ok(());
        }
        self.renew().await
    }

    async fn renew(&mut self) -> Result<(), ApiError> {
        if !db::tus::renew_lease(self.db.write(&self.ctx).await?, self.upload, &self.terms).await? {
            return Err(ApiError::Locked);
        }
        self.renewed = Instant::now();
        Ok(())
    }

    /// A stored chunk renewed the lease.
    fn renewed_now(&mut self) {
        self.renewed = Instant::now();
    }

    /// Keeps the lease renewed in the background while the completion assembles the file
    /// (seconds for a large one), until the returned guard is dropped.
    fn keep_alive(&self) -> DropGuard {
        let stop = CancellationToken::new();
        let (db, ctx, upload, terms) = (self.db.clone(), self.ctx, self.upload, self.terms);
        let guard = stop.clone().drop_guard();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs_f64(terms.lease_seconds / 3.0));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = every.tick() => {
                        let renewed = async { db::tus::renew_lease(db.write(&ctx).await?, upload, &terms).await };
                        if let Err(e) = renewed.await {
                            tracing::warn!(upload_id = %upload, error = %e, "could not renew an upload's lease");
                        }
                    }
                }
            }
        });
        guard
    }

    async fn release(mut self) {
        self.ended = true;
        release_logged(&self.db, self.ctx, self.upload, self.terms.holder).await;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        // The request was cancelled mid-PATCH (the client went away): given back in the
        // background; should that fail too, it lapses at its deadline.
        let (db, ctx, upload, holder) = (self.db.clone(), self.ctx, self.upload, self.terms.holder);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { release_logged(&db, ctx, upload, holder).await });
        }
    }
}

async fn release_logged(db: &Db, ctx: TenantCtx, upload: FileId, holder: Uuid) {
    if let Err(e) = async { db::tus::release_lease(db.write(&ctx).await?, upload, holder).await }.await {
        tracing::warn!(upload_id = %upload, error = %e, "upload lease not released; it lapses at its deadline");
    }
}

impl Uploads {
    /// One `PATCH` of `upload` (found open, at the offset the client named): takes the lease,
    /// stores the body's bytes, and completes the upload if they reach its length. The new
    /// offset; an error once what arrived is stored (a broken, idle, overlong or too slow body).
    pub async fn append<S, E>(&self, uploader: Uploader, upload: TusRow, mut body: S) -> Result<u64, ApiError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let lease = Lease::take(&self.db, uploader.ctx, &upload, &self.limits).await?;
        let mut appending = Appending {
            uploads: self,
            uploader: &uploader,
            at: upload.offset,
            chunks: upload.chunks.clone(),
            upload: &upload,
            lease,
            held: Vec::new(),
            held_bytes: 0,
            memory: Held::default(),
        };
        let ended = appending.receive(&mut body).await;
        let length = upload.length;
        let whole = appending.at + appending.held_bytes as u64 == length;
        match ended {
            Ok(()) if whole => {
                let Appending { at, chunks, lease, held, memory, .. } = appending;
                let completion =
                    Completion { uploads: self.clone(), uploader, upload, lease, at, chunks, held, memory };
                // A task of its own: the client's going away now must not cut the completion off.
                tokio::spawn(completion.run())
                    .await
                    .map_err(|e| ApiError::Internal(anyhow::anyhow!("the upload's completion failed: {e}")))??;
                Ok(length)
            }
            ended => {
                // What arrived whole is kept even when the body broke off: that is what resuming is for.
                appending.store_held().await?;
                let at = appending.at;
                appending.lease.release().await;
                ended.map(|()| at)
            }
        }
    }

    /// Terminates an unfinished upload, the caller's or (for an owner or admin) any of the
    /// organization's: the row and reservation go in one commit, then its chunks. 404 for one
    /// the caller does not see, 409 once it is a file, 423 while a `PATCH` holds it.
    pub async fn terminate(&self, uploader: &Uploader, id: FileId) -> Result<(), ApiError> {
        let tx = self.db.begin(&uploader.ctx).await?;
        let chunks = match db::tus::remove(&tx, id).await? {
            Removal::Removed(chunks) => chunks,
            Removal::NotFound => return Err(ApiError::NotFound),
            Removal::Whole => {
                return Err(ApiError::Conflict {
                    code: "upload_complete",
                    message: "the upload is a file now: DELETE /api/files/{id} removes it",
                })
            }
            Removal::Leased => return Err(ApiError::Locked),
        };
        db::uploads::release(&tx, id).await?;
        tx.commit().await?;
        self.remove_chunks(uploader, id, &chunks).await;
        Ok(())
    }

    /// Chunks nothing refers to any more; a failure leaves them to nobody, so it is logged.
    async fn remove_chunks(&self, uploader: &Uploader, id: FileId, chunks: &[Chunk]) {
        if let Err(e) = self.store.remove_chunks(uploader.ctx.org_id, id, chunks).await {
            tracing::warn!(upload_id = %id, error = %e, "chunks of a finished upload were not removed");
        }
    }
}

/// Bytes of one `PATCH` on their way to the store, stored as a chunk whenever enough are held.
struct Appending<'a> {
    uploads: &'a Uploads,
    uploader: &'a Uploader,
    upload: &'a TusRow,
    lease: Lease,
    /// The upload's offset: everything before it is stored and recorded.
    at: u64,
    /// The stored chunks up to `at`, as recorded.
    chunks: Vec<Chunk>,
    held: Vec<Bytes>,
    held_bytes: usize,
    /// The memory budget's bytes that `held` uses.
    memory: Held,
}

impl Appending<'_> {
    /// Takes the body until it ends, storing chunks as they fill (never the last bytes: they
    /// go with the completion); how it ended, if not well (broken off, too long, idle, too
    /// slow), for the caller to answer once what arrived is stored.
    async fn receive<S, E>(&mut self, body: &mut S) -> Result<(), ApiError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let limits = self.uploads.limits;
        let deadline = Instant::now() + limits.upload_timeout;
        loop {
            let quiet_until = (Instant::now() + limits.idle_timeout).min(deadline);
            let bytes = match tokio::time::timeout_at(quiet_until, body.next()).await {
                Err(_) => return Err(ApiError::Http(actix_web::http::StatusCode::REQUEST_TIMEOUT)),
                Ok(None) => return Ok(()),
                Ok(Some(Err(e))) => {
                    return Err(ApiError::invalid("invalid_body", format!("upload body broke off: {e}")))
                }
                Ok(Some(Ok(bytes))) => bytes,
            };
            if self.at + (self.held_bytes + bytes.len()) as u64 > self.upload.length {
                return Err(ApiError::TooLarge {
                    code: "file_too_large",
                    message: format!("the upload is {} bytes long, as declared in Upload-Length", self.upload.length),
                });
            }
            self.hold(bytes).await?;
            self.lease.renew_if_due().await?;
        }
    }

    async fn hold(&mut self, bytes: Bytes) -> Result<(), ApiError> {
        // A frame of the body is a slice of the connection's read buffer, and holding it would
        // keep that whole buffer alive (several times the frame): held bytes are copied into
        // allocations of their own size, so what the budget counts is what is held.
        let bytes = Bytes::copy_from_slice(&bytes);
        let (budget, org): (&MemoryBudget, _) = (&self.uploads.budget, self.uploader.ctx.org_id);
        if !budget.try_take(org, &mut self.memory, bytes.len()) {
            // The organization's share or the process's budget is spent: store what this body
            // holds (a smaller chunk) so that it waits holding nothing, then wait for room.
            self.uploads.db.refusals().count(org, Budget::UploadMemory);
            self.store_held().await?;
            budget.take(org, &mut self.memory, bytes.len()).await;
        }
        self.held_bytes += bytes.len();
        self.held.push(bytes);
        let last_bytes = self.at + self.held_bytes as u64 == self.upload.length;
        if self.held_bytes >= CHUNK_BYTES && !last_bytes {
            self.store_held().await?;
        }
        Ok(())
    }

    /// Stores what is held as one chunk, then records it, if this `PATCH` still holds the
    /// upload's lease at the offset it found (423 otherwise, and this chunk goes).
    async fn store_held(&mut self) -> Result<(), ApiError> {
        if self.held_bytes == 0 {
            return Ok(());
        }
        let chunk = Chunk { offset: self.at, size: self.held_bytes as u64, nonce: Uuid::new_v4() };
        let (ctx, id) = (self.uploader.ctx, self.upload.id);
        let stored = self.uploads.store.put_chunk(ctx.org_id, id, &chunk, std::mem::take(&mut self.held)).await;
        self.held_bytes = 0;
        self.memory = Held::default();
        stored?;
        let terms = self.lease.terms;
        let recorded = async { db::tus::advance(self.uploads.db.write(&ctx).await?, id, &chunk, &terms).await };
        match recorded.await {
            Ok(true) => {
                self.lease.renewed_now();
                self.at += chunk.size;
                self.chunks.push(chunk);
                Ok(())
            }
            Ok(false) => {
                self.uploads.remove_chunks(self.uploader, id, &[chunk]).await;
                Err(ApiError::Locked)
            }
            Err(e) => {
                self.uploads.remove_chunks(self.uploader, id, &[chunk]).await;
                Err(e.into())
            }
        }
    }
}

/// The last bytes of an upload and everything needed to turn it into its file, owned, so that
/// it runs as a task of its own.
struct Completion {
    uploads: Uploads,
    uploader: Uploader,
    upload: TusRow,
    lease: Lease,
    at: u64,
    chunks: Vec<Chunk>,
    held: Vec<Bytes>,
    memory: Held,
}

impl Completion {
    /// Stores the last chunk, assembles the chunks into the file (streamed and hashed), and
    /// commits the last chunk's record, the upload's end and the file together. Until that
    /// commit the upload reads as it did before this `PATCH`'s last chunk: resumable.
    async fn run(self) -> Result<(), ApiError> {
        let Completion { uploads, uploader, upload, mut lease, at, mut chunks, held, memory } = self;
        let (org, id) = (uploader.ctx.org_id, upload.id);
        let filename = Filename::parse(&upload.filename)?;
        let size: usize = held.iter().map(Bytes::len).sum();
        let last = Chunk { offset: at, size: size as u64, nonce: Uuid::new_v4() };
        uploads.store.put_chunk(org, id, &last, held).await?;
        drop(memory);
        chunks.push(last);
        let assembled = async {
            let _renewing = lease.keep_alive();
            let (staged, received) =
                uploads.store.assemble(org, id, chunks.clone(), uploads.limits.max_file_bytes).await?;
            if received.size != upload.length {
                return Err(ApiError::Internal(anyhow::anyhow!(
                    "upload {id}: {} bytes stored, {} declared",
                    received.size,
                    upload.length
                )));
            }
            let completing = Completing { last: &last, lease: &lease.terms };
            uploads.record_file(&uploader, id, &filename, staged, &received, Some(completing)).await
        };
        match assembled.await {
            Ok(()) => {
                lease.ended = true; // ended by the completing commit
                uploads.remove_chunks(&uploader, id, &chunks).await;
                Ok(())
            }
            Err(e) => {
                // The last chunk was never recorded: nothing refers to it.
                uploads.remove_chunks(&uploader, id, &[last]).await;
                lease.release().await;
                Err(e)
            }
        }
    }
}
