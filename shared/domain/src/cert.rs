//! A parsed X.509 certificate: the facts bundle validation, inspection and annotations need.

use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::key::{KeyAlgorithm, key_algorithm_of};

/// Bytes that do not parse as the certificate they should be.
#[derive(Debug, thiserror::Error)]
#[error("{what} is not a valid X.509 certificate: {reason}")]
pub struct CertError {
    /// Which certificate (`ca-cert.pem`, `the CA's root`).
    pub what: String,
    /// What the parser said.
    pub reason: String,
}

/// Owned view of one certificate. The DER is kept so signatures can be checked later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// The certificate as it was given.
    pub der: Vec<u8>,
    /// The subject, as text (`CN=…, O=…`).
    pub subject: String,
    /// The issuer, as text.
    pub issuer: String,
    /// Colon-free lowercase hex, as PCA and `openssl x509 -serial` print it.
    pub serial: String,
    /// Not valid before this instant.
    pub not_before: OffsetDateTime,
    /// Not valid after this instant.
    pub not_after: OffsetDateTime,
    /// Basic constraints say CA.
    pub is_ca: bool,
    /// Basic constraints' path length, if any.
    pub path_len: Option<u32>,
    /// Key usage allows signing certificates.
    pub key_cert_sign: bool,
    /// It has an extended key usage extension at all.
    pub has_eku: bool,
    /// ExtendedKeyUsage serverAuth / clientAuth (TLS identities need both).
    pub server_auth: bool,
    /// Extended key usage allows TLS clients.
    pub client_auth: bool,
    /// KeyUsage digitalSignature.
    pub digital_signature: bool,
    /// SubjectAltName entries by type.
    pub uri_sans: Vec<String>,
    /// DNS names among the subject alternative names.
    pub dns_sans: Vec<String>,
    /// IP addresses among the subject alternative names.
    pub ip_sans: Vec<std::net::IpAddr>,
    /// The public key's algorithm, or why it is not one meshca knows.
    pub key_algorithm: Result<KeyAlgorithm, String>,
    /// subjectPublicKey bit string contents.
    pub public_key_raw: Vec<u8>,
    /// SHA-256 of the DER, hex.
    pub sha256_fingerprint: String,
}

impl Certificate {
    /// Parses `der`; `what` names it in errors.
    pub fn from_der(what: &str, der: Vec<u8>) -> Result<Self, CertError> {
        let err = |reason: String| CertError {
            what: what.to_string(),
            reason,
        };
        let (rest, x) = X509Certificate::from_der(&der).map_err(|e| err(e.to_string()))?;
        if !rest.is_empty() {
            return Err(err("trailing bytes after the certificate".into()));
        }
        let bc = x.basic_constraints().map_err(|e| err(e.to_string()))?;
        let ku = x.key_usage().map_err(|e| err(e.to_string()))?;
        let eku = x.extended_key_usage().map_err(|e| err(e.to_string()))?;
        let spki = x.public_key();
        let (uri_sans, dns_sans, ip_sans) = sans(&x).map_err(err)?;
        let cert = Certificate {
            subject: x.subject().to_string(),
            issuer: x.issuer().to_string(),
            serial: hex::encode(x.raw_serial())
                .trim_start_matches("00")
                .to_string(),
            not_before: x.validity().not_before.to_datetime(),
            not_after: x.validity().not_after.to_datetime(),
            is_ca: bc.as_ref().is_some_and(|b| b.value.ca),
            path_len: bc.as_ref().and_then(|b| b.value.path_len_constraint),
            key_cert_sign: ku.as_ref().is_some_and(|k| k.value.key_cert_sign()),
            has_eku: eku.is_some(),
            server_auth: eku.as_ref().is_some_and(|e| e.value.server_auth),
            client_auth: eku.as_ref().is_some_and(|e| e.value.client_auth),
            digital_signature: ku.as_ref().is_some_and(|k| k.value.digital_signature()),
            uri_sans,
            dns_sans,
            ip_sans,
            key_algorithm: key_algorithm_of(spki),
            public_key_raw: spki.subject_public_key.data.to_vec(),
            sha256_fingerprint: sha256_hex(&der),
            der: Vec::new(),
        };
        Ok(Certificate { der, ..cert })
    }

    /// Whether `issuer` signed this certificate (names chain and the signature verifies).
    pub fn signed_by(&self, issuer: &Certificate) -> Result<(), String> {
        let (_, me) = X509Certificate::from_der(&self.der).map_err(|e| e.to_string())?;
        let (_, them) = X509Certificate::from_der(&issuer.der).map_err(|e| e.to_string())?;
        if me.issuer().as_raw() != them.subject().as_raw() {
            return Err(format!(
                "issuer \"{}\" is not \"{}\"",
                self.issuer, issuer.subject
            ));
        }
        me.verify_signature(Some(them.public_key())).map_err(|e| {
            format!(
                "signature of \"{}\" does not verify with the key of \"{}\": {e}",
                self.subject, issuer.subject
            )
        })
    }

    /// Issued by itself: its subject is its issuer and its own key verifies its signature.
    pub fn is_self_signed(&self) -> bool {
        self.subject == self.issuer && self.signed_by(self).is_ok()
    }

    /// Fingerprint in the colon-separated uppercase form `openssl x509 -fingerprint` prints.
    pub fn fingerprint_openssl(&self) -> String {
        self.sha256_fingerprint
            .as_bytes()
            .chunks(2)
            .map(|c| {
                std::str::from_utf8(c)
                    .unwrap_or_default()
                    .to_ascii_uppercase()
            })
            .collect::<Vec<_>>()
            .join(":")
    }
}

type Sans = (Vec<String>, Vec<String>, Vec<std::net::IpAddr>);

/// URI, DNS and IP subjectAltNames.
fn sans(x: &X509Certificate<'_>) -> Result<Sans, String> {
    use x509_parser::extensions::GeneralName;
    let mut out: Sans = Default::default();
    let Some(san) = x.subject_alternative_name().map_err(|e| e.to_string())? else {
        return Ok(out);
    };
    for name in &san.value.general_names {
        match name {
            GeneralName::URI(u) => out.0.push(u.to_string()),
            GeneralName::DNSName(d) => out.1.push(d.to_string()),
            GeneralName::IPAddress(b) => {
                let ip = match (<[u8; 4]>::try_from(*b), <[u8; 16]>::try_from(*b)) {
                    (Ok(v4), _) => std::net::IpAddr::from(v4),
                    (_, Ok(v6)) => std::net::IpAddr::from(v6),
                    _ => return Err(format!("an IP subjectAltName of {} bytes", b.len())),
                };
                out.2.push(ip);
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The subject name of a certificate, as DER: compared byte for byte, so a name that merely
/// prints alike never matches.
pub fn subject_of(der: &[u8]) -> Option<Vec<u8>> {
    X509Certificate::from_der(der)
        .ok()
        .map(|(_, x)| x.subject().as_raw().to_vec())
}

/// The first common name in a subject name (DER), when it has one: what an authority's listing
/// that prints names as text can be searched by before the DER is compared.
pub fn common_name(subject: &[u8]) -> Option<String> {
    let (_, name) = x509_parser::x509::X509Name::from_der(subject).ok()?;
    let cn = name.iter_common_name().next()?.as_str().ok()?;
    Some(cn.to_string())
}

/// SHA-256 of `data`, lower-case hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subject_s_common_name_is_found_and_a_name_without_one_has_none() {
        let key = rcgen::KeyPair::generate().unwrap();
        let der = |dn: rcgen::DistinguishedName| {
            let mut params = rcgen::CertificateParams::default();
            params.distinguished_name = dn;
            let cert = params.self_signed(&key).unwrap();
            subject_of(cert.der()).unwrap()
        };
        let mut named = rcgen::DistinguishedName::new();
        named.push(rcgen::DnType::OrganizationName, "Example, Inc.");
        named.push(rcgen::DnType::CommonName, "x istio intermediate CA");
        assert_eq!(
            common_name(&der(named)).as_deref(),
            Some("x istio intermediate CA")
        );
        let mut unnamed = rcgen::DistinguishedName::new();
        unnamed.push(rcgen::DnType::OrganizationName, "Example");
        assert_eq!(common_name(&der(unnamed)), None);
        assert_eq!(common_name(b"not DER"), None);
    }
}
