//! Vault / OpenBao PKI as meshca's [`Authority`]: cluster intermediates signed by a PKI mount's
//! `sign-intermediate`, revoked by serial.
//!
//! Vault keeps no idempotency token, so "one certificate per generation, even across a crash"
//! is kept another way: the pending escrow record holds the CSR before Vault is asked, and a run
//! that resumes such a generation (`IssueRequest::resumed`) first looks through the mount's
//! certificates for one with the CSR's public key, and adopts it instead of signing again.
//! Path length and validity are not taken on trust: the reconciler validates what comes back,
//! as it does for PCA.
// Code that can fail at run time says so with an error; an `expect` is allowed where it
// cannot fail, with the reason. Tests unwrap freely.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod auth;
pub mod client;

use async_trait::async_trait;
use http::Method;
use meshca_core::authority::{
    Authority, AuthorityError, AuthorityInfo, CertificateId, IssueRequest, Issued, Listing,
    RevocationReason, Validity,
};
use meshca_core::cert::Certificate;
use meshca_core::pem::{self, CERTIFICATE};
use meshca_core::timestamp::rfc3339;
use serde_json::{Value, json};
use x509_parser::prelude::FromDer;

pub use auth::{Login, Session, StsTarget};
pub use client::{Endpoint, VaultError, VaultHttp};

/// A PKI mount (and optionally one issuer in it) that signs cluster intermediates.
pub struct VaultPki {
    http: VaultHttp,
    session: Session,
    mount: String,
    issuer: Option<String>,
    /// `max_path_length` asked of Vault (the profile's; 0 for Istio intermediates).
    path_len: u32,
}

impl VaultPki {
    /// The PKI mount `mount` at `endpoint`, signing with `issuer` (default: the mount's
    /// default issuer), logged in with `login`.
    pub fn new(
        endpoint: Endpoint,
        login: Login,
        mount: impl Into<String>,
        issuer: Option<String>,
    ) -> Result<Self, VaultError> {
        let http = VaultHttp::new(endpoint)?;
        let session = Session::new(http.clone(), login);
        Ok(VaultPki {
            http,
            session,
            mount: mount.into().trim_matches('/').to_string(),
            issuer,
            path_len: 0,
        })
    }

    /// The path length Vault is asked to set (default 0).
    pub fn with_path_len(mut self, path_len: u32) -> Self {
        self.path_len = path_len;
        self
    }

    /// `vault:<addr>/<mount>[/issuer/<ref>]`: names this CA in generation tokens and reports.
    pub fn id(&self) -> String {
        let issuer = self
            .issuer
            .as_deref()
            .map(|i| format!("/issuer/{i}"))
            .unwrap_or_default();
        format!("vault:{}/{}{issuer}", self.http.addr(), self.mount)
    }

    fn issuer_path(&self) -> String {
        format!(
            "{}/issuer/{}",
            self.mount,
            self.issuer.as_deref().unwrap_or("default")
        )
    }

    fn sign_path(&self) -> String {
        match &self.issuer {
            Some(r) => format!("{}/issuer/{r}/sign-intermediate", self.mount),
            None => format!("{}/root/sign-intermediate", self.mount),
        }
    }

    /// One call with the session's token; a 403 on a login token logs in again once.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, VaultError> {
        let token = self.session.token().await?;
        match self
            .http
            .call(method.clone(), path, body, Some(&token))
            .await
        {
            Err(VaultError::Forbidden { .. }) => {
                self.session.forget().await;
                let token = self.session.token().await?;
                self.http.call(method, path, body, Some(&token)).await
            }
            other => other,
        }
    }

    fn error(&self, operation: &'static str, e: VaultError) -> AuthorityError {
        let id = self.id();
        match e {
            VaultError::Forbidden { message, path } => AuthorityError::Rejected {
                id,
                reason: format!(
                    "{operation}: {path}: {message} (the token lacks meshca's Vault policy; see the README)"
                ),
            },
            VaultError::NotFound { message, path } => AuthorityError::NotFound {
                id,
                detail: format!("{path}: {message}"),
            },
            VaultError::Rejected {
                message,
                path,
                status,
            } => AuthorityError::Rejected {
                id,
                reason: format!("{operation}: {path} ({status}): {message}"),
            },
            other => AuthorityError::Backend {
                operation,
                detail: other.to_string(),
            },
        }
    }

    /// The issuer's certificate and its chain up to the root, as Vault holds them.
    async fn issuer(&self) -> Result<(Certificate, Vec<Certificate>), AuthorityError> {
        let data = self
            .call(Method::GET, &self.issuer_path(), None)
            .await
            .map_err(|e| self.error("describe", e))?;
        let corrupt = |reason: String| AuthorityError::Corrupt {
            authority: format!("Vault issuer {}", self.issuer_path()),
            reason,
        };
        let text = |v: &Value| v.as_str().map(str::to_string);
        let certificate =
            text(&data["data"]["certificate"]).ok_or_else(|| corrupt("no certificate".into()))?;
        let chain_pem: String = match data["data"]["ca_chain"].as_array() {
            Some(list) if !list.is_empty() => list.iter().filter_map(text).collect(),
            _ => certificate.clone(),
        };
        let parse = |what: &str, text: &str| -> Result<Vec<Certificate>, AuthorityError> {
            pem::certificates(what, text)
                .map_err(|e| corrupt(e.to_string()))?
                .into_iter()
                .map(|der| Certificate::from_der(what, der).map_err(|e| corrupt(e.to_string())))
                .collect()
        };
        let issuer = parse("issuer certificate", &certificate)?
            .into_iter()
            .next()
            .ok_or_else(|| corrupt("empty certificate".into()))?;
        let chain = parse("issuer chain", &chain_pem)?;
        if data["data"]["revoked"].as_bool() == Some(true) {
            return Err(AuthorityError::NotActive {
                id: self.id(),
                status: "revoked".into(),
            });
        }
        if let Some(usage) = data["data"]["usage"].as_str()
            && !usage.split(',').any(|u| u == "issuing-certificates")
        {
            return Err(AuthorityError::NotActive {
                id: self.id(),
                status: format!("usage {usage} (no issuing-certificates)"),
            });
        }
        if !issuer.is_ca {
            return Err(AuthorityError::Rejected {
                id: self.id(),
                reason: format!("issuer \"{}\" is not a CA", issuer.subject),
            });
        }
        Ok((issuer, chain))
    }

    /// The serial of a certificate in the mount whose key is `public_key` (raw subjectPublicKey).
    async fn find_by_key(&self, public_key: &[u8]) -> Result<Option<String>, AuthorityError> {
        for serial in self.serials("issue").await? {
            if let Some(cert) = self.certificate(&serial).await?
                && cert.public_key_raw == public_key
            {
                return Ok(Some(serial));
            }
        }
        Ok(None)
    }

    /// The serials of every certificate the mount keeps (`LIST <mount>/certs`).
    #[allow(clippy::expect_used, reason = "LIST is a valid method token")]
    async fn serials(&self, operation: &'static str) -> Result<Vec<String>, AuthorityError> {
        let path = format!("{}/certs", self.mount);
        let listed = match self
            .call(
                Method::from_bytes(b"LIST").expect("LIST is a method"),
                &path,
                None,
            )
            .await
        {
            Ok(v) => v,
            Err(VaultError::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(self.error(operation, e)),
        };
        Ok(listed["data"]["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect())
    }

    async fn certificate(&self, serial: &str) -> Result<Option<Certificate>, AuthorityError> {
        let data = match self
            .call(Method::GET, &format!("{}/cert/{serial}", self.mount), None)
            .await
        {
            Ok(v) => v,
            Err(VaultError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.error("fetch", e)),
        };
        let text = data["data"]["certificate"].as_str().unwrap_or_default();
        let der = pem::certificates("certificate", text)
            .ok()
            .and_then(|d| d.into_iter().next());
        Ok(der.and_then(|d| Certificate::from_der(serial, d).ok()))
    }
}

/// The common name and raw public key of a PEM CSR.
fn csr_facts(csr_pem: &str) -> Result<(String, Vec<u8>), String> {
    let block = ::pem::parse(csr_pem).map_err(|e| format!("the CSR is not PEM: {e}"))?;
    let (_, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(block.contents())
            .map_err(|e| format!("the CSR does not parse: {e}"))?;
    let info = &csr.certification_request_info;
    let cn = info
        .subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .map(str::to_string);
    let cn = cn.ok_or("the CSR has no common name, which Vault requires")?;
    Ok((cn, info.subject_pki.subject_public_key.data.to_vec()))
}

#[async_trait]
impl Authority for VaultPki {
    async fn describe(&self) -> Result<AuthorityInfo, AuthorityError> {
        let (issuer, chain) = self.issuer().await?;
        let roots: Vec<&Certificate> = chain.iter().filter(|c| c.is_self_signed()).collect();
        if roots.is_empty() {
            return Err(AuthorityError::Corrupt {
                authority: format!("Vault issuer {}", self.issuer_path()),
                reason: format!(
                    "the chain of \"{}\" does not reach a self-signed root; import the issuer with its whole chain (pem_bundle, root included)",
                    issuer.subject
                ),
            });
        }
        let key = issuer
            .key_algorithm
            .clone()
            .map(|k| k.to_string())
            .unwrap_or_else(|e| e);
        Ok(AuthorityInfo {
            id: self.id(),
            signing_algorithm: format!("chosen by Vault for the issuer's {key} key"),
            key_description: key,
            key_algorithm: issuer.key_algorithm.clone().ok(),
            root_bundle: pem::encode(
                CERTIFICATE,
                &roots.iter().map(|r| &r.der).collect::<Vec<_>>(),
            ),
            not_after: issuer.not_after,
        })
    }

    async fn issue(&self, request: &IssueRequest<'_>) -> Result<CertificateId, AuthorityError> {
        if request.template != meshca_core::Template::SubordinateCaPathLen0 {
            let reason = "Vault signs cluster intermediates (sign-intermediate) only; TLS identities need a PKI role, which meshca does not use yet".into();
            return Err(AuthorityError::Rejected {
                id: self.id(),
                reason,
            });
        }
        let (common_name, public_key) =
            csr_facts(request.csr_pem).map_err(|reason| AuthorityError::Rejected {
                id: self.id(),
                reason,
            })?;
        if request.resumed
            && let Some(serial) = self.find_by_key(&public_key).await?
        {
            return Ok(CertificateId(serial));
        }
        let mut body = json!({
            "csr": request.csr_pem,
            "common_name": common_name,
            "max_path_length": self.path_len,
            "use_csr_values": true,
            "format": "pem",
        });
        match request.validity {
            Validity::Days(d) => body["ttl"] = json!(format!("{}h", u64::from(d) * 24)),
            Validity::EndDate(t) => body["not_after"] = json!(rfc3339(t)),
        }
        let path = self.sign_path();
        let data = self
            .call(Method::POST, &path, Some(&body))
            .await
            .map_err(|e| self.error("issue", e))?;
        let serial = data["data"]["serial_number"]
            .as_str()
            .filter(|s| !s.is_empty());
        let serial = serial.ok_or_else(|| {
            self.error(
                "issue",
                VaultError::Unexpected {
                    path,
                    detail: "no serial_number".into(),
                },
            )
        })?;
        Ok(CertificateId(serial.to_string()))
    }

    async fn fetch(&self, id: &CertificateId) -> Result<Issued, AuthorityError> {
        let cert = self
            .certificate(&id.0)
            .await?
            .ok_or_else(|| AuthorityError::UnknownCertificate(id.clone()))?;
        let (_, chain) = self.issuer().await?;
        Ok(Issued {
            certificate: pem::encode(CERTIFICATE, &[&cert.der]),
            chain: pem::encode(
                CERTIFICATE,
                &chain.iter().map(|c| &c.der).collect::<Vec<_>>(),
            ),
        })
    }

    async fn revoke(
        &self,
        id: &CertificateId,
        _serial: &str,
        _reason: RevocationReason,
    ) -> Result<(), AuthorityError> {
        // Vault records no reason; the serial Vault gave is the certificate's id.
        let path = format!("{}/revoke", self.mount);
        match self
            .call(Method::POST, &path, Some(&json!({"serial_number": id.0})))
            .await
        {
            Ok(_) => Ok(()),
            Err(VaultError::NotFound { .. }) => Err(AuthorityError::UnknownCertificate(id.clone())),
            Err(e) => Err(self.error("revoke", e)),
        }
    }

    /// Every certificate the mount keeps (`certs/`; `tidy` prunes expired ones) with this
    /// subject, still valid at `now`: one read per certificate the mount holds.
    async fn issued_with_subject(
        &self,
        subject: &[u8],
        now: time::OffsetDateTime,
    ) -> Result<Listing, AuthorityError> {
        let mut found = Vec::new();
        for serial in self.serials("list issued").await? {
            if let Some(cert) = self.certificate(&serial).await?
                && meshca_core::cert::subject_of(&cert.der).as_deref() == Some(subject)
                && cert.not_after > now
            {
                found.push((CertificateId(serial), cert.serial));
            }
        }
        Ok(Listing::Found(found))
    }

    /// The issuer's CRL as Vault publishes it now (a revocation rebuilds it, unless the mount's
    /// `config/crl` defers rebuilds: then it lists the revocation after the next rebuild), then
    /// the CRL of each CA above it in another mount: a data plane refuses a chain in which any
    /// CA has no CRL.
    async fn crl(&self) -> Result<Option<String>, AuthorityError> {
        let mut out = self.issuer_crl().await?;
        let (issuer, chain) = self.issuer().await?;
        let above: Vec<Certificate> = chain.into_iter().filter(|c| c.der != issuer.der).collect();
        let line: Vec<Certificate> = std::iter::once(issuer).chain(above).collect();
        for pair in line.windows(2) {
            if pair[0].is_self_signed() {
                break;
            }
            out.push_str(&self.parent_crl(&pair[0], &pair[1]).await?);
        }
        Ok(Some(out))
    }
}

impl VaultPki {
    /// The CRL of `above`, the CA that signed `below`, from the mount of this Vault that the
    /// distribution point in `below` names (`<addr>/v1/<mount>/crl`, which Vault writes into
    /// what a mount signs once its `config/urls` has `crl_distribution_points`). PKI serves its
    /// CRLs unauthenticated: no policy grants this read.
    async fn parent_crl(
        &self,
        below: &Certificate,
        above: &Certificate,
    ) -> Result<String, AuthorityError> {
        let unusable = |reason: String| AuthorityError::Corrupt {
            authority: format!("Vault issuer {} (for CRL mode)", self.issuer_path()),
            reason,
        };
        let mount = meshca_core::crl::distribution_points(&below.der)
            .iter()
            .find_map(|u| self.crl_mount(u))
            .ok_or_else(|| {
                unusable(format!(
                    "the CA above it ({}) publishes no CRL meshca can find: the certificate it signed names no CRL distribution point at {}; set crl_distribution_points=<addr>/v1/<its mount>/crl in its mount's config/urls and sign the issuer again",
                    above.subject,
                    self.http.addr()
                ))
            })?;
        let path = format!("{mount}/cert/crl");
        let data = self
            .call(Method::GET, &path, None)
            .await
            .map_err(|e| self.error("crl", e))?;
        let text = data["data"]["certificate"].as_str().unwrap_or_default();
        let der = pem::parse_blocks(&path, text, meshca_core::crl::X509_CRL)
            .ok()
            .and_then(|b| b.into_iter().next())
            .ok_or_else(|| unusable(format!("{path}: no CRL in the answer")))?
            .into_contents();
        let issuer_pem = pem::encode(pem::CERTIFICATE, std::slice::from_ref(&above.der));
        meshca_core::crl::published(&path, &der, &issuer_pem, time::OffsetDateTime::now_utc())
            .map_err(|e| unusable(e.to_string()))
    }

    /// The mount a CRL distribution point names, when it is a CRL of this Vault.
    fn crl_mount(&self, url: &str) -> Option<String> {
        let prefix = format!("{}/v1/", self.http.addr().trim_end_matches('/'));
        let rest = url.strip_prefix(&prefix)?;
        let mount = rest
            .strip_suffix("/crl/pem")
            .or_else(|| rest.strip_suffix("/crl"))?;
        (!mount.is_empty()).then(|| mount.to_string())
    }

    /// The issuer's own CRL.
    async fn issuer_crl(&self) -> Result<String, AuthorityError> {
        let path = format!("{}/crl", self.issuer_path());
        let data = self
            .call(Method::GET, &path, None)
            .await
            .map_err(|e| self.error("crl", e))?;
        match data["data"]["crl"].as_str() {
            Some(pem) if pem.contains("-----BEGIN X509 CRL-----") => Ok(pem.to_string()),
            _ => Err(self.error(
                "crl",
                VaultError::Unexpected {
                    path,
                    detail: "no CRL in the answer".into(),
                },
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csr_gives_its_common_name_and_key() {
        let key = meshca_core::PrivateKey::generate(meshca_core::KeyAlgorithm::EcP256).unwrap();
        let cluster: meshca_core::ClusterName = "c1".parse().unwrap();
        let csr =
            meshca_core::csr::build_csr(&key, &meshca_core::csr::Subject::for_cluster(&cluster))
                .unwrap();
        let (cn, public_key) = csr_facts(&csr).unwrap();
        assert_eq!(cn, "c1 istio intermediate CA");
        assert_eq!(public_key, key.public_key_raw());
        assert!(csr_facts("not a csr").is_err());
    }
}
