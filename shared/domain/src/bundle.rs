//! The four files istiod reads from `istio-system/cacerts`, normalised once.
//!
//! How a bundle is stored (escrow records), written (files, a Secret) or read back is the
//! business of the adapters; here is only what it is.

use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::pem::{self as pemfmt, CERTIFICATE, PRIVATE_KEY, PemError};

/// The intermediate's certificate, as istiod names the file.
pub const CA_CERT: &str = "ca-cert.pem";
/// The intermediate's private key.
pub const CA_KEY: &str = "ca-key.pem";
/// The intermediate and every CA above it, root last.
pub const CERT_CHAIN: &str = "cert-chain.pem";
/// The roots the mesh trusts (two during a root rotation).
pub const ROOT_CERT: &str = "root-cert.pem";
/// The fleet's CRLs, in CRL mode (istiod 1.27+ reads it from the istio layout only).
pub const CA_CRL: &str = "ca-crl.pem";
/// The four files, in the order istiod documents them.
pub const FILES: [&str; 4] = [CA_CERT, CA_KEY, CERT_CHAIN, ROOT_CERT];

/// A cacerts bundle, every PEM normalised. Not yet validated: `validate::validate` judges it.
#[derive(Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The intermediate's certificate, normalised PEM.
    pub ca_cert: String,
    /// Its PKCS#8 key, wiped when dropped.
    pub ca_key: Zeroizing<String>,
    /// The intermediate and every CA above it.
    pub cert_chain: String,
    /// The roots to trust.
    pub root_cert: String,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("ca_cert", &self.ca_cert)
            .field("ca_key", &"<redacted>")
            .field("cert_chain", &self.cert_chain)
            .field("root_cert", &self.root_cert)
            .finish()
    }
}

/// What meshca records about a bundle it issued: kept in escrow beside it, and written as
/// annotations beside it in a cluster.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BundleMeta {
    /// Which generation of the cluster's CA this is: 1, 2, … one per issuance.
    pub generation: u64,
    /// The certificate's serial, hex.
    pub serial: String,
    /// When the certificate expires.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// The authority's id for it (a PCA certificate ARN; Vault's and the local CA's own forms).
    pub certificate_id: String,
    /// SHA-256 of the certificate's DER, hex: what a delivered secret is checked against.
    pub fingerprint_sha256: String,
    /// SHA-256 of `root-cert.pem`, hex: which roots the bundle trusts.
    pub root_fingerprint_sha256: String,
    /// Whose bundle this is: the cluster and kind it was issued for. A secret that says so is
    /// never overwritten with another cluster's bundle. Absent in records and secrets written
    /// before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<crate::kind::EscrowKey>,
}

impl Bundle {
    /// Builds a bundle from PEM texts of any tidiness; each is normalised here, once.
    pub fn from_pems(
        ca_cert: &str,
        ca_key: &str,
        cert_chain: &str,
        root_cert: &str,
    ) -> Result<Self, PemError> {
        Ok(Bundle {
            ca_cert: pemfmt::normalise(CA_CERT, ca_cert, CERTIFICATE)?,
            ca_key: Zeroizing::new(pemfmt::normalise(CA_KEY, ca_key, PRIVATE_KEY)?),
            cert_chain: pemfmt::normalise(CERT_CHAIN, cert_chain, CERTIFICATE)?,
            root_cert: pemfmt::normalise(ROOT_CERT, root_cert, CERTIFICATE)?,
        })
    }

    /// (file name, contents) in the order istiod documents them.
    pub fn files(&self) -> [(&'static str, &str); 4] {
        [
            (CA_CERT, &self.ca_cert),
            (CA_KEY, &self.ca_key),
            (CERT_CHAIN, &self.cert_chain),
            (ROOT_CERT, &self.root_cert),
        ]
    }
}
