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
    Days(u32),
    EndDate(#[serde(with = "time::serde::rfc3339")] OffsetDateTime),
}

impl Validity {
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
    pub csr_pem: &'a str,
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
    pub certificate: String,
    pub chain: String,
}

/// RFC 5280 reasons PCA's RevokeCertificate accepts that fit a cluster intermediate, by the
/// names `meshca revoke --reason` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RevocationReason {
    Unspecified,
    KeyCompromise,
    CaCompromise,
    AffiliationChanged,
    Superseded,
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

#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    #[error("certificate authority {id} is {status}, not ACTIVE; it cannot issue")]
    NotActive { id: String, status: String },
    #[error("certificate authority {id} not found: {detail}")]
    NotFound { id: String, detail: String },
    #[error("certificate authority {id} refused the request: {reason}")]
    Rejected { id: String, reason: String },
    #[error("certificate {0} is unknown to the authority")]
    UnknownCertificate(CertificateId),
    #[error("{operation} was throttled for {waited_ms} ms ({attempts} attempts); giving up")]
    Throttled {
        operation: &'static str,
        attempts: u32,
        waited_ms: u128,
    },
    #[error("certificate {id} still not ready after {waited_ms} ms")]
    StillInProgress { id: CertificateId, waited_ms: u128 },
    /// `authority` says which one and where: `local CA at DIR`, `Vault issuer PATH`.
    #[error("{authority} is unusable: {reason}")]
    Corrupt { authority: String, reason: String },
    #[error("{operation} failed: {detail}")]
    Backend {
        operation: &'static str,
        detail: String,
    },
}

#[async_trait::async_trait]
pub trait Authority: Send + Sync {
    /// The CA's state and root bundle; refuses a CA that cannot issue.
    async fn describe(&self) -> Result<AuthorityInfo, AuthorityError>;
    async fn issue(&self, request: &IssueRequest<'_>) -> Result<CertificateId, AuthorityError>;
    async fn fetch(&self, id: &CertificateId) -> Result<Issued, AuthorityError>;
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
}
