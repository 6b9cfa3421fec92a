//! Per-client-address limits on the anonymous endpoints: those that spend bcrypt time (login,
//! register), so that nobody can starve sign-ins of this process's hashing slots, and opening
//! share links.
//!
//! Process memory is the right place for it: it protects this process's CPU, not an account
//! (the per-email login throttle, which must hold across processes, lives in the database). The
//! address is the TCP peer: behind a reverse proxy, that proxy is one client for this limit, so
//! such a deployment sets a rate that suits it (docs/security.md).

use std::{
    net::{IpAddr, Ipv4Addr},
    num::NonZeroU32,
};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;

/// Keyed rate limits hold one entry per address; beyond this many, entries that have fully
/// recovered are dropped (an address that is forgotten is one that was within its rate anyway).
const RETAIN_ABOVE: usize = 10_000;

pub struct ClientLimiter(DefaultKeyedRateLimiter<IpAddr>);

impl ClientLimiter {
    pub fn new(per_minute: u32, burst: u32) -> Self {
        let rate = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        Self(RateLimiter::keyed(Quota::per_minute(rate).allow_burst(burst)))
    }

    /// Counts one request from `client`; refused with 429 once the address is over its rate.
    pub fn check(&self, client: Option<IpAddr>) -> Result<(), ApiError> {
        if self.0.len() > RETAIN_ABOVE {
            self.0.retain_recent();
        }
        self.0.check_key(&client.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))).map_err(|_| ApiError::RateLimited)
    }
}
