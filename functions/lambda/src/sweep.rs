//! The expiry sweep: every opted-in cluster of every managed region, judged from escrow first,
//! then reconciled — the due ones first, most urgent first, under the instance's IssueCertificate
//! budget (every attempt, retries included, waits for its slot).
//!
//! Escrow says which clusters need a certificate without asking the CA or the cluster, so the
//! sweep can put the scarce calls (IssueCertificate, 25/s per account) where they matter and
//! still check every cluster's secret for drift, which costs no certificate.

use std::time::{Duration, Instant};

use futures::StreamExt;
use std::collections::BTreeMap;

use meshca_core::clusters::{ClusterInfo, ClustersError, Tagged};
use meshca_core::escrow::{EscrowKey, Summary};
use meshca_core::pace::Described;
use meshca_core::{
    ClusterName, Kind, KindSpec, Outcome, Place, ReconcileRequest, Reconciler, Step, Verdict,
};
use meshca_wiring::RegionPorts;
use serde::Serialize;
use time::OffsetDateTime;
use tracing::{info, warn};

use crate::{App, Report};

/// A reconcile is not started with less than this left of the invocation.
const MARGIN: Duration = Duration::from_secs(30);
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
    /// IssueCertificate attempts the CA throttled during this sweep (each cost a budget slot).
    pub issue_throttled: u64,
    /// Time to list and assess the fleet, and the whole sweep, in milliseconds.
    pub assessed_ms: u64,
    pub took_ms: u64,
    /// A running root rotation: its phase, and whether this sweep advanced it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation: Option<crate::rotation::RotationReport>,
    /// Every opted-in cluster found, by place (what a rotation's gate reads back).
    #[serde(skip)]
    pub inventory: Vec<(Place, ClusterInfo)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expiry {
    pub cluster: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    pub region: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
}

impl SweepReport {
    fn record(&mut self, report: Report) {
        match &report.outcome {
            Outcome::Unchanged { .. } => self.unchanged += 1,
            Outcome::Delivered { .. } => self.delivered += 1,
            Outcome::Renewed { .. } => self.renewed += 1,
            Outcome::Skipped { .. } | Outcome::Revoked { .. } => self.skipped += 1,
            Outcome::Planned { .. } => self.planned += 1,
            Outcome::Failed { .. } => {
                self.failed += 1;
                self.failures.push(report.clone());
            }
        }
        if let Some(not_after) = report.outcome.not_after() {
            self.saw_expiry(&report, not_after);
        }
        self.clusters.push(report);
    }

    fn saw_expiry(&mut self, report: &Report, not_after: OffsetDateTime) {
        let (Some(cluster), Some(region)) = (&report.cluster, &report.region) else {
            return;
        };
        if self
            .soonest_expiry
            .as_ref()
            .is_none_or(|s| not_after < s.not_after)
        {
            self.soonest_expiry = Some(Expiry {
                cluster: cluster.clone(),
                account: report.account.clone(),
                region: region.clone(),
                not_after,
            });
        }
    }
}

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

/// What escrow's summaries say of a listed cluster: every kind kept (with its summary and
/// unchanged report), kept but in its turn to be read back, or not known to be healthy.
enum Kept {
    Yes(Vec<(KindSpec, Summary, Report)>),
    InItsTurn(Vec<(KindSpec, Summary, Report)>),
    No,
}

/// Every record escrow lists, with its summary where it has one.
type Summaries = BTreeMap<EscrowKey, Option<Summary>>;

/// A cluster's name and where it was listed.
type Named<'a> = (&'a Place, &'a RegionPorts, String);

/// An opted-in cluster and where it was found.
type Found = (Place, ClusterInfo);

/// A report, with the escrowed end of the bundle it is about.
type Judged = (Report, Option<OffsetDateTime>);

/// One managed place and the names of its clusters that need a look, as listed.
struct Listed<'a> {
    place: &'a Place,
    ports: &'a RegionPorts,
    names: Vec<Look>,
    /// Listed by the opt-in tag: every name is opted in (ListClusters names are not known to be
    /// until described).
    by_tag: bool,
}

/// A cluster the sweep has to look at, with the end of its escrowed bundle where a summary
/// tells it (what orders a fan-out, most urgent first).
struct Look {
    name: String,
    ends: Option<OffsetDateTime>,
}

impl Look {
    fn unknown(name: String) -> Self {
        Look { name, ends: None }
    }

    /// No bundle known first (a new cluster), then the earliest end.
    fn urgency(&self) -> (bool, Option<OffsetDateTime>) {
        (self.ends.is_some(), self.ends)
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

    /// The cluster names of every managed place that need a closer look. Where clusters are
    /// listed by tag, those escrow's summaries keep are reported here, unchanged, with no call
    /// about them. A place that cannot be listed (a member role that cannot be assumed, say)
    /// fails alone, named in the report.
    async fn list(&self, out: &mut SweepReport) -> Vec<Listed<'a>> {
        let mut listed = Vec::new();
        for (place, ports) in &self.app.fleet.places {
            let tagged = match ports.clusters.tagged(&self.app.config.opt_in).await {
                Ok(tagged) => tagged,
                Err(e) => {
                    warn!(place = %place, error = %e, "cannot list clusters by tag; describing each");
                    None
                }
            };
            let names = match tagged {
                Some(tagged) => Ok((self.triage(place, ports, tagged, out).await, true)),
                None => ports
                    .clusters
                    .list()
                    .await
                    .map(|names| (names.into_iter().map(Look::unknown).collect(), false)),
            };
            match names {
                Ok((names, by_tag)) => listed.push(Listed {
                    place,
                    ports,
                    names,
                    by_tag,
                }),
                Err(e) => {
                    warn!(place = %place, error = %e, "cannot list clusters");
                    out.errors.push(format!("{place}: {e}"));
                }
            }
        }
        listed
    }

    /// The names among `tagged` that need a closer look; the others, kept by escrow's
    /// summaries (and, in their turn, found in the cluster as summarised), are recorded as
    /// unchanged.
    async fn triage(
        &self,
        place: &Place,
        ports: &RegionPorts,
        tagged: Vec<Tagged>,
        out: &mut SweepReport,
    ) -> Vec<Look> {
        let summaries = if self.thorough {
            BTreeMap::new()
        } else {
            ports.escrow.summaries().await.unwrap_or_else(|e| {
                warn!(place = %place, error = %e, "cannot list escrow summaries; reading each record");
                BTreeMap::new()
            })
        };
        let now = OffsetDateTime::now_utc();
        let before = out.checked;
        let (mut look, mut checks) = (Vec::new(), Vec::new());
        for cluster in tagged {
            match self.kept(place, &cluster, &summaries, now).await {
                Kept::Yes(reports) => {
                    out.checked += 1;
                    reports.into_iter().for_each(|(_, _, r)| out.record(r));
                }
                Kept::InItsTurn(reports) => checks.push((cluster, reports)),
                Kept::No => look.push(self.look(&cluster, &summaries)),
            }
        }
        let checked: Vec<_> = futures::stream::iter(checks)
            .map(|(cluster, kinds)| async move {
                (
                    self.read_back(place, ports, &cluster.name, &kinds, now)
                        .await,
                    cluster,
                    kinds,
                )
            })
            .buffer_unordered(DESCRIBE_CONCURRENCY)
            .collect()
            .await;
        for (as_summarised, cluster, kinds) in checked {
            if as_summarised {
                out.checked += 1;
                kinds.into_iter().for_each(|(_, _, r)| out.record(r));
            } else {
                look.push(self.look(&cluster, &summaries));
            }
        }
        info!(place = %place, kept = out.checked - before, look = look.len(), "sweep listed clusters by tag");
        look
    }

    /// `cluster` to be looked at, with the earliest end its summaries know of.
    fn look(&self, cluster: &Tagged, summaries: &Summaries) -> Look {
        let ends = match (
            cluster.name.parse::<ClusterName>(),
            self.app.config.kinds.for_tags(&cluster.tags),
        ) {
            (Ok(name), Ok(specs)) => specs
                .iter()
                .filter_map(|s| {
                    summaries
                        .get(&EscrowKey::new(name.clone(), s.kind))?
                        .as_ref()
                        .map(|s| s.not_after)
                })
                .min(),
            _ => None,
        };
        Look {
            name: cluster.name.clone(),
            ends,
        }
    }

    /// Whether this sweep reads `name`'s secrets back (see [`is_turn`]).
    fn verifies(&self, place: &Place, name: &str) -> bool {
        let now = OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
        let c = &self.app.config;
        is_turn(
            &format!("{place}/{name}"),
            now,
            c.sweep_period.as_secs(),
            c.verify_every,
        )
    }

    /// Whether escrow's summaries keep every kind of `cluster`, with the unchanged reports.
    async fn kept(
        &self,
        place: &Place,
        cluster: &Tagged,
        summaries: &Summaries,
        now: OffsetDateTime,
    ) -> Kept {
        let (Ok(name), Ok(specs)) = (
            cluster.name.parse::<ClusterName>(),
            self.app.config.kinds.for_tags(&cluster.tags),
        ) else {
            return Kept::No;
        };
        let mut kinds = Vec::new();
        for spec in specs {
            let key = EscrowKey::new(name.clone(), spec.kind);
            let summary = match summaries.get(&key) {
                Some(Some(summary)) => summary,
                // A record kept before summaries: summarised when the full look keeps it.
                Some(None) => {
                    self.unsummarised
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert((place.clone(), key));
                    return Kept::No;
                }
                None => return Kept::No,
            };
            let Ok(info) = self.authority_for(spec.kind).describe().await else {
                return Kept::No;
            };
            let Some(Verdict::Keep {
                not_after,
                renew_at,
            }) = summary.keeps(&info, &self.app.config.settings.renewal, now)
            else {
                return Kept::No;
            };
            let mut report = Report::at(
                &cluster.name,
                place,
                Outcome::Unchanged {
                    generation: summary.generation,
                    not_after,
                    renew_at,
                },
            );
            report.kind = (spec.kind != Kind::IstioCacerts).then_some(spec.kind);
            kinds.push((spec, summary.clone(), report));
        }
        if self.verifies(place, &cluster.name) {
            Kept::InItsTurn(kinds)
        } else {
            Kept::Yes(kinds)
        }
    }

    /// A cluster's turn: one DescribeCluster and one read of each kind's secret, held against
    /// the summaries — no escrow read. `false` (drifted, unreachable, not active) sends it to
    /// the full look, which repairs what it can and reports the rest.
    async fn read_back(
        &self,
        place: &Place,
        ports: &RegionPorts,
        name: &str,
        kinds: &[(KindSpec, Summary, Report)],
        now: OffsetDateTime,
    ) -> bool {
        let described = ports.clusters.describe(name).await;
        let (Some(info), Ok(cluster)) = (
            self.opted_in(place, name, described),
            name.parse::<ClusterName>(),
        ) else {
            return false;
        };
        if !info.is_active() {
            return false;
        }
        for (spec, summary, _) in kinds {
            let settings = self.app.settings_for(spec.clone());
            let Ok(delivery) = ports
                .clusters
                .connect(&info, self.app.options(&settings, &cluster))
            else {
                return false;
            };
            let Ok(observed) = delivery.observe().await else {
                return false;
            };
            if !summary.delivered_in(&observed, &settings.delivery_profile(&cluster), now) {
                return false;
            }
        }
        true
    }

    /// A fleet too large for one invocation, outside a rotation: the clusters that need a look
    /// are handed on as listed. The worker that takes each one describes, judges and reconciles
    /// it, so the sweep spends no call per cluster on it and the first certificate is issued
    /// while the rest is still being handed on. Only names ListClusters gave (no tag inventory)
    /// are described here, to know which are opted in and active. If no more than the threshold
    /// are left, they are reconciled here.
    async fn hand_on(
        &self,
        listed: Vec<Listed<'a>>,
        started: Instant,
        deadline: Instant,
        out: &mut SweepReport,
    ) {
        let mut looks = Vec::new();
        for Listed {
            place,
            ports,
            names,
            by_tag,
        } in listed
        {
            if by_tag {
                looks.extend(names.into_iter().map(|n| (place, ports, n)));
                continue;
            }
            for cluster in self
                .describe_all(place, ports, names.into_iter().map(|n| n.name).collect())
                .await
            {
                match not_active(&cluster) {
                    None => looks.push((place, ports, Look::unknown(cluster.name))),
                    Some(skipped) => {
                        out.checked += 1;
                        out.record(Report::at(&cluster.name, place, skipped));
                    }
                }
            }
        }
        out.assessed_ms = started.elapsed().as_millis() as u64;
        if looks.len() <= self.app.config.fanout_threshold {
            let names = looks
                .into_iter()
                .map(|(place, ports, look)| (place, ports, look.name))
                .collect();
            return self.stream(names, started, deadline, out).await;
        }
        out.checked += looks.len();
        looks.sort_by(|a, b| {
            a.2.urgency()
                .cmp(&b.2.urgency())
                .then_with(|| (a.0, &a.2.name).cmp(&(b.0, &b.2.name)))
        });
        self.fan_out(looks, out).await;
        self.summarise_kept(deadline).await;
    }

    /// Records older than summaries, just handed on: the worker finds a healthy one unchanged
    /// and writes no summary, so without one written here the cluster would be handed on at
    /// every sweep until its next renewal. Each record escrow keeps (not due, same CA and root,
    /// nothing pending) gets its summary now; a due one gets it when it is promoted. Only kept
    /// records are tagged, so no worker is promoting the same record meanwhile.
    async fn summarise_kept(&self, deadline: Instant) {
        let records =
            std::mem::take(&mut *self.unsummarised.lock().unwrap_or_else(|p| p.into_inner()));
        let now = OffsetDateTime::now_utc();
        futures::stream::iter(records)
            .for_each_concurrent(DESCRIBE_CONCURRENCY, |(place, key)| async move {
                let Some((_, ports)) = self.app.fleet.places.iter().find(|(p, _)| **p == place) else { return };
                if Instant::now() + MARGIN > deadline || !self.escrow_keeps(ports, &key, now).await {
                    return;
                }
                if let Err(e) = ports.escrow.summarise(&key).await {
                    warn!(place = %place, record = %key, error = %e, "cannot write the escrow summary; the next sweep tries again");
                }
            })
            .await;
    }

    /// Whether escrow alone keeps `key`'s record (what its summary would say).
    async fn escrow_keeps(
        &self,
        ports: &RegionPorts,
        key: &EscrowKey,
        now: OffsetDateTime,
    ) -> bool {
        let (Ok(escrowed), Ok(info)) = (
            ports.escrow.load(key).await,
            self.authority_for(key.kind).describe().await,
        ) else {
            return false;
        };
        let Some(mut summary) = escrowed.current.as_ref().and_then(Summary::of) else {
            return false;
        };
        summary.pending = escrowed.pending.is_some();
        matches!(
            summary.keeps(&info, &self.app.config.settings.renewal, now),
            Some(Verdict::Keep { .. })
        )
    }

    /// A fleet too large for one invocation during a root rotation: every cluster described
    /// and judged from escrow here (the rotation's gate reads the whole inventory back after the
    /// sweep), most urgent first, then handed on — or, if fewer are opted in than the
    /// threshold, reconciled here.
    async fn two_phase(
        &self,
        listed: Vec<Listed<'a>>,
        started: Instant,
        deadline: Instant,
        out: &mut SweepReport,
    ) {
        let kept = out.checked;
        let candidates = self.assess_fleet(listed, out).await;
        let described = out.checked - kept;
        out.assessed_ms = started.elapsed().as_millis() as u64;
        let (ready, not_ready): (Vec<_>, Vec<_>) =
            candidates.into_iter().partition(|c| c.assessed.is_ok());
        for c in &not_ready {
            if let Err(outcome) = &c.assessed {
                out.record(c.report(outcome.clone()));
            }
        }
        if described <= self.app.config.fanout_threshold {
            return self.reconcile_inline(ready, deadline, out).await;
        }
        // One request per cluster: the worker reconciles every kind of it.
        let mut seen = std::collections::BTreeSet::new();
        let looks = ready
            .into_iter()
            .filter(|c| seen.insert((c.place, c.cluster.name.clone())))
            .map(|c| {
                (
                    c.place,
                    c.ports,
                    Look {
                        ends: c.assessed.as_ref().ok().and_then(Verdict::not_after),
                        name: c.cluster.name,
                    },
                )
            })
            .collect();
        self.fan_out(looks, out).await;
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
            .map(|(place, ports, name)| {
                let (gate, assessed_at) = (&describe_gate, &assessed_at);
                async move {
                    let described = {
                        let _permit = gate.acquire().await.expect("the gate is never closed");
                        ports.clusters.describe(&name).await
                    };
                    let Some(cluster) = self.opted_in(place, &name, described) else {
                        return (None, Vec::new());
                    };
                    let reports = self
                        .flow(place, ports, &cluster, deadline, started, assessed_at)
                        .await;
                    (Some((place.clone(), cluster)), reports)
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
            for (r, escrowed_end) in reports {
                if let (None, Some(end)) = (r.outcome.not_after(), escrowed_end) {
                    out.saw_expiry(&r, end);
                }
                out.record(r);
            }
        }
        out.inventory
            .sort_by(|a, b| (&a.0, &a.1.name).cmp(&(&b.0, &b.1.name)));
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
    ) -> Vec<(Report, Option<OffsetDateTime>)> {
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
                Err(outcome) => (c.report(outcome.clone()), None),
                Ok(_) => self.reconcile_one(c, deadline).await,
            });
        }
        reports
    }

    /// Every opted-in cluster with escrow's verdict, most urgent first.
    async fn assess_fleet(
        &self,
        listed: Vec<Listed<'a>>,
        out: &mut SweepReport,
    ) -> Vec<Candidate<'a>> {
        let mut found = Vec::new();
        for Listed {
            place,
            ports,
            names,
            ..
        } in listed
        {
            let names = names.into_iter().map(|n| n.name).collect();
            found.extend(
                self.describe_all(place, ports, names)
                    .await
                    .into_iter()
                    .map(|cluster| (place, ports, cluster)),
            );
        }
        out.checked += found.len();
        out.inventory.extend(
            found
                .iter()
                .map(|(place, _, cluster)| ((*place).clone(), cluster.clone())),
        );
        // One candidate per kind of each cluster (a tag naming an unknown kind: one, skipped).
        let per_kind = found.into_iter().flat_map(|(place, ports, cluster)| {
            match self.app.config.kinds.for_tags(&cluster.tags) {
                Ok(kinds) => kinds
                    .into_iter()
                    .map(|spec| (place, ports, cluster.clone(), spec, None))
                    .collect::<Vec<_>>(),
                Err(reason) => vec![(
                    place,
                    ports,
                    cluster,
                    KindSpec::default(),
                    Some(Outcome::Skipped { reason }),
                )],
            }
        });
        let mut candidates: Vec<Candidate<'_>> = futures::stream::iter(per_kind)
            .map(|(place, ports, cluster, spec, stop)| async move {
                let assessed = match stop {
                    Some(outcome) => Err(outcome),
                    None => self.assess(place, ports, &cluster, &spec).await,
                };
                Candidate {
                    place,
                    ports,
                    cluster,
                    spec,
                    assessed,
                }
            })
            .buffer_unordered(self.app.config.sweep_concurrency)
            .collect()
            .await;
        candidates.sort_by(|a, b| {
            a.urgency()
                .cmp(&b.urgency())
                .then_with(|| (&a.cluster.name, a.spec.kind).cmp(&(&b.cluster.name, b.spec.kind)))
        });
        let due = candidates
            .iter()
            .filter(|c| matches!(c.assessed, Ok(Verdict::Renew { .. })))
            .count();
        info!(
            checked = out.checked,
            due, "sweep assessed the fleet from escrow"
        );
        candidates
    }

    /// The opted-in clusters among `names` of one place (ListClusters has no tag filter: each
    /// is described).
    async fn describe_all(
        &self,
        place: &Place,
        ports: &RegionPorts,
        names: Vec<String>,
    ) -> Vec<ClusterInfo> {
        let described: Vec<_> = futures::stream::iter(names)
            .map(|name| async move { (ports.clusters.describe(&name).await, name) })
            .buffered(DESCRIBE_CONCURRENCY)
            .collect()
            .await;
        described
            .into_iter()
            .filter_map(|(result, name)| self.opted_in(place, &name, result))
            .collect()
    }

    /// The described cluster if it is opted in; a cluster that could not be described is logged
    /// (the next sweep looks again), one deleted meanwhile passed over.
    fn opted_in(
        &self,
        place: &Place,
        name: &str,
        described: Result<ClusterInfo, ClustersError>,
    ) -> Option<ClusterInfo> {
        match described {
            Ok(c) if self.app.config.opt_in.admits(&c.tags) => Some(c),
            Ok(_) | Err(ClustersError::NotFound(_)) => None,
            Err(e) => {
                warn!(place = %place, cluster = %name, error = %e, "cannot describe cluster");
                None
            }
        }
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
    async fn reconcile_one(
        &self,
        c: Candidate<'_>,
        deadline: Instant,
    ) -> (Report, Option<OffsetDateTime>) {
        let escrowed_end = c.assessed.as_ref().ok().and_then(Verdict::not_after);
        if Instant::now() + MARGIN > deadline {
            let reason =
                "deferred: the sweep ran out of time; the next sweep continues".to_string();
            return (c.report(Outcome::Skipped { reason }), escrowed_end);
        }
        let name: ClusterName = c.cluster.name.parse().expect("assessed names parse");
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
        (c.report(outcome), escrowed_end)
    }

    /// Reconciles every ready cluster here, as many at once as configured, until the deadline.
    async fn reconcile_inline(
        &self,
        ready: Vec<Candidate<'_>>,
        deadline: Instant,
        out: &mut SweepReport,
    ) {
        let reports: Vec<(Report, Option<OffsetDateTime>)> = futures::stream::iter(ready)
            .map(|c| self.reconcile_one(c, deadline))
            .buffer_unordered(self.app.config.sweep_concurrency)
            .collect()
            .await;
        for (r, escrowed_end) in reports {
            // A cluster left as it was (deferred, failed) still counts with the bundle it has.
            if let (None, Some(end)) = (r.outcome.not_after(), escrowed_end) {
                out.saw_expiry(&r, end);
            }
            out.record(r);
        }
    }

    /// Hands every cluster in `looks` on (the event bus or the work queue), in that order.
    async fn fan_out(&self, looks: Vec<(&Place, &RegionPorts, Look)>, out: &mut SweepReport) {
        let requests: Vec<ReconcileRequest> = looks
            .iter()
            .map(|(place, _, look)| ReconcileRequest {
                cluster: look.name.clone(),
                region: Some(place.region.clone()),
                account: place.account.member().map(|a| a.to_string()),
                force: false,
            })
            .collect();
        let fan_out = &self.app.fleet.fan_out;
        for ((place, _, look), sent) in looks.iter().zip(fan_out.send(&requests).await) {
            let report = |outcome| Report::at(&look.name, place, outcome);
            if let Some(end) = look.ends {
                out.saw_expiry(
                    &report(Outcome::Skipped {
                        reason: String::new(),
                    }),
                    end,
                );
            }
            match sent {
                Ok(()) => out.fanned_out += 1,
                Err(error) => out.record(report(Outcome::Failed {
                    step: Step::FanOut,
                    error,
                })),
            }
        }
        info!(fanned_out = out.fanned_out, to = %fan_out.destination(), "sweep handed clusters on");
    }
}

/// Every listed name with its place, in listing order.
fn flatten(listed: Vec<Listed<'_>>) -> Vec<Named<'_>> {
    listed
        .into_iter()
        .flat_map(|l| l.names.into_iter().map(move |n| (l.place, l.ports, n.name)))
        .collect()
}

/// Why a described cluster cannot be reconciled yet, if it cannot.
fn not_active(cluster: &ClusterInfo) -> Option<Outcome> {
    (!cluster.is_active()).then(|| Outcome::Skipped {
        reason: format!("not active yet ({})", cluster.status),
    })
}

/// FNV-1a, 64 bits: a hash that is the same in every process and release (std's is seeded).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Whether the sweep at `now` (unix seconds) is the turn of the cluster named `key` to be read
/// back: one sweep in `every` on a schedule of `period` seconds (1: each sweep; 0: never — due
/// clusters and records without a summary are still looked at), chosen by a stable hash.
pub fn is_turn(key: &str, now: u64, period: u64, every: u32) -> bool {
    let every = u64::from(every);
    if every <= 1 {
        return every == 1;
    }
    // Rounded to the nearest tick: a schedule fires a little after its time, never before.
    let period = period.max(1);
    let sweep_number = (now + period / 2) / period;
    fnv1a(key.as_bytes()) % every == sweep_number % every
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hand_on_puts_clusters_without_a_bundle_first_then_the_earliest_end() {
        let day = |d: i64| Some(OffsetDateTime::UNIX_EPOCH + time::Duration::days(d));
        let mut looks = [
            Look {
                name: "late".into(),
                ends: day(30),
            },
            Look::unknown("new".into()),
            Look {
                name: "soon".into(),
                ends: day(2),
            },
            Look {
                name: "expired".into(),
                ends: day(-1),
            },
        ];
        looks.sort_by_key(Look::urgency);
        let order: Vec<&str> = looks.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(order, ["new", "expired", "soon", "late"]);
    }

    #[test]
    fn every_cluster_has_exactly_one_turn_in_every_run_of_sweeps() {
        let (period, every) = (3600, 24);
        for i in 0..200 {
            let key = format!("111122223333/eu-west-1/cluster-{i}");
            // 24 consecutive hourly sweeps, each fired up to 20 minutes late.
            let turns = (0..24u64)
                .filter(|h| {
                    is_turn(
                        &key,
                        1_800_000_000 + h * period + (h * 50) % 1200,
                        period,
                        every,
                    )
                })
                .count();
            assert_eq!(turns, 1, "{key}");
        }
        assert!(is_turn("any", 1, 3600, 1));
        assert!(!is_turn("any", 1, 3600, 0));
    }
}
