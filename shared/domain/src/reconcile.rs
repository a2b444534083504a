//! The reconciler: one cluster's way to a valid, delivered bundle, and back out again.
//!
//! [`Reconciler::apply`] runs observe → decide → issue → escrow → deliver → verify;
//! [`Reconciler::cleanup`] revokes and retires what a deleted cluster had. Both return one
//! [`Outcome`], which also says when to look at the cluster again. Every step can be repeated:
//! a pending record is claimed before the authority is called, the authority call carries an
//! idempotency token derived from the generation, a rerun resumes whatever generation is
//! pending, and delivery is conditional — so a crash or a concurrent run anywhere converges on
//! one valid bundle in the cluster, with one certificate issued.

use serde::Serialize;
use time::{Duration, OffsetDateTime};

use crate::authority::{
    Authority, AuthorityError, AuthorityInfo, CertificateId, IssueRequest, RevocationReason,
    Validity,
};
use crate::bundle::{Bundle, BundleMeta};
use crate::cert::{Certificate, sha256_hex};
use crate::cluster::ClusterName;
use crate::csr::{CsrError, build_csr_for};
use crate::delivery::{Change, Delivery, DeliveryError, Observed};
use crate::escrow::{
    Claim, Current, Escrow, EscrowError, EscrowKey, Escrowed, GenerationToken, Pending, SCHEMA,
};
use crate::key::{KeyAlgorithm, KeyError, PrivateKey};
use crate::renewal::{RenewReason, Verdict};
use crate::terms::{Terms, TermsChange};
use crate::timestamp::rfc3339;
use crate::validate::{InvalidBundle, Profile, Verified, validate};

pub use crate::settings::{Settings, Standing};

/// The step of the pipeline a failure happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Looking at the cluster, the authority or escrow.
    Observe,
    /// Judging what to do.
    Decide,
    /// Asking the authority for a certificate.
    Issue,
    /// Writing escrow.
    Escrow,
    /// Writing the cluster's secret.
    Deliver,
    /// Reading it back.
    Verify,
    /// Revoking a deleted cluster's certificates.
    Revoke,
    /// Handing a cluster on to another run (a sweep's fan-out).
    FanOut,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Step::Observe => "observe",
            Step::Decide => "decide",
            Step::Issue => "issue",
            Step::Escrow => "escrow",
            Step::Deliver => "deliver",
            Step::Verify => "verify",
            Step::Revoke => "revoke",
            Step::FanOut => "fan-out",
        })
    }
}

/// What one reconcile of one cluster did: the one result type reports, logs and metrics use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    /// Escrow and cluster already held a healthy bundle.
    Unchanged {
        /// The generation in service.
        generation: u64,
        /// When it expires.
        #[serde(with = "time::serde::rfc3339")]
        not_after: OffsetDateTime,
        /// When it becomes due.
        #[serde(with = "time::serde::rfc3339")]
        renew_at: OffsetDateTime,
    },
    /// The escrowed intermediate was (re)written into the cluster: the secret was missing or
    /// drifted, or a root rotation gave the same intermediate a new `root-cert.pem`.
    Delivered {
        /// The generation delivered.
        generation: u64,
        /// What happened to the secret.
        change: Change,
        /// istiod Deployments restarted, each with the reason.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        restarted: Vec<String>,
        /// When it expires.
        #[serde(with = "time::serde::rfc3339")]
        not_after: OffsetDateTime,
        /// When it becomes due.
        #[serde(with = "time::serde::rfc3339")]
        renew_at: OffsetDateTime,
    },
    /// A new generation was issued (or a pending one finished) and delivered.
    Renewed {
        /// Why it was renewed.
        #[serde(serialize_with = "display")]
        reason: RenewReason,
        /// The new generation.
        generation: u64,
        /// What happened to the secret.
        change: Change,
        /// The terms this generation changed (a new key algorithm or validity configured).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        changed: Vec<String>,
        /// istiod Deployments restarted, each with the reason.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        restarted: Vec<String>,
        /// When it expires.
        #[serde(with = "time::serde::rfc3339")]
        not_after: OffsetDateTime,
        /// When it becomes due.
        #[serde(with = "time::serde::rfc3339")]
        renew_at: OffsetDateTime,
    },
    /// The cluster is gone: its intermediates were revoked and its escrow retired.
    Revoked {
        /// The certificates revoked, by the authority's ids.
        certificates: Vec<String>,
    },
    /// CRL mode: a new generation is escrowed, and the cluster's `ca-crl.pem` lacks its own
    /// CRL, so istiod would discard it. It waits, in force nowhere, until every cluster holds
    /// the fleet's CRLs with it (the sweep delivers them, then this generation).
    AwaitingCrls {
        /// The generation waiting.
        generation: u64,
        /// What the delivery said.
        reason: String,
    },
    /// Nothing was attempted, and why (not opted in, not ACTIVE yet, …).
    Skipped {
        /// Why.
        reason: String,
    },
    /// Dry run: what a real run would do.
    Planned {
        /// What it would do.
        plan: String,
    },
    /// The reconcile stopped at `step`; the next run starts over.
    Failed {
        /// Where it stopped.
        step: Step,
        /// Why.
        error: String,
    },
}

fn display<S: serde::Serializer>(v: &impl std::fmt::Display, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// Why a cleanup skipped a cluster: escrow holds nothing of this kind for it.
pub const NOTHING_ESCROWED: &str = "nothing escrowed for this cluster";

impl Outcome {
    /// A cleanup that found nothing of this kind to revoke: no trace of the kind was there.
    pub fn found_nothing(&self) -> bool {
        matches!(self, Outcome::Skipped { reason } if reason == NOTHING_ESCROWED)
    }

    /// The outcome's name in reports and metrics (`renewed`, `failed`, …).
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Unchanged { .. } => "unchanged",
            Outcome::Delivered { .. } => "delivered",
            Outcome::Renewed { .. } => "renewed",
            Outcome::Revoked { .. } => "revoked",
            Outcome::AwaitingCrls { .. } => "awaiting-crls",
            Outcome::Skipped { .. } => "skipped",
            Outcome::Planned { .. } => "planned",
            Outcome::Failed { .. } => "failed",
        }
    }

    /// The end of the bundle now in the cluster, when this run put or found one there.
    pub fn not_after(&self) -> Option<OffsetDateTime> {
        match self {
            Outcome::Unchanged { not_after, .. }
            | Outcome::Delivered { not_after, .. }
            | Outcome::Renewed { not_after, .. } => Some(*not_after),
            _ => None,
        }
    }

    /// When this cluster next needs a look: its renewal time. `None` when only the next
    /// event or sweep can tell (skipped, failed, revoked, planned).
    pub fn renew_at(&self) -> Option<OffsetDateTime> {
        match self {
            Outcome::Unchanged { renew_at, .. }
            | Outcome::Delivered { renew_at, .. }
            | Outcome::Renewed { renew_at, .. } => Some(*renew_at),
            _ => None,
        }
    }

    fn failed(step: Step, error: impl std::fmt::Display) -> Self {
        Outcome::Failed {
            step,
            error: error.to_string(),
        }
    }
}

/// Why a reconcile stopped, with the step it stopped at.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The authority failed.
    #[error("{step}: {source}")]
    Authority {
        /// Where.
        step: Step,
        /// What the authority said.
        source: AuthorityError,
    },
    /// Escrow failed.
    #[error("{step}: {source}")]
    Escrow {
        /// Where.
        step: Step,
        /// What escrow said.
        source: EscrowError,
    },
    /// The new key could not be generated.
    #[error("issue: {0}")]
    Key(#[from] KeyError),
    /// The CSR could not be built.
    #[error("issue: {0}")]
    Csr(#[from] CsrError),
    /// The validity asked for ends after the issuing CA does.
    #[error("issue: requested validity ends {}, after the issuing CA itself ({}); shorten it", rfc3339(*wanted), rfc3339(*ca_end))]
    OutlivesAuthority {
        /// The end asked for.
        wanted: OffsetDateTime,
        /// The CA's own end.
        ca_end: OffsetDateTime,
    },
    /// A validity of zero days.
    #[error("issue: validity must be at least one day")]
    ZeroValidity,
    /// The authority in force shares no root with the cluster's record.
    #[error("{0}")]
    ForeignRoot(Box<RootMismatch>),
    #[error(
        "{key} was revoked ({reason}) at {}: held, nothing is issued or delivered for it until `meshca revoke --cluster {} --lift`",
        rfc3339(*at),
        key.cluster
    )]
    /// The cluster is held by a revocation.
    Held {
        /// The cluster and kind.
        key: EscrowKey,
        /// The revocation's reason.
        reason: String,
        /// When it was revoked.
        at: OffsetDateTime,
    },
    /// A revocation of a cluster meshca issued nothing.
    #[error("{key}: nothing is escrowed for it, so meshca issued it nothing it can revoke")]
    NothingToRevoke {
        /// The cluster and kind.
        key: EscrowKey,
    },
    /// A lift of a cluster that is not held.
    #[error("{key} is not held by a revocation: there is nothing to lift")]
    NotHeld {
        /// The cluster and kind.
        key: EscrowKey,
    },
    /// The kind's mesh needs a CA key of another algorithm than the authority's.
    #[error("{0}")]
    ParentKey(Box<ParentKey>),
    #[error(
        "escrow: the certificate {certificate_id} fails validation and was not escrowed: {source}; {disposal}"
    )]
    /// The authority issued a certificate that breaks a rule; it was never escrowed.
    InvalidIssued {
        /// The authority's id for it.
        certificate_id: String,
        /// The rule it breaks.
        source: InvalidBundle,
        /// What was done with it (revoked where the authority allows).
        disposal: Box<Disposal>,
    },
    #[error(
        "escrow: the certificate {certificate_id} ends {}, not {} as requested (the authority changed its validity); it was not escrowed; {disposal}",
        rfc3339(*got),
        rfc3339(*wanted)
    )]
    /// The authority changed the validity asked for; the certificate was never escrowed.
    ValidityNotHonoured {
        /// The authority's id for it.
        certificate_id: String,
        /// The end asked for.
        wanted: OffsetDateTime,
        /// The end it has.
        got: OffsetDateTime,
        /// What was done with it.
        disposal: Box<Disposal>,
    },
}

/// What became of a certificate meshca refused after it was issued: it is revoked where the
/// authority allows, and its generation is closed, so the name is never stuck on it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disposal {
    /// The authority's answer when the revocation failed; `None`: revoked.
    pub revoke_failed: Option<String>,
    /// The escrow's answer when the refusal could not be recorded; `None`: recorded.
    pub record_failed: Option<String>,
}

impl std::fmt::Display for Disposal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.revoke_failed {
            None => f.write_str("it was revoked")?,
            Some(e) => write!(
                f,
                "revoking it failed ({e}): revoke it at the authority by hand"
            )?,
        }
        match &self.record_failed {
            None => f.write_str(", and the next run starts a fresh generation"),
            Some(e) => write!(
                f,
                ", but recording the refusal failed ({e}): the next run retries it"
            ),
        }
    }
}

/// A kind whose mesh checks its issuer's signature algorithm, asked of a CA with another key.
#[derive(Debug, thiserror::Error)]
#[error(
    "decide: {kind} must be signed by an {want} CA (its mesh accepts no other signature algorithm), and the key of {authority} is {have}; nothing was issued. Issue {kind} from an {want} CA (on files: a root of its own, --ca-dir DIR --root-key-algorithm {want})"
)]
pub struct ParentKey {
    /// The kind.
    pub kind: &'static str,
    /// The key algorithm its mesh needs of the CA.
    pub want: KeyAlgorithm,
    /// The authority.
    pub authority: String,
    /// The key it has.
    pub have: String,
}

/// A cluster's escrowed bundle and the authority in force share no root.
#[derive(Debug, thiserror::Error)]
#[error(
    "decide: {key} was issued by {recorded} (roots {recorded_roots}); the authority in force here, {in_force} (roots {in_force_roots}), shares no root with it, and moving {key} there would cut it off from its mesh. Issue from the recorded authority (the same --ca-dir, --ca-arn or --vault-addr), move the whole fleet with `meshca rotate-root start --to …`, or, for a lab only, pass --new-root"
)]
pub struct RootMismatch {
    /// The cluster and kind.
    pub key: EscrowKey,
    /// The authority that issued its bundle.
    pub recorded: String,
    /// That bundle's roots, shortened.
    pub recorded_roots: String,
    /// The authority configured here.
    pub in_force: String,
    /// Its roots, shortened.
    pub in_force_roots: String,
}

impl ReconcileError {
    /// The step the failure happened in, for reports.
    pub fn step(&self) -> Step {
        match self {
            ReconcileError::Authority { step, .. } | ReconcileError::Escrow { step, .. } => *step,
            ReconcileError::ForeignRoot(_)
            | ReconcileError::ParentKey(_)
            | ReconcileError::Held { .. }
            | ReconcileError::NotHeld { .. } => Step::Decide,
            ReconcileError::NothingToRevoke { .. } => Step::Revoke,
            ReconcileError::InvalidIssued { .. } | ReconcileError::ValidityNotHonoured { .. } => {
                Step::Escrow
            }
            _ => Step::Issue,
        }
    }

    fn observe_authority(source: AuthorityError) -> Self {
        ReconcileError::Authority {
            step: Step::Observe,
            source,
        }
    }

    fn observe_escrow(source: EscrowError) -> Self {
        ReconcileError::Escrow {
            step: Step::Observe,
            source,
        }
    }
}

/// Where the bundle [`Reconciler::ensure_bundle`] returns came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Obtained {
    /// The escrowed bundle is valid and not due.
    Escrowed,
    /// A new generation was issued.
    Issued(RenewReason),
    /// A generation left pending by an earlier (crashed or concurrent) run was completed.
    Resumed(RenewReason),
    /// The escrowed intermediate was kept under a new root bundle (no certificate issued).
    Rerooted,
}

/// A valid bundle, escrowed.
#[derive(Debug)]
pub struct Secured {
    /// The cluster.
    pub cluster: ClusterName,
    /// The four files.
    pub bundle: Bundle,
    /// What escrow records about them.
    pub meta: BundleMeta,
    /// The certificates, parsed and judged.
    pub verified: Verified,
    /// When it becomes due.
    pub renew_at: OffsetDateTime,
    /// Where it came from: escrow, a new issuance or a resumed one.
    pub obtained: Obtained,
    /// The terms this generation changed, `what: old → new` (empty: as recorded).
    pub changed: Vec<String>,
}

/// Why an issued certificate is not taken into service.
enum Refusal {
    Invalid(InvalidBundle),
    Validity {
        wanted: OffsetDateTime,
        got: OffsetDateTime,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Invalid(e) => write!(f, "fails validation: {e}"),
            Refusal::Validity { wanted, got } => write!(
                f,
                "ends {}, not {} as requested",
                rfc3339(*got),
                rfc3339(*wanted)
            ),
        }
    }
}

/// A record's terms and their history, before this run.
struct Recorded {
    terms: Option<Terms>,
    history: Vec<TermsChange>,
    ledger: crate::ledger::Ledger,
}

impl Recorded {
    fn of(escrowed: &Escrowed) -> Self {
        let current = escrowed.current.as_ref();
        Recorded {
            terms: current.and_then(|c| c.terms.clone()),
            history: current.map(|c| c.history.clone()).unwrap_or_default(),
            ledger: current.map(Current::ledger_handed_on).unwrap_or_default(),
        }
    }

    /// The changes from the recorded terms to `terms`, and the history with them added.
    fn after(
        &self,
        terms: &Terms,
        generation: u64,
        now: OffsetDateTime,
    ) -> (Vec<String>, Vec<TermsChange>) {
        let changed = self
            .terms
            .as_ref()
            .map(|t| terms.changes_from(t))
            .unwrap_or_default();
        let mut history = self.history.clone();
        if !changed.is_empty() {
            history.push(TermsChange {
                at: now,
                generation,
                changes: changed.clone(),
            });
        }
        (changed, history)
    }
}

/// What decide concluded, before anything is written.
enum Decision {
    Keep(Box<Current>, Box<Verified>, OffsetDateTime),
    Resume(Box<Pending>, RenewReason),
    /// Same intermediate, new `root-cert.pem`: a rotation's trust step costs no certificate.
    Reroot(Box<Current>, Box<Verified>),
    Renew {
        generation: u64,
        reason: RenewReason,
    },
}

/// One cluster's reconcile, over the ports of this deployment.
pub struct Reconciler<'a> {
    /// Who signs.
    pub authority: &'a dyn Authority,
    /// Where bundles are kept.
    pub escrow: &'a dyn Escrow,
    /// What a new generation is issued with.
    pub settings: &'a Settings,
}

/// Refuses the move of `current` to `info`'s authority when the two root bundles have no
/// certificate in common (a rotation's bundles always overlap: A, A+B, B).
fn foreign_root(current: &Current, info: &AuthorityInfo) -> Result<(), ReconcileError> {
    let roots = |pem: &str| crate::pem::certificates("root-cert.pem", pem).unwrap_or_default();
    let (theirs, ours) = (roots(&current.bundle.root_cert), roots(&info.root_bundle));
    if theirs.is_empty() || ours.is_empty() || theirs.iter().any(|r| ours.contains(r)) {
        return Ok(());
    }
    let short = |ders: &[Vec<u8>]| {
        ders.iter()
            .map(|d| sha256_hex(d)[..16].to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(ReconcileError::ForeignRoot(Box::new(RootMismatch {
        key: current.key(),
        recorded: current.authority_id.clone(),
        recorded_roots: short(&theirs),
        in_force: info.id.clone(),
        in_force_roots: short(&ours),
    })))
}

impl Reconciler<'_> {
    /// Create, renew or redeliver: brings `cluster` to a valid, delivered bundle. Never
    /// panics; always one outcome.
    pub async fn apply(
        &self,
        cluster: &ClusterName,
        delivery: &dyn Delivery,
        force: bool,
    ) -> Outcome {
        // Look at the cluster first: unreachable, forbidden or refusing clusters cost no certificate.
        match delivery.observe().await {
            Ok(observed) => {
                if let Some(refusal) = delivery.refuses(&observed) {
                    return Outcome::Skipped {
                        reason: refusal.to_string(),
                    };
                }
                if let Some(other) = observed.owned_by_another(&self.key(cluster)) {
                    return Outcome::failed(Step::Deliver, other);
                }
            }
            Err(e) => return Outcome::failed(Step::Observe, e),
        }
        let secured = match self.ensure_bundle(cluster, force).await {
            Ok(s) => s,
            // A held cluster is where its owner put it: reported, not a failure to alarm on.
            Err(e @ ReconcileError::Held { .. }) => {
                return Outcome::Skipped {
                    reason: e.to_string(),
                };
            }
            Err(e) => return Outcome::failed(e.step(), e),
        };
        // deliver reads the secret back and compares it with the bundle: that is the verify step.
        let (change, restarted) = match delivery.deliver(&secured.bundle, &secured.meta).await {
            Ok(d) => (d.change, d.restarted()),
            Err(e @ DeliveryError::ReadBack { .. }) => return Outcome::failed(Step::Verify, e),
            Err(e @ DeliveryError::CrlsLackOwn { .. }) => {
                return Outcome::AwaitingCrls {
                    generation: secured.meta.generation,
                    reason: e.to_string(),
                };
            }
            Err(e) => return Outcome::failed(Step::Deliver, e),
        };
        let (generation, not_after, renew_at) = (
            secured.meta.generation,
            secured.meta.not_after,
            secured.renew_at,
        );
        match secured.obtained {
            Obtained::Escrowed if change == Change::Unchanged => Outcome::Unchanged {
                generation,
                not_after,
                renew_at,
            },
            Obtained::Escrowed | Obtained::Rerooted => Outcome::Delivered {
                generation,
                change,
                restarted,
                not_after,
                renew_at,
            },
            Obtained::Issued(reason) | Obtained::Resumed(reason) => Outcome::Renewed {
                reason,
                generation,
                change,
                changed: secured.changed,
                restarted,
                not_after,
                renew_at,
            },
        }
    }

    /// Dry run of [`Reconciler::apply`]: observes escrow, CA and cluster; writes nothing.
    pub async fn plan(
        &self,
        cluster: &ClusterName,
        delivery: &dyn Delivery,
        force: bool,
    ) -> Outcome {
        let escrowed = match self.escrow.load(&self.key(cluster)).await {
            Ok(e) => e,
            Err(e) => return Outcome::failed(Step::Observe, e),
        };
        let info = match self.authority.describe().await {
            Ok(i) => i,
            Err(e) => return Outcome::failed(Step::Observe, e),
        };
        let in_cluster = match delivery.observe().await {
            Ok(o) => o,
            Err(e) => return Outcome::failed(Step::Observe, e),
        };
        let renew = match self
            .judge(
                &info,
                escrowed.current.as_ref(),
                force,
                OffsetDateTime::now_utc(),
            )
            .0
        {
            Verdict::Renew {
                reason: RenewReason::NoBundle,
                ..
            } => Some("no bundle escrowed".to_string()),
            Verdict::Renew { reason, .. } => Some(reason.to_string()),
            Verdict::Keep { .. } => None,
        };
        let plan = match (renew, &in_cluster, &escrowed.current) {
            (Some(why), _, _) => format!("renew ({why}), then deliver"),
            (None, Observed::Managed { meta: Some(m), .. }, Some(c))
                if m.fingerprint_sha256 == c.meta.fingerprint_sha256 =>
            {
                "nothing: escrow and cluster hold the same healthy bundle".into()
            }
            (None, Observed::Unmanaged { .. }, _) => {
                "deliver the escrowed bundle over an unmanaged cacerts (needs adoption)".into()
            }
            (None, _, _) => "deliver the escrowed bundle (cacerts missing or different)".into(),
        };
        Outcome::Planned { plan }
    }

    /// The cluster was deleted: revoke its intermediates (current, and a pending one that was
    /// already issued) and retire its escrow record.
    pub async fn cleanup(&self, cluster: &ClusterName) -> Outcome {
        let key = self.key(cluster);
        let escrowed = match self.escrow.load(&key).await {
            Ok(e) => e,
            Err(EscrowError::Retired { .. }) => {
                return Outcome::Skipped {
                    reason: "already revoked and retired".into(),
                };
            }
            Err(e) => return Outcome::failed(Step::Observe, e),
        };
        // A record revoked already (held, or a cleanup that stopped before retiring) is not
        // revoked twice.
        let unrevoked = escrowed
            .current
            .as_ref()
            .is_none_or(|c| c.revoked.is_none());
        let now = OffsetDateTime::now_utc();
        let revoke = self.issued_to(&escrowed, unrevoked, now).await;
        let (mut certificates, mut serials) = (Vec::new(), Vec::new());
        for (id, serial) in revoke {
            match self
                .authority
                .revoke(&id, &serial, RevocationReason::CessationOfOperation)
                .await
            {
                Ok(()) => {
                    certificates.push(id.0);
                    serials.push(serial);
                }
                Err(e) => return Outcome::failed(Step::Revoke, format!("revoking {id}: {e}")),
            }
        }
        if escrowed.current.is_none() && escrowed.pending.is_none() {
            return Outcome::Skipped {
                reason: NOTHING_ESCROWED.into(),
            };
        }
        if let Some(current) = escrowed.current.filter(|c| c.revoked.is_none()) {
            let marked = Current {
                revoked: Some(crate::escrow::Revoked {
                    at: now,
                    reason: RevocationReason::CessationOfOperation.as_pca().into(),
                    by: Some("the cluster's deletion".into()),
                    held: false,
                    authority_pending: false,
                }),
                ..current.with_superseded_revoked(&serials)
            };
            if let Err(e) = self.escrow.mark_revoked(&marked).await {
                return Outcome::failed(Step::Escrow, e);
            }
        }
        match self.escrow.retire(&key).await {
            Ok(()) => Outcome::Revoked { certificates },
            Err(e) => Outcome::failed(Step::Escrow, e),
        }
    }

    /// The serial of an issued certificate, as the authority hands it out.
    pub(crate) async fn serial_of(&self, id: &CertificateId) -> Option<String> {
        let issued = self.authority.fetch(id).await.ok()?;
        let der = crate::pem::certificates("pending certificate", &issued.certificate)
            .ok()?
            .into_iter()
            .next()?;
        Certificate::from_der("pending", der).ok().map(|c| c.serial)
    }

    /// The escrow records of this kind of `cluster`.
    pub(crate) fn key(&self, cluster: &ClusterName) -> EscrowKey {
        self.settings.kind.escrow_key(cluster)
    }

    /// The generation's token: the key alone at home, the key within its scope elsewhere.
    fn token(&self, authority_id: &str, key: &EscrowKey, generation: u64) -> GenerationToken {
        match &self.settings.scope {
            None => GenerationToken::derive(authority_id, key, generation),
            Some(scope) => {
                GenerationToken::derive(authority_id, &format!("{scope}/{key}"), generation)
            }
        }
    }

    /// Judges the escrowed bundle without touching the cluster: the cheap first look of a sweep.
    pub async fn assess(&self, cluster: &ClusterName) -> Result<Verdict, ReconcileError> {
        let info = self
            .authority
            .describe()
            .await
            .map_err(ReconcileError::observe_authority)?;
        let escrowed = self
            .escrow
            .load(&self.key(cluster))
            .await
            .map_err(ReconcileError::observe_escrow)?;
        Ok(self
            .judge(
                &info,
                escrowed.current.as_ref(),
                false,
                OffsetDateTime::now_utc(),
            )
            .0)
    }

    /// Returns a valid escrowed bundle for `cluster`, issuing one when none is usable.
    ///
    /// A conflict in escrow means a rival run moved the cluster on while we worked; we look
    /// again (a bounded number of times) and adopt what it did.
    pub async fn ensure_bundle(
        &self,
        cluster: &ClusterName,
        force: bool,
    ) -> Result<Secured, ReconcileError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.ensure_once(cluster, force && attempt == 1).await {
                Err(ReconcileError::Escrow {
                    source: EscrowError::Conflict { .. },
                    ..
                }) if attempt < 3 => continue,
                other => return other,
            }
        }
    }

    async fn ensure_once(
        &self,
        cluster: &ClusterName,
        force: bool,
    ) -> Result<Secured, ReconcileError> {
        let now = OffsetDateTime::now_utc();
        let info = self
            .authority
            .describe()
            .await
            .map_err(ReconcileError::observe_authority)?;
        let escrowed = self
            .escrow
            .load(&self.key(cluster))
            .await
            .map_err(ReconcileError::observe_escrow)?;

        if let Some(revoked) = escrowed.current.as_ref().and_then(|c| c.revoked.as_ref())
            && revoked.held
        {
            return Err(ReconcileError::Held {
                key: self.key(cluster),
                reason: crate::authority::RevocationReason::from_pca(&revoked.reason)
                    .map_or_else(|| revoked.reason.clone(), |r| r.name().to_string()),
                at: revoked.at,
            });
        }
        if let Some(current) = &escrowed.current
            && !self.settings.new_root
        {
            foreign_root(current, &info)?;
        }
        let recorded = Recorded::of(&escrowed);
        let own;
        let settings = match (self.settings.standing, &recorded.terms) {
            (Standing::Recorded, Some(terms)) => {
                own = terms.apply(self.settings);
                &own
            }
            _ => self.settings,
        };
        Reconciler { settings, ..*self }
            .act(cluster, &info, escrowed, &recorded, force, now)
            .await
    }

    /// Carries out what [`Reconciler::decide`] concludes, under this reconciler's settings.
    async fn act(
        &self,
        cluster: &ClusterName,
        info: &AuthorityInfo,
        escrowed: Escrowed,
        recorded: &Recorded,
        force: bool,
        now: OffsetDateTime,
    ) -> Result<Secured, ReconcileError> {
        match self.decide(info, escrowed, force, now) {
            Decision::Keep(current, verified, renew_at) => Ok(Secured {
                cluster: cluster.clone(),
                bundle: current.bundle,
                meta: current.meta,
                verified: *verified,
                renew_at,
                obtained: Obtained::Escrowed,
                changed: Vec::new(),
            }),
            Decision::Resume(pending, reason) => {
                self.finish(info, *pending, now, Obtained::Resumed(reason), recorded)
                    .await
            }
            Decision::Reroot(current, verified) => {
                self.escrow
                    .promote(&current)
                    .await
                    .map_err(|source| ReconcileError::Escrow {
                        step: Step::Escrow,
                        source,
                    })?;
                let c = &verified.ca_cert;
                let renew_at =
                    c.not_after - self.settings.renewal.threshold(c.not_before, c.not_after);
                Ok(Secured {
                    cluster: cluster.clone(),
                    bundle: current.bundle,
                    meta: current.meta,
                    verified: *verified,
                    renew_at,
                    obtained: Obtained::Rerooted,
                    changed: Vec::new(),
                })
            }
            Decision::Renew { generation, reason } => {
                let pending = self.begin(info, cluster, generation, now)?;
                let (pending, obtained) = match self.escrow.claim(&pending).await {
                    Ok(Claim::Won) => (pending, Obtained::Issued(reason)),
                    Ok(Claim::Lost(theirs)) => (*theirs, Obtained::Resumed(reason)),
                    Err(source) => {
                        return Err(ReconcileError::Escrow {
                            step: Step::Issue,
                            source,
                        });
                    }
                };
                self.finish(info, pending, now, obtained, recorded).await
            }
        }
    }

    fn decide(
        &self,
        info: &AuthorityInfo,
        mut escrowed: Escrowed,
        force: bool,
        now: OffsetDateTime,
    ) -> Decision {
        let current_generation = escrowed.current.as_ref().map_or(0, |c| c.meta.generation);
        let judged = self.judge(info, escrowed.current.as_ref(), force, now);
        let reason = match (judged, escrowed.current) {
            ((Verdict::Keep { renew_at, .. }, Some(verified)), Some(current)) => {
                return Decision::Keep(Box::new(current), Box::new(verified), renew_at);
            }
            ((Verdict::Keep { .. }, _), _) => {
                unreachable!("judge keeps only a verified bundle it was given")
            }
            ((Verdict::Renew { reason, .. }, _), current) => {
                escrowed.current = current;
                reason
            }
        };
        if reason == RenewReason::RootChanged
            && escrowed.pending.is_none()
            && let Some((current, verified)) =
                escrowed.current.and_then(|c| self.rerooted(info, c, now))
        {
            return Decision::Reroot(Box::new(current), Box::new(verified));
        }
        match escrowed.pending {
            // Finish what an earlier run started, if it was started the way we would start it.
            Some(p)
                if p.refused.is_none()
                    && p.authority_id == info.id
                    && p.key_algorithm == self.settings.key_algorithm_for_kind() =>
            {
                Decision::Resume(Box::new(p), reason)
            }
            Some(p) => Decision::Renew {
                generation: p.generation + 1,
                reason,
            },
            None => Decision::Renew {
                generation: current_generation + 1,
                reason,
            },
        }
    }

    /// The escrowed intermediate under the authority's new root bundle, as the next generation,
    /// when it is still healthy there (it verifies, and is not due).
    fn rerooted(
        &self,
        info: &AuthorityInfo,
        current: Current,
        now: OffsetDateTime,
    ) -> Option<(Current, Verified)> {
        if current.authority_id != info.id {
            return None;
        }
        let profile = self.judged_by(&current);
        let bundle = Bundle {
            root_cert: info.root_bundle.clone(),
            ..current.bundle
        };
        let verified = validate(&bundle, &profile, now).ok()?;
        let c = &verified.ca_cert;
        if !matches!(
            self.settings.renewal.judge(c.not_before, c.not_after, now),
            Verdict::Keep { .. }
        ) {
            return None;
        }
        let generation = current.meta.generation + 1;
        let key = self.key(&current.cluster);
        let meta = BundleMeta {
            generation,
            root_fingerprint_sha256: sha256_hex(bundle.root_cert.as_bytes()),
            owner: Some(key.clone()),
            ..current.meta
        };
        let token = self.token(&info.id, &key, generation);
        Some((
            Current {
                token,
                meta,
                bundle,
                promoted_at: now,
                ..current
            },
            verified,
        ))
    }

    /// The profile a bundle in service is judged by: its key is the one its terms record (a
    /// key algorithm configured since applies at the next renewal, not at once); a record
    /// without terms accepts any supported key.
    fn judged_by(&self, current: &Current) -> Profile {
        Profile {
            key_algorithm: current.terms.as_ref().map(|t| t.key_algorithm),
            ..self.settings.profile_for(&current.cluster)
        }
    }

    /// Whether the escrowed bundle can stay in service or must be renewed, and why; the
    /// verified bundle comes with every `Keep`.
    fn judge(
        &self,
        info: &AuthorityInfo,
        current: Option<&Current>,
        force: bool,
        now: OffsetDateTime,
    ) -> (Verdict, Option<Verified>) {
        let Some(current) = current else {
            return (
                Verdict::Renew {
                    reason: RenewReason::NoBundle,
                    not_after: None,
                },
                None,
            );
        };
        let renew = |reason| {
            (
                Verdict::Renew {
                    reason,
                    not_after: Some(current.meta.not_after),
                },
                None,
            )
        };
        if current.revoked.is_some() {
            return renew(RenewReason::Revoked);
        }
        match validate(&current.bundle, &self.judged_by(current), now) {
            Err(e) => renew(RenewReason::Invalid {
                detail: e.to_string(),
            }),
            Ok(_) if current.bundle.root_cert != info.root_bundle => {
                renew(RenewReason::RootChanged)
            }
            Ok(_) if current.authority_id != info.id => renew(RenewReason::IssuerChanged {
                from: current.authority_id.clone(),
            }),
            Ok(_) if force => renew(RenewReason::Forced),
            Ok(verified) => {
                let c = &verified.ca_cert;
                match self.settings.renewal.judge(c.not_before, c.not_after, now) {
                    keep @ Verdict::Keep { .. } => (keep, Some(verified)),
                    renew @ Verdict::Renew { .. } => (renew, None),
                }
            }
        }
    }

    /// Key, CSR and the pending record for a new generation. Nothing is written yet.
    fn begin(
        &self,
        info: &AuthorityInfo,
        cluster: &ClusterName,
        generation: u64,
        now: OffsetDateTime,
    ) -> Result<Pending, ReconcileError> {
        let wanted = self.settings.validity.not_after(now);
        if wanted <= now + Duration::days(1) - Duration::minutes(1) {
            return Err(ReconcileError::ZeroValidity);
        }
        if wanted > info.not_after {
            return Err(ReconcileError::OutlivesAuthority {
                wanted,
                ca_end: info.not_after,
            });
        }
        let kind = self.settings.kind.kind.profile();
        if let Some(want) = kind.parent_key
            && info.key_algorithm != Some(want)
        {
            return Err(ReconcileError::ParentKey(Box::new(ParentKey {
                kind: kind.name,
                want,
                authority: info.id.clone(),
                have: info.key_description.clone(),
            })));
        }
        let key = PrivateKey::generate(self.settings.key_algorithm_for_kind())?;
        let csr = build_csr_for(
            &key,
            &self.settings.subject(cluster),
            self.settings.kind.identity(cluster).as_ref(),
        )?;
        Ok(Pending {
            schema: SCHEMA,
            cluster: cluster.clone(),
            kind: self.settings.kind.kind,
            generation,
            token: self.token(&info.id, &self.key(cluster), generation),
            authority_id: info.id.clone(),
            key_algorithm: key.algorithm(),
            ca_key: key.to_pkcs8_pem(),
            csr,
            certificate_id: None,
            created_at: now,
            validity: Some(self.settings.validity),
            refused: None,
        })
    }

    /// Issue (unless the pending record already names a certificate), fetch, validate, promote.
    async fn finish(
        &self,
        info: &AuthorityInfo,
        pending: Pending,
        now: OffsetDateTime,
        obtained: Obtained,
        recorded: &Recorded,
    ) -> Result<Secured, ReconcileError> {
        let certificate_id = self
            .issue(&pending, matches!(obtained, Obtained::Resumed(_)))
            .await?;
        let issued = self
            .authority
            .fetch(&certificate_id)
            .await
            .map_err(|source| ReconcileError::Authority {
                step: Step::Issue,
                source,
            })?;

        let (bundle, verified) = match self.accept(&pending, &issued, info, now) {
            Ok(accepted) => accepted,
            Err(refusal) => {
                return Err(self.refuse(pending, certificate_id, &issued, refusal).await);
            }
        };
        let c = &verified.ca_cert;
        let meta = BundleMeta {
            generation: pending.generation,
            serial: c.serial.clone(),
            not_after: c.not_after,
            certificate_id: certificate_id.to_string(),
            fingerprint_sha256: c.sha256_fingerprint.clone(),
            root_fingerprint_sha256: sha256_hex(bundle.root_cert.as_bytes()),
            owner: Some(pending.key()),
        };
        let renew_at = c.not_after - self.settings.renewal.threshold(c.not_before, c.not_after);
        let terms = Terms {
            key_algorithm: pending.key_algorithm,
            validity: self.asked(&pending),
            ..Terms::of(self.settings)
        };
        let (changed, history) = recorded.after(&terms, pending.generation, now);
        let ledger = recorded
            .ledger
            .clone()
            .kept(pending.generation, &info.id, now);
        let current = Current {
            schema: SCHEMA,
            cluster: pending.cluster.clone(),
            kind: pending.kind,
            token: pending.token.clone(),
            authority_id: info.id.clone(),
            meta: meta.clone(),
            bundle: bundle.clone(),
            promoted_at: now,
            terms: Some(terms),
            history,
            revoked: None,
            superseded: ledger.superseded,
            ledger_from: ledger.from,
            own_crl: self.own_crl(&bundle),
        };
        self.escrow
            .promote(&current)
            .await
            .map_err(|source| ReconcileError::Escrow {
                step: Step::Escrow,
                source,
            })?;
        Ok(Secured {
            cluster: pending.cluster,
            bundle,
            meta,
            verified,
            renew_at,
            obtained,
            changed,
        })
    }

    /// The new intermediate's own CRL, for the istio layout (the only one whose reader takes
    /// CRLs). Signing with the key just validated does not fail; if it ever did, the record is
    /// kept without one and it is signed when the fleet's CRLs are built.
    fn own_crl(&self, bundle: &Bundle) -> Option<String> {
        (self.settings.kind.kind.profile().layout == crate::kind::Layout::IstioCacerts)
            .then(|| crate::crl::own(&bundle.ca_cert, &bundle.ca_key).ok())
            .flatten()
    }

    /// The validity a generation asks for: its own, or today's settings for an older record.
    fn asked(&self, pending: &Pending) -> Validity {
        pending.validity.unwrap_or(self.settings.validity)
    }

    /// The issued certificate as a bundle, if it is what this generation asked for: valid under
    /// the profile, and with the validity asked for.
    fn accept(
        &self,
        pending: &Pending,
        issued: &crate::authority::Issued,
        info: &AuthorityInfo,
        now: OffsetDateTime,
    ) -> Result<(Bundle, Verified), Refusal> {
        let chain = format!("{}{}", issued.certificate, issued.chain);
        let bundle = Bundle::from_pems(
            &issued.certificate,
            &pending.ca_key,
            &chain,
            &info.root_bundle,
        )
        .map_err(|e| Refusal::Invalid(InvalidBundle::Pem(e)))?;
        let verified = validate(&bundle, &self.settings.profile_for(&pending.cluster), now)
            .map_err(Refusal::Invalid)?;
        self.check_validity(pending, now, verified.ca_cert.not_after)?;
        Ok((bundle, verified))
    }

    /// The authority gave the validity asked for: the end lies where the request put it when the
    /// generation began or now (a resumed one may have been issued in between), give or take a
    /// day. An authority that caps or ignores the request (Vault does, silently) is caught here.
    fn check_validity(
        &self,
        pending: &Pending,
        now: OffsetDateTime,
        got: OffsetDateTime,
    ) -> Result<(), Refusal> {
        let slack = Duration::days(1);
        let asked = self.asked(pending);
        let (earliest, latest) = (
            asked.not_after(pending.created_at.min(now)),
            asked.not_after(now),
        );
        if got < earliest - slack || got > latest + slack {
            return Err(Refusal::Validity {
                wanted: latest,
                got,
            });
        }
        Ok(())
    }

    /// A certificate refused after issuance: revoked at the authority (it must not stay valid
    /// unescrowed), and its generation closed in escrow, so the next run issues a fresh one
    /// instead of resuming this one for ever.
    async fn refuse(
        &self,
        pending: Pending,
        certificate_id: CertificateId,
        issued: &crate::authority::Issued,
        refusal: Refusal,
    ) -> ReconcileError {
        let serial = crate::pem::certificates("issued certificate", &issued.certificate)
            .ok()
            .and_then(|ders| ders.into_iter().next())
            .and_then(|der| Certificate::from_der("issued", der).ok())
            .map(|c| c.serial);
        let revoke_failed = match serial {
            None => Some("its serial cannot be read".to_string()),
            Some(serial) => self
                .authority
                .revoke(&certificate_id, &serial, RevocationReason::Superseded)
                .await
                .err()
                .map(|e| e.to_string()),
        };
        let closed = Pending {
            certificate_id: Some(certificate_id.clone()),
            refused: Some(refusal.to_string()),
            ..pending
        };
        let disposal = Box::new(Disposal {
            revoke_failed,
            record_failed: self
                .escrow
                .record_issued(&closed)
                .await
                .err()
                .map(|e| e.to_string()),
        });
        let certificate_id = certificate_id.to_string();
        match refusal {
            Refusal::Invalid(source) => ReconcileError::InvalidIssued {
                certificate_id,
                source,
                disposal,
            },
            Refusal::Validity { wanted, got } => ReconcileError::ValidityNotHonoured {
                certificate_id,
                wanted,
                got,
                disposal,
            },
        }
    }

    /// The certificate of a pending generation: issued now, unless an earlier run already
    /// recorded it. The id is recorded in escrow before anything else happens.
    async fn issue(
        &self,
        pending: &Pending,
        resumed: bool,
    ) -> Result<CertificateId, ReconcileError> {
        if let Some(id) = &pending.certificate_id {
            return Ok(id.clone());
        }
        let validity = self.asked(pending);
        let template = self.settings.kind.kind.template();
        let request = IssueRequest {
            csr_pem: &pending.csr,
            validity,
            idempotency_token: pending.token.as_str(),
            template,
            resumed,
        };
        let id =
            self.authority
                .issue(&request)
                .await
                .map_err(|source| ReconcileError::Authority {
                    step: Step::Issue,
                    source,
                })?;
        let recorded = Pending {
            certificate_id: Some(id.clone()),
            ..pending.clone()
        };
        self.escrow
            .record_issued(&recorded)
            .await
            .map_err(|source| ReconcileError::Escrow {
                step: Step::Issue,
                source,
            })?;
        Ok(id)
    }
}
