//! The functions' CRL mode (`MESHCA_CRL_MODE=true`): after each sweep, the fleet's CRLs go into
//! every istio-layout cluster's `cacerts`, so a revocation reaches every data plane within one
//! sweep and no CRL lapses while the sweep runs.
//!
//! They are built afresh each sweep from what is recorded, never from what a cluster holds: the
//! authority's CRLs read again (a Private CA's from the S3 bucket of its CRL configuration,
//! Vault's from its mount), and every istio record's own CRLs (each live generation's). A cluster
//! held after a revocation gets nothing; one without a `cacerts` yet gets them right after its
//! first bundle, at the next sweep. A renewal whose new intermediate's CRL is not in its
//! cluster's `ca-crl.pem` yet is refused by the delivery (istiod would discard it): this pass
//! delivers that CRL to every cluster, and the next reconcile puts the new intermediate in force.

use std::time::Instant;

use futures::StreamExt;
use meshca_core::clusters::{ClusterInfo, ClustersError};
use meshca_core::delivery::{CrlsChange, CrlsDelivered};
use meshca_core::enforcement;
use meshca_core::escrow::Current;
use meshca_core::fleet_crls::FleetCrls;
use meshca_core::{Authority, Kind, KindSpec, Outcome, Place, Settings};
use meshca_wiring::RegionPorts;
use serde::Serialize;
use time::OffsetDateTime;
use tracing::warn;

use crate::sweep::{Found, SweepReport};
use crate::{App, Report};

/// What one pass of the fleet's CRLs did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CrlsReport {
    /// CRLs in the fleet's `ca-crl.pem`.
    pub crls: usize,
    /// Its size.
    pub bytes: usize,
    /// Revoked certificates it lists.
    pub revoked: usize,
    /// When its first CRL lapses: what the CrlDaysLeft alarm watches.
    #[serde(with = "time::serde::rfc3339::option")]
    pub first_lapse: Option<OffsetDateTime>,
    /// Clusters whose `ca-crl.pem` was written.
    pub written: usize,
    /// Clusters that held these CRLs already.
    pub unchanged: usize,
    /// Clusters without a `cacerts` yet.
    pub no_bundle_yet: usize,
    /// Clusters held after a revocation: nothing is delivered to them.
    pub held: usize,
    /// Clusters given the CRLs where something does not enforce them, each with why (istiod
    /// before 1.27, ztunnel before 1.29, pods injected without the CRL volume, an image naming
    /// no version, no istiod): "not protected" is a row, never silence.
    pub not_protected: Vec<String>,
    /// Clusters where a reader of the CRLs could not be inspected (the role may not list it),
    /// each with what: the judgement above does not cover it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_checked: Vec<String>,
    /// Clusters not reached, each with why.
    pub failures: Vec<String>,
    /// Records whose EKS cluster no longer exists (deleted while no DeleteCluster event reached
    /// meshca): not a failure, nothing to deliver; the record stays until retired.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gone: Vec<String>,
    /// Clusters whose secret holds an older generation than their record: a renewal that
    /// waited for its CRL, put in force once every cluster holds it.
    #[serde(skip)]
    pub behind: Vec<(Place, String)>,
    /// The CRLs delivered, to ask what they list.
    #[serde(skip)]
    pub(crate) fleet: Option<FleetCrls>,
    /// A warning about the CRLs' size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Why no CRLs went anywhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An istio record and where its cluster is.
struct Held<'a> {
    place: &'a Place,
    ports: &'a RegionPorts,
    current: Current,
}

impl App {
    /// Builds the fleet's CRLs and writes them into every istio-layout cluster that does not hold
    /// them; `inventory` spares a DescribeCluster for clusters the sweep described.
    pub(crate) async fn publish_crls(
        &self,
        main: &dyn Authority,
        inventory: &[Found],
        deadline: Instant,
    ) -> CrlsReport {
        let mut report = CrlsReport::default();
        let records = match self.istio_records().await {
            Ok(r) => r,
            Err(e) => return CrlsReport::failed(e),
        };
        let fleet = match fleet_crls(main, &records).await {
            Ok(f) => f,
            Err(e) => return CrlsReport::failed(e),
        };
        match fleet.fits() {
            Ok(note) => report.note = note,
            Err(e) => return CrlsReport::failed(e.to_string()),
        }
        report.crls = fleet.listed.len();
        report.bytes = fleet.text.len();
        report.revoked = fleet.revoked();
        report.first_lapse = fleet.first_lapse();
        let (held, live): (Vec<_>, Vec<_>) = records
            .into_iter()
            .partition(|r| r.current.revoked.as_ref().is_some_and(|v| v.held));
        report.held = held.len();
        let text = fleet.text.as_str();
        let outcomes: Vec<(&Held<'_>, Result<Option<CrlsDelivered>, String>)> =
            futures::stream::iter(live.iter())
                .map(|r| async move { (r, self.deliver_crls(r, text, inventory, deadline).await) })
                .buffer_unordered(self.config.sweep_concurrency.max(1))
                .collect()
                .await;
        for (record, outcome) in outcomes {
            report.count(record, outcome);
        }
        report.failures.sort();
        report.gone.sort();
        report.not_protected.sort();
        report.fleet = Some(fleet);
        report
    }

    /// Reconciles each cluster whose record is ahead of its secret (a renewal that waited for
    /// its CRL), now that every cluster was given the fleet's CRLs with the new generation's:
    /// it goes in force in this sweep.
    pub(crate) async fn put_in_force(
        &self,
        report: &mut SweepReport,
        behind: &[(Place, String)],
        deadline: Instant,
    ) {
        for (place, cluster) in behind {
            if Instant::now() + crate::sweep::MARGIN > deadline {
                return;
            }
            let account = place.account.member().map(|a| a.to_string());
            let again = self
                .reconcile_at(
                    cluster,
                    account.as_deref(),
                    Some(&place.region),
                    false,
                    None,
                )
                .await;
            let outcome = again
                .kinds
                .get(&Kind::IstioCacerts)
                .cloned()
                .unwrap_or(again.outcome);
            report.settle(Report::at(cluster, place, outcome));
        }
    }

    /// CRL mode, a new cluster: its intermediate's CRL goes to every cluster at once (their
    /// proxies refuse a chain whose CA has no CRL, so they must not wait for the next sweep), and
    /// the cluster gets the fleet's CRLs. Only for CreateCluster: a renewal wave's reconcile
    /// requests leave this to the sweep, or each would rewrite the whole fleet.
    pub(crate) async fn new_cluster_crls(&self, created: Report, deadline: Instant) -> Report {
        let istio = match created.kinds.is_empty() {
            true => Some(&created.outcome),
            false => created.kinds.get(&Kind::IstioCacerts),
        };
        let new = matches!(
            istio,
            Some(Outcome::Renewed { .. } | Outcome::AwaitingCrls { .. })
        );
        if !self.config.crl_mode || self.config.dry_run || !new {
            return created;
        }
        let Ok((main, _)) = self.main_authority().await else {
            return created;
        };
        let crls = self.publish_crls(main.as_ref(), &[], deadline).await;
        let waiting = crls
            .behind
            .iter()
            .find(|(_, c)| Some(c) == created.cluster.as_ref());
        match waiting {
            // Its generation waited for the CRLs: every cluster holds them now.
            Some((place, cluster)) => {
                let account = place.account.member().map(|a| a.to_string());
                self.reconcile_at(
                    cluster,
                    account.as_deref(),
                    Some(&place.region),
                    false,
                    None,
                )
                .await
            }
            None => created,
        }
    }

    /// Every istio record of every managed place.
    async fn istio_records(&self) -> Result<Vec<Held<'_>>, String> {
        let mut out = Vec::new();
        for (place, ports) in &self.fleet.places {
            let keys = ports
                .escrow
                .keys()
                .await
                .map_err(|e| format!("listing escrow in {place}: {e}"))?;
            for key in keys.into_iter().filter(|k| k.kind == Kind::IstioCacerts) {
                let escrowed = ports
                    .escrow
                    .load(&key)
                    .await
                    .map_err(|e| format!("reading {key} in {place}: {e}"))?;
                if let Some(current) = escrowed.current {
                    out.push(Held {
                        place,
                        ports,
                        current,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Writes `crls` into one record's cluster; `None` when that cluster no longer exists.
    async fn deliver_crls(
        &self,
        record: &Held<'_>,
        crls: &str,
        inventory: &[Found],
        deadline: Instant,
    ) -> Result<Option<CrlsDelivered>, String> {
        if Instant::now() + crate::sweep::MARGIN > deadline {
            return Err("left for the next sweep: this one ran out of time".into());
        }
        let name = &record.current.cluster;
        let described = inventory
            .iter()
            .find(|f| f.place == *record.place && f.cluster.name == name.as_str())
            .map(|f| f.cluster.clone());
        let cluster: ClusterInfo = match described {
            Some(c) => c,
            None => match record.ports.clusters.describe(name.as_str()).await {
                Ok(c) => c,
                Err(ClustersError::NotFound(_)) => return Ok(None),
                Err(e) => return Err(e.to_string()),
            },
        };
        if !cluster.is_active() {
            return Err(format!("not active ({})", cluster.status));
        }
        let settings = Settings {
            scope: crate::scope_of(record.place),
            ..self.settings_for(KindSpec::new(Kind::IstioCacerts))
        };
        let delivery = record
            .ports
            .clusters
            .connect(&cluster, self.options(&settings, name))
            .map_err(|e| e.to_string())?;
        delivery
            .deliver_crls(crls)
            .await
            .map(Some)
            .map_err(|e| e.to_string())
    }
}

impl CrlsReport {
    /// Counts what writing the CRLs into `record`'s cluster did, and says what needs saying:
    /// a failure, an istiod that does not enforce them, a secret behind its record.
    fn count(&mut self, record: &Held<'_>, outcome: Result<Option<CrlsDelivered>, String>) {
        let name = format!("{} in {}", record.current.cluster, record.place);
        let delivered = match outcome {
            Ok(Some(d)) => d,
            Ok(None) => {
                self.gone.push(format!(
                    "{name}: no such EKS cluster: nothing delivered; its record stays until retired (`meshca retire --cluster {}`), its intermediate valid until revoked",
                    record.current.cluster
                ));
                return;
            }
            Err(e) => {
                warn!(cluster = %name, step = "crls", outcome = "failed", error = %e);
                self.failures.push(format!("{name}: {e}"));
                return;
            }
        };
        match delivered.change {
            CrlsChange::Written => self.written += 1,
            CrlsChange::Unchanged => self.unchanged += 1,
            CrlsChange::NoBundleYet => self.no_bundle_yet += 1,
        }
        if let Some(e) = delivered.readers.as_ref().map(enforcement::judge) {
            if let Some(why) = e.not_protected() {
                self.not_protected
                    .push(format!("{name}: not protected: {why}"));
            }
            if let Some(what) = e.not_checked() {
                self.not_checked.push(format!("{name}: {what}"));
            }
        }
        if delivered
            .generation
            .is_some_and(|g| g < record.current.meta.generation)
        {
            self.behind
                .push((record.place.clone(), record.current.cluster.to_string()));
        }
    }

    /// Whether the CRLs delivered list every one of `serials`.
    pub fn lists_all(&self, serials: &[String]) -> bool {
        self.fleet
            .as_ref()
            .is_some_and(|f| serials.iter().all(|s| f.lists(s)))
    }

    fn failed(error: String) -> Self {
        warn!(step = "crls", outcome = "failed", error = %error);
        CrlsReport {
            error: Some(error),
            ..CrlsReport::default()
        }
    }
}

/// The authority's CRLs, read now, and every record's own.
async fn fleet_crls(main: &dyn Authority, records: &[Held<'_>]) -> Result<FleetCrls, String> {
    let authority = main
        .crl()
        .await
        .map_err(|e| format!("reading the authority's CRLs: {e}"))?
        .ok_or("the authority publishes no CRL meshca can read (a Private CA needs a CrlConfiguration; see docs/compromise.md), so MESHCA_CRL_MODE cannot protect this fleet")?;
    let now = OffsetDateTime::now_utc();
    let mut own = Vec::new();
    for r in records {
        own.extend(
            r.current
                .own_crls(now)
                .map_err(|e| format!("{}: {e}", r.current.cluster))?,
        );
    }
    FleetCrls::assemble(&authority, own).map_err(|e| e.to_string())
}
