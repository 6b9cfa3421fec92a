//! Per-client-address limits on the anonymous endpoints: those that spend bcrypt time (login,
//! register), so that nobody can starve sign-ins of this process's hashing slots, and opening
//! share links.
//!
//! Process memory is the right place for it: it protects this process's CPU, not an account
//! (the per-email login throttle, which must hold across processes, lives in the database). The
//! address is the client's as `http::client` resolves it (the TCP peer, or what a trusted proxy
//! forwards). An IPv6 client is counted by its network (a /64 by default): one host commonly
//! holds a whole /64, and counting each of its 2^64 addresses apart would be no limit at all.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    num::NonZeroU32,
};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;

pub struct ClientLimiter {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    ipv6_prefix: u8,
}

impl ClientLimiter {
    pub fn new(per_minute: u32, burst: u32, ipv6_prefix: u8) -> Self {
        let rate = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: RateLimiter::keyed(Quota::per_minute(rate).allow_burst(burst)),
            ipv6_prefix: ipv6_prefix.min(128),
        }
    }

    /// Counts one request from `client`; refused with 429 once its network is over its rate.
    pub fn check(&self, client: Option<IpAddr>) -> Result<(), ApiError> {
        let key = client.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |addr| self.network_of(addr));
        self.limiter.check_key(&key).map_err(|_| ApiError::RateLimited)
    }

    /// Forgets the networks whose allowance has fully recovered (they were within their rate
    /// anyway). Called periodically off the request path (`startup`), so the map holds only
    /// recently seen networks and no request pays for a sweep of it.
    pub fn forget_recovered(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Networks currently remembered.
    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.limiter.len()
    }

    /// The key an address counts under: an IPv4 address itself (also when written as an
    /// IPv4-mapped IPv6 address), an IPv6 address's network of `ipv6_prefix` bits.
    fn network_of(&self, addr: IpAddr) -> IpAddr {
        match addr {
            IpAddr::V4(v4) => IpAddr::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let mask = u128::MAX.checked_shl(128 - u32::from(self.ipv6_prefix)).unwrap_or(0);
                    IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn one_ipv6_host_is_one_client_however_many_addresses_it_uses() {
        let limiter = ClientLimiter::new(1, 2, 64);
        assert!(limiter.check(addr("2001:db8:1:2::1")).is_ok());
        assert!(limiter.check(addr("2001:db8:1:2:ffff::9")).is_ok());
        assert!(limiter.check(addr("2001:db8:1:2:1234:5678:9abc:def0")).is_err(), "same /64: same allowance");
        assert!(limiter.check(addr("2001:db8:1:3::1")).is_ok(), "the next /64 is another client");
        assert_eq!(limiter.remembered(), 2);
    }

    #[test]
    fn ipv4_clients_count_by_address_however_written() {
        let limiter = ClientLimiter::new(1, 1, 64);
        assert!(limiter.check(addr("192.0.2.1")).is_ok());
        assert!(limiter.check(addr("::ffff:192.0.2.1")).is_err(), "the same address, IPv4-mapped");
        assert!(limiter.check(addr("192.0.2.2")).is_ok());
    }

    #[test]
    fn the_prefix_is_configurable() {
        let per_address = ClientLimiter::new(1, 1, 128);
        assert!(per_address.check(addr("2001:db8::1")).is_ok());
        assert!(per_address.check(addr("2001:db8::2")).is_ok());
        let per_48 = ClientLimiter::new(1, 1, 48);
        assert!(per_48.check(addr("2001:db8:0:1::1")).is_ok());
        assert!(per_48.check(addr("2001:db8:0:2::1")).is_err());
    }

    #[test]
    fn recovered_networks_are_forgotten_off_the_request_path() {
        // 60,000 per minute: an allowance of one recovers within a millisecond.
        let limiter = ClientLimiter::new(60_000, 1, 64);
        for n in 0..1000u32 {
            assert!(limiter.check(Some(IpAddr::V4(Ipv4Addr::from(n)))).is_ok());
        }
        assert_eq!(limiter.remembered(), 1000);
        std::thread::sleep(std::time::Duration::from_millis(20));
        limiter.forget_recovered();
        assert_eq!(limiter.remembered(), 0);
    }
}
