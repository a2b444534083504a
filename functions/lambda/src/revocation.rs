//! A `meshca Revoke Requested` event: every certificate of one cluster revoked at its authority
//! and its records held, as `meshca revoke` does by hand. Taken from meshca's own account or the
//! security account only (`App::handle` checks the sender): a member account can never revoke,
//! not even its own clusters.

use std::sync::Arc;

use meshca_core::authority::RevocationReason;
use meshca_core::{
    Authority, ClusterName, Kind, KindSpec, Outcome, Place, ReconcileError, Reconciler, Settings,
    Step,
};
use meshca_wiring::RegionPorts;
use time::OffsetDateTime;
use tracing::warn;

use crate::{App, Report};

/// One cluster at its place, with the authority in force: what DeleteCluster and a revoke
/// request both need before they go through the cluster's kinds.
pub(crate) struct AtPlace<'a> {
    pub place: &'a Place,
    pub ports: &'a RegionPorts,
    pub name: ClusterName,
    /// Mid-rotation the cluster may hold either side's certificates: the authority in force
    /// revokes each with its own issuer.
    main: Arc<dyn Authority>,
}

impl App {
    /// `cluster` at its place, or the report that ends the request there: a place meshca does
    /// not manage, a name that is no cluster name, a dry run (`plan` says what it would do), an
    /// authority that cannot be read.
    pub(crate) async fn at_place(
        &self,
        cluster: &str,
        account: Option<&str>,
        region: Option<&str>,
        plan: impl FnOnce() -> String,
    ) -> Result<AtPlace<'_>, Report> {
        let (place, ports) = self.place(account, region).map_err(|why| {
            self.refused(
                cluster,
                region.unwrap_or_default(),
                account.map(str::to_string),
                why,
            )
        })?;
        let single = |outcome| Report::at(cluster, place, outcome);
        let name: ClusterName = cluster.parse().map_err(|e| {
            single(Outcome::Skipped {
                reason: format!("{e}"),
            })
        })?;
        if self.config.dry_run {
            return Err(single(Outcome::Planned { plan: plan() }));
        }
        let (main, _) = self.main_authority().await.map_err(|error| {
            single(Outcome::Failed {
                step: Step::Observe,
                error,
            })
        })?;
        Ok(AtPlace {
            place,
            ports,
            name,
            main,
        })
    }

    /// The settings and the signing authority of one kind of a cluster at its place.
    pub(crate) fn kind_at(&self, at: &AtPlace<'_>, kind: Kind) -> (Settings, Arc<dyn Authority>) {
        (
            self.settings_for(KindSpec::new(kind)),
            self.authority_for(&at.main, kind),
        )
    }

    /// Revokes and holds every kind escrowed for `cluster` at its place, then announces it
    /// (`meshca Revocation Completed`).
    pub(crate) async fn revoke(
        &self,
        cluster: &str,
        account: Option<&str>,
        region: Option<&str>,
        asked: Asked<'_>,
    ) -> Report {
        let (report, serials) = self.revoke_kinds(cluster, account, region, &asked).await;
        if matches!(report.outcome, Outcome::Planned { .. }) {
            return report;
        }
        let enforced = self.deliver_revocation(&serials).await;
        self.announce_revocation(&report, &asked, &enforced).await;
        report
    }

    /// In CRL mode, the fleet's CRLs go out at once (Vault lists a revocation at once; a Private
    /// CA publishes tens of minutes later, and the sweep delivers then): whether the data plane
    /// refuses every serial just revoked, and where it does not.
    async fn deliver_revocation(&self, serials: &[String]) -> Enforced {
        let mut e = Enforced::default();
        if !self.config.crl_mode || serials.is_empty() {
            return e;
        }
        let Ok((main, _)) = self.main_authority().await else {
            return e;
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        let crls = self.publish_crls(main.as_ref(), &[], deadline).await;
        let delivered = crls.failures.is_empty() && crls.error.is_none() && crls.lists_all(serials);
        e.everywhere = delivered && crls.not_protected.is_empty();
        e.not_protected = crls.not_protected;
        e.not_checked = crls.not_checked;
        e
    }

    async fn revoke_kinds(
        &self,
        cluster: &str,
        account: Option<&str>,
        region: Option<&str>,
        asked: &Asked<'_>,
    ) -> (Report, Vec<String>) {
        let reason = asked.reason;
        let by = asked.by_whom();
        let plan = || format!("revoke ({reason}) every certificate of the cluster and hold it");
        let at = match self.at_place(cluster, account, region, plan).await {
            Ok(at) => at,
            Err(report) => return (report, Vec::new()),
        };
        let now = OffsetDateTime::now_utc();
        let mut outcomes = Vec::new();
        let mut serials = Vec::new();
        for kind in Kind::ALL {
            let (settings, authority) = self.kind_at(&at, kind);
            let reconciler = Reconciler {
                authority: authority.as_ref(),
                escrow: at.ports.escrow.as_ref(),
                settings: &settings,
            };
            let outcome = match reconciler.revoke(&at.name, reason, now, &by).await {
                Ok(done) if done.already => Outcome::Skipped {
                    reason: format!("revoked and held already (generation {})", done.generation),
                },
                Ok(done) => {
                    serials.extend(done.serials);
                    Outcome::Revoked {
                        certificates: done.certificates,
                    }
                }
                // Kinds the cluster never had leave no trace in the report.
                Err(ReconcileError::NothingToRevoke { .. }) => continue,
                Err(e) => {
                    warn!(cluster = %at.name, kind = %kind, step = %e.step(), outcome = "failed", error = %e);
                    Outcome::Failed {
                        step: e.step(),
                        error: e.to_string(),
                    }
                }
            };
            outcomes.push((kind, outcome));
        }
        if outcomes.is_empty() {
            let name = &at.name;
            let reason =
                format!("nothing is escrowed for {name} here: meshca issued it nothing to revoke");
            return (
                Report::at(cluster, at.place, Outcome::Skipped { reason }),
                serials,
            );
        }
        (Report::of_kinds(cluster, at.place, outcomes), serials)
    }
}

/// Where the data plane refuses what a revocation revoked, as its CRL delivery found.
#[derive(Default)]
struct Enforced {
    /// Every istio cluster holds CRLs listing it, and nothing there ignores them.
    everywhere: bool,
    /// Clusters where something ignores the CRLs, with why.
    not_protected: Vec<String>,
    /// Clusters where a reader could not be looked at.
    not_checked: Vec<String>,
}

/// A revoke request: why, and the account that sent it.
pub(crate) struct Asked<'a> {
    pub reason: RevocationReason,
    pub by: Option<&'a str>,
}

impl Asked<'_> {
    /// Who asked, for the record's audit entry.
    fn by_whom(&self) -> String {
        match self.by {
            Some(account) => format!("account {account} (meshca Revoke Requested)"),
            None => "meshca's own account (meshca Revoke Requested)".into(),
        }
    }
}

impl App {
    /// `meshca Revocation Completed` on the deployment's bus: who asked, when, why, and each
    /// kind's outcome. Telling no one is logged, never fatal: the revocation itself stands.
    async fn announce_revocation(&self, report: &Report, asked: &Asked<'_>, enforced: &Enforced) {
        let Some(notices) = &self.fleet.notices else {
            return;
        };
        let detail = serde_json::json!({
            "cluster": report.cluster,
            "account": report.account,
            "region": report.region,
            "reason": asked.reason.to_string(),
            "requestedBy": asked.by_whom(),
            "at": meshca_core::timestamp::rfc3339(OffsetDateTime::now_utc()),
            "result": report.outcome,
            "kinds": report.kinds,
            // CRL mode: every istio cluster was given CRLs listing every certificate revoked,
            // and nothing found there ignores them. Otherwise false: CRL mode is off, the
            // authority has not published yet (the sweep delivers once it has), or a cluster
            // is not protected (named).
            "crlMode": self.config.crl_mode,
            "enforcedByDataPlane": enforced.everywhere,
            "notProtected": enforced.not_protected,
            "notChecked": enforced.not_checked,
        });
        if let Err(e) = notices
            .announce(meshca_core::notice::REVOCATION_COMPLETED, &detail)
            .await
        {
            warn!(cluster = ?report.cluster, error = %e, "meshca Revocation Completed was not sent");
        }
    }
}
