//! Certificate signing requests for a cluster's intermediate.
//!
//! AWS Private CA rejects a CSR with an empty subject, so a CN is always present. The CSR carries
//! no extensions: the PCA template decides them (BasicConstraints, KeyUsage), and an extension we
//! asked for but the template overrides would only confuse whoever reads the CSR.

use rcgen::{CertificateParams, DistinguishedName, DnType, SanType};

use crate::cluster::ClusterName;
use crate::key::PrivateKey;
use crate::kind::{CN_NAME_ROOM, Identity};

/// The subject of an intermediate. Empty O/OU are left out rather than encoded empty.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Subject {
    /// The common name.
    pub common_name: String,
    /// The organization (O), if any.
    pub organization: Option<String>,
    /// The organizational unit (OU), if any.
    pub organizational_unit: Option<String>,
}

/// A subject that cannot go into a CSR, or a CSR that could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    /// A field of the subject is empty.
    #[error("subject {field} is empty")]
    Empty {
        /// Which (`CN`, `O`, `OU`).
        field: &'static str,
    },
    /// A field of the subject is longer than X.509 allows.
    #[error("subject {field} is {len} characters; X.509 allows at most {max}")]
    TooLong {
        /// Which (`CN`, `O`, `OU`).
        field: &'static str,
        /// How long it is.
        len: usize,
        /// The longest it may be.
        max: usize,
    },
    /// The key could not sign the CSR.
    #[error("could not sign the CSR: {0}")]
    Sign(rcgen::Error),
}

impl Subject {
    /// `<cluster> istio intermediate CA`, the name an operator expects to see in `openssl x509`.
    pub fn for_cluster(cluster: &ClusterName) -> Self {
        Subject {
            common_name: format!(
                "{} istio intermediate CA",
                cluster.abbreviated(CN_NAME_ROOM)
            ),
            organization: None,
            organizational_unit: None,
        }
    }

    /// The same subject with this O and OU (`None`: without).
    pub fn with_organization(mut self, o: Option<String>, ou: Option<String>) -> Self {
        self.organization = o.filter(|s| !s.trim().is_empty());
        self.organizational_unit = ou.filter(|s| !s.trim().is_empty());
        self
    }

    /// Upper bounds from RFC 5280 Appendix A (ub-common-name 64, ub-organization-name 64,
    /// ub-organizational-unit-name 64); PCA enforces them.
    pub fn check(&self) -> Result<(), CsrError> {
        let fields = [
            ("CN", Some(&self.common_name)),
            ("O", self.organization.as_ref()),
            ("OU", self.organizational_unit.as_ref()),
        ];
        for (field, value) in fields {
            let Some(v) = value else { continue };
            if v.trim().is_empty() {
                return Err(CsrError::Empty { field });
            }
            let len = v.chars().count();
            if len > 64 {
                return Err(CsrError::TooLong {
                    field,
                    len,
                    max: 64,
                });
            }
        }
        Ok(())
    }

    pub(crate) fn distinguished_name(&self) -> DistinguishedName {
        let mut dn = DistinguishedName::new();
        if let Some(o) = &self.organization {
            dn.push(DnType::OrganizationName, o.as_str());
        }
        if let Some(ou) = &self.organizational_unit {
            dn.push(DnType::OrganizationalUnitName, ou.as_str());
        }
        dn.push(DnType::CommonName, self.common_name.as_str());
        dn
    }
}

/// A PEM CSR signed by the key it names.
pub fn build_csr(key: &PrivateKey, subject: &Subject) -> Result<String, CsrError> {
    build_csr_for(key, subject, None)
}

/// A PEM CSR that also asks for a TLS identity's names as subjectAltNames (the EndEntity
/// template takes SANs from the CSR).
pub fn build_csr_for(
    key: &PrivateKey,
    subject: &Subject,
    identity: Option<&Identity>,
) -> Result<String, CsrError> {
    subject.check()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = subject.distinguished_name();
    if let Some(id) = identity {
        let uri = rcgen::string::Ia5String::try_from(id.uri.as_str()).map_err(CsrError::Sign)?;
        params.subject_alt_names.push(SanType::URI(uri));
        for d in &id.dns {
            params.subject_alt_names.push(SanType::DnsName(
                rcgen::string::Ia5String::try_from(d.as_str()).map_err(CsrError::Sign)?,
            ));
        }
        params
            .subject_alt_names
            .extend(id.ips.iter().map(|ip| SanType::IpAddress(*ip)));
    }
    let csr = params
        .serialize_request(key.key_pair())
        .map_err(CsrError::Sign)?;
    csr.pem().map_err(CsrError::Sign)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyAlgorithm;
    use x509_parser::prelude::{FromDer, X509CertificationRequest};

    #[test]
    fn csr_carries_subject_and_verifies() {
        let key = PrivateKey::generate(KeyAlgorithm::EcP256).unwrap();
        let subject = Subject::for_cluster(&"prod-eu-1".parse().unwrap())
            .with_organization(Some("Example Corp".into()), Some("Platform".into()));
        let pem = build_csr(&key, &subject).unwrap();
        let der = ::pem::parse(&pem).unwrap().into_contents();
        let (_, csr) = X509CertificationRequest::from_der(&der).unwrap();
        csr.verify_signature().unwrap();
        let s = csr.certification_request_info.subject.to_string();
        assert!(s.contains("CN=prod-eu-1 istio intermediate CA"), "{s}");
        assert!(
            s.contains("O=Example Corp") && s.contains("OU=Platform"),
            "{s}"
        );
    }

    #[test]
    fn refuses_blank_or_oversized_names() {
        let mut s = Subject::for_cluster(&"a".parse().unwrap());
        s.common_name = "  ".into();
        assert!(matches!(s.check(), Err(CsrError::Empty { field: "CN" })));
        s.common_name = "x".repeat(65);
        assert!(s.check().unwrap_err().to_string().contains("65 characters"));
    }
}
