//! The bytes of request bodies this process holds in memory at once, bounded (`UPLOAD_MEMORY_MB`).
//! A resumable upload's `PATCH` holds what arrived until it is stored as a chunk; without a
//! bound, a few hundred stalled bodies of almost a chunk each took the process's memory, and
//! with it every tenant's requests. Bytes are taken from the budget as they arrive and given
//! back once stored; a body that finds the budget spent first stores what it holds (a smaller
//! chunk) and then waits, so nobody waits while holding any of it, and a waiting body reads
//! nothing more from its socket (back-pressure) until there is room.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Clone, Debug)]
pub struct MemoryBudget {
    bytes: Arc<Semaphore>,
    total: usize,
}

/// Bytes taken from the budget; given back when dropped.
#[derive(Debug, Default)]
pub struct Held(Option<OwnedSemaphorePermit>);

impl MemoryBudget {
    pub fn new(total_bytes: usize) -> Self {
        let total = total_bytes.clamp(1, Semaphore::MAX_PERMITS);
        Self { bytes: Arc::new(Semaphore::new(total)), total }
    }

    /// `bytes` more for `held`, at once, if the budget has them.
    pub fn try_take(&self, held: &mut Held, bytes: usize) -> bool {
        match self.bytes.clone().try_acquire_many_owned(self.permits(bytes)) {
            Ok(permit) => {
                held.add(permit);
                true
            }
            Err(_) => false,
        }
    }

    /// `bytes` more for `held`, waiting until the budget has them.
    pub async fn take(&self, held: &mut Held, bytes: usize) {
        // The semaphore is never closed, so acquiring fails only if it were.
        if let Ok(permit) = self.bytes.clone().acquire_many_owned(self.permits(bytes)).await {
            held.add(permit);
        }
    }

    /// Bytes of the budget not held by anyone now.
    #[cfg(test)]
    fn available(&self) -> usize {
        self.bytes.available_permits()
    }

    /// One frame larger than the whole budget takes all of it (never more: it would wait for ever).
    fn permits(&self, bytes: usize) -> u32 {
        u32::try_from(bytes.min(self.total)).unwrap_or(u32::MAX)
    }
}

impl Held {
    fn add(&mut self, permit: OwnedSemaphorePermit) {
        match &mut self.0 {
            Some(held) => held.merge(permit),
            None => self.0 = Some(permit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bytes_come_back_when_released_and_a_full_budget_makes_takers_wait() {
        let budget = MemoryBudget::new(100);
        let mut first = Held::default();
        assert!(budget.try_take(&mut first, 60));
        assert!(budget.try_take(&mut first, 30));
        assert_eq!(budget.available(), 10);
        let mut second = Held::default();
        assert!(!budget.try_take(&mut second, 20), "only 10 left");

        let waiting = {
            let budget = budget.clone();
            tokio::spawn(async move {
                let mut held = Held::default();
                budget.take(&mut held, 20).await;
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
        assert!(budget.try_take(&mut huge, 1_000), "a frame larger than the budget takes all of it");
        assert_eq!(budget.available(), 0);
    }
}
