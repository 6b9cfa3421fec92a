//! What the per-organization budgets refused (#25): counted in memory where the refusal
//! happens (often before any transaction, or instead of one), added to the organization's rows
//! in `app.budget_refusals` by [`Refusals::flush`] every few seconds, one statement for every
//! organization, and read back under RLS by `GET /api/org/usage`. The process's totals per
//! budget, without organizations, go to `/metrics`.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
};

use super::{system, DbError, SystemQuery};
use crate::domain::OrgId;

/// A budget that refuses (or, for memory, holds back) an organization's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Budget {
    /// Its request rate (`ORG_REQUESTS_PER_MINUTE`, or its plan's).
    Requests,
    /// Its share of this process's database connections (`DB_POOL_ORG_SHARE`).
    Connections,
    /// Its uploads in flight (`max_concurrent_uploads`).
    UploadSlots,
    /// Its share of this process's upload memory (`UPLOAD_MEMORY_ORG_SHARE`): a body that had
    /// to wait for room.
    UploadMemory,
}

impl Budget {
    pub const ALL: [Budget; 4] = [Budget::Requests, Budget::Connections, Budget::UploadSlots, Budget::UploadMemory];

    /// The name in the database, the usage answer and the metric's label.
    pub fn name(self) -> &'static str {
        match self {
            Budget::Requests => "requests",
            Budget::Connections => "connections",
            Budget::UploadSlots => "upload_slots",
            Budget::UploadMemory => "upload_memory",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|budget| budget.name() == name)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Refusals not yet flushed, per organization and budget; and the process's totals.
#[derive(Debug, Default)]
pub struct Refusals {
    pending: Mutex<HashMap<(OrgId, Budget), u64>>,
    totals: [AtomicU64; 4],
}

impl Refusals {
    /// One refusal of `org`'s request by `budget`.
    pub fn count(&self, org: OrgId, budget: Budget) {
        self.totals[budget.index()].fetch_add(1, Ordering::Relaxed);
        *self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).entry((org, budget)).or_default() += 1;
    }

    /// Refusals by `budget` since the process started, every organization together.
    pub fn total(&self, budget: Budget) -> u64 {
        self.totals[budget.index()].load(Ordering::Relaxed)
    }

    /// Adds what was counted since the last flush to the organizations' rows. Should the
    /// statement fail, the counts are kept for the next flush.
    pub async fn flush(&self, conn: impl SystemQuery) -> Result<(), DbError> {
        let taken = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        if taken.is_empty() {
            return Ok(());
        }
        let added = system::budget_refusals_add(conn, &taken).await;
        if added.is_err() {
            let mut pending = self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            for (key, count) in taken {
                *pending.entry(key).or_default() += count;
            }
        }
        added
    }
}
