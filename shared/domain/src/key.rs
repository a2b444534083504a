//! Private keys for cluster intermediates.
//!
//! A key is generated in memory and only ever leaves this type as PKCS#8 PEM wrapped in
//! [`Zeroizing`], so every copy we make is wiped when dropped. `Debug` never shows key bytes.

use std::fmt;
use std::str::FromStr;

use rcgen::{KeyPair, RsaKeySize, SignatureAlgorithm};
use zeroize::{Zeroize, Zeroizing};

/// The key algorithms an Istio intermediate may use and AWS Private CA accepts in a CSR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum KeyAlgorithm {
    /// RSA, 2048 bits.
    Rsa2048,
    /// RSA, 3072 bits.
    Rsa3072,
    /// RSA, 4096 bits.
    Rsa4096,
    /// EC on P-256 (Linkerd's only choice).
    EcP256,
    /// EC on P-384.
    EcP384,
}

impl KeyAlgorithm {
    /// Every algorithm, as `--help` lists them.
    pub const ALL: [KeyAlgorithm; 5] = [
        KeyAlgorithm::Rsa2048,
        KeyAlgorithm::Rsa3072,
        KeyAlgorithm::Rsa4096,
        KeyAlgorithm::EcP256,
        KeyAlgorithm::EcP384,
    ];

    /// The name flags and records use (`ec-p256`, `rsa-4096`).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::Rsa2048 => "rsa-2048",
            KeyAlgorithm::Rsa3072 => "rsa-3072",
            KeyAlgorithm::Rsa4096 => "rsa-4096",
            KeyAlgorithm::EcP256 => "ec-p256",
            KeyAlgorithm::EcP384 => "ec-p384",
        }
    }

    /// The algorithm this key signs its own CSR with (and, for a CA key, what it signs with).
    pub(crate) fn signature_algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => {
                &rcgen::PKCS_RSA_SHA256
            }
            KeyAlgorithm::EcP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::EcP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "unknown key algorithm {0:?}; expected one of rsa-2048, rsa-3072, rsa-4096, ec-p256, ec-p384"
)]
/// A key algorithm name meshca does not know.
pub struct UnknownKeyAlgorithm(pub String);

impl FromStr for KeyAlgorithm {
    type Err = UnknownKeyAlgorithm;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let normalised = s.trim().to_ascii_lowercase().replace('_', "-");
        match normalised.as_str() {
            "rsa-2048" | "rsa2048" => Ok(KeyAlgorithm::Rsa2048),
            "rsa-3072" | "rsa3072" => Ok(KeyAlgorithm::Rsa3072),
            "rsa-4096" | "rsa4096" => Ok(KeyAlgorithm::Rsa4096),
            "ec-p256" | "ecdsa-p256" | "p256" | "p-256" | "ec-prime256v1" => {
                Ok(KeyAlgorithm::EcP256)
            }
            "ec-p384" | "ecdsa-p384" | "p384" | "p-384" | "ec-secp384r1" => {
                Ok(KeyAlgorithm::EcP384)
            }
            _ => Err(UnknownKeyAlgorithm(s.to_string())),
        }
    }
}

impl From<KeyAlgorithm> for String {
    fn from(k: KeyAlgorithm) -> String {
        k.as_str().to_string()
    }
}

impl TryFrom<String> for KeyAlgorithm {
    type Error = UnknownKeyAlgorithm;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// A key that could not be generated or read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Generation failed.
    #[error("key generation failed for {0}: {1}")]
    Generate(KeyAlgorithm, rcgen::Error),
    /// The PEM is not a PKCS#8 private key.
    #[error("not a PKCS#8 private key in PEM form (a \"PRIVATE KEY\" block): {0}")]
    Parse(rcgen::Error),
    /// A key of a type or size meshca does not use.
    #[error("unsupported private key: {0}")]
    Unsupported(String),
}

/// A private key held in memory, wiped on drop.
pub struct PrivateKey {
    pair: KeyPair,
    algorithm: KeyAlgorithm,
}

impl PrivateKey {
    /// A new key of `algorithm`, from aws-lc-rs's generator.
    pub fn generate(algorithm: KeyAlgorithm) -> Result<Self, KeyError> {
        let sig = algorithm.signature_algorithm();
        let pair = match algorithm {
            KeyAlgorithm::Rsa2048 => KeyPair::generate_rsa_for(sig, RsaKeySize::_2048),
            KeyAlgorithm::Rsa3072 => KeyPair::generate_rsa_for(sig, RsaKeySize::_3072),
            KeyAlgorithm::Rsa4096 => KeyPair::generate_rsa_for(sig, RsaKeySize::_4096),
            KeyAlgorithm::EcP256 | KeyAlgorithm::EcP384 => KeyPair::generate_for(sig),
        }
        .map_err(|e| KeyError::Generate(algorithm, e))?;
        Ok(PrivateKey { pair, algorithm })
    }

    /// Loads a PKCS#8 PEM key and works out which of our algorithms it is.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, KeyError> {
        let pair = KeyPair::from_pem(pem).map_err(KeyError::Parse)?;
        let algorithm = classify(&pair)?;
        Ok(PrivateKey { pair, algorithm })
    }

    /// Which algorithm the key is.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// PKCS#8 PEM, normalised, in a buffer that wipes itself.
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(self.pair.serialize_pem())
    }

    /// The raw public key (RSAPublicKey DER or uncompressed EC point), as it appears in the
    /// subjectPublicKey bit string of a certificate — what "key matches certificate" compares.
    pub fn public_key_raw(&self) -> &[u8] {
        self.pair.public_key_raw()
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn public_key_der(&self) -> Vec<u8> {
        rcgen::PublicKeyData::subject_public_key_info(&self.pair)
    }

    /// The key as rcgen signs with it (the local CA signs with its root key).
    pub fn key_pair(&self) -> &KeyPair {
        &self.pair
    }
}

impl Drop for PrivateKey {
    fn drop(&mut self) {
        self.pair.zeroize();
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

fn classify(pair: &KeyPair) -> Result<KeyAlgorithm, KeyError> {
    use x509_parser::prelude::FromDer;
    let der = rcgen::PublicKeyData::subject_public_key_info(pair);
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&der)
        .map_err(|e| KeyError::Unsupported(e.to_string()))?;
    key_algorithm_of(&spki).map_err(KeyError::Unsupported)
}

/// Names the key algorithm of a SubjectPublicKeyInfo, or says what it is when we don't support it.
pub fn key_algorithm_of(
    spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>,
) -> Result<KeyAlgorithm, String> {
    use x509_parser::oid_registry::{
        OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    };
    use x509_parser::public_key::PublicKey;
    let alg = &spki.algorithm.algorithm;
    if *alg == OID_PKCS1_RSAENCRYPTION {
        let bits = match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => rsa.key_size(),
            _ => return Err("RSA key that does not parse".into()),
        };
        return match bits {
            2048 => Ok(KeyAlgorithm::Rsa2048),
            3072 => Ok(KeyAlgorithm::Rsa3072),
            4096 => Ok(KeyAlgorithm::Rsa4096),
            other => Err(format!("rsa-{other}")),
        };
    }
    if *alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        return match curve {
            Some(c) if c == OID_EC_P256 => Ok(KeyAlgorithm::EcP256),
            Some(c) if c == OID_NIST_EC_P384 => Ok(KeyAlgorithm::EcP384),
            Some(c) => Err(format!("EC key on curve {c}")),
            None => Err("EC key without a named curve".into()),
        };
    }
    Err(format!("key of type {alg}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_users_type() {
        assert_eq!(
            "ec-p256".parse::<KeyAlgorithm>().unwrap(),
            KeyAlgorithm::EcP256
        );
        assert_eq!(
            "RSA_4096".parse::<KeyAlgorithm>().unwrap(),
            KeyAlgorithm::Rsa4096
        );
        let err = "dsa-1024".parse::<KeyAlgorithm>().unwrap_err().to_string();
        assert!(err.contains("dsa-1024") && err.contains("ec-p384"), "{err}");
    }

    #[test]
    fn every_algorithm_round_trips_through_pkcs8() {
        for alg in KeyAlgorithm::ALL {
            let key = PrivateKey::generate(alg).unwrap();
            let pem = key.to_pkcs8_pem();
            assert!(
                pem.starts_with(&format!("-----BEGIN {}-----", crate::pem::PRIVATE_KEY)),
                "{alg}"
            );
            let back = PrivateKey::from_pkcs8_pem(&pem).unwrap();
            assert_eq!(back.algorithm(), alg);
            assert_eq!(back.public_key_raw(), key.public_key_raw());
        }
    }

    #[test]
    fn debug_shows_no_key_material() {
        let key = PrivateKey::generate(KeyAlgorithm::EcP256).unwrap();
        let dbg = format!("{key:?}");
        assert!(!dbg.contains("BEGIN") && dbg.contains("EcP256"), "{dbg}");
    }
}
