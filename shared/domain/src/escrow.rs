//! The `Escrow` port: where a cluster's bundle is kept so it can be redelivered without a second
//! paid issuance, and where an issuance in flight is recorded before the authority is called.
//!
//! A cluster has at most one *current* record (the bundle in service) and one *pending* record
//! (a generation being issued: key and CSR, later the certificate id). Pending records are
//! claimed by a deterministic generation token, so two runs racing for the same generation
//! agree on one winner and the loser adopts its work.

use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::authority::{CertificateId, Validity};
use crate::bundle::{Bundle, BundleMeta};
use crate::cluster::ClusterName;
use crate::key::KeyAlgorithm;
pub use crate::kind::EscrowKey;
use crate::kind::Kind;

/// Record format version, stored in every record so later formats can read older ones.
pub const SCHEMA: u32 = 1;

fn is_istio(kind: &Kind) -> bool {
    *kind == Kind::IstioCacerts
}

/// A generation being issued.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pending {
    /// The record format ([`SCHEMA`]).
    pub schema: u32,
    /// The cluster.
    pub cluster: ClusterName,
    /// Absent (istio-cacerts) in every record written before kinds existed, and still so.
    #[serde(default, skip_serializing_if = "is_istio")]
    pub kind: Kind,
    /// The generation being issued.
    pub generation: u64,
    /// Its token: the claim's version id and the authority's idempotency token.
    pub token: GenerationToken,
    /// The authority asked.
    pub authority_id: String,
    /// The key's algorithm.
    pub key_algorithm: KeyAlgorithm,
    /// The new key, kept so a resumed run uses the same one.
    #[serde(with = "secret_string")]
    pub ca_key: Zeroizing<String>,
    /// The CSR sent, PEM.
    pub csr: String,
    /// The authority's id for the certificate, once it was asked for.
    pub certificate_id: Option<CertificateId>,
    /// When the generation began.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The validity this generation asks the authority for, fixed when it begins: a resumed
    /// generation sends, and is checked against, what its first run asked for. Absent in records
    /// written before it was kept (they resume with the current settings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validity: Option<Validity>,
    /// Why meshca refused the certificate this generation was issued (it was revoked where the
    /// authority allows): the generation is over, and the next run starts a fresh one with a
    /// new key and token instead of resuming it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

impl Pending {
    /// The record's key.
    pub fn key(&self) -> EscrowKey {
        EscrowKey::new(self.cluster.clone(), self.kind)
    }
}

impl Current {
    /// Its certificate in service, as a ledger entry.
    pub fn issuance(&self) -> crate::ledger::Issuance {
        crate::ledger::Issuance {
            generation: self.meta.generation,
            authority_id: Some(self.authority_id.clone()),
            certificate_id: self.meta.certificate_id.clone(),
            serial: self.meta.serial.clone(),
            not_after: self.meta.not_after,
            revoked: self.revoked.is_some(),
            // A record kept before own CRLs were signed at issuance: signed now, while its key
            // is at hand (the next generation does not keep it).
            own_crl: self.own_crl.clone().or_else(|| {
                (self.kind.profile().layout == crate::kind::Layout::IstioCacerts)
                    .then(|| crate::crl::own(&self.bundle.ca_cert, &self.bundle.ca_key).ok())
                    .flatten()
            }),
        }
    }

    /// The own CRLs of every generation of this record still valid at `now`, this one's first
    /// (signed now when the record keeps none): a data plane refuses a chain whose CA has no CRL,
    /// and a renewed cluster's earlier intermediate signs workloads until their leaves rotate.
    pub fn own_crls(&self, now: OffsetDateTime) -> Result<Vec<String>, crate::crl::CrlError> {
        let own = match &self.own_crl {
            Some(crl) => crl.clone(),
            None => crate::crl::own(&self.bundle.ca_cert, &self.bundle.ca_key)?,
        };
        let earlier = self
            .superseded
            .iter()
            .filter(|e| e.not_after > now)
            .filter_map(|e| e.own_crl.clone());
        Ok(std::iter::once(own).chain(earlier).collect())
    }

    /// The ledger this record hands on to the generation that replaces it.
    pub fn ledger_handed_on(&self) -> crate::ledger::Ledger {
        crate::ledger::Ledger::handed_on(
            &self.superseded,
            self.ledger_from,
            self.issuance(),
            &self.authority_id,
        )
    }

    /// This record with the ledger entries whose serials were just revoked marked so.
    pub fn with_superseded_revoked(self, serials: &[String]) -> Current {
        let superseded = self
            .superseded
            .into_iter()
            .map(|e| crate::ledger::Issuance {
                revoked: e.revoked || serials.contains(&e.serial),
                ..e
            })
            .collect();
        Current { superseded, ..self }
    }

    /// What a revocation of this record cannot reach at `now`, said plainly.
    pub fn unreached(&self, now: OffsetDateTime) -> Vec<String> {
        crate::ledger::unknown(
            &self.superseded,
            self.ledger_from.unwrap_or(self.meta.generation),
            &self.authority_id,
            now,
        )
    }

    /// The record's key.
    pub fn key(&self) -> EscrowKey {
        EscrowKey::new(self.cluster.clone(), self.kind)
    }
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("cluster", &self.cluster)
            .field("kind", &self.kind)
            .field("generation", &self.generation)
            .field("token", &self.token)
            .field("certificate_id", &self.certificate_id)
            .field("refused", &self.refused)
            .finish_non_exhaustive()
    }
}

/// The bundle in service for a cluster.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Current {
    /// The record format ([`SCHEMA`]).
    pub schema: u32,
    /// The cluster.
    pub cluster: ClusterName,
    /// The kind (absent in istio-cacerts' records).
    #[serde(default, skip_serializing_if = "is_istio")]
    pub kind: Kind,
    /// The token of the generation promoted.
    pub token: GenerationToken,
    /// The authority that issued it.
    pub authority_id: String,
    /// What the bundle's certificate is.
    pub meta: BundleMeta,
    /// The four files.
    #[serde(with = "bundle_json")]
    pub bundle: Bundle,
    /// When it was put in service.
    #[serde(with = "time::serde::rfc3339")]
    pub promoted_at: OffsetDateTime,
    /// The settings the bundle was issued with: what a rerun, renewal or rotation keeps unless
    /// changed on purpose. Absent in records written before they were kept (such a record is
    /// judged by its certificate alone, and records its terms at its next renewal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terms: Option<crate::terms::Terms>,
    /// Every change of terms, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<crate::terms::TermsChange>,
    /// The bundle's certificate was revoked (its cluster was deleted or retired): a record
    /// restored afterwards never puts it back in force, its next run issues a new generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Revoked>,
    /// Earlier generations still valid, oldest first: what a revocation reaches besides this one
    /// ([`crate::ledger`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub superseded: Vec<crate::ledger::Issuance>,
    /// The first generation the ledger knows; absent in records made before meshca kept one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger_from: Option<u64>,
    /// The intermediate's own empty CRL (istio layout), signed as it was put in service and
    /// valid until it expires: in CRL mode every cluster's `ca-crl.pem` carries it. Absent in
    /// records kept before meshca signed one there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub own_crl: Option<String>,
}

/// When and why a record's certificate was revoked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Revoked {
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// PCA's name of the reason (`KEY_COMPROMISE`, …).
    pub reason: String,
    /// Who asked: a person at `meshca revoke` (user@host), the account that sent a revoke
    /// request, or the cluster's deletion. Absent in records revoked before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Held by `meshca revoke`: no run re-issues or re-delivers this cluster until someone lifts
    /// it on purpose. A record revoked as its cluster was deleted is not held.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
    /// The hold is recorded, the authority's revocation not yet confirmed (a run stopped between
    /// the two): the next `meshca revoke` finishes it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub authority_pending: bool,
}

/// What escrow holds for one cluster.
#[derive(Debug, Clone, Default)]
pub struct Escrowed {
    /// The bundle in service, if any.
    pub current: Option<Current>,
    /// Only a pending record newer than `current`; a leftover from a finished generation is
    /// not reported.
    pub pending: Option<Pending>,
}

/// What escrow says of a record without reading it: figures the writer left beside the record
/// (Secrets Manager lists them 100 secrets a call), enough to keep a healthy bundle with no read
/// of the record and no call to the cluster. Only "keep" is ever decided from a summary; every
/// other verdict takes the full look, so a stale or missing summary costs a read, never a
/// wrong renewal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The generation in service.
    pub generation: u64,
    /// Its certificate's start.
    pub not_before: OffsetDateTime,
    /// Its certificate's end.
    pub not_after: OffsetDateTime,
    /// The authority that issued it.
    pub authority_id: String,
    /// SHA-256 (hex) of the record's root-cert.pem, as `BundleMeta::root_fingerprint_sha256`.
    pub root_sha256: String,
    /// SHA-256 (hex) over the bundle's public files (ca-cert.pem, cert-chain.pem, root-cert.pem):
    /// what a cluster's secret is checked against without reading the record.
    pub files_sha256: String,
    /// A version of the record is staged pending: a generation may be in flight.
    pub pending: bool,
}

impl Summary {
    /// The summary of a record in service; `None` if its certificate cannot be read (the
    /// record then has no summary, and is read each time).
    pub fn of(current: &Current) -> Option<Self> {
        let parsed = crate::validate::parse(&current.bundle).ok()?;
        let ca = parsed.ca_cert.first()?;
        Some(Summary {
            generation: current.meta.generation,
            not_before: ca.not_before,
            not_after: ca.not_after,
            authority_id: current.authority_id.clone(),
            root_sha256: current.meta.root_fingerprint_sha256.clone(),
            files_sha256: public_files_sha256(&current.bundle),
            pending: false,
        })
    }

    /// `Keep` when the summary alone shows a healthy bundle from this authority and root, not
    /// yet due; `None` when only reading the record can tell.
    pub fn keeps(
        &self,
        authority: &crate::AuthorityInfo,
        renewal: &crate::RenewalPolicy,
        now: OffsetDateTime,
    ) -> Option<crate::Verdict> {
        if self.pending || self.authority_id != authority.id || self.not_after <= now {
            return None;
        }
        if self.root_sha256 != crate::cert::sha256_hex(authority.root_bundle.as_bytes()) {
            return None;
        }
        Some(renewal.judge(self.not_before, self.not_after, now)).filter(|v| !v.is_due())
    }
}

/// SHA-256 over the public files of a bundle, each normalised PEM, NUL-separated.
pub(crate) fn public_files_sha256(b: &Bundle) -> String {
    crate::cert::sha256_hex(format!("{}\0{}\0{}", b.ca_cert, b.cert_chain, b.root_cert).as_bytes())
}

/// Result of claiming a generation.
#[derive(Debug)]
pub enum Claim {
    /// Our record is now the pending one.
    Won,
    /// Another run holds this generation; continue with its record.
    Lost(Box<Pending>),
}

/// Why escrow could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum EscrowError {
    /// A record that does not parse.
    #[error("escrow record for {cluster} is unreadable: {reason}")]
    Corrupt {
        /// The key.
        cluster: String,
        /// Where and what.
        reason: String,
    },
    #[error(
        "generation {generation} of {cluster} belongs to another run (token {token}); not overwriting it"
    )]
    /// Another run holds this generation, or moved the cluster on.
    Conflict {
        /// The key.
        cluster: String,
        /// The generation.
        generation: u64,
        /// The other run's token.
        token: String,
    },
    /// A record over the backend's limit.
    #[error("escrow record for {cluster} would be {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// The key.
        cluster: String,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    #[error(
        "escrow record for {cluster} was retired (its cluster was deleted or retired) and is scheduled for deletion; to reuse the name before the recovery window ends, restore it (aws secretsmanager restore-secret --secret-id {secret}): the next run then issues a fresh generation (the revoked certificate is never put back)"
    )]
    /// The record was retired and is scheduled for deletion.
    Retired {
        /// The key.
        cluster: String,
        /// The secret to restore.
        secret: String,
    },
    /// Any other failure of the backend: the next run tries again.
    #[error("escrow {operation} failed for {cluster}: {detail}")]
    Backend {
        /// The call.
        operation: &'static str,
        /// The key.
        cluster: String,
        /// What failed, as the backend said it.
        detail: String,
    },
}

/// Where bundles are kept between runs, and issuances in flight recorded: Secrets Manager or files.
#[async_trait::async_trait]
pub trait Escrow: Send + Sync {
    /// The record in service and a newer pending one, if any.
    async fn load(&self, key: &EscrowKey) -> Result<Escrowed, EscrowError>;
    /// Writes `pending` only if no pending record with its token exists (conditional write).
    async fn claim(&self, pending: &Pending) -> Result<Claim, EscrowError>;
    /// Adds the certificate id (or the refusal of its certificate) to the pending record that
    /// carries the same token.
    async fn record_issued(&self, pending: &Pending) -> Result<(), EscrowError>;
    /// Makes `current` the record in service and clears the pending record of its generation.
    async fn promote(&self, current: &Current) -> Result<(), EscrowError>;
    /// Rewrites the record in service as `current`, whose certificate was revoked
    /// ([`Current::revoked`]), so that a record restored later is known to hold a revoked one.
    async fn mark_revoked(&self, current: &Current) -> Result<(), EscrowError>;
    /// Removes the cluster's records (recoverable where the backend allows it).
    async fn retire(&self, key: &EscrowKey) -> Result<(), EscrowError>;
    /// Every key with a record here, sorted: the fleet as escrow knows it, with no cluster call.
    async fn keys(&self) -> Result<Vec<EscrowKey>, EscrowError>;
    /// Every record listed in bulk, with its summary where it has one (`None`: a record kept
    /// before summaries were). A backend that lists none answers with none: each record is then
    /// read when it is judged.
    async fn summaries(
        &self,
    ) -> Result<std::collections::BTreeMap<EscrowKey, Option<Summary>>, EscrowError> {
        Ok(std::collections::BTreeMap::new())
    }
    /// Writes the summary of the record in service, for a record kept before summaries were
    /// (a backend without summaries does nothing).
    async fn summarise(&self, key: &EscrowKey) -> Result<(), EscrowError> {
        let _ = key;
        Ok(())
    }
}

/// Deterministic per (authority, cluster, generation): 36 characters in UUID form, which fits
/// PCA's IdempotencyToken (≤ 36) and Secrets Manager's ClientRequestToken (32–64).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct GenerationToken(String);

impl GenerationToken {
    /// `key` is a cluster name (istio-cacerts) or an [`EscrowKey`]; both name an istio-cacerts
    /// generation alike, so its tokens are the ones they always were.
    pub fn derive(authority_id: &str, key: &dyn std::fmt::Display, generation: u64) -> Self {
        GenerationToken(uuid_shaped(&format!(
            "meshca/v1\0{authority_id}\0{key}\0{generation}"
        )))
    }

    /// A token of the same shape for a later step of this generation (an escrow write after
    /// the claim, say): distinct from the claim's token, yet the same on every retry.
    pub fn for_step(&self, step: &str) -> String {
        uuid_shaped(&format!("{}/{step}", self.0))
    }

    /// The token as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// SHA-256 of `input`, its first 128 bits written as a UUID (8-4-4-4-12 hex digits).
fn uuid_shaped(input: &str) -> String {
    let h = crate::cert::sha256_hex(input.as_bytes());
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl std::fmt::Display for GenerationToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

mod secret_string {
    use serde::{Deserialize, Deserializer, Serializer};
    use zeroize::Zeroizing;

    pub fn serialize<S: Serializer>(v: &Zeroizing<String>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Zeroizing<String>, D::Error> {
        Ok(Zeroizing::new(String::deserialize(d)?))
    }
}

mod bundle_json {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::bundle::Bundle;

    #[derive(Serialize, Deserialize)]
    struct Files {
        ca_cert: String,
        ca_key: String,
        cert_chain: String,
        root_cert: String,
    }

    pub fn serialize<S: Serializer>(b: &Bundle, s: S) -> Result<S::Ok, S::Error> {
        Files {
            ca_cert: b.ca_cert.clone(),
            ca_key: b.ca_key.to_string(),
            cert_chain: b.cert_chain.clone(),
            root_cert: b.root_cert.clone(),
        }
        .serialize(s)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bundle, D::Error> {
        let f = zeroize::Zeroizing::new(Files::deserialize(d)?.into_parts());
        Bundle::from_pems(&f.0, &f.1, &f.2, &f.3).map_err(serde::de::Error::custom)
    }

    impl Files {
        fn into_parts(self) -> Parts {
            Parts(self.ca_cert, self.ca_key, self.cert_chain, self.root_cert)
        }
    }
    struct Parts(String, String, String, String);
    impl zeroize::Zeroize for Parts {
        fn zeroize(&mut self) {
            self.1.zeroize();
        }
    }
}

#[cfg(test)]
mod key_tests {
    use super::*;

    #[test]
    fn keys_read_back_from_their_names_and_nothing_else_is_one() {
        for key in [
            EscrowKey::new("c1".parse().unwrap(), Kind::IstioCacerts),
            EscrowKey::new("c1".parse().unwrap(), Kind::XcpEdge),
            EscrowKey::new("Prod_EU_1".parse().unwrap(), Kind::IstioCacerts),
            EscrowKey::new("Prod_EU_1".parse().unwrap(), Kind::CertManagerCa),
        ] {
            assert_eq!(key.name().parse::<EscrowKey>(), Ok(key));
        }
        for bad in [
            "_rotation",
            "c1.istio-cacerts",
            "c1.nope",
            "-c1",
            "",
            "a/b",
            "c1.xcp-edge.x",
        ] {
            assert!(bad.parse::<EscrowKey>().is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_deterministic_uuid_shaped_and_distinct() {
        let c: ClusterName = "prod".parse().unwrap();
        let a =
            GenerationToken::derive("arn:aws:acm-pca:eu-west-1:1:certificate-authority/x", &c, 1);
        assert_eq!(
            a,
            GenerationToken::derive("arn:aws:acm-pca:eu-west-1:1:certificate-authority/x", &c, 1)
        );
        assert_eq!(a.as_str().len(), 36);
        assert_eq!(a.as_str().matches('-').count(), 4);
        assert_ne!(
            a,
            GenerationToken::derive("arn:aws:acm-pca:eu-west-1:1:certificate-authority/x", &c, 2)
        );
        assert_ne!(a, GenerationToken::derive("local:/tmp", &c, 1));
        // An istio-cacerts key names the generation the cluster name always named; another kind does not.
        let arn = "arn:aws:acm-pca:eu-west-1:1:certificate-authority/x";
        assert_eq!(
            GenerationToken::derive(arn, &EscrowKey::from(&c), 1),
            GenerationToken::derive(arn, &c, 1)
        );
        assert_ne!(
            GenerationToken::derive(arn, &EscrowKey::new(c.clone(), Kind::XcpEdge), 1),
            GenerationToken::derive(arn, &c, 1)
        );
    }

    /// A summary that keeps: issued by this authority under this root, a third of its life left.
    fn healthy() -> (Summary, crate::AuthorityInfo, OffsetDateTime) {
        use time::macros::datetime;
        let info = crate::AuthorityInfo {
            id: "arn:aws:acm-pca:eu-west-1:1:certificate-authority/a".into(),
            key_description: String::new(),
            key_algorithm: None,
            signing_algorithm: String::new(),
            root_bundle: "-----BEGIN CERTIFICATE-----\nroot\n-----END CERTIFICATE-----\n".into(),
            not_after: datetime!(2030-01-01 0:00 UTC),
        };
        let summary = Summary {
            generation: 3,
            not_before: datetime!(2026-01-01 0:00 UTC),
            not_after: datetime!(2027-01-01 0:00 UTC),
            authority_id: info.id.clone(),
            root_sha256: crate::cert::sha256_hex(info.root_bundle.as_bytes()),
            files_sha256: crate::cert::sha256_hex(b"files"),
            pending: false,
        };
        (summary, info, datetime!(2026-03-01 0:00 UTC))
    }

    #[test]
    fn a_summary_keeps_only_a_healthy_bundle_of_this_authority_and_root() {
        let (summary, info, now) = healthy();
        let renewal = crate::RenewalPolicy::default();
        let kept = summary.keeps(&info, &renewal, now).expect("healthy");
        assert_eq!(kept.not_after(), Some(summary.not_after));
        // Each reason to look closer: the full read decides.
        let mut s = summary.clone();
        s.pending = true;
        assert_eq!(
            s.keeps(&info, &renewal, now),
            None,
            "a generation may be in flight"
        );
        let mut s = summary.clone();
        s.authority_id = "arn:aws:acm-pca:eu-west-1:1:certificate-authority/b".into();
        assert_eq!(s.keeps(&info, &renewal, now), None, "another issuer");
        let mut s = summary.clone();
        s.root_sha256 = crate::cert::sha256_hex(b"another root");
        assert_eq!(s.keeps(&info, &renewal, now), None, "another root");
        // Due (less than a third of the validity left), and expired.
        assert_eq!(
            summary.keeps(
                &info,
                &renewal,
                time::macros::datetime!(2026-10-01 0:00 UTC)
            ),
            None
        );
        assert_eq!(
            summary.keeps(
                &info,
                &renewal,
                time::macros::datetime!(2027-02-01 0:00 UTC)
            ),
            None
        );
    }
}
