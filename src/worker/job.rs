//! One validation job: decode the message, re-authorize it inside the database, validate the
//! file, record the outcome. Everything a delivery can lead to is an [`Outcome`], decided here
//! and acted upon (ack, retry, dead-letter) in one place by the consumer.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{
    validate::{judge, Verdict},
    WorkerCtx,
};
use crate::{
    db::{self, DbError, TenantCtx},
    domain::{FileId, FileStatus, JobId, OrgId, UserId},
    metrics::Metrics,
    storage::StorageError,
};

/// A message of our own is ~200 bytes; anything far larger is not ours.
const MAX_MESSAGE_BYTES: usize = 4096;

/// The queue message. Never trusted: every field is re-checked under RLS before anything runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobMessage {
    pub job_id: JobId,
    pub file_id: FileId,
    pub organization_id: OrgId,
    pub user_id: UserId,
    pub attempt: u32,
}

impl JobMessage {
    pub fn decode(body: &[u8]) -> Result<Self, String> {
        if body.len() > MAX_MESSAGE_BYTES {
            return Err(format!("message of {} bytes exceeds {MAX_MESSAGE_BYTES}", body.len()));
        }
        let job: Self = serde_json::from_slice(body).map_err(|e| format!("not a job message: {e}"))?;
        if job.attempt == 0 {
            return Err("attempt starts at 1".into());
        }
        Ok(job)
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    fn tenant(&self) -> TenantCtx {
        TenantCtx { org_id: self.organization_id, user_id: self.user_id }
    }
}

/// What became of a delivery.
#[derive(Debug)]
pub enum Outcome {
    /// The verdict is committed: ack.
    Validated { job: JobMessage, status: FileStatus },
    /// Stale or forged (file gone, deleted, not pending; user inactive or not in that
    /// organization): ack and change nothing.
    Refused { job: JobMessage, reason: &'static str },
    /// A transient error (database or storage unavailable): try again later with attempt + 1.
    Retry { job: JobMessage, error: String },
    /// Out of attempts: the file was marked failed (if the database allowed); dead-letter.
    Exhausted { job: JobMessage, error: String },
    /// An error no attempt can get past (a refused statement, a row that does not decode: a bug
    /// or a broken invariant): the file was marked failed at once, without burning the retries;
    /// dead-letter.
    Permanent { job: JobMessage, error: String },
    /// Not a job message at all: dead-letter without processing.
    Malformed { reason: String },
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Validated { status: FileStatus::Ready, .. } => "ready",
            Outcome::Validated { .. } => "failed",
            Outcome::Refused { .. } => "refused",
            Outcome::Retry { .. } => "retry",
            Outcome::Exhausted { .. } => "exhausted",
            Outcome::Permanent { .. } => "permanent",
            Outcome::Malformed { .. } => "malformed",
        }
    }
}

/// Processes one message body to its outcome (the caller acks or routes accordingly).
pub async fn process(ctx: &WorkerCtx, body: &[u8]) -> Outcome {
    let started = Instant::now();
    let outcome = match JobMessage::decode(body) {
        Err(reason) => Outcome::Malformed { reason },
        Ok(job) => {
            let result = catch_panic(&ctx.metrics, run(ctx, &job)).await;
            decide(ctx, job, result).await
        }
    };
    log(&ctx.metrics, &outcome, started);
    outcome
}

/// A panic while processing (a bug: nothing in processing panics on purpose) becomes an error
/// like any other, so the job is retried with its next attempt and then dead-lettered, instead
/// of its delivery staying unsettled, holding a prefetch slot until the channel closes. Nothing
/// observes what the panic left behind: the job's transactions roll back when dropped, and a
/// retry is a new message.
async fn catch_panic<T>(
    metrics: &Metrics,
    work: impl std::future::Future<Output = Result<T, JobError>>,
) -> Result<T, JobError> {
    use futures_util::FutureExt;
    match std::panic::AssertUnwindSafe(work).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => {
            metrics.jobs_panicked.inc();
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(JobError::Transient(anyhow::anyhow!("processing panicked: {message}")))
        }
    }
}

/// Why a job could not finish, and whether another attempt can help.
#[derive(Debug)]
enum JobError {
    /// The database or the stored bytes were out of reach (or processing panicked): retry.
    Transient(anyhow::Error),
    /// Every attempt would fail the same way: do not spend the retries on it.
    Permanent(anyhow::Error),
}

/// The one place database errors are classified for the worker (see [`DbError::is_transient`]).
impl From<DbError> for JobError {
    fn from(err: DbError) -> Self {
        if err.is_transient() {
            JobError::Transient(err.into())
        } else {
            JobError::Permanent(err.into())
        }
    }
}

/// The outcome of a job from what processing it returned.
async fn decide(
    ctx: &WorkerCtx,
    job: JobMessage,
    result: Result<Result<FileStatus, &'static str>, JobError>,
) -> Outcome {
    match result {
        Ok(Ok(status)) => Outcome::Validated { job, status },
        Ok(Err(reason)) => Outcome::Refused { job, reason },
        Err(JobError::Permanent(e)) => {
            let error = format!("{e:#}");
            give_up(ctx, &job, "validation could not complete (an internal error; see the worker's log)", &error).await;
            Outcome::Permanent { job, error }
        }
        Err(JobError::Transient(e)) if job.attempt >= ctx.config.worker.job_max_attempts => {
            let error = format!("{e:#}");
            let reason = format!("validation could not complete after {} attempts", job.attempt);
            give_up(ctx, &job, &reason, &error).await;
            Outcome::Exhausted { job, error }
        }
        Err(JobError::Transient(e)) => Outcome::Retry { job, error: format!("{e:#}") },
    }
}

/// `Ok(Ok(status))` committed, `Ok(Err(reason))` refused, `Err` failed (transient or not).
async fn run(ctx: &WorkerCtx, job: &JobMessage) -> Result<Result<FileStatus, &'static str>, JobError> {
    let tenant = job.tenant();
    let pending = db::files::find_pending(ctx.db.read(&tenant).await?, job.file_id).await?;
    let Some(pending) = pending else {
        return Ok(Err("no pending file for this organization and active user"));
    };

    // The path is built from the re-checked ids, never taken from the message.
    let verdict = if !pending.org_within_quota {
        Verdict::Failed { reason: "the organization is over its storage quota".into() }
    } else {
        match ctx.store.inspect(job.organization_id, job.file_id).await {
            Ok(found) => judge(&pending, &found),
            Err(StorageError::NotFound) => Verdict::Failed { reason: "the stored file is missing".into() },
            Err(e) => return Err(JobError::Transient(anyhow::Error::new(e).context("cannot read the stored file"))),
        }
    };
    let verdict = verdict.for_file(job.file_id);
    let status = verdict.status;

    // Recorded after hashing, in a transaction of its own (no lock or connection is held while
    // the file is hashed), together with the outcomes of other jobs finished meanwhile
    // (`outcomes`); the statement re-checks everything, so a concurrent duplicate changes
    // nothing twice.
    let recorded = ctx.outcomes.record(tenant, verdict).await?;
    Ok(if recorded { Ok(status) } else { Err("the file changed while it was being validated") })
}

/// When no attempt is left (or none could help): mark the file failed with `reason` so it does
/// not stay pending. Best effort: the database may be the very thing that is down, and then the
/// pending sweep will try again.
async fn give_up(ctx: &WorkerCtx, job: &JobMessage, reason: &str, error: &str) {
    let verdict = Verdict::Failed { reason: reason.to_owned() }.for_file(job.file_id);
    if let Err(e) = ctx.outcomes.record(job.tenant(), verdict).await {
        tracing::warn!(job_id = %job.job_id, file_id = %job.file_id, error = %e, last_error = error,
            "could not mark the file failed after the last attempt");
    }
}

/// One structured line and the metrics per job outcome.
fn log(metrics: &Metrics, outcome: &Outcome, started: Instant) {
    let elapsed = started.elapsed();
    let duration_ms = elapsed.as_millis() as u64;
    let label = outcome.label();
    metrics.jobs_processed.with_label_values(&[label]).inc();
    metrics.job_duration.with_label_values(&[label]).observe(elapsed.as_secs_f64());
    let (job, detail) = match outcome {
        Outcome::Malformed { reason } => {
            tracing::warn!(outcome = label, duration_ms, reason = %reason, "job message rejected");
            return;
        }
        Outcome::Validated { job, .. } => (job, None),
        Outcome::Refused { job, reason } => (job, Some(*reason)),
        Outcome::Retry { job, error } | Outcome::Exhausted { job, error } | Outcome::Permanent { job, error } => {
            (job, Some(error.as_str()))
        }
    };
    match detail {
        None => tracing::info!(job_id = %job.job_id, file_id = %job.file_id, organization_id = %job.organization_id,
            user_id = %job.user_id, attempt = job.attempt, outcome = label, duration_ms, "job finished"),
        Some(detail) => {
            tracing::warn!(job_id = %job.job_id, file_id = %job.file_id, organization_id = %job.organization_id,
            user_id = %job.user_id, attempt = job.attempt, outcome = label, duration_ms, detail, "job finished")
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn ctx() -> WorkerCtx {
        let upload_dir = std::env::temp_dir().join(format!("tf-job-test-{}", uuid::Uuid::new_v4()));
        let config = crate::config::Config::from_args([
            "tenant-files".to_owned(),
            format!("--upload-dir={}", upload_dir.display()),
            "--job-max-attempts=3".into(),
        ])
        .unwrap();
        WorkerCtx::new(config, Arc::default()).unwrap()
    }

    fn job(attempt: u32) -> JobMessage {
        JobMessage {
            job_id: JobId::new(),
            file_id: FileId::new(),
            organization_id: OrgId::new(),
            user_id: UserId::new(),
            attempt,
        }
    }

    /// A panic inside processing is an outcome like any other (retry with the next attempt),
    /// counted, instead of unwinding out of the job's task and leaving its delivery unsettled.
    #[tokio::test]
    async fn a_panic_while_processing_becomes_a_retry_and_is_counted() {
        let ctx = ctx();

        let result: Result<Result<FileStatus, &'static str>, JobError> =
            catch_panic(&ctx.metrics, async { panic!("a bug in validation") }).await;
        let outcome = decide(&ctx, job(1), result).await;

        match outcome {
            Outcome::Retry { job, error } => {
                assert_eq!(job.attempt, 1);
                assert!(error.contains("a bug in validation"), "{error}");
            }
            other => panic!("expected a retry, got {other:?}"),
        }
        assert_eq!(ctx.metrics.jobs_panicked.get(), 1);
    }
}
