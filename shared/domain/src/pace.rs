//! Fleet runs share one Private CA. PCA's IssueCertificate quota is per account and region
//! (25/s by default), and a throttled call costs a retry with backoff, so a sweep that fires as
//! fast as it can ends up slower than one that spaces its calls. [`IssueBudget`] spaces them.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::authority::{
    Authority, AuthorityError, AuthorityInfo, CertificateId, IssueRequest, Issued, RevocationReason,
};

/// At most `per_second` starts per second, evenly spaced: each caller reserves the next free
/// slot and sleeps until it. No bursts, so the CA's sliding one-second window never overflows
/// at the sender; requests still arrive with jitter, so the rate adapts: each throttle takes
/// 2% off (never below half the configured rate) and each accepted attempt gives 1% of the
/// configured rate back, up to it. (Tuned on bench/run's 1,000-cluster sweep: 5% off and 0.2%
/// back kept the rate low long after a few early throttles: 70 s instead of 44 s.)
#[derive(Debug)]
pub struct IssueBudget {
    base: f64,
    state: Mutex<Pace>,
    /// Attempts the CA answered with a throttle, since this budget was made.
    throttled: std::sync::atomic::AtomicU64,
}

#[derive(Debug)]
struct Pace {
    rate: f64,
    next: Option<Instant>,
}

/// How much of the rate one throttle takes, and the floor it never goes below.
const BACK_OFF: f64 = 0.98;
const FLOOR: f64 = 0.5;
/// Share of the configured rate one accepted attempt gives back.
const RECOVER: f64 = 0.01;

impl IssueBudget {
    /// `per_second` must be positive.
    pub fn per_second(per_second: f64) -> Self {
        assert!(
            per_second > 0.0 && per_second.is_finite(),
            "issue rate must be positive"
        );
        IssueBudget {
            base: per_second,
            state: Mutex::new(Pace {
                rate: per_second,
                next: None,
            }),
            throttled: Default::default(),
        }
    }

    fn pace(&self) -> std::sync::MutexGuard<'_, Pace> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The rate slots are handed out at now.
    pub fn rate(&self) -> f64 {
        self.pace().rate
    }

    /// An attempt made in one of this budget's slots was throttled by the CA: slow down.
    pub fn note_throttled(&self) {
        self.throttled
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut pace = self.pace();
        pace.rate = (pace.rate * BACK_OFF).max(self.base * FLOOR);
    }

    /// An attempt was accepted: recover towards the configured rate.
    pub fn note_accepted(&self) {
        let mut pace = self.pace();
        pace.rate = (pace.rate + self.base * RECOVER).min(self.base);
    }

    /// Throttled attempts so far (a sweep reports the difference over its run).
    pub fn throttled(&self) -> u64 {
        self.throttled.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits for this caller's slot.
    pub async fn acquire(&self) {
        let slot = {
            let mut pace = self.pace();
            let now = Instant::now();
            let slot = pace.next.map_or(now, |n| n.max(now));
            pace.next = Some(slot + Duration::from_secs_f64(1.0 / pace.rate));
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

/// An [`Authority`] described once: in a fleet run every cluster would ask the CA the same
/// question. (Issuance is spaced by the adapter itself, see `PcaAuthority::with_issue_budget`.)
pub struct Described<'a> {
    inner: &'a dyn Authority,
    described: OnceCell<AuthorityInfo>,
}

impl<'a> Described<'a> {
    /// Wraps `inner`; the first `describe` is asked of it, later ones answered from memory.
    pub fn new(inner: &'a dyn Authority) -> Self {
        Described {
            inner,
            described: OnceCell::new(),
        }
    }
}

#[async_trait]
impl Authority for Described<'_> {
    async fn describe(&self) -> Result<AuthorityInfo, AuthorityError> {
        self.described
            .get_or_try_init(|| self.inner.describe())
            .await
            .cloned()
    }

    async fn issue(&self, request: &IssueRequest<'_>) -> Result<CertificateId, AuthorityError> {
        self.inner.issue(request).await
    }

    async fn fetch(&self, id: &CertificateId) -> Result<Issued, AuthorityError> {
        self.inner.fetch(id).await
    }

    async fn revoke(
        &self,
        id: &CertificateId,
        serial: &str,
        reason: RevocationReason,
    ) -> Result<(), AuthorityError> {
        self.inner.revoke(id, serial, reason).await
    }

    async fn crl(&self) -> Result<Option<String>, AuthorityError> {
        self.inner.crl().await
    }

    async fn issued_with_subject(
        &self,
        subject: &[u8],
        now: time::OffsetDateTime,
    ) -> Result<crate::authority::Listing, crate::authority::AuthorityError> {
        self.inner.issued_with_subject(subject, now).await
    }
}

/// An [`Authority`] whose description is kept for `ttl`: a function instance answering many
/// reconcile requests asks the CA (describe, its certificate and chain) once per `ttl` rather
/// than once per cluster. A changed root or a disabled CA is seen within `ttl`.
pub struct DescribedFor {
    inner: std::sync::Arc<dyn Authority>,
    ttl: Duration,
    held: tokio::sync::Mutex<Option<(Instant, AuthorityInfo)>>,
}

impl DescribedFor {
    /// Wraps `inner`, asking it again once `ttl` has passed.
    pub fn new(inner: std::sync::Arc<dyn Authority>, ttl: Duration) -> Self {
        DescribedFor {
            inner,
            ttl,
            held: tokio::sync::Mutex::new(None),
        }
    }
}

#[async_trait]
impl Authority for DescribedFor {
    async fn describe(&self) -> Result<AuthorityInfo, AuthorityError> {
        let mut held = self.held.lock().await;
        if let Some((_, info)) = held.as_ref().filter(|(at, _)| at.elapsed() < self.ttl) {
            return Ok(info.clone());
        }
        let info = self.inner.describe().await?;
        *held = Some((Instant::now(), info.clone()));
        Ok(info)
    }

    async fn issue(&self, request: &IssueRequest<'_>) -> Result<CertificateId, AuthorityError> {
        self.inner.issue(request).await
    }

    async fn fetch(&self, id: &CertificateId) -> Result<Issued, AuthorityError> {
        self.inner.fetch(id).await
    }

    async fn revoke(
        &self,
        id: &CertificateId,
        serial: &str,
        reason: RevocationReason,
    ) -> Result<(), AuthorityError> {
        self.inner.revoke(id, serial, reason).await
    }

    async fn crl(&self) -> Result<Option<String>, AuthorityError> {
        self.inner.crl().await
    }

    async fn issued_with_subject(
        &self,
        subject: &[u8],
        now: time::OffsetDateTime,
    ) -> Result<crate::authority::Listing, crate::authority::AuthorityError> {
        self.inner.issued_with_subject(subject, now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts describes; everything else is never called here.
    struct Counting(std::sync::atomic::AtomicUsize);

    #[async_trait]
    impl Authority for Counting {
        async fn describe(&self) -> Result<AuthorityInfo, AuthorityError> {
            let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(AuthorityInfo {
                id: format!("ca-{n}"),
                key_description: "EC".into(),
                key_algorithm: None,
                signing_algorithm: "SHA256WITHECDSA".into(),
                root_bundle: String::new(),
                not_after: time::OffsetDateTime::UNIX_EPOCH,
            })
        }
        async fn issue(&self, _: &IssueRequest<'_>) -> Result<CertificateId, AuthorityError> {
            unreachable!()
        }
        async fn fetch(&self, _: &CertificateId) -> Result<Issued, AuthorityError> {
            unreachable!()
        }
        async fn revoke(
            &self,
            _: &CertificateId,
            _: &str,
            _: RevocationReason,
        ) -> Result<(), AuthorityError> {
            unreachable!()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_description_is_kept_for_its_ttl_then_asked_again() {
        let inner = std::sync::Arc::new(Counting(Default::default()));
        let cached = DescribedFor::new(inner.clone(), Duration::from_secs(300));
        for _ in 0..10 {
            assert_eq!(cached.describe().await.unwrap().id, "ca-0");
        }
        tokio::time::sleep(Duration::from_secs(301)).await;
        assert_eq!(cached.describe().await.unwrap().id, "ca-1");
        assert_eq!(inner.0.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn slots_are_evenly_spaced_and_never_bunched() {
        let budget = IssueBudget::per_second(20.0);
        let start = Instant::now();
        let mut at = Vec::new();
        for _ in 0..5 {
            budget.acquire().await;
            at.push(start.elapsed());
        }
        assert_eq!(
            at,
            (0..5)
                .map(|i| Duration::from_millis(50 * i))
                .collect::<Vec<_>>()
        );
        // A caller arriving after a quiet spell starts at once, without a burst of saved slots.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let t = Instant::now();
        budget.acquire().await;
        budget.acquire().await;
        assert_eq!(t.elapsed(), Duration::from_millis(50));
    }

    #[test]
    fn throttles_slow_the_rate_to_a_floor_and_accepted_calls_bring_it_back() {
        let budget = IssueBudget::per_second(20.0);
        budget.note_throttled();
        assert!((budget.rate() - 19.6).abs() < 1e-9, "{}", budget.rate());
        for _ in 0..100 {
            budget.note_throttled();
        }
        assert_eq!(budget.rate(), 10.0, "never below half");
        assert_eq!(budget.throttled(), 101);
        for _ in 0..5 {
            budget.note_accepted();
        }
        assert!(
            (budget.rate() - 11.0).abs() < 1e-9,
            "5 accepted calls give back 5% of the configured rate: {}",
            budget.rate()
        );
        for _ in 0..1000 {
            budget.note_accepted();
        }
        assert_eq!(budget.rate(), 20.0, "never above the configured rate");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slower_rate_spaces_the_next_slots_wider() {
        let budget = IssueBudget::per_second(20.0);
        for _ in 0..10 {
            budget.note_throttled();
        }
        assert!((budget.rate() - 20.0 * 0.98f64.powi(10)).abs() < 1e-9);
        let start = Instant::now();
        budget.acquire().await;
        budget.acquire().await;
        budget.acquire().await;
        let gap = Duration::from_secs_f64(1.0 / (20.0 * 0.98f64.powi(10)));
        assert!(
            start.elapsed() >= gap * 2 && start.elapsed() < gap * 2 + Duration::from_millis(1),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_take_distinct_slots() {
        let budget = std::sync::Arc::new(IssueBudget::per_second(10.0));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let b = budget.clone();
            tasks.push(tokio::spawn(async move {
                b.acquire().await;
                start.elapsed()
            }));
        }
        let mut at: Vec<Duration> = Vec::new();
        for t in tasks {
            at.push(t.await.unwrap());
        }
        at.sort();
        assert_eq!(
            at,
            (0..10)
                .map(|i| Duration::from_millis(100 * i))
                .collect::<Vec<_>>()
        );
    }
}
