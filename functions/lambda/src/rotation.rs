//! The functions under a root rotation: every reconcile issues at the phase the fleet's record
//! names, and the sweep, once it reconciled the fleet, reads every cluster back and advances the
//! record when the gates are met (`meshca rotate-root` starts, aborts or forces it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use meshca_core::rollout::{self, Member, RolloutReport};
use meshca_core::rotation::{Phase, RootRotation};
use meshca_core::{Authority, ClusterName, KindSpec};
use serde::Serialize;
use tracing::{info, warn};

use crate::App;

/// How long an instance trusts the record it read: a phase change reaches cluster-events
/// within this time (phases last hours: the soak).
pub const RECORD_TTL: Duration = Duration::from_secs(60);

/// The record as last read, and the authority it puts in force.
pub(crate) struct InForce {
    read_at: Instant,
    rotation: Option<RootRotation>,
    authority: Arc<dyn Authority>,
}

/// What the sweep did about the rotation.
#[derive(Debug, Clone, Serialize)]
pub struct RotationReport {
    /// The phase the rotation is in.
    pub phase: Phase,
    /// The rotation was aborted and is going back.
    pub aborted: bool,
    /// The phase it moved to, when this sweep advanced it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advanced_to: Option<Phase>,
    /// How long it has been in this phase.
    pub phase_age_seconds: i64,
    /// Clusters that have not confirmed the phase yet.
    pub unconfirmed: usize,
    /// What keeps it from advancing, one line each.
    pub blockers: Vec<String>,
}

impl App {
    /// The authority that signs the fleet's intermediates now, and the rotation record behind it.
    pub(crate) async fn main_authority(
        &self,
    ) -> Result<(Arc<dyn Authority>, Option<RootRotation>), String> {
        let mut cached = self.in_force.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| c.read_at.elapsed() < RECORD_TTL) {
            return Ok((c.authority.clone(), c.rotation.clone()));
        }
        let rotation = match &self.fleet.rotation {
            Some(store) => store
                .load()
                .await
                .map_err(|e| format!("reading the root rotation record: {e}"))?,
            None => None,
        };
        let same = cached.as_ref().is_some_and(|c| {
            c.rotation.as_ref().map(|r| r.revision) == rotation.as_ref().map(|r| r.revision)
        });
        let authority = match (cached.as_ref().filter(|_| same), &rotation) {
            (Some(c), _) => c.authority.clone(),
            (None, Some(r)) if r.is_active() => {
                let authorities = self
                    .fleet
                    .rotation_authorities(r)
                    .await
                    .map_err(|e| format!("the rotation's authorities: {e}"))?;
                Arc::new(rollout::in_force(r, &authorities).map_err(|e| e.to_string())?)
                    as Arc<dyn Authority>
            }
            (None, Some(r)) => self.finished(r)?,
            (None, None) => self.fleet.authority.clone(),
        };
        *cached = Some(InForce {
            read_at: Instant::now(),
            rotation: rotation.clone(),
            authority: authority.clone(),
        });
        Ok((authority, rotation))
    }

    /// After a finished rotation the configured authority must be its target, not the retired one.
    fn finished(&self, r: &RootRotation) -> Result<Arc<dyn Authority>, String> {
        let configured = self.fleet.authority_spec.as_ref().map(|s| s.locator());
        if configured.as_deref() == Some(r.retiring().locator.as_str()) {
            return Err(format!(
                "the fleet's root was rotated away from {} to {}; configure the functions with the new authority",
                r.retiring().locator,
                r.target().locator
            ));
        }
        Ok(self.fleet.authority.clone())
    }

    /// After a sweep at `rotation`'s phase: read every cluster back, advance if the gates allow.
    pub(crate) async fn gate_rotation(
        &self,
        inventory: &[crate::sweep::Found],
    ) -> Result<Option<RotationReport>, String> {
        let Some(store) = &self.fleet.rotation else {
            return Ok(None);
        };
        let mut members = Vec::new();
        for crate::sweep::Found {
            place,
            cluster: info,
        } in inventory
        {
            let Ok(cluster) = info.name.parse::<ClusterName>() else {
                continue;
            };
            let Some(ports) = self.fleet.places.get(place) else {
                continue;
            };
            // Every kind the cluster has is gated: its trust and issuer move with the fleet.
            let kinds = self
                .config
                .kinds
                .for_tags(&info.tags)
                .unwrap_or_else(|_| vec![KindSpec::default()]);
            for kind in kinds {
                let settings = self.settings_for(kind.clone());
                let delivery: Arc<dyn meshca_core::Delivery> = match ports
                    .clusters
                    .connect(info, self.options(&settings, &cluster))
                {
                    Ok(delivery) => delivery,
                    Err(e) => Arc::new(Unreachable(e.to_string())),
                };
                members.push(Member {
                    cluster: cluster.clone(),
                    kind,
                    delivery,
                });
            }
        }
        let report = rollout::gate(store.as_ref(), &members)
            .await
            .map_err(|e| e.to_string())?;
        Ok(report.map(|r| self.rotation_report(r)))
    }

    fn rotation_report(&self, r: RolloutReport) -> RotationReport {
        let now = time::OffsetDateTime::now_utc();
        let advanced = r.blockers.is_empty().then_some(r.rotation.phase);
        let unconfirmed = r.clusters.iter().filter(|s| !s.confirmed).count();
        match advanced {
            Some(p) => info!(phase = %p, "the sweep advanced the root rotation"),
            None => {
                warn!(phase = %r.rotation.phase, unconfirmed, blockers = %r.blockers.join("; "), "root rotation waits")
            }
        }
        RotationReport {
            phase: r.rotation.phase,
            aborted: r.rotation.aborted,
            advanced_to: advanced,
            phase_age_seconds: r.rotation.phase_age(now).whole_seconds(),
            unconfirmed,
            blockers: r.blockers,
        }
    }
}

/// A cluster that could not even be connected to: unconfirmed, with the reason.
struct Unreachable(String);

#[async_trait::async_trait]
impl meshca_core::Delivery for Unreachable {
    async fn observe(
        &self,
    ) -> Result<meshca_core::delivery::Observed, meshca_core::delivery::DeliveryError> {
        Err(meshca_core::delivery::DeliveryError::Unreachable {
            endpoint: "-".into(),
            detail: self.0.clone(),
        })
    }
    async fn deliver(
        &self,
        _: &meshca_core::Bundle,
        _: &meshca_core::BundleMeta,
    ) -> Result<meshca_core::delivery::Delivered, meshca_core::delivery::DeliveryError> {
        Err(meshca_core::delivery::DeliveryError::Unreachable {
            endpoint: "-".into(),
            detail: self.0.clone(),
        })
    }
    fn refuses(
        &self,
        _: &meshca_core::delivery::Observed,
    ) -> Option<meshca_core::delivery::DeliveryError> {
        None
    }
}
