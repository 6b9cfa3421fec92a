//! Each organization's request budget (#25): a rate of authenticated requests per minute,
//! `ORG_REQUESTS_PER_MINUTE` or its plan's (`organizations.requests_per_minute`), across the
//! deployment's `API_PROCESSES` api processes, each of which enforces its part of it (docs/scaling.md,
//! "Request budgets"). Past it, requests get 429 `request_budget_exceeded` with `Retry-After`;
//! every answer to an authenticated request says where its organization stands in the IETF
//! draft's `RateLimit-Policy` and `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers).
//!
//! A GCRA per organization (`governor`): a full minute's quota may be spent at once, then it
//! comes back evenly over the minute. Nothing is stored: an organization's allowance lives in
//! this process's memory, like its connection share.

use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use actix_web::http::header::{HeaderName, HeaderValue};
use governor::{
    clock::{Clock, DefaultClock},
    middleware::StateInformationMiddleware,
    state::{InMemoryState, NotKeyed},
    Quota, RateLimiter,
};

use crate::{domain::OrgId, error::ApiError};

const WINDOW_SECONDS: u64 = 60;
/// How long an organization's allowance is kept after its last request: longer than a window,
/// so only allowances that have come back whole are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(2 * WINDOW_SECONDS);

type Limiter = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

/// One organization's allowance in this process.
struct Allowance {
    /// This process's part of the organization's rate.
    per_minute: NonZeroU32,
    limiter: Limiter,
    last_seen: Mutex<Instant>,
}

pub struct RequestBudgets {
    /// Every organization's rate without a plan of its own, across the processes; `None`: no
    /// budget.
    default_per_minute: Option<NonZeroU32>,
    processes: NonZeroU32,
    /// Plans' own rates, across the processes (refreshed from the database).
    plans: RwLock<HashMap<OrgId, u32>>,
    allowances: Mutex<HashMap<OrgId, Arc<Allowance>>>,
    clock: DefaultClock,
}

/// Where an organization stands after one request: its quota per window in this process, what
/// is left of it, and when it is whole again. Said on the answer, success or 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub quota: u32,
    pub remaining: u32,
    pub reset_seconds: u64,
}

impl Standing {
    /// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers-10), one
    /// policy named `org`: the organization's quota `q` per window `w`, its remaining `r`, and
    /// `t` seconds until it is whole.
    pub fn headers(&self) -> [(HeaderName, HeaderValue); 2] {
        let policy = format!("\"org\";q={};w={WINDOW_SECONDS}", self.quota);
        let state = format!("\"org\";r={};t={}", self.remaining, self.reset_seconds);
        [
            (HeaderName::from_static("ratelimit-policy"), HeaderValue::from_str(&policy).expect("ascii")),
            (HeaderName::from_static("ratelimit"), HeaderValue::from_str(&state).expect("ascii")),
        ]
    }
}

impl RequestBudgets {
    /// `per_minute` (0: no budget) for every organization without a plan, shared by `processes`
    /// api processes.
    pub fn new(per_minute: u32, processes: u32) -> Self {
        Self {
            default_per_minute: NonZeroU32::new(per_minute),
            processes: NonZeroU32::new(processes).unwrap_or(NonZeroU32::MIN),
            plans: RwLock::default(),
            allowances: Mutex::default(),
            clock: DefaultClock::default(),
        }
    }

    /// Counts one request of `org`: its standing, or 429 `request_budget_exceeded` once its
    /// allowance is spent. `None` when no budget applies.
    pub fn spend(&self, org: OrgId) -> Result<Option<Standing>, ApiError> {
        let Some(allowance) = self.allowance(org) else { return Ok(None) };
        *allowance.last_seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Instant::now();
        let quota = allowance.per_minute.get();
        match allowance.limiter.check() {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let interval = Quota::per_minute(allowance.per_minute).replenish_interval();
                let reset = interval * (quota - remaining);
                Ok(Some(Standing { quota, remaining, reset_seconds: reset.as_secs_f64().ceil() as u64 }))
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                let retry_after = wait.as_secs_f64().ceil().max(1.0) as u64;
                let standing = Standing { quota, remaining: 0, reset_seconds: retry_after };
                Err(ApiError::OverRequestBudget { standing, retry_after })
            }
        }
    }

    /// The plans' own rates, as the database has them now; an organization whose rate changed
    /// starts again with a whole allowance at the new rate.
    pub fn set_plans(&self, plans: HashMap<OrgId, u32>) {
        let mut allowances = self.allowances.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        allowances.retain(|org, allowance| Some(allowance.per_minute) == self.per_process(plans.get(org).copied()));
        *self.plans.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = plans;
    }

    /// Forgets the allowances of organizations not seen for a while (whole again anyway).
    /// Called periodically off the request path.
    pub fn forget_idle(&self) {
        let now = Instant::now();
        self.allowances.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).retain(|_, allowance| {
            let last_seen = *allowance.last_seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            now.duration_since(last_seen) < FORGET_AFTER
        });
    }

    fn allowance(&self, org: OrgId) -> Option<Arc<Allowance>> {
        let mut allowances = self.allowances.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(allowance) = allowances.get(&org) {
            return Some(allowance.clone());
        }
        let plan = self.plans.read().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&org).copied();
        let per_minute = self.per_process(plan)?;
        let limiter =
            RateLimiter::direct(Quota::per_minute(per_minute)).with_middleware::<StateInformationMiddleware>();
        let allowance = Arc::new(Allowance { per_minute, limiter, last_seen: Mutex::new(Instant::now()) });
        allowances.insert(org, allowance.clone());
        Some(allowance)
    }

    /// This process's part of a rate (the plan's, else the default), at least one a minute.
    fn per_process(&self, plan: Option<u32>) -> Option<NonZeroU32> {
        let across = plan.and_then(NonZeroU32::new).or(self.default_per_minute)?;
        NonZeroU32::new(across.get() / self.processes.get()).or(Some(NonZeroU32::MIN))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minutes_quota_is_spent_then_refused_with_when_to_retry() {
        let budgets = RequestBudgets::new(3, 1);
        let org = OrgId::new();
        let standing = |budgets: &RequestBudgets| budgets.spend(org).unwrap().unwrap();
        assert_eq!(standing(&budgets), Standing { quota: 3, remaining: 2, reset_seconds: 20 });
        assert_eq!(standing(&budgets).remaining, 1);
        assert_eq!(standing(&budgets), Standing { quota: 3, remaining: 0, reset_seconds: 60 });
        match budgets.spend(org) {
            Err(ApiError::OverRequestBudget { standing, retry_after }) => {
                assert!((19..=20).contains(&retry_after), "one request comes back every 20 s: {retry_after}");
                assert_eq!(standing.remaining, 0);
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(budgets.spend(OrgId::new()).is_ok(), "another organization has its own allowance");
    }

    #[test]
    fn a_plan_sets_its_own_rate_and_processes_divide_every_rate() {
        let budgets = RequestBudgets::new(600, 3);
        let (planned, other) = (OrgId::new(), OrgId::new());
        assert_eq!(budgets.spend(planned).unwrap().unwrap().quota, 200, "a third of the default");
        budgets.set_plans(HashMap::from([(planned, 3_000)]));
        assert_eq!(budgets.spend(planned).unwrap().unwrap().quota, 1_000, "a third of the plan's, from now on");
        assert_eq!(budgets.spend(other).unwrap().unwrap().quota, 200);
        assert_eq!(RequestBudgets::new(0, 1).spend(other).unwrap(), None, "0: no budget");
    }
}
