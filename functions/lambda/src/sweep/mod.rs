//! The expiry sweep: every opted-in cluster of every managed region, judged from escrow first,
//! then reconciled — the due ones first, most urgent first, under the instance's IssueCertificate
//! budget (every attempt, retries included, waits for its slot).
//!
//! Escrow says which clusters need a certificate without asking the CA or the cluster, so the
//! sweep can put the scarce calls (IssueCertificate, 25/s per account) where they matter and
//! still check every cluster's secret for drift, which costs no certificate.

mod handing_on;
mod listing;
mod report;
mod triage;

use std::time::{Duration, Instant};

use futures::StreamExt;

use meshca_core::clusters::ClusterInfo;
use meshca_core::escrow::EscrowKey;
use meshca_core::pace::Described;
use meshca_core::{ClusterName, Kind, KindSpec, Outcome, Place, Reconciler, Verdict};
use meshca_wiring::RegionPorts;
use time::OffsetDateTime;
use tracing::warn;

use crate::{App, Report};
use listing::{Named, flatten};
use report::Judged;
pub use report::{Expiry, Found, SweepReport};
pub use triage::is_turn;

/// A reconcile is not started with less than this left of the invocation.
pub(crate) const MARGIN: Duration = Duration::from_secs(30);
/// DescribeCluster calls in flight while listing (EKS control-plane APIs throttle early).
const DESCRIBE_CONCURRENCY: usize = 8;

/// One cluster on its way through the sweep: escrow's verdict, or the outcome that stops it.
struct Candidate<'a> {
    place: &'a Place,
    ports: &'a RegionPorts,
    cluster: ClusterInfo,
    /// One kind of the cluster's certificates: each is judged and renewed on its own.
    spec: KindSpec,
    assessed: Result<Verdict, Outcome>,
}

impl Candidate<'_> {
    /// Sort key: due before healthy; among the due, no bundle first, then the earliest end.
    fn urgency(&self) -> (u8, Option<OffsetDateTime>) {
        match &self.assessed {
            Ok(v @ Verdict::Renew { .. }) => (0, v.not_after()),
            Ok(v @ Verdict::Keep { .. }) => (1, v.not_after()),
            Err(_) => (2, None),
        }
    }

    fn report(&self, outcome: Outcome) -> Report {
        let mut report = Report::at(&self.cluster.name, self.place, outcome);
        report.kind = (self.spec.kind != Kind::IstioCacerts).then_some(self.spec.kind);
        report
    }
}

/// One sweep of the fleet by one function instance.
pub struct Sweep<'a> {
    app: &'a App,
    /// The CA, described once for the whole sweep; and the XCP identities' CA if it is another.
    authority: Described<'a>,
    xcp_authority: Option<Described<'a>>,
    /// Every cluster described and its secrets read back (a running root rotation reads the
    /// whole fleet back after the sweep): escrow's summaries keep nothing alone.
    thorough: bool,
    /// Cluster kinds found with no summary in escrow (records older than summaries): their
    /// summary is written when the full look keeps them, so the next sweep need not read them.
    unsummarised: std::sync::Mutex<std::collections::BTreeSet<(Place, EscrowKey)>>,
}

impl<'a> Sweep<'a> {
    /// A sweep issuing from `main` (the fleet's CA, as a running root rotation has it);
    /// `thorough` while a rotation runs.
    pub fn new(app: &'a App, main: &'a dyn meshca_core::Authority, thorough: bool) -> Self {
        let xcp_authority = app.fleet.xcp_authority.as_deref().map(Described::new);
        Sweep {
            app,
            authority: Described::new(main),
            xcp_authority,
            thorough,
            unsummarised: Default::default(),
        }
    }

    /// The (described-once) authority that signs `kind`.
    fn authority_for(&self, kind: Kind) -> &dyn meshca_core::Authority {
        match &self.xcp_authority {
            Some(xcp) if kind.profile().signer == meshca_core::kind::XCP_SIGNER => xcp,
            _ => &self.authority,
        }
    }

    /// Sweeps every managed region; `deadline` is when the invocation must have answered.
    pub async fn run(&self, deadline: Instant) -> SweepReport {
        let started = Instant::now();
        let throttled_before = self
            .app
            .fleet
            .issue_budget
            .as_ref()
            .map_or(0, |b| b.throttled());
        let mut out = SweepReport::default();
        let listed = self.list(&mut out).await;
        let names: usize = listed.iter().map(|l| l.names.len()).sum();
        match (names > self.app.config.fanout_threshold, self.thorough) {
            (false, _) => {
                self.stream(flatten(listed), started, deadline, &mut out)
                    .await
            }
            (true, false) => self.hand_on(listed, started, deadline, &mut out).await,
            (true, true) => self.two_phase(listed, started, deadline, &mut out).await,
        }
        out.clusters.sort_by(|a, b| {
            (&a.account, &a.region, &a.cluster, a.kind)
                .cmp(&(&b.account, &b.region, &b.cluster, b.kind))
        });
        out.took_ms = started.elapsed().as_millis() as u64;
        out.issue_throttled = self
            .app
            .fleet
            .issue_budget
            .as_ref()
            .map_or(0, |b| b.throttled() - throttled_before);
        out
    }

    /// A fleet this invocation can take: each cluster described, judged and reconciled as one
    /// flow, so the first issuance starts while the rest is still being looked at (the quota,
    /// not the listing, bounds the sweep). DescribeCluster stays at its own concurrency.
    async fn stream(
        &self,
        names: Vec<Named<'a>>,
        started: Instant,
        deadline: Instant,
        out: &mut SweepReport,
    ) {
        let describe_gate = tokio::sync::Semaphore::new(DESCRIBE_CONCURRENCY);
        let assessed_at = std::sync::atomic::AtomicU64::new(0);
        let per_cluster: Vec<(Option<Found>, Vec<Judged>)> = futures::stream::iter(names)
            .map(|Named { place, ports, look }| {
                let (gate, assessed_at) = (&describe_gate, &assessed_at);
                async move {
                    let described = {
                        // A semaphore errs only once closed, and this one never is.
                        let _permit = gate.acquire().await.ok();
                        ports.clusters.describe(&look.name).await
                    };
                    let Some(cluster) = self.opted_in(place, &look.name, described) else {
                        return (None, Vec::new());
                    };
                    let reports = self
                        .flow(place, ports, &cluster, deadline, started, assessed_at)
                        .await;
                    (
                        Some(Found {
                            place: place.clone(),
                            cluster,
                        }),
                        reports,
                    )
                }
            })
            .buffer_unordered(self.app.config.sweep_concurrency)
            .collect()
            .await;
        out.assessed_ms = assessed_at.load(std::sync::atomic::Ordering::Relaxed);
        for (found, reports) in per_cluster {
            if let Some(found) = found {
                out.checked += 1;
                out.inventory.push(found);
            }
            reports.into_iter().for_each(|j| out.record_judged(j));
        }
        out.inventory
            .sort_by(|a, b| (&a.place, &a.cluster.name).cmp(&(&b.place, &b.cluster.name)));
    }

    /// One opted-in cluster, each kind judged from escrow and reconciled if due or to check its
    /// secret; the reports with the escrowed end of each kind's bundle.
    async fn flow(
        &self,
        place: &'a Place,
        ports: &'a RegionPorts,
        cluster: &ClusterInfo,
        deadline: Instant,
        started: Instant,
        assessed_at: &std::sync::atomic::AtomicU64,
    ) -> Vec<Judged> {
        let specs = match self.app.config.kinds.for_tags(&cluster.tags) {
            Ok(kinds) => kinds
                .into_iter()
                .map(|spec| (spec, None))
                .collect::<Vec<_>>(),
            Err(reason) => vec![(KindSpec::default(), Some(Outcome::Skipped { reason }))],
        };
        let mut reports = Vec::new();
        for (spec, stop) in specs {
            let assessed = match stop {
                Some(outcome) => Err(outcome),
                None => self.assess(place, ports, cluster, &spec).await,
            };
            assessed_at.fetch_max(
                started.elapsed().as_millis() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
            let c = Candidate {
                place,
                ports,
                cluster: cluster.clone(),
                spec,
                assessed,
            };
            reports.push(match &c.assessed {
                Err(outcome) => Judged {
                    report: c.report(outcome.clone()),
                    escrowed_end: None,
                },
                Ok(_) => self.reconcile_one(c, deadline).await,
            });
        }
        reports
    }

    /// Escrow's verdict on one kind of one cluster, or the outcome that stops it here.
    async fn assess(
        &self,
        place: &Place,
        ports: &RegionPorts,
        cluster: &ClusterInfo,
        spec: &KindSpec,
    ) -> Result<Verdict, Outcome> {
        if let Some(skipped) = not_active(cluster) {
            return Err(skipped);
        }
        let name: ClusterName = cluster.name.parse().map_err(|e| Outcome::Skipped {
            reason: format!("{e}"),
        })?;
        let settings = self.app.settings_for(spec.clone());
        let reconciler = Reconciler {
            authority: self.authority_for(spec.kind),
            escrow: ports.escrow.as_ref(),
            settings: &settings,
        };
        let verdict = reconciler
            .assess(&name)
            .await
            .map_err(|e| Outcome::Failed {
                step: e.step(),
                error: e.to_string(),
            })?;
        let key = (place.clone(), EscrowKey::new(name, spec.kind));
        let unsummarised = !verdict.is_due()
            && self
                .unsummarised
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
        if unsummarised && let Err(e) = ports.escrow.summarise(&key.1).await {
            warn!(place = %place, cluster = %cluster.name, error = %e, "cannot write the escrow summary; the next sweep reads the record again");
        }
        Ok(verdict)
    }

    /// Reconciles one assessed cluster kind unless the deadline is near; the report, with the
    /// escrowed end of its bundle.
    async fn reconcile_one(&self, c: Candidate<'_>, deadline: Instant) -> Judged {
        let escrowed_end = c.assessed.as_ref().ok().and_then(Verdict::not_after);
        if Instant::now() + MARGIN > deadline {
            let reason =
                "deferred: the sweep ran out of time; the next sweep continues".to_string();
            let report = c.report(Outcome::Skipped { reason });
            return Judged {
                report,
                escrowed_end,
            };
        }
        let name: ClusterName = match c.cluster.name.parse() {
            Ok(name) => name,
            Err(e) => {
                let reason = format!("not a cluster name meshca holds: {e}");
                return Judged {
                    report: c.report(Outcome::Skipped { reason }),
                    escrowed_end,
                };
            }
        };
        let outcome = self
            .app
            .apply(
                self.authority_for(c.spec.kind),
                &name,
                (c.place, c.ports),
                &c.cluster,
                c.spec.clone(),
                false,
            )
            .await;
        Judged {
            report: c.report(outcome),
            escrowed_end,
        }
    }

    /// Reconciles every ready cluster here, as many at once as configured, until the deadline.
    async fn reconcile_inline(
        &self,
        ready: Vec<Candidate<'_>>,
        deadline: Instant,
        out: &mut SweepReport,
    ) {
        let reports: Vec<Judged> = futures::stream::iter(ready)
            .map(|c| self.reconcile_one(c, deadline))
            .buffer_unordered(self.app.config.sweep_concurrency)
            .collect()
            .await;
        reports.into_iter().for_each(|j| out.record_judged(j));
    }
}

/// Why a described cluster cannot be reconciled yet, if it cannot.
fn not_active(cluster: &ClusterInfo) -> Option<Outcome> {
    (!cluster.is_active()).then(|| Outcome::Skipped {
        reason: format!("not active yet ({})", cluster.status),
    })
}
