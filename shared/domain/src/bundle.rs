//! The four files istiod reads from `istio-system/cacerts`, normalised once.
//!
//! How a bundle is stored (escrow records), written (files, a Secret) or read back is the
//! business of the adapters; here is only what it is.

use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::pem::{self as pemfmt, CERTIFICATE, PRIVATE_KEY, PemError};

pub const CA_CERT: &str = "ca-cert.pem";
pub const CA_KEY: &str = "ca-key.pem";
pub const CERT_CHAIN: &str = "cert-chain.pem";
pub const ROOT_CERT: &str = "root-cert.pem";
/// The fleet's CRLs, in CRL mode (istiod 1.27+ reads it from the istio layout only).
pub const CA_CRL: &str = "ca-crl.pem";
pub const FILES: [&str; 4] = [CA_CERT, CA_KEY, CERT_CHAIN, ROOT_CERT];

/// A cacerts bundle, every PEM normalised. Not yet validated: `validate::validate` judges it.
#[derive(Clone, PartialEq, Eq)]
pub struct Bundle {
    pub ca_cert: String,
    pub ca_key: Zeroizing<String>,
    pub cert_chain: String,
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
    pub generation: u64,
    pub serial: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    pub certificate_id: String,
    pub fingerprint_sha256: String,
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
