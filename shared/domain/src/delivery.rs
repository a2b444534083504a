//! Delivery: putting a bundle into a cluster as `istio-system/cacerts` and making istiod use it.
//!
//! The port is [`Delivery`]; the Kubernetes adapter lives in `meshca-kube`. What is decided
//! here — whether istiod needs a restart — is pure, because it is the part most easily got
//! wrong: istiod 1.19+ hot-reloads a new intermediate only while the root bundle bytes stay
//! equal, older istiod never does, and an istiod that started before `cacerts` existed is
//! running on its own self-signed CA.

use std::fmt;

use async_trait::async_trait;

use crate::bundle::{Bundle, BundleMeta};
use crate::kind::{KindSpec, Landing};
use crate::retry::Backoff;
use crate::validate::{InvalidBundle, Profile};

pub use crate::istio::{IstioVersion, Istiod};

/// When to restart istiod after `cacerts` changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    /// Only where Istio needs it (see [`decide_restart`]).
    #[default]
    Auto,
    /// After every change.
    Always,
    /// Never: whoever runs istiod restarts it.
    Never,
}

impl std::str::FromStr for RestartPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(RestartPolicy::Auto),
            "always" => Ok(RestartPolicy::Always),
            "never" => Ok(RestartPolicy::Never),
            other => Err(format!(
                "restart policy {other:?} is not one of auto, always, never"
            )),
        }
    }
}

/// How a delivery behaves; the same for every adapter.
#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    /// Take over a `cacerts` meshca did not create.
    pub adopt: bool,
    /// When to restart istiod after `cacerts` changed.
    pub restart: RestartPolicy,
    /// How many 409s to re-read and retry before giving up.
    pub conflict_retries: u32,
    /// Retries of 429/5xx and unreachable endpoints, per call.
    pub backoff: Backoff,
    /// What a bundle must satisfy to be written.
    pub profile: Profile,
    /// Where the secret lands and its layout (default: `istio-system/cacerts`).
    pub landing: Landing,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        DeliveryOptions {
            adopt: false,
            restart: RestartPolicy::Auto,
            conflict_retries: 5,
            backoff: Backoff {
                first: std::time::Duration::from_millis(200),
                max: std::time::Duration::from_secs(3),
                deadline: std::time::Duration::from_secs(30),
            },
            profile: Profile::default(),
            landing: KindSpec::default().landing(),
        }
    }
}

/// What the write did to `cacerts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    /// There was no `cacerts`.
    Created,
    /// A new intermediate under the same root.
    Rotated,
    /// The root bundle changed.
    RootChanged,
    /// The root bundle changed, the old and new one containing each other byte for byte (a
    /// root rotation's trust step): what istiod's multi-root mode reloads without a restart.
    RootContained,
    /// A `cacerts` not made by meshca was taken over (adoption enabled).
    Adopted,
    /// The secret already held this bundle; nothing was written.
    Unchanged,
}

/// Why istiod was or was not restarted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RestartDecision {
    /// Whether it was (or would be) restarted.
    pub restart: bool,
    /// Why.
    pub reason: String,
}

/// Whether `istiod` must be restarted to serve the bundle just written.
pub fn decide_restart(policy: RestartPolicy, change: Change, istiod: &Istiod) -> RestartDecision {
    let yes = |reason: String| RestartDecision {
        restart: true,
        reason,
    };
    let no = |reason: String| RestartDecision {
        restart: false,
        reason,
    };
    if change == Change::Unchanged {
        return no("cacerts unchanged".into());
    }
    match policy {
        RestartPolicy::Never => return no("restart policy is never".into()),
        RestartPolicy::Always => return yes("restart policy is always".into()),
        RestartPolicy::Auto => {}
    }
    if !istiod.running {
        return no(format!(
            "{} has no ready replica; it will load cacerts when it starts",
            istiod.name
        ));
    }
    match change {
        Change::Created => yes("cacerts created while istiod runs on its self-signed CA".into()),
        Change::Adopted | Change::RootChanged => yes("the root bundle changed; istiod reloads only an unchanged root".into()),
        Change::RootContained => match istiod.version {
            Some(v) if istiod.multiroot && v >= IstioVersion::MULTIROOT => {
                no(format!("Istio {v} with ISTIO_MULTIROOT_MESH reloads a root bundle that contains the previous one"))
            }
            _ if istiod.multiroot => yes(format!("ISTIO_MULTIROOT_MESH is set but Istio {} may predate it (1.20); restarting", version_or_image(istiod))),
            _ => yes("the root bundle changed and ISTIO_MULTIROOT_MESH is not enabled; istiod reloads only an unchanged root".into()),
        },
        Change::Rotated => match istiod.version {
            Some(v) if v >= IstioVersion::HOT_RELOAD => no(format!("Istio {v} hot-reloads an intermediate under the same root")),
            Some(v) => yes(format!("Istio {v} is older than 1.19 and does not hot-reload cacerts")),
            None => yes(format!("Istio version unknown from image {}; restarting to be safe", istiod.image)),
        },
        Change::Unchanged => unreachable!("handled above"),
    }
}

fn version_or_image(istiod: &Istiod) -> String {
    istiod
        .version
        .map_or_else(|| format!("from image {}", istiod.image), |v| v.to_string())
}

/// The `cacerts` secret as found in the cluster.
pub enum Observed {
    /// No such secret.
    Absent,
    /// Labelled as ours; the bundle when it parses, and the annotations' record.
    Managed {
        /// What its keys hold, when they parse.
        bundle: Option<Bundle>,
        /// What its annotations record.
        meta: Option<BundleMeta>,
    },
    /// Present but not made by meshca.
    Unmanaged {
        /// What its keys hold, when they parse.
        bundle: Option<Bundle>,
    },
}

impl BundleMeta {
    /// The refusal when this record (a secret's) names another cluster or kind than `ours`:
    /// overwriting it would hand that cluster's trust to this one (a wrong kubeconfig context,
    /// say). Records written before owners were kept name none.
    pub fn owned_by_another(&self, ours: &crate::kind::EscrowKey) -> Option<DeliveryError> {
        let theirs = self.owner.as_ref().filter(|theirs| *theirs != ours)?;
        Some(DeliveryError::OtherOwner {
            theirs: theirs.clone(),
            ours: ours.clone(),
        })
    }
}

impl Observed {
    /// [`BundleMeta::owned_by_another`] of the secret found, if meshca wrote it.
    pub fn owned_by_another(&self, ours: &crate::kind::EscrowKey) -> Option<DeliveryError> {
        match self {
            Observed::Managed {
                meta: Some(meta), ..
            } => meta.owned_by_another(ours),
            _ => None,
        }
    }
}

impl fmt::Debug for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Observed::Absent => f.write_str("Absent"),
            Observed::Managed { meta, .. } => f
                .debug_struct("Managed")
                .field("meta", meta)
                .finish_non_exhaustive(),
            Observed::Unmanaged { .. } => f.write_str("Unmanaged"),
        }
    }
}

/// The result of one delivery.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Delivered {
    /// Created, replaced or left as it was.
    pub change: Change,
    /// Fingerprint of `ca-cert.pem` as read back from the cluster.
    pub fingerprint_sha256: String,
    /// Per istiod Deployment: name and decision.
    pub istiod: Vec<(String, RestartDecision)>,
    /// 409 answers that were re-read and retried.
    pub conflicts: u32,
}

impl Delivered {
    /// The istiod Deployments this delivery restarted, as `name: reason`.
    pub fn restarted(&self) -> Vec<String> {
        self.istiod
            .iter()
            .filter(|(_, d)| d.restart)
            .map(|(name, d)| format!("{name}: {}", d.reason))
            .collect()
    }
}

/// Why a cluster's secret could not be read or written, by what an operator does about it.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// No answer from the API server (after retries).
    #[error("cannot reach the cluster API at {endpoint}: {detail}")]
    Unreachable {
        /// The API server.
        endpoint: String,
        /// What failed.
        detail: String,
    },
    /// 401: the credentials were refused.
    #[error("the cluster refused our credentials (401): {0}")]
    Unauthorized(String),
    /// 403: RBAC or the access entry does not allow the call.
    #[error("forbidden (403): {0}")]
    Forbidden(String),
    #[error(
        "namespace {0} does not exist and meshca may not create it (an access entry scoped to a namespace cannot); create it first: kubectl create namespace {0}"
    )]
    /// The landing namespace does not exist and may not be created.
    NamespaceMissing(String),
    #[error(
        "{namespace}/{name} exists and was not created by meshca (no label app.kubernetes.io/managed-by=meshca); refusing to overwrite it; to take it over, enable adoption (meshca issue --adopt; MESHCA_ADOPT=true for the functions)"
    )]
    /// The secret exists and is not meshca's; adoption was not asked for.
    Unmanaged {
        /// The namespace.
        namespace: String,
        /// The secret.
        name: String,
    },
    #[error(
        "{namespace}/{name} holds generation {theirs}, newer than the generation {ours} being delivered; not going back"
    )]
    /// The cluster holds a newer generation than the one being delivered.
    NewerInCluster {
        /// The namespace.
        namespace: String,
        /// The secret.
        name: String,
        /// The generation in the cluster.
        theirs: u64,
        /// The generation being delivered.
        ours: u64,
    },
    #[error(
        "the secret belongs to {theirs} (its meshca.io/cluster and meshca.io/kind say so); refusing to overwrite it with the bundle of {ours}: is this the right cluster (--context, --eks-cluster)?"
    )]
    /// The secret says it belongs to another cluster or kind.
    OtherOwner {
        /// Whose the secret says it is.
        theirs: crate::kind::EscrowKey,
        /// Whose bundle was being delivered.
        ours: crate::kind::EscrowKey,
    },
    /// No way to the cluster at all (no kubeconfig context, no such EKS cluster).
    #[error("no way to the cluster: {0}")]
    NoWay(String),
    /// The bundle fails the rules it is judged by: nothing was written.
    #[error("refusing to deliver an invalid bundle: {0}")]
    Invalid(#[from] InvalidBundle),
    #[error(
        "gave up after {attempts} conflicting writes to {namespace}/{name} (someone else keeps changing it)"
    )]
    /// Every write met a conflicting one (409).
    Conflicts {
        /// The namespace.
        namespace: String,
        /// The secret.
        name: String,
        /// How many writes were tried.
        attempts: u32,
    },
    /// The secret read back is not what was written.
    #[error("read-back of {namespace}/{name} does not match what was written: {detail}")]
    ReadBack {
        /// The namespace.
        namespace: String,
        /// The secret.
        name: String,
        /// What differs.
        detail: String,
    },
    /// The secret carries CRLs, none of them its intermediate's own: istiod (1.27+) would
    /// discard the whole update, key and certificate too, and stay on what it had.
    #[error(
        "{namespace}/{name} carries ca-crl.pem without a CRL of the intermediate {what}: istiod (1.27+) would discard the whole update and keep its old CA; the fleet's CRLs must carry that intermediate's own CRL first (the functions' sweep delivers them; by hand: meshca crl publish): {detail}"
    )]
    CrlsLackOwn {
        /// The namespace.
        namespace: String,
        /// The secret.
        name: String,
        /// Which intermediate: the bundle being delivered, or the one the secret holds.
        what: String,
        /// What the check found.
        detail: String,
    },
    /// CRLs were to be written where no reader takes them (the `kubernetes.io/tls` layout) or
    /// into a secret holding no intermediate to check them against.
    #[error("{namespace}/{name} cannot carry the fleet's CRLs: {why}")]
    NoCrlsHere {
        /// The namespace.
        namespace: String,
        /// The secret.
        name: String,
        /// Why not.
        why: String,
    },
    /// Any other answer of the API server.
    #[error("Kubernetes API {code} {reason} on {what}: {message}")]
    Api {
        /// The HTTP status.
        code: u16,
        /// Kubernetes' reason (`Invalid`, `AlreadyExists`, …).
        reason: String,
        /// The call.
        what: String,
        /// Kubernetes' message.
        message: String,
    },
}

/// Where bundles go: one cluster's `cacerts`.
#[async_trait]
pub trait Delivery: Send + Sync {
    /// Reads the secret as it is now.
    async fn observe(&self) -> Result<Observed, DeliveryError>;
    /// Writes `bundle` (validated first) unless it is already there, reads it back, and restarts
    /// istiod where the policy says so.
    async fn deliver(&self, bundle: &Bundle, meta: &BundleMeta)
    -> Result<Delivered, DeliveryError>;
    /// Whether `deliver` would refuse what `observe` found. Asked before anything is issued,
    /// so a cluster meshca may not write to costs no certificate.
    fn refuses(&self, observed: &Observed) -> Option<DeliveryError>;
    /// The `ca-crl.pem` the secret carries, if any; `None` too where an adapter cannot tell.
    async fn observe_crls(&self) -> Result<Option<String>, DeliveryError> {
        Ok(None)
    }
    /// Who in the cluster reads its CRLs, as far as the adapter may look; `None` where it
    /// cannot tell (files).
    async fn crl_readers(&self) -> Result<Option<crate::enforcement::CrlReaders>, DeliveryError> {
        Ok(None)
    }
    /// Writes the fleet's CRLs as `ca-crl.pem` into the cluster's `cacerts` (meshca's, istio
    /// layout), leaving the bundle as it is, and reads them back. Refused when they hold no CRL
    /// of the intermediate the secret carries (istiod's rule). Adapters that cannot carry CRLs
    /// say so.
    async fn deliver_crls(&self, crls: &str) -> Result<CrlsDelivered, DeliveryError> {
        let _ = crls;
        Err(DeliveryError::NoWay(
            "this delivery cannot carry the fleet's CRLs".into(),
        ))
    }
}

/// What writing the fleet's CRLs into one cluster did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlsDelivered {
    /// What became of `ca-crl.pem`.
    pub change: CrlsChange,
    /// The generation of the bundle the secret holds, as its annotations say: a record newer
    /// than this waits to be put in force.
    pub generation: Option<u64>,
    /// Who reads the CRLs there, as far as meshca may look ([`crate::enforcement::judge`]);
    /// `None` when nothing was written for lack of a bundle.
    pub readers: Option<crate::enforcement::CrlReaders>,
}

/// What became of a cluster's `ca-crl.pem`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CrlsChange {
    /// It was written (created or replaced).
    Written,
    /// It already held exactly these CRLs.
    Unchanged,
    /// No `cacerts` yet: the cluster's first bundle comes first, its CRLs right after.
    NoBundleYet,
}

/// A cluster that could not be reached: every call says why. Stands in for its delivery so one
/// unreachable cluster is a row of a fleet's report, not the end of the command.
pub struct NoWay(pub String);

#[async_trait]
impl Delivery for NoWay {
    async fn observe(&self) -> Result<Observed, DeliveryError> {
        Err(DeliveryError::NoWay(self.0.clone()))
    }
    async fn deliver(&self, _: &Bundle, _: &BundleMeta) -> Result<Delivered, DeliveryError> {
        Err(DeliveryError::NoWay(self.0.clone()))
    }
    fn refuses(&self, _: &Observed) -> Option<DeliveryError> {
        None
    }
}

/// Whether a delivered secret holds a summarised record is a question about the secret: it is
/// answered here, so the escrow port does not depend on delivery's vocabulary.
impl crate::escrow::Summary {
    /// Whether a cluster's secret, as observed, holds this summary's bundle: ours, valid under
    /// `profile` (so its key is the certificate's), with exactly the summary's public files.
    /// Anything else takes the full look, which repairs it.
    pub fn delivered_in(
        &self,
        observed: &Observed,
        profile: &crate::Profile,
        now: time::OffsetDateTime,
    ) -> bool {
        let Observed::Managed {
            bundle: Some(bundle),
            ..
        } = observed
        else {
            return false;
        };
        crate::escrow::public_files_sha256(bundle) == self.files_sha256
            && crate::validate::validate(bundle, profile, now).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn istiod(image: &str, running: bool) -> Istiod {
        Istiod {
            name: "istiod".into(),
            image: image.into(),
            version: IstioVersion::from_image(image),
            running,
            multiroot: false,
        }
    }

    #[test]
    fn restart_decisions() {
        let auto = RestartPolicy::Auto;
        let new = istiod("istio/pilot:1.24.2", true);
        let old = istiod("istio/pilot:1.18.3", true);
        let unknown = istiod("istio/pilot@sha256:00", true);
        assert!(
            decide_restart(auto, Change::Created, &new).restart,
            "first cacerts while istiod runs"
        );
        assert!(
            !decide_restart(auto, Change::Created, &istiod("istio/pilot:1.24.2", false)).restart
        );
        assert!(
            !decide_restart(auto, Change::Rotated, &new).restart,
            "1.24 hot-reloads under the same root"
        );
        assert!(
            decide_restart(auto, Change::Rotated, &old).restart,
            "1.18 does not hot-reload"
        );
        assert!(decide_restart(auto, Change::Rotated, &unknown).restart);
        assert!(
            decide_restart(auto, Change::RootChanged, &new).restart,
            "a changed root always restarts"
        );
        assert!(decide_restart(auto, Change::Adopted, &new).restart);
        assert!(!decide_restart(auto, Change::Unchanged, &old).restart);
        assert!(!decide_restart(RestartPolicy::Never, Change::RootChanged, &new).restart);
        assert!(decide_restart(RestartPolicy::Always, Change::Rotated, &new).restart);
        assert!(!decide_restart(RestartPolicy::Always, Change::Unchanged, &new).restart);
        assert_eq!("never".parse::<RestartPolicy>(), Ok(RestartPolicy::Never));
        assert!("sometimes".parse::<RestartPolicy>().is_err());
    }

    #[test]
    fn a_contained_root_bundle_restarts_only_without_multiroot() {
        let auto = RestartPolicy::Auto;
        let multi = |image| Istiod {
            multiroot: true,
            ..istiod(image, true)
        };
        assert!(!decide_restart(auto, Change::RootContained, &multi("istio/pilot:1.22.1")).restart);
        assert!(
            decide_restart(auto, Change::RootContained, &multi("istio/pilot:1.19.3")).restart,
            "1.19 has no multi-root mode"
        );
        assert!(
            decide_restart(auto, Change::RootContained, &multi("istio/pilot@sha256:00")).restart
        );
        assert!(
            decide_restart(
                auto,
                Change::RootContained,
                &istiod("istio/pilot:1.24.2", true)
            )
            .restart,
            "not enabled"
        );
        assert!(
            decide_restart(auto, Change::RootChanged, &multi("istio/pilot:1.24.2")).restart,
            "an unrelated root always restarts"
        );
    }
}
