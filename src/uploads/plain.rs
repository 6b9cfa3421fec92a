//! A plain upload (one request, the whole file in its body): reserve → receive → persist →
//! record → release. The reservation is taken before the first byte is written, so an upload
//! over the quota or over the organization's uploads in flight is refused with nothing written;
//! it is given back before the answer, so the client's next upload finds quota and slot free.
//! Its slot is a lease like a resumable upload's: twice the idle timeout, renewed while the
//! request lives, so a killed process frees it within seconds; and a body that sends nothing
//! for the idle timeout is ended (408), so a stalled client cannot sit on a slot.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::{budget::Held, Uploader, Uploads};
use crate::{
    db::{self, refusals::Budget, Db, DbError, TenantCtx},
    domain::{FileId, Filename},
    error::ApiError,
    storage::{StorageError, MAX_HELD_BYTES},
};

/// What a multipart request carries besides the file's bytes, at most, for the early refusal:
/// boundaries, the part's headers and a few small fields (each other field may be 64 KiB).
const ENVELOPE_BYTES: u64 = 64 * 1024;

impl Uploads {
    /// Stores `body` as the file `filename` and records it (the file row, its validation job
    /// and the audit entry, with the release of its reservation), within the upload timeout.
    /// `declared`: the request's length, if it said (the file can be no larger). On any error
    /// nothing is left behind: no part file, no row, no reservation; a refusal (quota, uploads
    /// in flight, too large) reads a bounded rest of the body first, so the client sees the
    /// answer rather than a connection reset mid-send.
    pub async fn receive_file<S, E>(
        &self,
        uploader: &Uploader,
        filename: &Filename,
        body: &mut S,
        declared: Option<u64>,
    ) -> Result<FileId, ApiError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let file_id = FileId::new();
        let service_limit = self.limits.max_file_bytes;
        let bytes = declared.map_or(service_limit, |length| length.min(service_limit));
        let deadline = self.limits.upload_timeout.as_secs();
        let slot = 2 * self.limits.idle_timeout;
        let (reservation, org_limit) =
            match Reservation::take(&self.db, uploader.ctx, file_id, bytes, deadline, slot).await {
                Ok(taken) => taken,
                Err(err) => return Err(drained(body, service_limit, err.into()).await),
            };
        // The organization's own limit (V28), if lower; a request that says it is longer than
        // that by more than a multipart envelope is refused before its first byte is read.
        let limit = org_limit.map_or(service_limit, |org| org.min(service_limit));
        if declared.is_some_and(|length| length > limit.saturating_add(ENVELOPE_BYTES)) {
            reservation.finish(false).await;
            let too_large = StorageError::TooLarge { limit_bytes: limit }.into();
            return Err(drained(body, limit, too_large).await);
        }
        let stored = self.store_file(uploader, file_id, filename, body, bytes.min(limit), limit).await;
        reservation.finish(stored.is_ok()).await;
        stored.map(|()| file_id)
    }

    async fn store_file<S, E>(
        &self,
        uploader: &Uploader,
        file_id: FileId,
        filename: &Filename,
        body: &mut S,
        at_most: u64,
        limit: u64,
    ) -> Result<(), ApiError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let went_quiet = Arc::new(AtomicBool::new(false));
        let watched = quiet_ends(&mut *body, self.limits.idle_timeout, went_quiet.clone());
        // What the store will hold of this body, taken before its first byte is read (a body
        // waiting for room is not read: back-pressure) and kept until the file is recorded (a
        // small file's bytes wait in memory for their one write).
        let memory = usize::try_from(at_most).unwrap_or(usize::MAX).min(MAX_HELD_BYTES);
        let mut held = Held::default();
        let receiving = async {
            let org = uploader.ctx.org_id;
            if !self.budget.try_take(org, &mut held, memory) {
                self.db.refusals().count(org, Budget::UploadMemory);
                self.budget.take(org, &mut held, memory).await;
            }
            self.store.receive(org, file_id, watched, limit).await
        };
        let timed_out = || ApiError::Http(actix_web::http::StatusCode::REQUEST_TIMEOUT);
        let (staged, received) = match tokio::time::timeout(self.limits.upload_timeout, receiving).await {
            Err(_) => return Err(timed_out()),
            Ok(Err(_)) if went_quiet.load(Ordering::Relaxed) => return Err(timed_out()),
            Ok(Ok(received)) => received,
            Ok(Err(err @ StorageError::TooLarge { .. })) => return Err(drained(body, limit, err.into()).await),
            Ok(Err(err)) => return Err(err.into()),
        };
        if received.size == 0 {
            return Err(ApiError::invalid("empty_file", "the uploaded file is empty"));
        }
        self.record_file(uploader, file_id, filename, staged, &received, None).await
    }
}

/// `body`, ended with an error (and `went_quiet` set) once it sends nothing for `idle`.
fn quiet_ends<'a, S, E>(
    body: &'a mut S,
    idle: Duration,
    went_quiet: Arc<AtomicBool>,
) -> impl Stream<Item = Result<Bytes, String>> + Unpin + 'a
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    Box::pin(futures_util::stream::unfold(Some(body), move |body| {
        let went_quiet = went_quiet.clone();
        async move {
            let body = body?;
            match tokio::time::timeout(idle, body.next()).await {
                Err(_) => {
                    went_quiet.store(true, Ordering::Relaxed);
                    Some((Err(format!("nothing sent for {} s", idle.as_secs())), None))
                }
                Ok(None) => None,
                Ok(Some(item)) => Some((item.map_err(|e| e.to_string()), Some(body))),
            }
        }
    }))
}

/// Reads (and discards) a bounded remainder of the body before answering with `error`.
async fn drained<S, E>(body: &mut S, limit: u64, error: ApiError) -> ApiError
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let mut drained = 0u64;
    while let Some(Ok(chunk)) = body.next().await {
        drained += chunk.len() as u64;
        if drained > limit {
            break;
        }
    }
    error
}

/// A reservation held by a request, ended with [`Reservation::finish`]: given back right away
/// when the upload failed, so the client's next upload finds quota and slot free, or left to
/// the file row, which released it in its own commit. Dropped unfinished (the client went away
/// mid-upload and the request was cancelled), it is released in the background; should that
/// fail too, its deadline frees it.
struct Reservation {
    db: Db,
    ctx: TenantCtx,
    file_id: FileId,
    held: bool,
    /// Renews the slot until dropped.
    _renewing: DropGuard,
}

impl Reservation {
    /// Also returns the organization's largest file, if it set one (read with the reservation).
    async fn take(
        db: &Db,
        ctx: TenantCtx,
        file_id: FileId,
        bytes: u64,
        deadline_seconds: u64,
        slot: Duration,
    ) -> Result<(Self, Option<u64>), DbError> {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        let deadline = i64::try_from(deadline_seconds).unwrap_or(i64::MAX);
        let seconds = slot.as_secs_f64();
        let size = db::uploads::Size::AtMost(bytes);
        let org_limit = db::uploads::reserve(db.write(&ctx).await?, file_id, size, deadline, Some(seconds)).await?;
        let stop = CancellationToken::new();
        let renewing = stop.clone().drop_guard();
        let renewer = db.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(slot / 3);
            every.tick().await; // the first tick is now: the slot was just taken
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = every.tick() => {
                        let renewed = async { db::uploads::renew_slot(renewer.write(&ctx).await?, file_id, seconds).await };
                        if let Err(e) = renewed.await {
                            tracing::warn!(file_id = %file_id, error = %e, "could not renew an upload's slot");
                        }
                    }
                }
            }
        });
        let org_limit = org_limit.map(|bytes| u64::try_from(bytes).unwrap_or(0));
        Ok((Self { db: db.clone(), ctx, file_id, held: true, _renewing: renewing }, org_limit))
    }

    /// `committed`: the file row was committed together with [`release`], nothing is left to
    /// give back. Otherwise the reservation is released now, and this waits for it.
    async fn finish(mut self, committed: bool) {
        self.held = false;
        if !committed {
            release_logged(&self.db, self.ctx, self.file_id).await;
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.held {
            return;
        }
        let (db, ctx, file_id) = (self.db.clone(), self.ctx, self.file_id);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { release_logged(&db, ctx, file_id).await });
        }
    }
}

async fn release_logged(db: &Db, ctx: TenantCtx, file_id: FileId) {
    if let Err(e) = async { db::uploads::release(db.write(&ctx).await?, file_id).await }.await {
        tracing::warn!(file_id = %file_id, error = %e, "upload reservation not released; it expires at its deadline");
    }
}
