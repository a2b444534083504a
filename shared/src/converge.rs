//! The whole pipeline for one cluster — observe, decide, issue, escrow, deliver, verify — with
//! one typed outcome that reports and logs can rely on, and the reverse for a deleted cluster.
//!
//! Every step is idempotent (see [`crate::reconcile`] for issue/escrow, [`crate::delivery`] for
//! deliver/verify), so running this again after a crash anywhere converges on one valid bundle
//! in the cluster, and two runs at once issue one certificate.

use serde::Serialize;
use time::OffsetDateTime;

use crate::authority::{CertificateId, RevocationReason};
use crate::cluster::ClusterName;
use crate::delivery::{Change, Delivery, Observed};
use crate::delivery::DeliveryError;
use crate::reconcile::{Action, Judgement, Reconcile, ReconcileError, Step};

/// What one reconcile of one cluster did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum ClusterOutcome {
    /// Escrow and cluster already held a healthy bundle.
    Unchanged {
        generation: u64,
        #[serde(with = "time::serde::rfc3339")]
        not_after: OffsetDateTime,
    },
    /// The escrowed bundle was (re)written into the cluster (missing or drifted secret).
    Delivered {
        generation: u64,
        change: Change,
        #[serde(with = "time::serde::rfc3339")]
        not_after: OffsetDateTime,
    },
    /// A new generation was issued (or a pending one finished) and delivered.
    Renewed {
        reason: String,
        generation: u64,
        change: Change,
        #[serde(with = "time::serde::rfc3339")]
        not_after: OffsetDateTime,
    },
    /// The cluster is gone: its intermediates were revoked and its escrow retired.
    Revoked { certificates: Vec<String> },
    /// Nothing was attempted, and why (not opted in, not ACTIVE yet, …).
    Skipped { reason: String },
    /// Dry run: what a real run would do.
    Planned { plan: String },
    Failed { step: Step, error: String },
}

impl ClusterOutcome {
    pub fn label(&self) -> &'static str {
        match self {
            ClusterOutcome::Unchanged { .. } => "unchanged",
            ClusterOutcome::Delivered { .. } => "delivered",
            ClusterOutcome::Renewed { .. } => "renewed",
            ClusterOutcome::Revoked { .. } => "revoked",
            ClusterOutcome::Skipped { .. } => "skipped",
            ClusterOutcome::Planned { .. } => "planned",
            ClusterOutcome::Failed { .. } => "failed",
        }
    }

    pub fn not_after(&self) -> Option<OffsetDateTime> {
        match self {
            ClusterOutcome::Unchanged { not_after, .. }
            | ClusterOutcome::Delivered { not_after, .. }
            | ClusterOutcome::Renewed { not_after, .. } => Some(*not_after),
            _ => None,
        }
    }
}

/// What escrow says about a cluster, before its cluster is looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assessment {
    Healthy { generation: u64, not_after: OffsetDateTime, renew_at: OffsetDateTime },
    /// Needs a new generation; `not_after` of the one in service, if any.
    Due { reason: String, not_after: Option<OffsetDateTime> },
}

impl Assessment {
    pub fn not_after(&self) -> Option<OffsetDateTime> {
        match self {
            Assessment::Healthy { not_after, .. } => Some(*not_after),
            Assessment::Due { not_after, .. } => *not_after,
        }
    }
}

impl Reconcile<'_> {
    /// Brings `cluster` to a valid, delivered bundle; never panics, always one outcome.
    pub async fn converge(&self, cluster: &ClusterName, delivery: &dyn Delivery, force: bool) -> ClusterOutcome {
        // Look at the cluster first: unreachable, forbidden or refusing clusters cost no certificate.
        match delivery.observe().await {
            Ok(observed) => {
                if let Some(refusal) = delivery.refuses(&observed) {
                    return ClusterOutcome::Skipped { reason: refusal.to_string() };
                }
            }
            Err(e) => return ClusterOutcome::Failed { step: Step::Observe, error: e.to_string() },
        }
        let outcome = match self.ensure_bundle(cluster, force).await {
            Ok(o) => o,
            Err(e) => return ClusterOutcome::Failed { step: e.step(), error: e.to_string() },
        };
        // deliver reads the secret back and compares it with the bundle: that is the verify step.
        let delivered = match delivery.deliver(&outcome.bundle, &outcome.meta).await {
            Ok(d) => d,
            Err(e @ DeliveryError::ReadBack { .. }) => return ClusterOutcome::Failed { step: Step::Verify, error: e.to_string() },
            Err(e) => return ClusterOutcome::Failed { step: Step::Deliver, error: e.to_string() },
        };
        let (generation, not_after, change) = (outcome.meta.generation, outcome.meta.not_after, delivered.change);
        match outcome.action {
            Action::Reused { .. } if change == Change::Unchanged => ClusterOutcome::Unchanged { generation, not_after },
            Action::Reused { .. } => ClusterOutcome::Delivered { generation, change, not_after },
            Action::Issued { reason } | Action::Resumed { reason } => {
                ClusterOutcome::Renewed { reason: reason.to_string(), generation, change, not_after }
            }
        }
    }

    /// Judges the escrowed bundle without touching the cluster: the cheap first look of a sweep.
    pub async fn assess(&self, cluster: &ClusterName) -> Result<Assessment, ReconcileError> {
        let info = self.authority.describe().await.map_err(|source| ReconcileError::Authority { step: Step::Observe, source })?;
        let escrowed = self.escrow.load(cluster).await.map_err(|source| ReconcileError::Escrow { step: Step::Observe, source })?;
        let current = escrowed.current.as_ref();
        Ok(match self.judge(&info, current, false, OffsetDateTime::now_utc()) {
            Judgement::Keep { verified, renew_at, .. } => Assessment::Healthy {
                generation: current.map_or(0, |c| c.meta.generation),
                not_after: verified.ca_cert.not_after,
                renew_at,
            },
            Judgement::Renew(reason) => Assessment::Due { reason: reason.to_string(), not_after: current.map(|c| c.meta.not_after) },
        })
    }

    /// Dry run: observes escrow and cluster and says what [`Reconcile::converge`] would do.
    pub async fn plan(&self, cluster: &ClusterName, delivery: &dyn Delivery, force: bool) -> ClusterOutcome {
        let escrowed = match self.escrow.load(cluster).await {
            Ok(e) => e,
            Err(e) => return ClusterOutcome::Failed { step: Step::Observe, error: e.to_string() },
        };
        let info = match self.authority.describe().await {
            Ok(i) => i,
            Err(e) => return ClusterOutcome::Failed { step: Step::Observe, error: e.to_string() },
        };
        let in_cluster = match delivery.observe().await {
            Ok(o) => o,
            Err(e) => return ClusterOutcome::Failed { step: Step::Observe, error: e.to_string() },
        };
        let renew = match self.judge(&info, escrowed.current.as_ref(), force, OffsetDateTime::now_utc()) {
            Judgement::Renew(crate::renewal::RenewReason::NoBundle) => Some("no bundle escrowed".to_string()),
            Judgement::Renew(reason) => Some(reason.to_string()),
            Judgement::Keep { .. } => None,
        };
        let plan = match (renew, &in_cluster, &escrowed.current) {
            (Some(why), _, _) => format!("renew ({why}), then deliver"),
            (None, Observed::Managed { meta: Some(m), .. }, Some(c)) if m.fingerprint_sha256 == c.meta.fingerprint_sha256 => {
                "nothing: escrow and cluster hold the same healthy bundle".into()
            }
            (None, Observed::Unmanaged { .. }, _) => "deliver the escrowed bundle over an unmanaged cacerts (needs adoption)".into(),
            (None, _, _) => "deliver the escrowed bundle (cacerts missing or different)".into(),
        };
        ClusterOutcome::Planned { plan }
    }

    /// The cluster was deleted: revoke its intermediates (current, and a pending one that was
    /// already issued) and retire its escrow record.
    pub async fn decommission(&self, cluster: &ClusterName) -> ClusterOutcome {
        let escrowed = match self.escrow.load(cluster).await {
            Ok(e) => e,
            Err(crate::escrow::EscrowError::Retired { .. }) => {
                return ClusterOutcome::Skipped { reason: "already revoked and retired".into() };
            }
            Err(e) => return ClusterOutcome::Failed { step: Step::Observe, error: e.to_string() },
        };
        let mut revoke: Vec<(CertificateId, String)> = Vec::new();
        if let Some(c) = &escrowed.current {
            revoke.push((CertificateId(c.meta.certificate_id.clone()), c.meta.serial.clone()));
        }
        if let Some(id) = escrowed.pending.as_ref().and_then(|p| p.certificate_id.clone())
            && let Ok(issued) = self.authority.fetch(&id).await
            && let Ok(der) = crate::pem::certificates("pending certificate", &issued.certificate)
            && let Some(Ok(cert)) = der.into_iter().next().map(|d| crate::cert::Certificate::from_der("pending", d))
        {
            revoke.push((id, cert.serial));
        }
        let mut certificates = Vec::new();
        for (id, serial) in revoke {
            match self.authority.revoke(&id, &serial, RevocationReason::CessationOfOperation).await {
                Ok(()) => certificates.push(id.0),
                Err(e) => return ClusterOutcome::Failed { step: Step::Issue, error: format!("revoking {id}: {e}") },
            }
        }
        if escrowed.current.is_none() && escrowed.pending.is_none() {
            return ClusterOutcome::Skipped { reason: "nothing escrowed for this cluster".into() };
        }
        match self.escrow.retire(cluster).await {
            Ok(()) => ClusterOutcome::Revoked { certificates },
            Err(e) => ClusterOutcome::Failed { step: Step::Escrow, error: e.to_string() },
        }
    }
}
