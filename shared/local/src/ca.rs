//! The embedded default authority: a root CA kept in a directory on this machine.
//!
//! It signs with the semantics of AWS Private CA's `SubordinateCACertificate_PathLen0/V1`
//! template, so a bundle from here and one from PCA pass the same validation and behave the same
//! in istiod. Meant for trying meshca, for tests, and for clusters whose mesh needs no company
//! root; the root key sits on disk (0600), so it is no substitute for an HSM-backed PCA.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyUsagePurpose, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use meshca_core::authority::{
    Authority, AuthorityError, AuthorityInfo, CertificateId, IssueRequest, Issued, Listing,
    RevocationReason,
};
use meshca_core::cert::Certificate;
use meshca_core::key::{KeyAlgorithm, PrivateKey};
use meshca_core::kind::Template;
use meshca_core::pem::{self, CERTIFICATE};
use meshca_core::timestamp::rfc3339;

use crate::files::{FilesError, write_all_or_nothing};

const ROOT_CERT: &str = "root-cert.pem";
const ROOT_KEY: &str = "root-key.pem";
const ISSUED: &str = "issued";
const TOKENS: &str = "tokens";
const REVOKED: &str = "revoked";

/// How long a CRL of the local root stays valid: every publication re-signs it, and the fleet
/// view shows the time left.
pub const CRL_LIFETIME: Duration = Duration::days(30);

/// Settings for a root created on first use.
#[derive(Debug, Clone)]
pub struct LocalRootSpec {
    /// The root's key (default EC P-384).
    pub key_algorithm: KeyAlgorithm,
    /// The root's common name.
    pub common_name: String,
    /// The root's organization.
    pub organization: String,
    /// How long the root is valid (default ten years).
    pub validity: Duration,
}

impl Default for LocalRootSpec {
    fn default() -> Self {
        LocalRootSpec {
            key_algorithm: KeyAlgorithm::EcP384,
            common_name: "meshca local root CA".into(),
            organization: "meshca".into(),
            validity: Duration::days(3650),
        }
    }
}

/// The embedded CA as an [`Authority`]: a root key and certificate in a
/// directory, every issued certificate recorded under `issued/`, and CRLs signed with the root.
pub struct LocalCa {
    dir: PathBuf,
    root: Certificate,
    root_pem: String,
    key: PrivateKey,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa")
            .field("dir", &self.dir)
            .field("root", &self.root.subject)
            .finish_non_exhaustive()
    }
}

impl LocalCa {
    /// Opens the CA in `dir`, creating a root there if the directory does not exist or is empty.
    /// A directory with only some of the files, or files that do not parse or do not belong
    /// together, is refused rather than overwritten: it may be someone's root.
    pub fn open_or_create(dir: &Path, spec: &LocalRootSpec) -> Result<Self, AuthorityError> {
        let corrupt = |reason: String| AuthorityError::Corrupt {
            authority: format!("local CA at {}", dir.display()),
            reason,
        };
        match fs::metadata(dir) {
            Ok(m) if !m.is_dir() => return Err(corrupt("it is not a directory".into())),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(corrupt(e.to_string())),
        }
        let has = |name: &str| dir.join(name).exists();
        match (has(ROOT_CERT), has(ROOT_KEY)) {
            (true, true) => Self::open(dir),
            (false, false) => {
                Self::create(dir, spec)?;
                Self::open(dir)
            }
            (true, false) => Err(corrupt(format!("{ROOT_KEY} is missing beside {ROOT_CERT}"))),
            (false, true) => Err(corrupt(format!("{ROOT_CERT} is missing beside {ROOT_KEY}"))),
        }
    }

    /// The CA in `dir`, which must hold its root already; a missing or broken one is an error.
    pub fn open(dir: &Path) -> Result<Self, AuthorityError> {
        let corrupt = |reason: String| AuthorityError::Corrupt {
            authority: format!("local CA at {}", dir.display()),
            reason,
        };
        let read = |name: &str| {
            fs::read_to_string(dir.join(name))
                .map_err(|e| corrupt(format!("cannot read {name}: {e}")))
        };
        let cert_text = read(ROOT_CERT)?;
        let key_text = zeroize::Zeroizing::new(read(ROOT_KEY)?);
        let ders = pem::certificates(ROOT_CERT, &cert_text).map_err(|e| corrupt(e.to_string()))?;
        let [der]: [Vec<u8>; 1] = ders.try_into().map_err(|v: Vec<_>| {
            corrupt(format!(
                "{ROOT_CERT} holds {} certificates, not one",
                v.len()
            ))
        })?;
        let root = Certificate::from_der(ROOT_CERT, der).map_err(|e| corrupt(e.to_string()))?;
        let key = PrivateKey::from_pkcs8_pem(&key_text)
            .map_err(|e| corrupt(format!("{ROOT_KEY}: {e}")))?;
        if key.public_key_raw() != root.public_key_raw {
            return Err(corrupt(format!("{ROOT_KEY} does not match {ROOT_CERT}")));
        }
        if !root.is_ca || !root.key_cert_sign {
            return Err(corrupt(format!(
                "{ROOT_CERT} is not a CA certificate that may sign"
            )));
        }
        let root_pem = pem::encode(CERTIFICATE, &[&root.der]);
        Ok(LocalCa {
            dir: dir.to_path_buf(),
            root,
            root_pem,
            key,
        })
    }

    fn create(dir: &Path, spec: &LocalRootSpec) -> Result<(), AuthorityError> {
        let fail = |reason: String| AuthorityError::Corrupt {
            authority: format!("local CA at {}", dir.display()),
            reason,
        };
        let key = PrivateKey::generate(spec.key_algorithm).map_err(|e| fail(e.to_string()))?;
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, spec.organization.as_str());
        params
            .distinguished_name
            .push(DnType::CommonName, spec.common_name.as_str());
        // RootCACertificate/V1: CA without a path length, may sign certificates and CRLs.
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + spec.validity;
        params.serial_number = Some(random_serial().map_err(fail)?);
        let cert = params
            .self_signed(key.key_pair())
            .map_err(|e| fail(e.to_string()))?;
        let cert_pem = pem::encode(CERTIFICATE, &[cert.der().as_ref()]);
        let key_pem = key.to_pkcs8_pem();
        // Both files land together or not at all; a rival run that got there first wins and we
        // open its root instead.
        let parent = dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs::create_dir_all(parent)
            .map_err(|e| fail(format!("cannot create {}: {e}", parent.display())))?;
        let staging = tempfile::Builder::new()
            .prefix(".meshca-ca-")
            .tempdir_in(parent)
            .map_err(|e| fail(format!("cannot create it: {e}")))?;
        write_all_or_nothing(
            staging.path(),
            &[(ROOT_CERT, &cert_pem, false), (ROOT_KEY, &key_pem, true)],
        )
        .map_err(|e| fail(e.to_string()))?;
        set_mode(staging.path(), 0o700);
        let staged = staging.keep();
        match fs::rename(&staged, dir) {
            Ok(()) => Ok(()),
            Err(_) if dir.join(ROOT_CERT).exists() => {
                let _ = fs::remove_dir_all(&staged);
                Ok(())
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&staged);
                Err(fail(format!("cannot create it: {e}")))
            }
        }
    }

    /// The root certificate.
    pub fn root(&self) -> &Certificate {
        &self.root
    }

    /// The directory the CA lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `local:<dir>`: what [`Authority::describe`] reports as the id, without reading the CA.
    pub fn id(&self) -> String {
        format!("local:{}", self.dir.display())
    }

    fn rejected(&self, reason: String) -> AuthorityError {
        AuthorityError::Rejected {
            id: self.id(),
            reason,
        }
    }

    fn io(&self, operation: &'static str) -> impl Fn(std::io::Error) -> AuthorityError + '_ {
        move |e| AuthorityError::Backend {
            operation,
            detail: format!("{}: {e}", self.dir.display()),
        }
    }

    fn sign(
        &self,
        request: &IssueRequest<'_>,
        now: OffsetDateTime,
    ) -> Result<(String, Vec<u8>), AuthorityError> {
        let csr = CertificateSigningRequestParams::from_pem(request.csr_pem).map_err(|e| {
            self.rejected(format!(
                "the CSR does not parse or its signature does not verify: {e}"
            ))
        })?;
        if csr.params.distinguished_name.iter().next().is_none() {
            return Err(self.rejected("the CSR has an empty subject".into()));
        }
        let not_after = request.validity.not_after(now);
        if not_after <= now {
            return Err(self.rejected(format!(
                "validity {} ends before it starts",
                request.validity
            )));
        }
        if not_after > self.root.not_after {
            return Err(self.rejected(format!(
                "validity {} would end {}, after the root, which ends {}",
                request.validity,
                rfc3339(not_after),
                rfc3339(self.root.not_after)
            )));
        }
        // Subject and SAN from the CSR; everything else from the template, whatever the CSR
        // asked for: SubordinateCACertificate_PathLen0/V1 or EndEntityCertificate/V1.
        let mut params = CertificateParams::default();
        params.distinguished_name = csr.params.distinguished_name.clone();
        params.subject_alt_names = csr.params.subject_alt_names.clone();
        match request.template {
            Template::SubordinateCaPathLen0 => {
                params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
                params.key_usages = vec![
                    KeyUsagePurpose::DigitalSignature,
                    KeyUsagePurpose::KeyCertSign,
                    KeyUsagePurpose::CrlSign,
                ];
                params.extended_key_usages = Vec::new();
            }
            Template::EndEntity => {
                params.is_ca = IsCa::ExplicitNoCa;
                params.key_usages = vec![
                    KeyUsagePurpose::DigitalSignature,
                    KeyUsagePurpose::KeyEncipherment,
                ];
                params.extended_key_usages = vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ];
            }
        }
        params.use_authority_key_identifier_extension = true;
        params.not_before = now - Duration::minutes(5);
        params.not_after = not_after;
        let serial = random_serial().map_err(|e| self.rejected(e))?;
        params.serial_number = Some(serial.clone());
        let issuer =
            Issuer::from_ca_cert_der(&self.root.der.clone().into(), self.key.key_pair())
                .map_err(|e| self.rejected(format!("root certificate unusable as issuer: {e}")))?;
        let cert = CertificateSigningRequestParams {
            params,
            public_key: csr.public_key,
        }
        .signed_by(&issuer)
        .map_err(|e| self.rejected(e.to_string()))?;
        Ok((hex::encode(serial.to_bytes()), cert.der().to_vec()))
    }
}

fn random_serial() -> Result<SerialNumber, String> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| "the system's random number generator failed".to_string())?;
    // A positive INTEGER that never needs a leading zero byte, and never zero.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(mode));
}

/// Token file names must stay inside `tokens/`.
fn token_file(token: &str) -> String {
    meshca_core::cert::sha256_hex(token.as_bytes())
}

#[async_trait::async_trait]
impl Authority for LocalCa {
    async fn describe(&self) -> Result<AuthorityInfo, AuthorityError> {
        Ok(AuthorityInfo {
            id: self.id(),
            key_description: self.key.algorithm().to_string(),
            key_algorithm: Some(self.key.algorithm()),
            signing_algorithm: match self.key.algorithm() {
                KeyAlgorithm::EcP256 => "SHA256WITHECDSA",
                KeyAlgorithm::EcP384 => "SHA384WITHECDSA",
                _ => "SHA256WITHRSA",
            }
            .into(),
            root_bundle: self.root_pem.clone(),
            not_after: self.root.not_after,
        })
    }

    /// Idempotent like PCA: the same token and CSR return the certificate first produced, even when
    /// two runs race — the certificate is on disk before the token is claimed (create-if-absent
    /// by link(2)), and the run that loses the claim withdraws its own.
    async fn issue(&self, request: &IssueRequest<'_>) -> Result<CertificateId, AuthorityError> {
        let backend = |e: FilesError| AuthorityError::Backend {
            operation: "issue",
            detail: e.to_string(),
        };
        let issued = self.dir.join(ISSUED);
        let tokens = issued.join(TOKENS);
        fs::create_dir_all(&tokens).map_err(self.io("issue"))?;
        // A token is bound to its CSR: the same token with another key (a generation whose
        // pending record was lost or closed) is another request, never the old certificate.
        let token_path = tokens.join(token_file(&format!(
            "{}\0{}",
            request.idempotency_token, request.csr_pem
        )));
        let known = |p: &Path| {
            fs::read_to_string(p)
                .ok()
                .map(|s| CertificateId(format!("{}/{}", self.id(), s.trim())))
        };
        if let Some(id) = known(&token_path) {
            return Ok(id);
        }
        let (serial, der) = self.sign(request, OffsetDateTime::now_utc())?;
        let cert_path = issued.join(format!("{serial}.pem"));
        write_all_or_nothing(
            &issued,
            &[(
                &format!("{serial}.pem"),
                &pem::encode(CERTIFICATE, &[&der]),
                false,
            )],
        )
        .map_err(backend)?;
        let staged = tempfile::NamedTempFile::new_in(&tokens).map_err(self.io("issue"))?;
        fs::write(staged.path(), &serial).map_err(self.io("issue"))?;
        match fs::hard_link(staged.path(), &token_path) {
            Ok(()) => Ok(CertificateId(format!("{}/{serial}", self.id()))),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                let _ = fs::remove_file(&cert_path);
                known(&token_path).ok_or_else(|| self.io("issue")(e))
            }
            Err(e) => Err(self.io("issue")(e)),
        }
    }

    async fn fetch(&self, id: &CertificateId) -> Result<Issued, AuthorityError> {
        let serial =
            id.0.strip_prefix(&format!("{}/", self.id()))
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(|| AuthorityError::UnknownCertificate(id.clone()))?;
        let text = match fs::read_to_string(self.dir.join(ISSUED).join(format!("{serial}.pem"))) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(AuthorityError::UnknownCertificate(id.clone()));
            }
            Err(e) => return Err(self.io("fetch")(e)),
        };
        let certificate =
            pem::normalise("issued certificate", &text, CERTIFICATE).map_err(|e| {
                AuthorityError::Corrupt {
                    authority: format!("local CA at {}", self.dir.display()),
                    reason: e.to_string(),
                }
            })?;
        Ok(Issued {
            certificate,
            chain: self.root_pem.clone(),
        })
    }

    async fn revoke(
        &self,
        id: &CertificateId,
        serial: &str,
        reason: RevocationReason,
    ) -> Result<(), AuthorityError> {
        self.fetch(id).await?;
        if serial.is_empty() || !serial.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(self.rejected(format!("serial {serial:?} is not hexadecimal")));
        }
        let dir = self.dir.join(REVOKED);
        write_all_or_nothing(&dir, &[(serial, reason.as_pca(), false)]).map_err(|e| {
            AuthorityError::Backend {
                operation: "revoke",
                detail: e.to_string(),
            }
        })
    }

    /// Every certificate on record under `issued/` with this subject, still valid at `now`.
    async fn issued_with_subject(
        &self,
        subject: &[u8],
        now: OffsetDateTime,
    ) -> Result<Listing, AuthorityError> {
        let listing = match fs::read_dir(self.dir.join(ISSUED)) {
            Ok(l) => l,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Listing::Found(Vec::new())),
            Err(e) => return Err(self.io("list issued")(e)),
        };
        let mut found = Vec::new();
        for entry in listing {
            let path = entry.map_err(self.io("list issued"))?.path();
            let Some(serial) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".pem"))
            else {
                continue;
            };
            let text = fs::read_to_string(&path).map_err(self.io("list issued"))?;
            let Some(der) = pem::certificates("issued certificate", &text)
                .ok()
                .and_then(|c| c.into_iter().next())
            else {
                continue;
            };
            if meshca_core::cert::subject_of(&der).as_deref() == Some(subject)
                && meshca_core::cert::Certificate::from_der("issued", der)
                    .is_ok_and(|c| c.not_after > now)
            {
                let id = CertificateId(format!("{}/{serial}", self.id()));
                found.push((id, serial.to_string()));
            }
        }
        found.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(Listing::Found(found))
    }

    /// The root's CRL, signed now with the root key, listing every revocation on record (each
    /// dated by its file); valid for [`CRL_LIFETIME`], so whoever publishes it re-signs it well
    /// within that.
    async fn crl(&self) -> Result<Option<String>, AuthorityError> {
        let backend = |detail: String| AuthorityError::Backend {
            operation: "crl",
            detail,
        };
        let mut entries = Vec::new();
        let listing = match fs::read_dir(self.dir.join(REVOKED)) {
            Ok(l) => l
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| backend(e.to_string()))?,
            Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(backend(e.to_string())),
        };
        for entry in listing {
            let serial = entry.file_name().to_string_lossy().into_owned();
            let reason = fs::read_to_string(entry.path()).map_err(|e| backend(e.to_string()))?;
            let at = entry
                .metadata()
                .and_then(|m| m.modified())
                .map_or_else(|_| OffsetDateTime::now_utc(), OffsetDateTime::from);
            entries.push(meshca_core::crl::Entry {
                serial,
                at,
                reason: RevocationReason::from_pca(reason.trim())
                    .unwrap_or(RevocationReason::Unspecified),
            });
        }
        entries.sort_by(|a, b| a.serial.cmp(&b.serial));
        let now = OffsetDateTime::now_utc();
        meshca_core::crl::sign(&self.root_pem, &self.key, &entries, now, now + CRL_LIFETIME)
            .map(Some)
            .map_err(|e| backend(e.to_string()))
    }
}
