//! Fleet runs share one Private CA. PCA's IssueCertificate quota is per account and region
//! (25/s by default), and a throttled call costs a retry with backoff, so a sweep that fires as
//! fast as it can ends up slower than one that spaces its calls. [`IssueBudget`] spaces them.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::authority::{Authority, AuthorityError, AuthorityInfo, CertificateId, IssueRequest, Issued, RevocationReason};

/// At most `per_second` starts per second, evenly spaced: each caller reserves the next free
/// slot and sleeps until it. No bursts, so the CA's sliding one-second window never overflows.
#[derive(Debug)]
pub struct IssueBudget {
    interval: Duration,
    next: Mutex<Option<Instant>>,
    /// Attempts the CA answered with a throttle, since this budget was made.
    throttled: std::sync::atomic::AtomicU64,
}

impl IssueBudget {
    /// `per_second` must be positive.
    pub fn per_second(per_second: f64) -> Self {
        assert!(per_second > 0.0 && per_second.is_finite(), "issue rate must be positive");
        IssueBudget { interval: Duration::from_secs_f64(1.0 / per_second), next: Mutex::new(None), throttled: Default::default() }
    }

    /// An attempt made in one of this budget's slots was throttled by the CA.
    pub fn note_throttled(&self) {
        self.throttled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Throttled attempts so far (a sweep reports the difference over its run).
    pub fn throttled(&self) -> u64 {
        self.throttled.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits for this caller's slot.
    pub async fn acquire(&self) {
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let slot = next.map_or(now, |n| n.max(now));
            *next = Some(slot + self.interval);
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
    pub fn new(inner: &'a dyn Authority) -> Self {
        Described { inner, described: OnceCell::new() }
    }
}

#[async_trait]
impl Authority for Described<'_> {
    async fn describe(&self) -> Result<AuthorityInfo, AuthorityError> {
        self.described.get_or_try_init(|| self.inner.describe()).await.cloned()
    }

    async fn issue(&self, request: &IssueRequest<'_>) -> Result<CertificateId, AuthorityError> {
        self.inner.issue(request).await
    }

    async fn fetch(&self, id: &CertificateId) -> Result<Issued, AuthorityError> {
        self.inner.fetch(id).await
    }

    async fn revoke(&self, id: &CertificateId, serial: &str, reason: RevocationReason) -> Result<(), AuthorityError> {
        self.inner.revoke(id, serial, reason).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn slots_are_evenly_spaced_and_never_bunched() {
        let budget = IssueBudget::per_second(20.0);
        let start = Instant::now();
        let mut at = Vec::new();
        for _ in 0..5 {
            budget.acquire().await;
            at.push(start.elapsed());
        }
        assert_eq!(at, (0..5).map(|i| Duration::from_millis(50 * i)).collect::<Vec<_>>());
        // A caller arriving after a quiet spell starts at once, without a burst of saved slots.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let t = Instant::now();
        budget.acquire().await;
        budget.acquire().await;
        assert_eq!(t.elapsed(), Duration::from_millis(50));
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
        assert_eq!(at, (0..10).map(|i| Duration::from_millis(100 * i)).collect::<Vec<_>>());
    }
}
