//! Each organization's share of the pool (#25): one organization's concurrent requests (heavy
//! searches, uploads waiting on a lock) hold at most `per_org` of the process's pooled
//! connections at once; past that its next transaction waits briefly for one of its own to
//! come back, then fails with [`DbError::Busy`] (429), while every other organization's
//! requests still find connections.
//!
//! A read made with a credential learns its organization only from the database: from a
//! credential's second request on, its reads count against their organization's share too
//! ([`super::tenant::KnownOrgs`]).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::DbError;
use crate::domain::OrgId;

/// Organizations tracked before those holding nothing are forgotten.
const TRACKED_ORGANIZATIONS: usize = 4_096;

/// One connection of an organization's share, held by a transaction until its connection is
/// back in the pool.
#[derive(Debug)]
pub(super) struct Share(#[allow(dead_code)] OwnedSemaphorePermit);

#[derive(Debug)]
pub(super) struct Shares {
    per_org: usize,
    wait: Duration,
    held: Mutex<HashMap<OrgId, Arc<Semaphore>>>,
}

impl Shares {
    pub(super) fn new(per_org: usize, wait: Duration) -> Self {
        Self { per_org: per_org.max(1), wait, held: Mutex::default() }
    }

    /// A connection of `org`'s share: at once, within the wait, or [`DbError::Busy`].
    pub(super) async fn take(&self, org: OrgId) -> Result<Share, DbError> {
        let semaphore = {
            let mut held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if held.len() >= TRACKED_ORGANIZATIONS {
                held.retain(|_, semaphore| Arc::strong_count(semaphore) > 1);
            }
            held.entry(org).or_insert_with(|| Arc::new(Semaphore::new(self.per_org))).clone()
        };
        match tokio::time::timeout(self.wait, semaphore.acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Share(permit)),
            // The semaphore is never closed; a timeout is the organization's own concurrency.
            Ok(Err(_)) | Err(_) => Err(DbError::Busy),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::super::{
        system,
        testing::{scratch_db, tenant},
        users, Caller, Credential, DbError, Plans,
    };

    /// With two connections per organization in a pool of four, an organization holding two
    /// waits, then is refused; another organization's transaction goes through meanwhile, and
    /// the first one's next transaction once one of its own is back. A credential's reads count
    /// from its second on (its first taught the pool whose it is).
    #[tokio::test]
    async fn an_organization_holds_at_most_its_share_of_the_pool() {
        let wait = Duration::from_millis(200);
        let db = scratch_db(4).await.with_org_share(2, wait);
        let (a, _) = tenant(&db, "a.txt").await;
        let (b, _) = tenant(&db, "b.txt").await;

        let held = [db.begin(&a).await.unwrap(), db.begin(&a).await.unwrap()];
        let asked = Instant::now();
        assert!(matches!(db.read(&a).await, Err(DbError::Busy)));
        assert!(asked.elapsed() >= wait, "it waited for one of its own first");
        let b_tx = db.begin(&b).await.expect("another organization still gets a connection");
        b_tx.commit().await.unwrap();

        let [first, second] = held;
        first.commit().await.unwrap();
        let third = db.begin(&a).await.expect("one of its own is back");

        let key_hash = vec![9u8; 32];
        let conn = db.system_conn().await.unwrap();
        assert!(system::session_save(&conn, &key_hash, a, &serde_json::json!({}), 60).await.unwrap());
        drop(conn);
        let session = Caller::Session(Credential::new(Some(a.org_id), key_hash));
        let me = || db.read_as(&session, Plans::Generic, users::find_me);
        let (_, who) = me().await.expect("a credential's first read is not counted: nothing says whose it is");
        assert_eq!(who, a);
        assert!(matches!(me().await, Err(DbError::Busy)), "its second counts against its organization");
        drop((second, third));
        me().await.expect("within the share again");
    }
}
