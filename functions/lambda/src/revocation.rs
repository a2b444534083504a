//! A `meshca Revoke Requested` event: every certificate of one cluster revoked at its authority
//! and its records held, as `meshca revoke` does by hand. Taken from meshca's own account only:
//! a member account can never revoke, not even its own clusters.

use meshca_core::authority::RevocationReason;
use meshca_core::{ClusterName, Kind, KindSpec, Outcome, ReconcileError, Reconciler, Step};
use time::OffsetDateTime;
use tracing::warn;

use crate::{App, Report};

impl App {
    /// Revokes and holds every kind escrowed for `cluster` at its place.
    pub(crate) async fn revoke(
        &self,
        cluster: &str,
        account: Option<&str>,
        region: Option<&str>,
        reason: RevocationReason,
    ) -> Report {
        let (place, r) = match self.place(account, region) {
            Ok(p) => p,
            Err(why) => {
                return self.refused(
                    cluster,
                    region.unwrap_or_default(),
                    account.map(str::to_string),
                    why,
                );
            }
        };
        let single = |outcome| Report::at(cluster, place, outcome);
        let name: ClusterName = match cluster.parse() {
            Ok(n) => n,
            Err(e) => {
                return single(Outcome::Skipped {
                    reason: format!("{e}"),
                });
            }
        };
        if self.config.dry_run {
            let plan = format!("revoke ({reason}) every certificate of the cluster and hold it");
            return single(Outcome::Planned { plan });
        }
        let main = match self.main_authority().await {
            Ok((main, _)) => main,
            Err(error) => {
                return single(Outcome::Failed {
                    step: Step::Observe,
                    error,
                });
            }
        };
        let now = OffsetDateTime::now_utc();
        let mut outcomes = Vec::new();
        for kind in Kind::ALL {
            let settings = self.settings_for(KindSpec::new(kind));
            let authority = self.authority_for(&main, kind);
            let reconciler = Reconciler {
                authority: authority.as_ref(),
                escrow: r.escrow.as_ref(),
                settings: &settings,
            };
            let outcome = match reconciler.revoke(&name, reason, now).await {
                Ok(done) if done.already => Outcome::Skipped {
                    reason: format!("revoked and held already (generation {})", done.generation),
                },
                Ok(done) => Outcome::Revoked {
                    certificates: done.certificates,
                },
                // Kinds the cluster never had leave no trace in the report.
                Err(ReconcileError::NothingToRevoke { .. }) => continue,
                Err(e) => {
                    warn!(cluster = %name, kind = %kind, step = %e.step(), outcome = "failed", error = %e);
                    Outcome::Failed {
                        step: e.step(),
                        error: e.to_string(),
                    }
                }
            };
            outcomes.push((kind, outcome));
        }
        if outcomes.is_empty() {
            let reason =
                format!("nothing is escrowed for {name} here: meshca issued it nothing to revoke");
            return single(Outcome::Skipped { reason });
        }
        Report::of_kinds(cluster, place, outcomes)
    }
}
