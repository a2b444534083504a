//! The `Authority` port: whoever signs cluster intermediates (AWS Private CA, or the local CA).

use std::fmt;

use time::{Duration, OffsetDateTime};

/// What the issuing CA is and what it hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorityInfo {
    /// ARN for PCA, `local:<dir>` for the local CA. Part of the generation token, so two CAs
    /// never share idempotency tokens.
    pub id: String,
    /// The issuing CA's own key type, shown to operators.
    pub key_description: String,
    /// The issuing CA's key, when meshca can read it from the CA's certificate: a kind whose
    /// mesh checks the signature algorithm (Linkerd) is refused before issuance on another.
    pub key_algorithm: Option<crate::key::KeyAlgorithm>,
    /// The signature algorithm issuance will use.
    pub signing_algorithm: String,
    /// Normalised PEM of the trust anchor(s) — `root-cert.pem` verbatim.
    pub root_bundle: String,
    /// End of the issuing CA's own certificate; nothing it signs may outlive it.
    pub not_after: OffsetDateTime,
}

/// How long an intermediate lives, in the two forms PCA accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Validity {
    /// This many days from issuance.
    Days(u32),
    /// Until this instant.
    EndDate(#[serde(with = "time::serde::rfc3339")] OffsetDateTime),
}

impl Validity {
    /// The end a certificate issued at `now` gets.
    pub fn not_after(self, now: OffsetDateTime) -> OffsetDateTime {
        match self {
            Validity::Days(d) => now + Duration::days(d.into()),
            Validity::EndDate(t) => t,
        }
    }
}

impl fmt::Display for Validity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Validity::Days(d) => write!(f, "{d} days"),
            Validity::EndDate(t) => write!(f, "until {}", crate::timestamp::rfc3339(*t)),
        }
    }
}

/// One request to sign a cluster's CSR.
#[derive(Debug, Clone)]
pub struct IssueRequest<'a> {
    /// The cluster's CSR, PEM.
    pub csr_pem: &'a str,
    /// How long the certificate is asked to live.
    pub validity: Validity,
    /// Derived from the generation: the same request retried names the same certificate.
    pub idempotency_token: &'a str,
    /// What to sign: a PathLen0 subordinate CA (the default) or a TLS end entity.
    pub template: crate::kind::Template,
    /// An earlier run may already have sent this request (it resumes a pending generation whose
    /// certificate was never recorded). An authority without idempotency tokens looks for the
    /// certificate it may have signed before signing again.
    pub resumed: bool,
}

/// The authority's name for an issued certificate (a certificate ARN for PCA).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct CertificateId(pub String);

impl fmt::Display for CertificateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A signed intermediate and the chain above it (issuing CA first, root last), normalised PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The signed certificate, PEM.
    pub certificate: String,
    /// The CAs above it, issuing CA first, root last.
    pub chain: String,
}

/// RFC 5280 reasons PCA's RevokeCertificate accepts that fit a cluster intermediate, by the
/// names `meshca revoke --reason` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RevocationReason {
    /// No reason given (an authority's default).
    Unspecified,
    /// The certificate's key is, or may be, in someone else's hands.
    KeyCompromise,
    /// A CA above it is compromised.
    CaCompromise,
    /// The cluster moved to another owner or organisation.
    AffiliationChanged,
    /// A newer generation replaces it.
    Superseded,
    /// The cluster is gone (its deletion).
    CessationOfOperation,
}

impl RevocationReason {
    /// The reasons a person may give, in the order `--help` lists them.
    pub const GIVEN: [RevocationReason; 5] = [
        RevocationReason::KeyCompromise,
        RevocationReason::CaCompromise,
        RevocationReason::Superseded,
        RevocationReason::CessationOfOperation,
        RevocationReason::AffiliationChanged,
    ];

    /// PCA's name of the reason (`KEY_COMPROMISE`, …), which escrow records keep too.
    pub fn as_pca(self) -> &'static str {
        match self {
            RevocationReason::Unspecified => "UNSPECIFIED",
            RevocationReason::KeyCompromise => "KEY_COMPROMISE",
            RevocationReason::CaCompromise => "CERTIFICATE_AUTHORITY_COMPROMISE",
            RevocationReason::AffiliationChanged => "AFFILIATION_CHANGED",
            RevocationReason::Superseded => "SUPERSEDED",
            RevocationReason::CessationOfOperation => "CESSATION_OF_OPERATION",
        }
    }

    /// The name people give and read: `key-compromise`, ….
    pub fn name(self) -> &'static str {
        match self {
            RevocationReason::Unspecified => "unspecified",
            RevocationReason::KeyCompromise => "key-compromise",
            RevocationReason::CaCompromise => "ca-compromise",
            RevocationReason::AffiliationChanged => "affiliation-changed",
            RevocationReason::Superseded => "superseded",
            RevocationReason::CessationOfOperation => "cessation-of-operation",
        }
    }

    /// The reason PCA's name stands for (what the local CA records on disk).
    pub fn from_pca(name: &str) -> Option<Self> {
        [RevocationReason::Unspecified]
            .into_iter()
            .chain(Self::GIVEN)
            .find(|r| r.as_pca() == name)
    }
}

impl std::fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for RevocationReason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::GIVEN
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::GIVEN.iter().map(|r| r.name()).collect();
                format!(
                    "{s:?} is not a revocation reason; one of: {}",
                    names.join(", ")
                )
            })
    }
}

/// What an authority can say about the certificates it issued with one subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listing {
    /// Every one still valid, by id and serial.
    Found(Vec<(CertificateId, String)>),
    /// It cannot list them now, and why (said to whoever revokes).
    Unlisted(String),
}

/// Why the authority did not issue, fetch or revoke, by what can be done about it.
#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    /// The CA exists but cannot issue now.
    #[error("certificate authority {id} is {status}, not ACTIVE; it cannot issue")]
    NotActive {
        /// The CA.
        id: String,
        /// Its state (`DISABLED`, `EXPIRED`, …).
        status: String,
    },
    /// No such CA (or no permission to see it).
    #[error("certificate authority {id} not found: {detail}")]
    NotFound {
        /// The CA.
        id: String,
        /// What the authority said.
        detail: String,
    },
    /// The CA refused this request (the CSR, the template, the validity): retrying will not help.
    #[error("certificate authority {id} refused the request: {reason}")]
    Rejected {
        /// The CA.
        id: String,
        /// What the authority said.
        reason: String,
    },
    /// A certificate id the authority does not know (an escrow record from another CA).
    #[error("certificate {0} is unknown to the authority")]
    UnknownCertificate(CertificateId),
    /// The quota was hit on every attempt up to the deadline.
    #[error("{operation} was throttled for {waited_ms} ms ({attempts} attempts); giving up")]
    Throttled {
        /// The call.
        operation: &'static str,
        /// How many times it was tried.
        attempts: u32,
        /// How long was waited in all.
        waited_ms: u128,
    },
    /// The certificate was not ready by the deadline; the next run fetches it.
    #[error("certificate {id} still not ready after {waited_ms} ms")]
    StillInProgress {
        /// The certificate.
        id: CertificateId,
        /// How long was waited.
        waited_ms: u128,
    },
    /// `authority` says which one and where: `local CA at DIR`, `Vault issuer PATH`.
    #[error("{authority} is unusable: {reason}")]
    Corrupt {
        /// Which one, and where.
        authority: String,
        /// What is wrong.
        reason: String,
    },
    /// Any other failure of the backend: the next run tries again.
    #[error("{operation} failed: {detail}")]
    Backend {
        /// The call.
        operation: &'static str,
        /// What failed, as the backend said it.
        detail: String,
    },
}

/// The signing port: AWS Private CA, Vault / OpenBao and the local CA behind one interface.
/// Issuance is two steps (issue, then fetch) because PCA's is, and a run may stop between them.
#[async_trait::async_trait]
pub trait Authority: Send + Sync {
    /// The CA's state and root bundle; refuses a CA that cannot issue.
    async fn describe(&self) -> Result<AuthorityInfo, AuthorityError>;
    /// Asks for a certificate; the same idempotency token names the same certificate.
    async fn issue(&self, request: &IssueRequest<'_>) -> Result<CertificateId, AuthorityError>;
    /// The certificate and its chain, waiting out "not ready yet" up to a deadline.
    async fn fetch(&self, id: &CertificateId) -> Result<Issued, AuthorityError>;
    /// Revokes a certificate this authority issued (`serial`: hex, for those that key by it).
    async fn revoke(
        &self,
        id: &CertificateId,
        serial: &str,
        reason: RevocationReason,
    ) -> Result<(), AuthorityError>;

    /// The authority's current CRL (PEM) listing what it revoked, for the fleet's `ca-crl.pem`;
    /// `None` where this adapter reads none yet.
    async fn crl(&self) -> Result<Option<String>, AuthorityError> {
        Ok(None)
    }

    /// Every certificate still valid at `now` that this authority issued with the subject name
    /// `subject` (DER), by id and serial: how a revocation reaches generations issued before
    /// meshca kept a ledger; or why it cannot list them.
    async fn issued_with_subject(
        &self,
        subject: &[u8],
        now: time::OffsetDateTime,
    ) -> Result<crate::authority::Listing, AuthorityError> {
        let _ = (subject, now);
        Ok(Listing::Unlisted(
            "this authority cannot list what it issued".into(),
        ))
    }
}
