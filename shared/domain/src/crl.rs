//! Certificate revocation lists as the data plane reads them.
//!
//! Envoy (BoringSSL), given a CRL file, checks every certificate of a presented chain and
//! refuses the chain when a CA in it has no CRL there, or when a CRL is past its nextUpdate.
//! So a fleet's `ca-crl.pem` holds one CRL per CA in any chain: the authority's (which lists
//! revoked cluster intermediates) and each cluster intermediate's own, empty, signed by meshca
//! with the intermediate's key and valid until the intermediate itself expires, so it never
//! needs signing again. istiod (1.27+) ignores a whole `cacerts` update whose `ca-crl.pem` holds
//! no valid CRL signed by that cluster's own intermediate: [`signed_by_own`] is that rule.

use rcgen::{
    CertificateRevocationListParams, Issuer, KeyIdMethod, RevokedCertParams, SerialNumber,
};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use crate::authority::RevocationReason;
use crate::key::PrivateKey;

/// The PEM label of a CRL.
pub const X509_CRL: &str = "X509 CRL";

/// A CRL that could not be signed or read, or a `ca-crl.pem` istiod would refuse.
#[derive(Debug, thiserror::Error)]
pub enum CrlError {
    /// The CRL could not be signed.
    #[error("signing a CRL for {issuer}: {reason}")]
    Sign {
        /// The CA that signs it.
        issuer: String,
        /// What failed.
        reason: String,
    },
    /// `ca-crl.pem` holds something that is not a CRL in PEM.
    #[error("ca-crl.pem: {0}")]
    Parse(String),
    /// No CRL in `ca-crl.pem` is signed by the cluster's own intermediate.
    #[error("ca-crl.pem holds no valid CRL signed by {0} (istiod would discard the whole update)")]
    NoOwnCrl(String),
    /// A CRL in `ca-crl.pem` is past its nextUpdate.
    #[error("a CRL in ca-crl.pem lapsed at {0}: every proxy holding it refuses every peer")]
    Lapsed(String),
    /// The fleet's CRLs outgrew what Kubernetes holds.
    #[error("{0}")]
    TooLarge(String),
    /// A CRL an authority published that the data plane could not use.
    #[error("the CRL published at {location}: {reason}")]
    Published {
        /// Where it was read.
        location: String,
        /// Why it cannot be used.
        reason: String,
    },
}

/// One revoked certificate, as a CRL entry.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Hex, as PCA and `openssl x509 -serial` print it.
    pub serial: String,
    /// When it was revoked.
    pub at: OffsetDateTime,
    /// Why.
    pub reason: RevocationReason,
}

/// A CRL signed by the CA `issuer_pem` with `key`, listing `entries`, valid from `this_update`
/// to `next_update`; its number orders it after every earlier one of the same issuer.
pub fn sign(
    issuer_pem: &str,
    key: &PrivateKey,
    entries: &[Entry],
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
) -> Result<String, CrlError> {
    let err = |reason: String| CrlError::Sign {
        issuer: issuer_pem
            .lines()
            .nth(1)
            .unwrap_or_default()
            .chars()
            .take(16)
            .collect(),
        reason,
    };
    let issuer =
        Issuer::from_ca_cert_pem(issuer_pem, key.key_pair()).map_err(|e| err(e.to_string()))?;
    let revoked_certs = entries
        .iter()
        .map(|e| {
            let serial =
                hex::decode(&e.serial).map_err(|x| err(format!("serial {}: {x}", e.serial)))?;
            Ok(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&serial),
                revocation_time: e.at,
                reason_code: Some(reason_code(e.reason)),
                invalidity_date: None,
            })
        })
        .collect::<Result<Vec<_>, CrlError>>()?;
    let number = this_update.unix_timestamp().max(0) as u64;
    // The data plane matches a CRL to its CA by the CRL's authority key identifier against the
    // CA's subject key identifier: take the CA's own (a Private CA or Vault derives it with
    // SHA-1, rcgen with SHA-256), derived only for a CA certificate that carries none.
    let key_identifier_method = first_certificate(issuer_pem)
        .ok()
        .and_then(|der| {
            let (_, cert) = X509Certificate::from_der(&der).ok()?;
            subject_key_id(&cert).map(<[u8]>::to_vec)
        })
        .map_or(KeyIdMethod::Sha256, KeyIdMethod::PreSpecified);
    let params = CertificateRevocationListParams {
        this_update,
        next_update,
        crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method,
    };
    let crl = params.signed_by(&issuer).map_err(|e| err(e.to_string()))?;
    crl.pem().map_err(|e| err(e.to_string()))
}

fn reason_code(reason: RevocationReason) -> rcgen::RevocationReason {
    match reason {
        RevocationReason::Unspecified => rcgen::RevocationReason::Unspecified,
        RevocationReason::KeyCompromise => rcgen::RevocationReason::KeyCompromise,
        RevocationReason::CaCompromise => rcgen::RevocationReason::CaCompromise,
        RevocationReason::AffiliationChanged => rcgen::RevocationReason::AffiliationChanged,
        RevocationReason::Superseded => rcgen::RevocationReason::Superseded,
        RevocationReason::CessationOfOperation => rcgen::RevocationReason::CessationOfOperation,
    }
}

/// The intermediate `ca_cert_pem`'s own empty CRL, signed with its key `ca_key_pem` and valid
/// from the intermediate's notBefore to its notAfter: signed once per generation, never again.
pub fn own(ca_cert_pem: &str, ca_key_pem: &str) -> Result<String, CrlError> {
    let key = PrivateKey::from_pkcs8_pem(ca_key_pem).map_err(|e| CrlError::Sign {
        issuer: "the intermediate".into(),
        reason: e.to_string(),
    })?;
    let der = first_certificate(ca_cert_pem)?;
    let (_, ca) = X509Certificate::from_der(&der).map_err(|e| CrlError::Parse(e.to_string()))?;
    let (from, until) = (ca.validity().not_before, ca.validity().not_after);
    sign(
        ca_cert_pem,
        &key,
        &[],
        from.to_datetime(),
        until.to_datetime(),
    )
}

/// What one CRL of a bundle says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The CA that signed it, as text.
    pub issuer: String,
    /// When it lapses; `None`: never.
    pub next_update: Option<OffsetDateTime>,
    /// Revoked serials, hex.
    pub serials: Vec<String>,
}

/// Every CRL in a `ca-crl.pem` text, in order.
pub fn parse(text: &str) -> Result<Vec<Listed>, CrlError> {
    ders(text)?
        .iter()
        .map(|der| {
            let (_, crl) = CertificateRevocationList::from_der(der)
                .map_err(|e| CrlError::Parse(e.to_string()))?;
            Ok(Listed {
                issuer: crl.issuer().to_string(),
                next_update: crl.next_update().map(|t| t.to_datetime()),
                serials: crl
                    .iter_revoked_certificates()
                    .map(|r| {
                        hex::encode(r.raw_serial())
                            .trim_start_matches("00")
                            .to_string()
                    })
                    .collect(),
            })
        })
        .collect()
}

/// Whether two `ca-crl.pem` texts say the same thing to a verifier: the same CRLs in the same
/// order, each with the same issuer, number, key identifier, next update and revoked serials.
/// A CRL signed again with the same content differs in its signature only (ECDSA signatures are
/// randomised): delivering it again would rewrite every cluster's secret for nothing.
pub fn equivalent(a: &str, b: &str) -> bool {
    let facts = |text: &str| -> Option<Vec<Vec<u8>>> {
        ders(text)
            .ok()?
            .iter()
            .map(|der| {
                let (_, crl) = CertificateRevocationList::from_der(der).ok()?;
                // What a verifier reads: the issuer, the next update, the extensions (the CRL
                // number and key identifier among them) and each revoked serial.
                let mut facts = crl.issuer().as_raw().to_vec();
                let next = crl.next_update().map_or(0, |t| t.timestamp());
                facts.extend(next.to_be_bytes());
                for x in crl.extensions() {
                    facts.extend(x.value);
                }
                for r in crl.iter_revoked_certificates() {
                    facts.extend(r.raw_serial());
                }
                Some(facts)
            })
            .collect()
    };
    a == b || facts(a).is_some_and(|fa| facts(b).is_some_and(|fb| fa == fb))
}

fn ders(text: &str) -> Result<Vec<Vec<u8>>, CrlError> {
    Ok(crate::pem::parse_blocks("ca-crl.pem", text, X509_CRL)
        .map_err(|e| CrlError::Parse(e.to_string()))?
        .into_iter()
        .map(pem::Pem::into_contents)
        .collect())
}

/// istiod's rule: `text` holds a CRL issued by `ca_cert_pem`'s subject whose signature verifies
/// with its key and that has not lapsed at `now`.
pub fn signed_by_own(text: &str, ca_cert_pem: &str, now: OffsetDateTime) -> Result<(), CrlError> {
    CrlSet::parse(text)?.signed_by_own(ca_cert_pem, now)
}

/// The CRLs of one `ca-crl.pem`, parsed once and found by issuer: a fleet's bundle is checked
/// against every cluster's intermediate (a thousand clusters, a thousand CRLs each), so each
/// check looks only at the CRLs its CA issued.
pub struct CrlSet {
    ders: Vec<Vec<u8>>,
    by_issuer: std::collections::HashMap<Vec<u8>, Vec<usize>>,
}

impl CrlSet {
    /// Every CRL in `text`; an error if any is not one.
    pub fn parse(text: &str) -> Result<Self, CrlError> {
        let ders = ders(text)?;
        let mut by_issuer: std::collections::HashMap<Vec<u8>, Vec<usize>> = Default::default();
        for (i, der) in ders.iter().enumerate() {
            let (_, crl) = CertificateRevocationList::from_der(der)
                .map_err(|e| CrlError::Parse(e.to_string()))?;
            by_issuer
                .entry(crl.issuer().as_raw().to_vec())
                .or_default()
                .push(i);
        }
        Ok(CrlSet { ders, by_issuer })
    }

    /// istiod's rule for the intermediate `ca_cert_pem` (see [`signed_by_own`]).
    pub fn signed_by_own(&self, ca_cert_pem: &str, now: OffsetDateTime) -> Result<(), CrlError> {
        let ca_der = first_certificate(ca_cert_pem)?;
        let (_, ca) =
            X509Certificate::from_der(&ca_der).map_err(|e| CrlError::Parse(e.to_string()))?;
        let own = self
            .by_issuer
            .get(ca.subject().as_raw())
            .into_iter()
            .flatten()
            .any(|&i| {
                CertificateRevocationList::from_der(&self.ders[i])
                    .is_ok_and(|(_, crl)| in_force(&crl, &ca, now))
            });
        own.then_some(())
            .ok_or_else(|| CrlError::NoOwnCrl(ca.subject().to_string()))
    }
}

fn first_certificate(pem_text: &str) -> Result<Vec<u8>, CrlError> {
    crate::pem::certificates("ca-cert.pem", pem_text)
        .ok()
        .and_then(|c| c.into_iter().next())
        .ok_or_else(|| CrlError::Parse("ca-cert.pem holds no certificate".into()))
}

/// Issued by `ca`, signed with its key, not lapsed at `now`, and found for `ca` by a verifier:
/// a CRL whose authority key identifier differs from the CA's subject key identifier is never
/// looked at (BoringSSL: "unable to get certificate CRL").
fn in_force(
    crl: &CertificateRevocationList<'_>,
    ca: &X509Certificate<'_>,
    now: OffsetDateTime,
) -> bool {
    crl.issuer().as_raw() == ca.subject().as_raw()
        && crl.verify_signature(ca.public_key()).is_ok()
        && crl.next_update().is_none_or(|t| t.to_datetime() > now)
        && key_ids_agree(crl, ca)
}

fn key_ids_agree(crl: &CertificateRevocationList<'_>, ca: &X509Certificate<'_>) -> bool {
    use x509_parser::extensions::ParsedExtension;
    let authority = crl
        .extensions()
        .iter()
        .find_map(|x| match x.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|k| k.0)
            }
            _ => None,
        });
    let subject = subject_key_id(ca);
    match (authority, subject) {
        (Some(a), Some(s)) => a == s,
        _ => true,
    }
}

/// The subject key identifier of a certificate, if it has one.
fn subject_key_id<'a>(cert: &'a X509Certificate<'_>) -> Option<&'a [u8]> {
    use x509_parser::extensions::ParsedExtension;
    cert.extensions()
        .iter()
        .find_map(|x| match x.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(ski) => Some(ski.0),
            _ => None,
        })
}

/// The issuing-distribution-point extension, which marks a partitioned CRL.
const ISSUING_DISTRIBUTION_POINT: &str = "2.5.29.28";

/// A CRL an authority published (DER, as AWS Private CA writes it to S3), checked as the data
/// plane will use it and turned into PEM: issued and signed by `issuer_pem`'s CA, not lapsed at
/// `now`, and complete. A partitioned CRL carries a critical issuing distribution point that a
/// fleet bundle cannot honour (one CRL per CA is what Envoy looks up), so it is refused.
pub fn published(
    location: &str,
    der: &[u8],
    issuer_pem: &str,
    now: OffsetDateTime,
) -> Result<String, CrlError> {
    let bad = |reason: String| CrlError::Published {
        location: location.to_string(),
        reason,
    };
    let (_, crl) =
        CertificateRevocationList::from_der(der).map_err(|e| bad(format!("not a DER CRL: {e}")))?;
    if crl
        .extensions()
        .iter()
        .any(|x| x.oid.to_id_string() == ISSUING_DISTRIBUTION_POINT)
    {
        return Err(bad(
            "a partitioned CRL (it carries an issuing distribution point): set the CA's CrlConfiguration CrlType to COMPLETE".into(),
        ));
    }
    let ca_der = first_certificate(issuer_pem)?;
    let (_, ca) = X509Certificate::from_der(&ca_der).map_err(|e| CrlError::Parse(e.to_string()))?;
    if !in_force(&crl, &ca, now) {
        return Err(bad(format!(
            "not a CRL in force from {} (another issuer, a signature its key does not verify, or past its nextUpdate)",
            ca.subject()
        )));
    }
    Ok(crate::pem::encode(X509_CRL, &[der]))
}

/// The URLs in a certificate's CRL distribution points: where the CRL of its issuer is kept.
pub fn distribution_points(cert_der: &[u8]) -> Vec<String> {
    use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
    let Ok((_, cert)) = X509Certificate::from_der(cert_der) else {
        return Vec::new();
    };
    let mut urls = Vec::new();
    for ext in cert.extensions() {
        let ParsedExtension::CRLDistributionPoints(points) = ext.parsed_extension() else {
            continue;
        };
        for point in points.iter() {
            if let Some(DistributionPointName::FullName(names)) = &point.distribution_point {
                urls.extend(names.iter().filter_map(|n| match n {
                    GeneralName::URI(uri) => Some(uri.to_string()),
                    _ => None,
                }));
            }
        }
    }
    urls
}
