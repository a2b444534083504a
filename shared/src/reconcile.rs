//! One cluster's way to a valid bundle: observe → decide → issue → escrow.
//!
//! Every step can be repeated: a pending record is claimed before the authority is called, the
//! authority call carries an idempotency token derived from the generation, and a rerun resumes
//! whatever generation is pending. Delivery into the cluster builds on the bundle returned here.

use time::{Duration, OffsetDateTime};

use crate::authority::{Authority, AuthorityError, AuthorityInfo, IssueRequest, Validity};
use crate::bundle::{Bundle, BundleMeta};
use crate::cert::sha256_hex;
use crate::cluster::ClusterName;
use crate::csr::{CsrError, Subject, build_csr};
use crate::escrow::{Claim, Current, Escrow, EscrowError, Escrowed, GenerationToken, Pending, SCHEMA};
use crate::key::{KeyAlgorithm, KeyError, PrivateKey};
use crate::renewal::{RenewReason, RenewalPolicy, Verdict};
use crate::validate::{InvalidBundle, Profile, Verified, validate};

/// How intermediates are made for this deployment.
#[derive(Debug, Clone)]
pub struct Settings {
    pub key_algorithm: KeyAlgorithm,
    pub organization: Option<String>,
    pub organizational_unit: Option<String>,
    /// `None`: `<cluster> istio intermediate CA`.
    pub common_name: Option<String>,
    pub validity: Validity,
    pub profile: Profile,
    pub renewal: RenewalPolicy,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            key_algorithm: KeyAlgorithm::EcP256,
            organization: None,
            organizational_unit: None,
            common_name: None,
            validity: Validity::Days(365),
            profile: Profile { key_algorithm: Some(KeyAlgorithm::EcP256), ..Profile::default() },
            renewal: RenewalPolicy::default(),
        }
    }
}

impl Settings {
    pub fn subject(&self, cluster: &ClusterName) -> Subject {
        let mut s = Subject::for_cluster(cluster)
            .with_organization(self.organization.clone(), self.organizational_unit.clone());
        if let Some(cn) = &self.common_name {
            s.common_name = cn.clone();
        }
        s
    }
}

/// What happened to the cluster's bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The escrowed bundle is valid and not due.
    Reused { remaining: Duration, renew_at: OffsetDateTime },
    /// A new generation was issued.
    Issued { reason: RenewReason },
    /// A generation left pending by an earlier (crashed or concurrent) run was completed.
    Resumed { reason: RenewReason },
}

#[derive(Debug)]
pub struct Outcome {
    pub cluster: ClusterName,
    pub bundle: Bundle,
    pub meta: BundleMeta,
    pub verified: Verified,
    pub action: Action,
}

/// The pipeline step a failure happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    Observe,
    Decide,
    Issue,
    Escrow,
    Deliver,
    Verify,
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
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("{step}: {source}")]
    Authority { step: Step, source: AuthorityError },
    #[error("{step}: {source}")]
    Escrow { step: Step, source: EscrowError },
    #[error("issue: {0}")]
    Key(#[from] KeyError),
    #[error("issue: {0}")]
    Csr(#[from] CsrError),
    #[error("issue: requested validity ends {wanted}, after the issuing CA itself ({ca_end}); shorten it")]
    OutlivesAuthority { wanted: OffsetDateTime, ca_end: OffsetDateTime },
    #[error("issue: validity must be at least one day")]
    ZeroValidity,
    #[error("escrow: the certificate {certificate_id} fails validation and was not escrowed: {source}")]
    InvalidIssued { certificate_id: String, source: InvalidBundle },
}

impl ReconcileError {
    pub fn step(&self) -> Step {
        match self {
            ReconcileError::Authority { step, .. } | ReconcileError::Escrow { step, .. } => *step,
            ReconcileError::InvalidIssued { .. } => Step::Escrow,
            _ => Step::Issue,
        }
    }
}

pub struct Reconcile<'a> {
    pub authority: &'a dyn Authority,
    pub escrow: &'a dyn Escrow,
    pub settings: &'a Settings,
}

/// What the escrowed bundle deserves.
pub(crate) enum Judgement {
    Keep { verified: Box<Verified>, remaining: Duration, renew_at: OffsetDateTime },
    Renew(RenewReason),
}

/// What decide concluded.
enum Plan {
    Keep(Box<Current>, Box<Verified>, Duration, OffsetDateTime),
    Resume(Box<Pending>, RenewReason),
    Renew { generation: u64, reason: RenewReason },
}

impl Reconcile<'_> {
    /// Returns a valid escrowed bundle for `cluster`, issuing one when none is usable.
    ///
    /// A conflict in escrow means a rival run moved the cluster on while we worked; we look
    /// again (a bounded number of times) and adopt what it did.
    pub async fn ensure_bundle(&self, cluster: &ClusterName, force: bool) -> Result<Outcome, ReconcileError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.ensure_once(cluster, force && attempt == 1).await {
                Err(ReconcileError::Escrow { source: EscrowError::Conflict { .. }, .. }) if attempt < 3 => continue,
                other => return other,
            }
        }
    }

    async fn ensure_once(&self, cluster: &ClusterName, force: bool) -> Result<Outcome, ReconcileError> {
        let now = OffsetDateTime::now_utc();
        let info = self.authority.describe().await.map_err(|source| ReconcileError::Authority { step: Step::Observe, source })?;
        let escrowed = self.escrow.load(cluster).await.map_err(|source| ReconcileError::Escrow { step: Step::Observe, source })?;

        match self.decide(&info, escrowed, force, now) {
            Plan::Keep(current, verified, remaining, renew_at) => Ok(Outcome {
                cluster: cluster.clone(),
                bundle: current.bundle,
                meta: current.meta,
                verified: *verified,
                action: Action::Reused { remaining, renew_at },
            }),
            Plan::Resume(pending, reason) => {
                let pending = *pending;
                self.finish(&info, pending, now, Action::Resumed { reason }).await
            }
            Plan::Renew { generation, reason } => {
                let pending = self.begin(&info, cluster, generation, now)?;
                let (pending, action) = match self.escrow.claim(&pending).await {
                    Ok(Claim::Won) => (pending, Action::Issued { reason }),
                    Ok(Claim::Lost(theirs)) => (*theirs, Action::Resumed { reason }),
                    Err(source) => return Err(ReconcileError::Escrow { step: Step::Issue, source }),
                };
                self.finish(&info, pending, now, action).await
            }
        }
    }

    fn decide(&self, info: &AuthorityInfo, escrowed: Escrowed, force: bool, now: OffsetDateTime) -> Plan {
        let current_generation = escrowed.current.as_ref().map_or(0, |c| c.meta.generation);
        let reason = match self.judge(info, escrowed.current.as_ref(), force, now) {
            Judgement::Keep { verified, remaining, renew_at } => {
                let current = escrowed.current.expect("kept only when there is one");
                return Plan::Keep(Box::new(current), verified, remaining, renew_at);
            }
            Judgement::Renew(reason) => reason,
        };
        match escrowed.pending {
            // Finish what an earlier run started, if it was started the way we would start it.
            Some(p) if p.authority_id == info.id && p.key_algorithm == self.settings.key_algorithm => {
                Plan::Resume(Box::new(p), reason)
            }
            Some(p) => Plan::Renew { generation: p.generation + 1, reason },
            None => Plan::Renew { generation: current_generation + 1, reason },
        }
    }

    /// Whether the escrowed bundle can stay in service or must be renewed, and why.
    pub(crate) fn judge(&self, info: &AuthorityInfo, current: Option<&Current>, force: bool, now: OffsetDateTime) -> Judgement {
        let Some(current) = current else { return Judgement::Renew(RenewReason::NoBundle) };
        match validate(&current.bundle, &self.settings.profile, now) {
            Err(e) => Judgement::Renew(RenewReason::Invalid { detail: e.to_string() }),
            Ok(_) if current.bundle.root_cert != info.root_bundle => Judgement::Renew(RenewReason::RootChanged),
            Ok(_) if force => Judgement::Renew(RenewReason::Forced),
            Ok(verified) => {
                let c = &verified.ca_cert;
                match self.settings.renewal.judge(c.not_before, c.not_after, now) {
                    Verdict::Keep { remaining, renew_at } => Judgement::Keep { verified: Box::new(verified), remaining, renew_at },
                    Verdict::Renew(reason) => Judgement::Renew(reason),
                }
            }
        }
    }

    /// Key, CSR and the pending record for a new generation. Nothing is written yet.
    fn begin(&self, info: &AuthorityInfo, cluster: &ClusterName, generation: u64, now: OffsetDateTime) -> Result<Pending, ReconcileError> {
        let wanted = self.settings.validity.not_after(now);
        if wanted <= now + Duration::days(1) - Duration::minutes(1) {
            return Err(ReconcileError::ZeroValidity);
        }
        if wanted > info.not_after {
            return Err(ReconcileError::OutlivesAuthority { wanted, ca_end: info.not_after });
        }
        let key = PrivateKey::generate(self.settings.key_algorithm)?;
        let csr = build_csr(&key, &self.settings.subject(cluster))?;
        Ok(Pending {
            schema: SCHEMA,
            cluster: cluster.clone(),
            generation,
            token: GenerationToken::derive(&info.id, cluster, generation),
            authority_id: info.id.clone(),
            key_algorithm: key.algorithm(),
            ca_key: key.to_pkcs8_pem(),
            csr,
            certificate_id: None,
            created_at: now,
        })
    }

    /// Issue (unless the pending record already names a certificate), fetch, validate, promote.
    async fn finish(&self, info: &AuthorityInfo, mut pending: Pending, now: OffsetDateTime, action: Action) -> Result<Outcome, ReconcileError> {
        let authority = |source| ReconcileError::Authority { step: Step::Issue, source };
        let certificate_id = match &pending.certificate_id {
            Some(id) => id.clone(),
            None => {
                let request = IssueRequest {
                    csr_pem: &pending.csr,
                    validity: self.settings.validity,
                    idempotency_token: pending.token.as_str(),
                };
                let id = self.authority.issue(&request).await.map_err(authority)?;
                pending.certificate_id = Some(id.clone());
                self.escrow
                    .record_issued(&pending)
                    .await
                    .map_err(|source| ReconcileError::Escrow { step: Step::Issue, source })?;
                id
            }
        };
        let issued = self.authority.fetch(&certificate_id).await.map_err(authority)?;

        let invalid = |source| ReconcileError::InvalidIssued { certificate_id: certificate_id.to_string(), source };
        let chain = format!("{}{}", issued.certificate, issued.chain);
        let bundle = Bundle::from_pems(&issued.certificate, &pending.ca_key, &chain, &info.root_bundle)
            .map_err(|e| invalid(InvalidBundle::Pem(e)))?;
        let verified = validate(&bundle, &self.settings.profile, now).map_err(invalid)?;
        let meta = BundleMeta {
            generation: pending.generation,
            serial: verified.ca_cert.serial.clone(),
            not_after: verified.ca_cert.not_after,
            certificate_id: certificate_id.to_string(),
            fingerprint_sha256: verified.ca_cert.sha256_fingerprint.clone(),
            root_fingerprint_sha256: sha256_hex(bundle.root_cert.as_bytes()),
        };
        let current = Current {
            schema: SCHEMA,
            cluster: pending.cluster.clone(),
            token: pending.token.clone(),
            authority_id: info.id.clone(),
            meta: meta.clone(),
            bundle: bundle.clone(),
            promoted_at: now,
        };
        self.escrow.promote(&current).await.map_err(|source| ReconcileError::Escrow { step: Step::Escrow, source })?;
        Ok(Outcome { cluster: pending.cluster, bundle, meta, verified, action })
    }
}
