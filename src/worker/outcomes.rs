//! Validation outcomes, committed in batches.
//!
//! Every job's verdict used to be its own transaction: 32 jobs in flight meant 32 writers
//! updating the newest rows of one organization and that organization's counters row, each
//! waiting for the one before (docs/performance.md, "The worker"). Now a job hands its verdict
//! to the [`Recorder`] and waits; the recorder commits the verdicts of one tenant that arrived
//! while that tenant's previous statement ran in one statement (`db::files::record_outcomes`,
//! counters updated once per statement), then answers each job, which only then acks its
//! delivery. Nothing waits for a batch to fill: a verdict that finds its tenant idle is
//! committed at once, and batches grow only while a commit is in progress, that is, only under
//! load. Tenants' statements run side by side, so one tenant never holds up another's.
//!
//! At-least-once holds as before: a job acks only after its verdict is committed, so a worker
//! that dies mid-batch leaves every job of the batch to be redelivered, and the statement
//! re-checks each file, so a verdict committed twice changes nothing the second time.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use futures_util::future::join_all;
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinSet,
};

use crate::{
    db::{
        self,
        files::{record_outcomes, Validation},
        DbError, TenantCtx,
    },
    domain::FileId,
    metrics::Metrics,
};

/// The most verdicts committed in one statement (a batch is a few kilobytes of parameters).
const MAX_BATCH: usize = 256;

/// A verdict waiting to be committed, and where its job waits for the answer.
struct Entry {
    tenant: TenantCtx,
    verdict: Validation,
    recorded: oneshot::Sender<Result<bool, DbError>>,
}

/// The handle jobs record their verdicts through. Its task ends when the last handle is dropped.
pub struct Recorder {
    entries: mpsc::Sender<Entry>,
}

impl Recorder {
    /// Starts the recorder's task (on the current tokio runtime).
    pub fn start(db: db::Db, metrics: Arc<Metrics>) -> Self {
        let (entries, waiting) = mpsc::channel(MAX_BATCH);
        tokio::spawn(run(db, metrics, waiting));
        Self { entries }
    }

    /// Commits `verdict` (with whatever other verdicts are waiting) and answers like a single
    /// write would: `Ok(true)` once it is committed, `Ok(false)` if the file was no longer
    /// pending, live and its user's (nothing changed), `Err` with this verdict's own error.
    pub async fn record(&self, tenant: TenantCtx, verdict: Validation) -> Result<bool, DbError> {
        let (recorded, answer) = oneshot::channel();
        let gone = || DbError::Unavailable(anyhow::anyhow!("the outcome recorder stopped"));
        self.entries.send(Entry { tenant, verdict, recorded }).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// Commits the verdicts waiting, per tenant: at most one statement in flight per tenant, into
/// which go all of that tenant's verdicts that arrived while its previous one ran (at most
/// [`MAX_BATCH`]). Tenants do not wait for each other: one whose statement is slow (a lock
/// held on its organization's row, say) holds up its own verdicts only.
async fn run(db: db::Db, metrics: Arc<Metrics>, mut waiting: mpsc::Receiver<Entry>) {
    let mut queued: HashMap<TenantCtx, Vec<Entry>> = HashMap::new();
    let mut committing: HashMap<tokio::task::Id, TenantCtx> = HashMap::new();
    let mut commits = JoinSet::new();
    let mut taken = Vec::with_capacity(MAX_BATCH);
    let mut open = true;
    while open || !commits.is_empty() {
        tokio::select! {
            received = waiting.recv_many(&mut taken, MAX_BATCH), if open => {
                open = received > 0;
                for entry in taken.drain(..) {
                    queued.entry(entry.tenant).or_default().push(entry);
                }
            }
            Some(done) = commits.join_next_with_id(), if !commits.is_empty() => {
                // A commit that panicked dropped its jobs' answers: they see an error and retry.
                let id = match done {
                    Ok((id, ())) => id,
                    Err(e) => e.id(),
                };
                committing.remove(&id);
            }
        }
        let busy: HashSet<TenantCtx> = committing.values().copied().collect();
        let idle: Vec<TenantCtx> = queued.keys().filter(|tenant| !busy.contains(tenant)).copied().collect();
        for tenant in idle {
            let Some(entries) = queued.get_mut(&tenant) else { continue };
            let batch: Vec<Entry> = entries.drain(..entries.len().min(MAX_BATCH)).collect();
            if entries.is_empty() {
                queued.remove(&tenant);
            }
            let (db, metrics) = (db.clone(), metrics.clone());
            let task = commits.spawn(async move { commit(&db, &metrics, tenant, batch).await });
            committing.insert(task.id(), tenant);
        }
    }
}

/// Commits one tenant's batch in one statement. Should that statement fail, each verdict is
/// committed alone, so that one file's error (a row the database refuses) is that job's alone
/// and never fails its neighbours; a database that is down fails each of them the same way.
async fn commit(db: &db::Db, metrics: &Metrics, tenant: TenantCtx, mut batch: Vec<Entry>) {
    // Rows locked in id order: two batches that share a file (a redelivered job) cannot
    // deadlock each other.
    batch.sort_by_key(|entry| *entry.verdict.file_id.as_uuid());
    let verdicts: Vec<Validation> = batch.iter().map(|entry| entry.verdict.clone()).collect();
    let committed = write(db, tenant, &verdicts).await;
    match committed {
        Ok(changed) => {
            metrics.outcome_batch_size.observe(batch.len() as f64);
            for entry in batch {
                let _ = entry.recorded.send(Ok(changed.contains(&entry.verdict.file_id)));
            }
        }
        Err(e) if batch.len() == 1 => {
            let _ = batch.pop().map(|entry| entry.recorded.send(Err(e)));
        }
        Err(e) => {
            metrics.outcome_batches_split.inc();
            tracing::warn!(org_id = %tenant.org_id, files = batch.len(), error = %e,
                "a batch of outcomes failed; committing each alone");
            join_all(batch.into_iter().map(|entry| async move {
                let alone = write(db, tenant, std::slice::from_ref(&entry.verdict)).await;
                if alone.is_ok() {
                    metrics.outcome_batch_size.observe(1.0);
                }
                let _ = entry.recorded.send(alone.map(|changed| changed.contains(&entry.verdict.file_id)));
            }))
            .await;
        }
    }
}

async fn write(db: &db::Db, tenant: TenantCtx, verdicts: &[Validation]) -> Result<Vec<FileId>, DbError> {
    record_outcomes(db.write(&tenant).await?, verdicts).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        db::{
            audit::{Action, Event},
            files::{self, NewFile},
            testing::{scratch_db_and_owner, tenant},
        },
        domain::{FileStatus, Filename},
    };

    fn ready(file_id: FileId) -> Validation {
        Validation { file_id, status: FileStatus::Ready, mime_type: Some("text/plain".into()), error_message: None }
    }

    /// One batch, one file of which the database refuses: the batch's statement fails, and each
    /// outcome is committed alone: the others' succeed, the refused one's error is its own.
    #[tokio::test]
    async fn a_batch_refused_part_way_is_committed_outcome_by_outcome() {
        let (db, owner) = scratch_db_and_owner(4).await;
        let (ctx, fine) = tenant(&db, "fine.txt").await;
        let poison = FileId::new();
        let name = Filename::parse("poison.txt").unwrap();
        let new_file = NewFile { id: poison, filename: &name, size: 1, sha256: &"0".repeat(64) };
        let event =
            Event { action: Action::FileUploaded, target: None, details: serde_json::json!({}), request_id: "test" };
        files::record_upload(db.begin(&ctx).await.unwrap(), &new_file, crate::domain::JobId::new(), event)
            .await
            .unwrap();
        owner
            .batch_execute(
                "create function app.test_refuse_poison() returns trigger language plpgsql as
                   $$ begin if new.filename = 'poison.txt' then raise exception 'refused'; end if; return new; end $$;
                 create trigger test_refuse_poison before update on app.files
                   for each row execute function app.test_refuse_poison();",
            )
            .await
            .unwrap();
        let metrics = Metrics::default();
        let (mut batch, mut answers) = (Vec::new(), Vec::new());
        for file_id in [fine, poison] {
            let (recorded, answer) = oneshot::channel();
            batch.push(Entry { tenant: ctx, verdict: ready(file_id), recorded });
            answers.push(answer);
        }

        commit(&db, &metrics, ctx, batch).await;

        assert!(matches!(answers.remove(0).await.unwrap(), Ok(true)), "the fine file's outcome is committed");
        let refused = answers.remove(0).await.unwrap();
        assert!(matches!(&refused, Err(e) if !e.is_transient()), "{refused:?}");
        assert_eq!((metrics.outcome_batches_split.get(), metrics.outcome_batch_size.get_sample_count()), (1, 1));
        let stored = files::find(db.read(&ctx).await.unwrap(), fine).await.unwrap().unwrap();
        assert_eq!(stored.status, FileStatus::Ready);
    }

    /// One tenant's statement held up (its organization's row locked by another transaction)
    /// holds up that tenant's verdicts only: another tenant's is committed meanwhile.
    #[tokio::test]
    async fn a_tenant_held_up_does_not_hold_up_another() {
        let (db, mut owner) = scratch_db_and_owner(4).await;
        let (a, a_file) = tenant(&db, "a.txt").await;
        let (b, b_file) = tenant(&db, "b.txt").await;
        let lock = owner.transaction().await.unwrap();
        lock.execute("select set_config('app.org_id', $1, true)", &[&a.org_id.to_string()]).await.unwrap();
        lock.execute("select from app.organizations where id = $1 for update", &[a.org_id.as_uuid()]).await.unwrap();
        let recorder = Arc::new(Recorder::start(db.clone(), Arc::default()));

        let held = tokio::spawn({
            let recorder = recorder.clone();
            async move { recorder.record(a, ready(a_file)).await }
        });
        // Someone waits for the lock's transaction (pg_locks: visible to every role).
        let waiting = "select count(*) from pg_locks
                        where locktype = 'transactionid' and not granted
                          and transactionid::text = pg_current_xact_id()::text";
        while lock.query_one(waiting, &[]).await.unwrap().get::<_, i64>(0) == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let other = tokio::time::timeout(std::time::Duration::from_secs(10), recorder.record(b, ready(b_file))).await;

        assert!(matches!(other, Ok(Ok(true))), "{other:?}");
        assert!(!held.is_finished(), "the held-up tenant's verdict waits for the lock");
        lock.rollback().await.unwrap();
        assert!(matches!(held.await.unwrap(), Ok(true)));
    }
}
