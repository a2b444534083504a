//! A root rotation carried out over the fleet: every cluster reconciled to the phase's issuer
//! and trust bundle, read back to confirm it, and the record advanced only through its gates.
//!
//! The same code serves `meshca rotate-root` and the expiry sweep. Every step repeats safely:
//! the per-cluster work is the ordinary reconcile (claimed generations, idempotent issuance,
//! conditional delivery), and the record moves by compare-and-swap, so a crash or a rival run
//! anywhere ends in the same phase with one certificate per cluster and phase.

use std::sync::Arc;

use time::{Duration, OffsetDateTime};

use crate::authority::Authority;
use crate::cluster::ClusterName;
use crate::delivery::{Delivery, Observed};
use crate::escrow::Escrow;
use crate::reconcile::{Outcome, Reconciler, Settings};
use crate::rotation::{
    Anchor, Anchored, Phase, RootRotation, RotationError, RotationStore, RotationStoreError,
};

/// One kind of certificate of a managed cluster, and the way to its secret. A rotation moves
/// every kind a cluster has (its trust and its issuer), so each is a member of its own.
#[derive(Clone)]
pub struct Member {
    /// The cluster.
    pub cluster: ClusterName,
    /// The kind of it that takes part.
    pub kind: crate::KindSpec,
    /// How its secret is written and read back.
    pub delivery: Arc<dyn Delivery>,
}

/// One member's standing in the current phase.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Standing {
    /// The cluster.
    pub cluster: ClusterName,
    /// Absent for istio-cacerts, as in every report before kinds were members.
    #[serde(skip_serializing_if = "is_istio")]
    pub kind: crate::Kind,
    /// What this run did to it (absent for `status`, which only reads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// It holds what the phase wants, read back from the cluster.
    pub confirmed: bool,
    /// Why it is not confirmed: what blocks the next phase.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocking: Option<String>,
}

impl Standing {
    /// The member as people read it: `<cluster>`, or `<cluster>.<kind>` for other kinds.
    pub fn label(&self) -> String {
        crate::kind::EscrowKey::new(self.cluster.clone(), self.kind).name()
    }
}

/// The rotation and the fleet after a command.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RolloutReport {
    /// The rotation after this run.
    pub rotation: RootRotation,
    /// Every member's standing.
    pub clusters: Vec<Standing>,
    /// Why the rotation may not advance now (empty: it may).
    pub blockers: Vec<String>,
    /// In CRL mode, what giving the fleet its CRLs did, a line per cluster.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub crls: Vec<String>,
}

/// CRL mode's step between issuing a phase's intermediates and putting them in force: istiod
/// discards a bundle whose `ca-crl.pem` lacks its intermediate's CRL (so delivery refuses it,
/// [`Outcome::AwaitingCrls`]), and every other cluster's proxies would refuse its workloads
/// without it. Given the members, it writes the fleet's CRLs, as escrow records them now,
/// into each; then the rollout delivers the waiting bundles.
#[async_trait::async_trait]
pub trait CrlPass: Send + Sync {
    /// Gives every member the fleet's CRLs; a line per member for people.
    async fn deliver(&self, members: &[Member]) -> Vec<String>;
}

/// Why a rotation step could not run.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// The step is not allowed in this phase.
    #[error(transparent)]
    Rotation(#[from] RotationError),
    /// The rotation record could not be read or written.
    #[error(transparent)]
    Store(#[from] RotationStoreError),
    /// `status`, `advance` or `abort` without a rotation started.
    #[error("no rotation has been started")]
    NoRotation,
    #[error(
        "the rotation's {role} authority {id} is not configured here (it is reached as {locator})"
    )]
    /// An authority the record names is not among those configured here.
    AuthorityMissing {
        /// `old` or `new`.
        role: &'static str,
        /// Its id.
        id: String,
        /// How to configure it.
        locator: String,
    },
}

/// The ports a rollout works through.
pub struct Rollout<'a> {
    /// Where the rotation record is kept.
    pub store: &'a dyn RotationStore,
    /// The members' escrow records.
    pub escrow: &'a dyn Escrow,
    /// The settings members are issued with.
    pub settings: &'a Settings,
    /// Both sides of the rotation, by [`crate::AuthorityInfo::id`].
    pub authorities: Vec<(String, Arc<dyn Authority>)>,
    /// In CRL mode, how the fleet's CRLs reach the members before a new generation goes in force.
    pub crls: Option<&'a dyn CrlPass>,
}

impl Rollout<'_> {
    /// Starts a rotation from `from` to `to` and brings every member to trust-both.
    pub async fn start(
        &self,
        from: Anchor,
        to: Anchor,
        soak: Duration,
        members: &[Member],
    ) -> Result<RolloutReport, RolloutError> {
        if let Some(existing) = self.store.load().await?.filter(RootRotation::is_active) {
            return Err(RotationError::InProgress {
                to: existing.to.authority_id,
                phase: existing.phase,
            }
            .into());
        }
        let now = OffsetDateTime::now_utc();
        let rotation = RootRotation::start(from, to, soak, now)?;
        let rotation = self.store.save(&rotation).await?;
        self.converge(rotation, members).await
    }

    /// Reads every member and judges it against the phase; writes nothing.
    pub async fn status(&self, members: &[Member]) -> Result<RolloutReport, RolloutError> {
        let rotation = self.store.load().await?.ok_or(RolloutError::NoRotation)?;
        let clusters = each_member(members, |m| Box::pin(standing(&rotation, m, None))).await;
        Ok(report(rotation, clusters))
    }

    /// Finishes the current phase (reconciling what is not there yet), then moves on if the
    /// gates allow (or `force` overrides them) and carries the fleet into the next phase.
    pub async fn advance(
        &self,
        members: &[Member],
        force: bool,
    ) -> Result<RolloutReport, RolloutError> {
        let rotation = self.store.load().await?.ok_or(RolloutError::NoRotation)?;
        let report = self.converge(rotation, members).await?;
        let mut rotation = report.rotation;
        rotation.advance(report.blockers, force, OffsetDateTime::now_utc())?;
        let rotation = self.store.save(&rotation).await?;
        self.converge(rotation, members).await
    }

    /// Turns the rotation back to the old authority alone (before drop-old only).
    pub async fn abort(&self, members: &[Member]) -> Result<RolloutReport, RolloutError> {
        let mut rotation = self.store.load().await?.ok_or(RolloutError::NoRotation)?;
        rotation.abort(OffsetDateTime::now_utc())?;
        let rotation = self.store.save(&rotation).await?;
        self.converge(rotation, members).await
    }

    /// Brings every member to the phase, reads each back, and records the fleet's confirmation
    /// the first time all are confirmed. In CRL mode, members whose new generation waits for its
    /// CRL get it through the [`CrlPass`], and are carried again.
    pub async fn converge(
        &self,
        rotation: RootRotation,
        members: &[Member],
    ) -> Result<RolloutReport, RolloutError> {
        let mut clusters = Vec::new();
        let mut said = Vec::new();
        if rotation.is_active() {
            let anchored = in_force(&rotation, &self.authorities)?;
            clusters = each_member(members, |m| self.carry(&rotation, &anchored, m)).await;
            let waiting: Vec<Member> = members
                .iter()
                .zip(&clusters)
                .filter(|(_, s)| matches!(s.outcome, Some(Outcome::AwaitingCrls { .. })))
                .map(|(m, _)| m.clone())
                .collect();
            if let (Some(pass), false) = (self.crls, waiting.is_empty()) {
                said = pass.deliver(members).await;
                let again = each_member(&waiting, |m| self.carry(&rotation, &anchored, m)).await;
                for s in again {
                    if let Some(slot) = clusters
                        .iter_mut()
                        .find(|c| c.cluster == s.cluster && c.kind == s.kind)
                    {
                        *slot = s;
                    }
                }
            }
        }
        let mut report = record_confirmation(self.store, rotation, clusters).await?;
        report.crls = said;
        Ok(report)
    }

    /// Reconciles `m` to the phase (its own kind's landing and rules, the fleet's other
    /// settings) and reads it back.
    fn carry<'m>(
        &'m self,
        rotation: &'m RootRotation,
        anchored: &'m Anchored,
        m: &'m Member,
    ) -> futures::future::BoxFuture<'m, Standing> {
        Box::pin(async move {
            let settings = Settings {
                kind: m.kind.clone(),
                ..self.settings.clone()
            };
            let outcome = Reconciler {
                authority: anchored,
                escrow: self.escrow,
                settings: &settings,
            }
            .apply(&m.cluster, m.delivery.as_ref(), false)
            .await;
            standing(rotation, m, Some(outcome)).await
        })
    }
}

/// How many clusters a rollout talks to at once: an unreachable one costs its own timeout,
/// not the fleet's.
pub const CONCURRENCY: usize = 16;

/// `f` for every member, up to [`CONCURRENCY`] at once, results in the members' order. (Boxed
/// futures: a rollout runs inside spawned tasks, which need them `Send` for every lifetime.)
async fn each_member<'m, F>(members: &'m [Member], f: F) -> Vec<Standing>
where
    F: Fn(&'m Member) -> futures::future::BoxFuture<'m, Standing>,
{
    use futures::StreamExt;
    // The futures made first, so no closure is part of the stream's type.
    let futures: Vec<_> = members.iter().map(f).collect();
    futures::stream::iter(futures)
        .buffered(CONCURRENCY)
        .collect()
        .await
}

fn report(rotation: RootRotation, clusters: Vec<Standing>) -> RolloutReport {
    let unconfirmed: Vec<(String, String)> = clusters
        .iter()
        .filter_map(|s| s.blocking.clone().map(|b| (s.label(), b)))
        .collect();
    let blockers = if rotation.is_active() {
        rotation.blockers(&unconfirmed, OffsetDateTime::now_utc())
    } else {
        Vec::new()
    };
    RolloutReport {
        rotation,
        clusters,
        blockers,
        crls: Vec::new(),
    }
}

/// Records the fleet's confirmation the first time every cluster is confirmed in the phase.
async fn record_confirmation(
    store: &dyn RotationStore,
    mut rotation: RootRotation,
    clusters: Vec<Standing>,
) -> Result<RolloutReport, RolloutError> {
    // No cluster seen confirms nothing: an empty fleet view never opens a gate.
    let confirmed = !clusters.is_empty() && clusters.iter().all(|s| s.confirmed);
    if rotation.is_active() && confirmed && rotation.note_confirmed(OffsetDateTime::now_utc()) {
        rotation = match store.save(&rotation).await {
            // A rival run recorded it (or moved on) first: report what it wrote.
            Err(RotationStoreError::Conflict) => {
                store.load().await?.ok_or(RolloutError::NoRotation)?
            }
            other => other?,
        };
    }
    Ok(report(rotation, clusters))
}

/// The sweep's step after it reconciled the fleet at the phase: reads every member back,
/// records the fleet's confirmation, and moves to the next phase when every gate is met
/// (never by force). Writes no cluster; the next sweep carries out the new phase.
pub async fn gate(
    store: &dyn RotationStore,
    members: &[Member],
) -> Result<Option<RolloutReport>, RolloutError> {
    let Some(rotation) = store.load().await?.filter(RootRotation::is_active) else {
        return Ok(None);
    };
    let clusters = each_member(members, |m| Box::pin(standing(&rotation, m, None))).await;
    let report = record_confirmation(store, rotation, clusters).await?;
    if !report.blockers.is_empty() {
        return Ok(Some(report));
    }
    let mut rotation = report.rotation;
    rotation.advance(Vec::new(), false, OffsetDateTime::now_utc())?;
    let rotation = match store.save(&rotation).await {
        Err(RotationStoreError::Conflict) => store.load().await?.ok_or(RolloutError::NoRotation)?,
        other => other?,
    };
    Ok(Some(RolloutReport {
        rotation,
        clusters: report.clusters,
        blockers: Vec::new(),
        crls: Vec::new(),
    }))
}

/// Reads `member`'s secret back and judges it against the phase. An unreachable cluster,
/// a failed reconcile or a foreign secret is unconfirmed, never skipped.
pub async fn standing(
    rotation: &RootRotation,
    member: &Member,
    outcome: Option<Outcome>,
) -> Standing {
    let failed = match &outcome {
        Some(Outcome::Failed { step, error }) => Some(format!("{step} failed: {error}")),
        Some(Outcome::Skipped { reason }) => Some(format!("skipped: {reason}")),
        _ => None,
    };
    // A cluster that could not even be read for the reconcile is not read again.
    if let Some(Outcome::Failed {
        step: crate::Step::Observe,
        ..
    }) = &outcome
    {
        return Standing {
            cluster: member.cluster.clone(),
            kind: member.kind.kind,
            outcome,
            confirmed: false,
            blocking: failed,
        };
    }
    let verdict = match member.delivery.observe().await {
        Err(e) => Err(format!("cannot read its secret: {e}")),
        Ok(Observed::Managed {
            bundle: Some(b), ..
        }) => rotation.confirms(&b),
        Ok(Observed::Managed { bundle: None, .. }) => {
            Err("its secret holds no readable bundle".into())
        }
        Ok(Observed::Absent) => Err("it has no meshca secret yet".into()),
        Ok(Observed::Unmanaged { .. }) => Err("its secret is not managed by meshca".into()),
    };
    let blocking = failed.or(verdict.err());
    Standing {
        cluster: member.cluster.clone(),
        kind: member.kind.kind,
        outcome,
        confirmed: blocking.is_none(),
        blocking,
    }
}

fn is_istio(kind: &crate::Kind) -> bool {
    *kind == crate::Kind::IstioCacerts
}

/// The authority every reconcile uses while `rotation` has its say: the phase's issuer with the
/// phase's trust bundle, or, once it is done, its target alone. A reconcile outside the rollout
/// (a new cluster, a renewal) so joins the fleet where the rollout stands.
pub fn in_force(
    rotation: &RootRotation,
    authorities: &[(String, Arc<dyn Authority>)],
) -> Result<Anchored, RolloutError> {
    let stage = rotation.stage();
    let role = if stage.issuer == rotation.target() {
        "target"
    } else {
        "retiring"
    };
    let issuer = authorities
        .iter()
        .find(|(id, _)| *id == stage.issuer.authority_id)
        .map(|(_, a)| a.clone())
        .ok_or_else(|| RolloutError::AuthorityMissing {
            role,
            id: stage.issuer.authority_id.clone(),
            locator: stage.issuer.locator.clone(),
        })?;
    Ok(Anchored {
        issuer,
        trust: stage.trust,
        sides: authorities.to_vec(),
    })
}

/// The phase as people read it, saying when the rotation was turned round.
pub fn phase_label(rotation: &RootRotation) -> String {
    let dir = if rotation.aborted {
        " (aborted: back to the old root)"
    } else {
        ""
    };
    match rotation.phase {
        Phase::Done => format!("done{dir}"),
        p => format!("{p}{dir}"),
    }
}
