//! What a sweep reports: counts by outcome, failures, the soonest expiry, the inventory a
//! rotation's gate reads back.

use meshca_core::clusters::ClusterInfo;
use meshca_core::{Outcome, Place};
use serde::Serialize;
use time::OffsetDateTime;

use crate::Report;

/// What one sweep did, returned and logged.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SweepReport {
    /// Opted-in clusters found.
    pub checked: usize,
    /// Clusters whose bundle was kept as it was.
    pub unchanged: usize,
    /// Clusters given their escrowed bundle again (the secret was missing or different).
    pub delivered: usize,
    /// Clusters issued a new generation.
    pub renewed: usize,
    /// Clusters whose new generation waits until every cluster holds its CRL (CRL mode).
    pub awaiting_crls: usize,
    /// Clusters left alone, with a reason (unmanaged cacerts, held after a revocation).
    pub skipped: usize,
    /// Clusters only planned for (a dry run).
    pub planned: usize,
    /// Clusters whose reconcile failed.
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
    /// The whole sweep, in milliseconds.
    pub took_ms: u64,
    /// A running root rotation: its phase, and whether this sweep advanced it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation: Option<crate::rotation::RotationReport>,
    /// The fleet's CRLs delivered after the sweep, in CRL mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crls: Option<crate::crls::CrlsReport>,
    /// Every opted-in cluster found, by place (what a rotation's gate reads back).
    #[serde(skip)]
    pub inventory: Vec<Found>,
}

/// The bundle that expires first: what the SoonestDaysLeft alarm watches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expiry {
    /// Its cluster.
    pub cluster: String,
    /// The cluster's member account (`None`: meshca's own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The cluster's region.
    pub region: String,
    /// When the bundle's CA certificate expires.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
}

impl SweepReport {
    pub(super) fn record(&mut self, report: Report) {
        self.tally(&report);
        self.clusters.push(report);
    }

    fn tally(&mut self, report: &Report) {
        match &report.outcome {
            Outcome::Unchanged { .. } => self.unchanged += 1,
            Outcome::Delivered { .. } => self.delivered += 1,
            Outcome::Renewed { .. } => self.renewed += 1,
            Outcome::AwaitingCrls { .. } => self.awaiting_crls += 1,
            Outcome::Skipped { .. } | Outcome::Revoked { .. } => self.skipped += 1,
            Outcome::Planned { .. } => self.planned += 1,
            Outcome::Failed { .. } => {
                self.failed += 1;
                self.failures.push(report.clone());
            }
        }
        if let Some(not_after) = report.outcome.not_after() {
            self.saw_expiry(report, not_after);
        }
    }

    /// Puts `line` (an istio line reconciled again after the fleet's CRLs went out) in place of
    /// the cluster's istio line, or adds it when the sweep kept the cluster from escrow alone.
    pub fn settle(&mut self, line: Report) {
        let at = self.clusters.iter().position(|r| {
            r.kind.is_none() && (&r.cluster, &r.account) == (&line.cluster, &line.account)
        });
        if let Some(i) = at {
            let old = self.clusters.remove(i);
            self.untally(&old);
        }
        self.record(line);
    }

    /// Takes a line's outcome back out of the counts (its soonest expiry stays: it was seen).
    fn untally(&mut self, report: &Report) {
        let count = match &report.outcome {
            Outcome::Unchanged { .. } => &mut self.unchanged,
            Outcome::Delivered { .. } => &mut self.delivered,
            Outcome::Renewed { .. } => &mut self.renewed,
            Outcome::AwaitingCrls { .. } => &mut self.awaiting_crls,
            Outcome::Skipped { .. } | Outcome::Revoked { .. } => &mut self.skipped,
            Outcome::Planned { .. } => &mut self.planned,
            Outcome::Failed { .. } => {
                self.failures.retain(|f| {
                    (&f.cluster, &f.account, f.kind)
                        != (&report.cluster, &report.account, report.kind)
                });
                &mut self.failed
            }
        };
        *count = count.saturating_sub(1);
    }

    pub(super) fn record_judged(&mut self, judged: Judged) {
        let Judged {
            report,
            escrowed_end,
        } = judged;
        if let (None, Some(end)) = (report.outcome.not_after(), escrowed_end) {
            self.saw_expiry(&report, end);
        }
        self.record(report);
    }

    pub(super) fn saw_expiry(&mut self, report: &Report, not_after: OffsetDateTime) {
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

/// A report, with the escrowed end of the bundle it is about (what the soonest expiry counts
/// when the outcome itself carries no end: deferred, failed).
pub(super) struct Judged {
    pub(super) report: Report,
    pub(super) escrowed_end: Option<OffsetDateTime>,
}

/// An opted-in cluster and where it was found.
#[derive(Debug, Clone)]
pub struct Found {
    /// The account and region it was found in.
    pub place: Place,
    /// What EKS says of it.
    pub cluster: ClusterInfo,
}
