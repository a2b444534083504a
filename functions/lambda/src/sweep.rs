//! The expiry sweep: every opted-in cluster of every managed region, judged from escrow first,
//! then reconciled — the due ones first, most urgent first, under the instance's IssueCertificate
//! budget (every attempt, retries included, waits for its slot).
//!
//! Escrow says which clusters need a certificate without asking the CA or the cluster, so the
//! sweep can put the scarce calls (IssueCertificate, 25/s per account) where they matter and
//! still check every cluster's secret for drift, which costs no certificate.

use std::time::{Duration, Instant};

use futures::StreamExt;
use meshca::ClusterName;
use meshca::aws::eks::EksCluster;
use meshca::converge::{Assessment, ClusterOutcome};
use meshca::pace::Described;
use meshca::reconcile::Step;
use meshca::{Authority, Reconcile};
use serde::Serialize;
use time::OffsetDateTime;
use tracing::{info, warn};

use crate::event::RECONCILE_REQUESTED;
use crate::{App, Region, Report};

/// A reconcile is not started with less than this left of the invocation.
const MARGIN: Duration = Duration::from_secs(30);
/// PutEvents takes at most ten entries.
const PUT_EVENTS_BATCH: usize = 10;
/// DescribeCluster calls in flight while listing (EKS control-plane APIs throttle early).
const DESCRIBE_CONCURRENCY: usize = 8;

/// What one sweep did, returned and logged.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SweepReport {
    /// Opted-in clusters found.
    pub checked: usize,
    pub unchanged: usize,
    pub delivered: usize,
    pub renewed: usize,
    pub skipped: usize,
    pub planned: usize,
    pub failed: usize,
    /// Clusters handed to cluster-events as `meshca Reconcile Requested` events.
    pub fanned_out: usize,
    /// The bundle that expires first, of those seen.
    pub soonest_expiry: Option<Expiry>,
    /// Failed clusters with step and reason.
    pub failures: Vec<Report>,
    /// Regions that could not be listed.
    pub errors: Vec<String>,
    /// Every cluster reconciled inline (or not fanned out), with its outcome.
    pub clusters: Vec<Report>,
    /// Time to list and assess the fleet, and the whole sweep, in milliseconds.
    pub assessed_ms: u64,
    pub took_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expiry {
    pub cluster: String,
    pub region: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
}

/// One cluster on its way through the sweep.
struct Candidate<'a> {
    region: &'a str,
    r: &'a Region,
    cluster: EksCluster,
    assessed: Result<Assessment, ClusterOutcome>,
}

impl Candidate<'_> {
    /// Sort key: due before healthy; among the due, no bundle first, then the earliest end.
    fn urgency(&self) -> (u8, Option<OffsetDateTime>) {
        match &self.assessed {
            Ok(Assessment::Due { not_after, .. }) => (0, *not_after),
            Ok(Assessment::Healthy { not_after, .. }) => (1, Some(*not_after)),
            Err(_) => (2, None),
        }
    }
}

impl SweepReport {
    fn record(&mut self, report: Report) {
        match &report.outcome {
            ClusterOutcome::Unchanged { .. } => self.unchanged += 1,
            ClusterOutcome::Delivered { .. } => self.delivered += 1,
            ClusterOutcome::Renewed { .. } => self.renewed += 1,
            ClusterOutcome::Skipped { .. } | ClusterOutcome::Revoked { .. } => self.skipped += 1,
            ClusterOutcome::Planned { .. } => self.planned += 1,
            ClusterOutcome::Failed { .. } => {
                self.failed += 1;
                self.failures.push(report.clone());
            }
        }
        if let (Some(not_after), Some(cluster), Some(region)) = (report.outcome.not_after(), &report.cluster, &report.region) {
            self.saw_expiry(cluster, region, not_after);
        }
        self.clusters.push(report);
    }

    fn saw_expiry(&mut self, cluster: &str, region: &str, not_after: OffsetDateTime) {
        if self.soonest_expiry.as_ref().is_none_or(|s| not_after < s.not_after) {
            self.soonest_expiry = Some(Expiry { cluster: cluster.into(), region: region.into(), not_after });
        }
    }
}

fn report(c: &Candidate<'_>, outcome: ClusterOutcome) -> Report {
    Report { cluster: Some(c.cluster.name.clone()), region: Some(c.region.to_string()), outcome }
}

impl App {
    /// Sweeps every managed region; `deadline` is when the invocation must have answered.
    pub async fn sweep(&self, deadline: Instant) -> SweepReport {
        let started = Instant::now();
        let paced = Described::new(&self.authority);
        let mut out = SweepReport::default();

        let mut candidates = Vec::new();
        for (region, r) in &self.regions {
            match self.inventory(region, r).await {
                Ok(clusters) => candidates.extend(clusters.into_iter().map(|cluster| (region.as_str(), r, cluster))),
                Err(e) => {
                    warn!(region = %region, error = %e, "cannot list clusters");
                    out.errors.push(format!("{region}: {e}"));
                }
            }
        }
        out.checked = candidates.len();

        let mut candidates: Vec<Candidate<'_>> = futures::stream::iter(candidates)
            .map(|(region, r, cluster)| {
                let paced = &paced;
                async move {
                    let assessed = self.assess(paced, r, &cluster).await;
                    Candidate { region, r, cluster, assessed }
                }
            })
            .buffer_unordered(self.config.sweep_concurrency)
            .collect()
            .await;
        candidates.sort_by(|a, b| a.urgency().cmp(&b.urgency()).then_with(|| a.cluster.name.cmp(&b.cluster.name)));
        let due = candidates.iter().filter(|c| matches!(c.assessed, Ok(Assessment::Due { .. }))).count();
        out.assessed_ms = started.elapsed().as_millis() as u64;
        info!(checked = out.checked, due, assessed_ms = out.assessed_ms, "sweep assessed the fleet from escrow");

        let (ready, not_ready): (Vec<_>, Vec<_>) = candidates.into_iter().partition(|c| c.assessed.is_ok());
        for c in &not_ready {
            if let Err(outcome) = &c.assessed {
                out.record(report(c, outcome.clone()));
            }
        }

        if out.checked > self.config.fanout_threshold {
            self.fan_out(ready, &mut out).await;
        } else {
            let reports: Vec<(Report, Option<OffsetDateTime>)> = futures::stream::iter(ready)
                .map(|c| {
                    let paced = &paced;
                    async move {
                        let escrowed_end = c.assessed.as_ref().ok().and_then(Assessment::not_after);
                        if Instant::now() + MARGIN > deadline {
                            let reason = "deferred: the sweep ran out of time; the next sweep continues".to_string();
                            return (report(&c, ClusterOutcome::Skipped { reason }), escrowed_end);
                        }
                        let name: ClusterName = c.cluster.name.parse().expect("assessed names parse");
                        (report(&c, self.converge(paced, &name, c.r, &c.cluster, false).await), escrowed_end)
                    }
                })
                .buffer_unordered(self.config.sweep_concurrency)
                .collect()
                .await;
            for (r, escrowed_end) in reports {
                // A cluster left as it was (deferred, failed) still counts with the bundle it has.
                if let (None, Some(end), Some(cluster), Some(region)) = (r.outcome.not_after(), escrowed_end, &r.cluster, &r.region) {
                    out.saw_expiry(cluster, region, end);
                }
                out.record(r);
            }
        }
        out.clusters.sort_by(|a, b| (&a.region, &a.cluster).cmp(&(&b.region, &b.cluster)));
        out.took_ms = started.elapsed().as_millis() as u64;
        out
    }

    /// Opted-in clusters of one region (ListClusters has no tag filter: each is described).
    async fn inventory(&self, region: &str, r: &Region) -> Result<Vec<EksCluster>, meshca::aws::eks::EksError> {
        let names = r.eks.list().await?;
        let described: Vec<_> = futures::stream::iter(names)
            .map(|name| async move { (r.eks.describe(&name).await, name) })
            .buffered(DESCRIBE_CONCURRENCY)
            .collect()
            .await;
        let mut clusters = Vec::new();
        for (result, name) in described {
            match result {
                Ok(c) if c.has_tag(&self.config.tag_key, &self.config.tag_value) => clusters.push(c),
                Ok(_) | Err(meshca::aws::eks::EksError::NotFound(_)) => {}
                Err(e) => warn!(region = %region, cluster = %name, error = %e, "cannot describe cluster"),
            }
        }
        Ok(clusters)
    }

    /// Escrow's verdict on one cluster, or the outcome that stops it here.
    async fn assess(&self, authority: &dyn Authority, r: &Region, cluster: &EksCluster) -> Result<Assessment, ClusterOutcome> {
        if !cluster.is_active() {
            return Err(ClusterOutcome::Skipped { reason: format!("not active yet ({})", cluster.status) });
        }
        let name: ClusterName = cluster.name.parse().map_err(|e| ClusterOutcome::Skipped { reason: format!("{e}") })?;
        let reconcile = Reconcile { authority, escrow: &r.escrow, settings: &self.config.settings };
        reconcile.assess(&name).await.map_err(|e| ClusterOutcome::Failed { step: e.step(), error: e.to_string() })
    }

    /// Hands every ready cluster to cluster-events, most urgent first, ten per PutEvents call.
    async fn fan_out(&self, ready: Vec<Candidate<'_>>, out: &mut SweepReport) {
        for c in &ready {
            if let Some(not_after) = c.assessed.as_ref().ok().and_then(Assessment::not_after) {
                out.saw_expiry(&c.cluster.name, c.region, not_after);
            }
        }
        for batch in ready.chunks(PUT_EVENTS_BATCH) {
            let entries = batch.iter().map(|c| {
                let detail = serde_json::json!({"cluster": c.cluster.name, "region": c.region, "force": false});
                aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .source("meshca")
                    .detail_type(RECONCILE_REQUESTED)
                    .detail(detail.to_string())
                    .event_bus_name(&self.config.event_bus)
                    .build()
            });
            let failed = |c: &Candidate<'_>, error: String| report(c, ClusterOutcome::Failed { step: Step::Observe, error });
            match self.events.put_events().set_entries(Some(entries.collect())).send().await {
                Ok(sent) => {
                    // Results are positional; an entry with an error code was not accepted.
                    for (c, result) in batch.iter().zip(sent.entries()) {
                        match result.error_code() {
                            None => out.fanned_out += 1,
                            Some(code) => {
                                out.record(failed(c, format!("PutEvents refused the request: {code} {}", result.error_message().unwrap_or_default())))
                            }
                        }
                    }
                }
                Err(e) => {
                    let (code, message) = meshca::aws::error_parts(&e);
                    batch.iter().for_each(|c| out.record(failed(c, format!("PutEvents failed: {code}: {message}"))));
                }
            }
        }
        info!(fanned_out = out.fanned_out, bus = %self.config.event_bus, "sweep handed clusters to cluster-events");
    }
}
