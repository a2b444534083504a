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
use crate::kind::Kind;
use crate::bundle::{Bundle, BundleMeta};
use crate::cluster::ClusterName;
use crate::key::KeyAlgorithm;

/// Record format version, stored in every record so later formats can read older ones.
pub const SCHEMA: u32 = 1;

/// Whose records: one kind of certificate of one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EscrowKey {
    pub cluster: ClusterName,
    pub kind: Kind,
}

impl EscrowKey {
    pub fn new(cluster: ClusterName, kind: Kind) -> Self {
        EscrowKey { cluster, kind }
    }

    /// The cluster name for istio-cacerts, as every record before kinds existed;
    /// `<cluster>.<kind>` for the others — unambiguous, since a cluster name holds no dot.
    pub fn name(&self) -> String {
        match self.kind {
            Kind::IstioCacerts => self.cluster.to_string(),
            other => format!("{}.{other}", self.cluster),
        }
    }
}

/// `<cluster>` or `<cluster>.<kind>`, as [`EscrowKey::name`] writes it; anything else (the
/// rotation record, a foreign secret) is not a key.
impl std::str::FromStr for EscrowKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (cluster, kind) = match s.split_once('.') {
            Some((c, k)) => (c, k.parse::<Kind>().map_err(|e| e.to_string())?),
            None => (s, Kind::IstioCacerts),
        };
        let cluster: ClusterName = cluster.parse().map_err(|e: crate::cluster::InvalidClusterName| e.to_string())?;
        if kind == Kind::IstioCacerts && s.contains('.') {
            return Err(format!("{s:?}: istio-cacerts is named by its cluster alone"));
        }
        Ok(EscrowKey::new(cluster, kind))
    }
}

impl std::fmt::Display for EscrowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

impl From<&ClusterName> for EscrowKey {
    /// A cluster's Istio intermediate (`istio-cacerts`).
    fn from(cluster: &ClusterName) -> Self {
        EscrowKey::new(cluster.clone(), Kind::IstioCacerts)
    }
}

fn is_istio(kind: &Kind) -> bool {
    *kind == Kind::IstioCacerts
}

/// A generation being issued.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pending {
    pub schema: u32,
    pub cluster: ClusterName,
    /// Absent (istio-cacerts) in every record written before kinds existed, and still so.
    #[serde(default, skip_serializing_if = "is_istio")]
    pub kind: Kind,
    pub generation: u64,
    pub token: GenerationToken,
    pub authority_id: String,
    pub key_algorithm: KeyAlgorithm,
    #[serde(with = "secret_string")]
    pub ca_key: Zeroizing<String>,
    pub csr: String,
    pub certificate_id: Option<CertificateId>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The validity this generation asks the authority for, fixed when it begins: a resumed
    /// generation sends, and is checked against, what its first run asked for. Absent in records
    /// written before it was kept (they resume with the current settings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validity: Option<Validity>,
}

impl Pending {
    pub fn key(&self) -> EscrowKey {
        EscrowKey::new(self.cluster.clone(), self.kind)
    }
}

impl Current {
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
            .finish_non_exhaustive()
    }
}

/// The bundle in service for a cluster.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Current {
    pub schema: u32,
    pub cluster: ClusterName,
    #[serde(default, skip_serializing_if = "is_istio")]
    pub kind: Kind,
    pub token: GenerationToken,
    pub authority_id: String,
    pub meta: BundleMeta,
    #[serde(with = "bundle_json")]
    pub bundle: Bundle,
    #[serde(with = "time::serde::rfc3339")]
    pub promoted_at: OffsetDateTime,
}

/// What escrow holds for one cluster.
#[derive(Debug, Clone, Default)]
pub struct Escrowed {
    pub current: Option<Current>,
    /// Only a pending record newer than `current`; a leftover from a finished generation is
    /// not reported.
    pub pending: Option<Pending>,
}

/// Result of claiming a generation.
#[derive(Debug)]
pub enum Claim {
    /// Our record is now the pending one.
    Won,
    /// Another run holds this generation; continue with its record.
    Lost(Box<Pending>),
}

#[derive(Debug, thiserror::Error)]
pub enum EscrowError {
    #[error("escrow record for {cluster} is unreadable: {reason}")]
    Corrupt { cluster: String, reason: String },
    #[error("generation {generation} of {cluster} belongs to another run (token {token}); not overwriting it")]
    Conflict { cluster: String, generation: u64, token: String },
    #[error("escrow record for {cluster} would be {size} bytes, over the {limit}-byte limit")]
    TooLarge { cluster: String, size: usize, limit: usize },
    #[error(
        "escrow record for {cluster} was retired (its cluster was deleted) and is scheduled for deletion; restore it (aws secretsmanager restore-secret) to reuse the name before the recovery window ends"
    )]
    Retired { cluster: String },
    #[error("escrow {operation} failed for {cluster}: {detail}")]
    Backend { operation: &'static str, cluster: String, detail: String },
}

#[async_trait::async_trait]
pub trait Escrow: Send + Sync {
    async fn load(&self, key: &EscrowKey) -> Result<Escrowed, EscrowError>;
    /// Writes `pending` only if no pending record with its token exists (conditional write).
    async fn claim(&self, pending: &Pending) -> Result<Claim, EscrowError>;
    /// Adds the certificate id to the pending record that carries the same token.
    async fn record_issued(&self, pending: &Pending) -> Result<(), EscrowError>;
    /// Makes `current` the record in service and clears the pending record of its generation.
    async fn promote(&self, current: &Current) -> Result<(), EscrowError>;
    /// Removes the cluster's records (recoverable where the backend allows it).
    async fn retire(&self, key: &EscrowKey) -> Result<(), EscrowError>;
    /// Every key with a record here, sorted: the fleet as escrow knows it, with no cluster call.
    async fn keys(&self) -> Result<Vec<EscrowKey>, EscrowError>;
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
        GenerationToken(uuid_shaped(&format!("meshca/v1\0{authority_id}\0{key}\0{generation}")))
    }

    /// A token of the same shape for a later step of this generation (an escrow write after
    /// the claim, say): distinct from the claim's token, yet the same on every retry.
    pub fn for_step(&self, step: &str) -> String {
        uuid_shaped(&format!("{}/{step}", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// SHA-256 of `input`, its first 128 bits written as a UUID (8-4-4-4-12 hex digits).
fn uuid_shaped(input: &str) -> String {
    let h = crate::cert::sha256_hex(input.as_bytes());
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
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
        for key in [EscrowKey::new("c1".parse().unwrap(), Kind::IstioCacerts), EscrowKey::new("c1".parse().unwrap(), Kind::XcpEdge)] {
            assert_eq!(key.name().parse::<EscrowKey>(), Ok(key));
        }
        for bad in ["_rotation", "c1.istio-cacerts", "c1.nope", "C1", "", "a/b"] {
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
        let a = GenerationToken::derive("arn:aws:acm-pca:eu-west-1:1:certificate-authority/x", &c, 1);
        assert_eq!(a, GenerationToken::derive("arn:aws:acm-pca:eu-west-1:1:certificate-authority/x", &c, 1));
        assert_eq!(a.as_str().len(), 36);
        assert_eq!(a.as_str().matches('-').count(), 4);
        assert_ne!(a, GenerationToken::derive("arn:aws:acm-pca:eu-west-1:1:certificate-authority/x", &c, 2));
        assert_ne!(a, GenerationToken::derive("local:/tmp", &c, 1));
        // An istio-cacerts key names the generation the cluster name always named; another kind does not.
        let arn = "arn:aws:acm-pca:eu-west-1:1:certificate-authority/x";
        assert_eq!(GenerationToken::derive(arn, &EscrowKey::from(&c), 1), GenerationToken::derive(arn, &c, 1));
        assert_ne!(GenerationToken::derive(arn, &EscrowKey::new(c.clone(), Kind::XcpEdge), 1), GenerationToken::derive(arn, &c, 1));
    }
}
