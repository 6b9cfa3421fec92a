//! The bytes of request bodies this process holds in memory at once, bounded (`UPLOAD_MEMORY_MB`),
//! and each organization's share of them (`UPLOAD_MEMORY_ORG_SHARE`, #25). A resumable upload's
//! `PATCH` holds what arrived until it is stored as a chunk; a plain upload holds its parts on
//! their way to the store (up to [`crate::storage::MAX_HELD_BYTES`]). Without a bound, a few
//! hundred stalled bodies took the process's memory, and with it every tenant's requests;
//! without a share, one organization's flood of large uploads took all of the bound, and every
//! other organization's uploads waited behind it.
//!
//! Bytes are taken from the organization's share, then from the process's budget, as they
//! arrive, and given back once stored; a body that finds either spent waits for room, and a
//! waiting body reads nothing more from its socket (back-pressure) until there is room.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::domain::OrgId;

/// Organizations tracked before those holding nothing are forgotten.
const TRACKED_ORGANIZATIONS: usize = 4_096;

#[derive(Clone, Debug)]
pub struct MemoryBudget {
    process: Arc<Semaphore>,
    total: usize,
    per_org: usize,
    shares: Arc<Mutex<HashMap<OrgId, Arc<Semaphore>>>>,
}

/// Bytes taken from the budget, and from the organization's share; given back when dropped.
#[derive(Debug, Default)]
pub struct Held {
    share: Option<OwnedSemaphorePermit>,
    process: Option<OwnedSemaphorePermit>,
}

impl MemoryBudget {
    /// `total_bytes` for the process, of which one organization may hold `org_share_percent`.
    pub fn new(total_bytes: usize, org_share_percent: u8) -> Self {
        let total = total_bytes.clamp(1, Semaphore::MAX_PERMITS);
        let per_org = (total / 100 * usize::from(org_share_percent.min(100))).max(1);
        Self { process: Arc::new(Semaphore::new(total)), total, per_org, shares: Arc::default() }
    }

    /// `bytes` more for `held`, at once, if both `org`'s share and the process's budget have
    /// them.
    pub fn try_take(&self, org: OrgId, held: &mut Held, bytes: usize) -> bool {
        let Ok(share) = self.share(org).try_acquire_many_owned(permits(bytes, self.per_org)) else { return false };
        let Ok(process) = self.process.clone().try_acquire_many_owned(permits(bytes, self.total)) else { return false };
        held.add(share, process);
        true
    }

    /// `bytes` more for `held`, waiting until `org`'s share and then the process's budget have
    /// them.
    pub async fn take(&self, org: OrgId, held: &mut Held, bytes: usize) {
        // The semaphores are never closed, so acquiring fails only if they were.
        let Ok(share) = self.share(org).acquire_many_owned(permits(bytes, self.per_org)).await else { return };
        if let Ok(process) = self.process.clone().acquire_many_owned(permits(bytes, self.total)).await {
            held.add(share, process);
        }
    }

    /// Bytes of the budget not held by anyone now.
    #[cfg(test)]
    fn available(&self) -> usize {
        self.process.available_permits()
    }

    fn share(&self, org: OrgId) -> Arc<Semaphore> {
        let mut shares = self.shares.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if shares.len() >= TRACKED_ORGANIZATIONS {
            shares.retain(|_, share| share.available_permits() < self.per_org);
        }
        shares.entry(org).or_insert_with(|| Arc::new(Semaphore::new(self.per_org))).clone()
    }
}

/// One frame larger than the whole of `limit` takes all of it (never more: it would wait for ever).
fn permits(bytes: usize, limit: usize) -> u32 {
    u32::try_from(bytes.min(limit)).unwrap_or(u32::MAX)
}

impl Held {
    fn add(&mut self, share: OwnedSemaphorePermit, process: OwnedSemaphorePermit) {
        for (held, permit) in [(&mut self.share, share), (&mut self.process, process)] {
            match held {
                Some(held) => held.merge(permit),
                None => *held = Some(permit),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bytes_come_back_when_released_and_a_full_budget_makes_takers_wait() {
        let budget = MemoryBudget::new(100, 100);
        let org = OrgId::new();
        let mut first = Held::default();
        assert!(budget.try_take(org, &mut first, 60));
        assert!(budget.try_take(org, &mut first, 30));
        assert_eq!(budget.available(), 10);
        let mut second = Held::default();
        assert!(!budget.try_take(org, &mut second, 20), "only 10 left");

        let waiting = {
            let budget = budget.clone();
            tokio::spawn(async move {
                let mut held = Held::default();
                budget.take(org, &mut held, 20).await;
                held
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "waits while the budget is spent");
        drop(first);
        let held = waiting.await.unwrap();
        assert_eq!(budget.available(), 80);
        drop(held);
        assert_eq!(budget.available(), 100);

        let mut huge = Held::default();
        assert!(budget.try_take(org, &mut huge, 1_000), "a frame larger than the budget takes all of it");
        assert_eq!(budget.available(), 0);
    }

    /// An organization at its share waits, with the process's budget not spent: another
    /// organization still takes what it needs.
    #[tokio::test]
    async fn an_organization_holds_at_most_its_share_and_others_still_take_theirs() {
        let budget = MemoryBudget::new(1_000, 40);
        let (flooding, other) = (OrgId::new(), OrgId::new());
        let mut flood = Held::default();
        assert!(budget.try_take(flooding, &mut flood, 400));
        let mut more = Held::default();
        assert!(!budget.try_take(flooding, &mut more, 1), "its share is spent");
        assert_eq!(budget.available(), 600, "a refused take holds nothing");
        let waiting = {
            let budget = budget.clone();
            tokio::spawn(async move {
                let mut held = Held::default();
                budget.take(flooding, &mut held, 100).await;
                held
            })
        };
        let mut others = Held::default();
        assert!(budget.try_take(other, &mut others, 400), "another organization has its own share");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "the flooding organization waits for its own bytes to come back");
        drop(flood);
        drop(waiting.await.unwrap());
        assert_eq!(budget.available(), 600);
    }
}
