//! The four files istiod reads from `istio-system/cacerts`, and their forms on disk and in a
//! Secret manifest.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use zeroize::Zeroizing;

use crate::pem::{self as pemfmt, CERTIFICATE, PRIVATE_KEY, PemError};

pub const CA_CERT: &str = "ca-cert.pem";
pub const CA_KEY: &str = "ca-key.pem";
pub const CERT_CHAIN: &str = "cert-chain.pem";
pub const ROOT_CERT: &str = "root-cert.pem";
pub const MANIFEST: &str = "cacerts.yaml";
pub const FILES: [&str; 4] = [CA_CERT, CA_KEY, CERT_CHAIN, ROOT_CERT];

pub const SECRET_NAME: &str = "cacerts";
pub const SECRET_NAMESPACE: &str = "istio-system";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "meshca";
pub const ANNOTATION_PREFIX: &str = "meshca.io/";

/// A cacerts bundle, every PEM normalised. Not yet validated: see [`crate::validate`].
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

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{0} is missing")]
    Missing(String),
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Pem(#[from] PemError),
    #[error("{path} is not a Secret manifest: {reason}")]
    Manifest { path: String, reason: String },
}

/// What the annotations on the Secret record about the bundle in it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BundleMeta {
    pub generation: u64,
    pub serial: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    pub certificate_id: String,
    pub fingerprint_sha256: String,
    pub root_fingerprint_sha256: String,
}

impl BundleMeta {
    pub fn annotations(&self) -> BTreeMap<String, String> {
        let mut a = BTreeMap::new();
        let mut put = |k: &str, v: String| a.insert(format!("{ANNOTATION_PREFIX}{k}"), v);
        put("generation", self.generation.to_string());
        put("serial", self.serial.clone());
        put("not-after", self.not_after.format(&Rfc3339).unwrap_or_default());
        put("certificate-arn", self.certificate_id.clone());
        put("fingerprint-sha256", self.fingerprint_sha256.clone());
        put("root-fingerprint-sha256", self.root_fingerprint_sha256.clone());
        a
    }

    /// Reads annotations back; `None` when any is missing or unparseable (not written by us).
    pub fn from_annotations(a: &BTreeMap<String, String>) -> Option<Self> {
        let get = |k: &str| a.get(&format!("{ANNOTATION_PREFIX}{k}")).cloned();
        Some(BundleMeta {
            generation: get("generation")?.parse().ok()?,
            serial: get("serial")?,
            not_after: OffsetDateTime::parse(&get("not-after")?, &Rfc3339).ok()?,
            certificate_id: get("certificate-arn")?,
            fingerprint_sha256: get("fingerprint-sha256")?,
            root_fingerprint_sha256: get("root-fingerprint-sha256")?,
        })
    }
}

impl Bundle {
    /// Builds a bundle from PEM texts of any tidiness; each is normalised here, once.
    pub fn from_pems(ca_cert: &str, ca_key: &str, cert_chain: &str, root_cert: &str) -> Result<Self, PemError> {
        Ok(Bundle {
            ca_cert: pemfmt::normalise(CA_CERT, ca_cert, CERTIFICATE)?,
            ca_key: Zeroizing::new(pemfmt::normalise(CA_KEY, ca_key, PRIVATE_KEY)?),
            cert_chain: pemfmt::normalise(CERT_CHAIN, cert_chain, CERTIFICATE)?,
            root_cert: pemfmt::normalise(ROOT_CERT, root_cert, CERTIFICATE)?,
        })
    }

    /// Reads the four files from a directory.
    pub fn read_dir(dir: &Path) -> Result<Self, BundleError> {
        let read = |name: &str| -> Result<Zeroizing<String>, BundleError> {
            let path = dir.join(name);
            match fs::read_to_string(&path) {
                Ok(s) => Ok(Zeroizing::new(s)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(BundleError::Missing(name.to_string())),
                Err(source) => Err(BundleError::Read { path, source }),
            }
        };
        let (c, k, ch, r) = (read(CA_CERT)?, read(CA_KEY)?, read(CERT_CHAIN)?, read(ROOT_CERT)?);
        Ok(Bundle::from_pems(&c, &k, &ch, &r)?)
    }

    /// Reads a Secret manifest (YAML or JSON; `data` base64 or `stringData`), as written by
    /// `meshca issue` or printed by `kubectl get secret cacerts -o yaml`.
    pub fn read_manifest(path: &Path) -> Result<(Self, BTreeMap<String, String>), BundleError> {
        let text = Zeroizing::new(
            fs::read_to_string(path).map_err(|source| BundleError::Read { path: path.to_path_buf(), source })?,
        );
        let bad = |reason: String| BundleError::Manifest { path: path.display().to_string(), reason };
        let doc: SecretDoc = serde_yaml_ng::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if doc.kind.as_deref() != Some("Secret") {
            return Err(bad(format!("kind is {:?}, not Secret", doc.kind.unwrap_or_default())));
        }
        let mut files: BTreeMap<String, Zeroizing<String>> = BTreeMap::new();
        for (k, v) in doc.data.unwrap_or_default() {
            let bytes = Zeroizing::new(B64.decode(v.trim()).map_err(|e| bad(format!("data.{k} is not base64: {e}")))?);
            let s = String::from_utf8(bytes.to_vec()).map_err(|_| bad(format!("data.{k} is not UTF-8 text")))?;
            files.insert(k, Zeroizing::new(s));
        }
        for (k, v) in doc.string_data.unwrap_or_default() {
            files.insert(k, Zeroizing::new(v));
        }
        let get = |name: &str| files.get(name).ok_or_else(|| BundleError::Missing(format!("{name} (in {})", path.display())));
        let bundle = Bundle::from_pems(get(CA_CERT)?, get(CA_KEY)?, get(CERT_CHAIN)?, get(ROOT_CERT)?)?;
        Ok((bundle, doc.metadata.map(|m| m.annotations).unwrap_or_default()))
    }

    /// The Secret manifest `kubectl apply -f` takes: `istio-system/cacerts`, Opaque, ours.
    pub fn to_manifest(&self, meta: &BundleMeta) -> String {
        let mut data = BTreeMap::new();
        for (name, text) in self.files() {
            data.insert(name.to_string(), B64.encode(text.as_bytes()));
        }
        let doc = SecretDoc {
            api_version: Some("v1".into()),
            kind: Some("Secret".into()),
            metadata: Some(SecretMeta {
                name: Some(SECRET_NAME.into()),
                namespace: Some(SECRET_NAMESPACE.into()),
                labels: BTreeMap::from([(MANAGED_BY_LABEL.into(), MANAGED_BY_VALUE.into())]),
                annotations: meta.annotations(),
            }),
            type_: Some("Opaque".into()),
            data: Some(data),
            string_data: None,
        };
        serde_yaml_ng::to_string(&doc).expect("a Secret of strings serialises")
    }

    /// (file name, contents) in the order istiod documents them.
    pub fn files(&self) -> [(&'static str, &str); 4] {
        [(CA_CERT, &self.ca_cert), (CA_KEY, &self.ca_key), (CERT_CHAIN, &self.cert_chain), (ROOT_CERT, &self.root_cert)]
    }

    /// Writes the four files and `cacerts.yaml` into `dir`, all or nothing: every file is first
    /// written beside its target under a temporary name, and only when all are on disk are they
    /// renamed into place. Key material is 0600 from the moment it exists.
    pub fn write_dir(&self, dir: &Path, meta: &BundleMeta) -> Result<(), BundleError> {
        let manifest = Zeroizing::new(self.to_manifest(meta));
        let mut entries: Vec<(&str, &str, bool)> =
            self.files().iter().map(|(n, t)| (*n, *t, *n == CA_KEY)).collect();
        entries.push((MANIFEST, &manifest, true));
        write_all_or_nothing(dir, &entries)
    }
}

/// Writes `(name, contents, secret)` files into `dir` atomically as a set (see [`Bundle::write_dir`]).
pub fn write_all_or_nothing(dir: &Path, entries: &[(&str, &str, bool)]) -> Result<(), BundleError> {
    let werr = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BundleError::Write { path, source }
    };
    fs::create_dir_all(dir).map_err(werr(dir))?;
    let mut staged = Vec::with_capacity(entries.len());
    for (name, contents, secret) in entries {
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .permissions(mode(*secret))
            .tempfile_in(dir)
            .map_err(werr(dir))?;
        tmp.write_all(contents.as_bytes()).map_err(werr(tmp.path()))?;
        tmp.as_file().sync_all().map_err(werr(tmp.path()))?;
        staged.push((tmp, dir.join(name)));
    }
    // Every temp file is on disk; from here on only renames, which do not half-write.
    for (tmp, target) in staged {
        tmp.persist(&target).map_err(|e| BundleError::Write { path: target.clone(), source: e.error })?;
    }
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// 0600 for anything holding key material, 0644 for the rest.
fn mode(secret: bool) -> fs::Permissions {
    use std::os::unix::fs::PermissionsExt;
    fs::Permissions::from_mode(if secret { 0o600 } else { 0o644 })
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct SecretDoc {
    #[serde(rename = "apiVersion", skip_serializing_if = "Option::is_none")]
    api_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<SecretMeta>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    type_: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<BTreeMap<String, String>>,
    #[serde(rename = "stringData", skip_serializing_if = "Option::is_none")]
    string_data: Option<BTreeMap<String, String>>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct SecretMeta {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}
