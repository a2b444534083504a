//! The secrets meshca writes — `istio-system/cacerts` and the `kubernetes.io/tls` secrets of the
//! other kinds: the one place they are rendered (for the API server and for the manifest
//! `meshca issue` writes beside the files) and read back.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use meshca_core::bundle::{self, Bundle, BundleMeta};
use meshca_core::escrow::EscrowKey;
use meshca_core::kind::{AnchorMap, Landing, Layout};
use meshca_core::pem::PemError;
use meshca_core::timestamp::rfc3339;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use zeroize::Zeroizing;

/// The secret istiod reads its plugged-in CA from.
pub const SECRET_NAME: &str = "cacerts";
/// Where istiod looks for it.
pub const SECRET_NAMESPACE: &str = "istio-system";
/// The label that marks a secret as meshca's: one without it is adopted only when asked.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The label's value.
pub const MANAGED_BY_VALUE: &str = "meshca";
/// Every annotation meshca writes starts so.
pub const ANNOTATION_PREFIX: &str = "meshca.io/";

/// A Secret manifest on disk (`cacerts.yaml`) that cannot be read as a bundle.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// A key the bundle needs is not in the manifest.
    #[error("{0} is missing")]
    Missing(String),
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A key holds no usable PEM.
    #[error(transparent)]
    Pem(#[from] PemError),
    /// The file is not a Kubernetes Secret.
    #[error("{path} is not a Secret manifest: {reason}")]
    NotASecret {
        /// The file.
        path: String,
        /// What it is instead, or what failed to parse.
        reason: String,
    },
}

/// What the annotations record about the bundle in the secret.
pub fn annotations(meta: &BundleMeta) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    let mut put = |k: &str, v: String| a.insert(format!("{ANNOTATION_PREFIX}{k}"), v);
    put("generation", meta.generation.to_string());
    put("serial", meta.serial.clone());
    put("not-after", rfc3339(meta.not_after));
    put("certificate-arn", meta.certificate_id.clone());
    put("fingerprint-sha256", meta.fingerprint_sha256.clone());
    put(
        "root-fingerprint-sha256",
        meta.root_fingerprint_sha256.clone(),
    );
    if let Some(owner) = &meta.owner {
        put(CLUSTER, owner.cluster.to_string());
        put(KIND, owner.kind.to_string());
    }
    a
}

/// The annotations that say whose a secret is (`meshca.io/cluster`, `meshca.io/kind`).
pub const CLUSTER: &str = "cluster";
/// The kind's annotation (absent: istio-cacerts).
pub const KIND: &str = "kind";

/// Reads annotations back; `None` when any is missing or unparseable (not written by us).
pub fn meta_from(a: &BTreeMap<String, String>) -> Option<BundleMeta> {
    let get = |k: &str| a.get(&format!("{ANNOTATION_PREFIX}{k}")).cloned();
    Some(BundleMeta {
        generation: get("generation")?.parse().ok()?,
        serial: get("serial")?,
        not_after: OffsetDateTime::parse(&get("not-after")?, &Rfc3339).ok()?,
        certificate_id: get("certificate-arn")?,
        fingerprint_sha256: get("fingerprint-sha256")?,
        root_fingerprint_sha256: get("root-fingerprint-sha256")?,
        owner: owner_from(get(CLUSTER), get(KIND)),
    })
}

/// Whose a secret says it is; `None` for secrets written before owners were recorded.
fn owner_from(cluster: Option<String>, kind: Option<String>) -> Option<EscrowKey> {
    Some(EscrowKey::new(cluster?.parse().ok()?, kind?.parse().ok()?))
}

pub(crate) fn is_ours(secret: &Secret) -> bool {
    is_ours_meta(&secret.metadata)
}

/// Whether an object (a secret, an anchors ConfigMap) carries meshca's managed-by label.
pub(crate) fn is_ours_meta(metadata: &kube::api::ObjectMeta) -> bool {
    metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .map(String::as_str)
        == Some(MANAGED_BY_VALUE)
}

/// The meshca record in a secret's annotations.
pub(crate) fn meta_of(secret: &Secret) -> Option<BundleMeta> {
    meta_from(secret.metadata.annotations.as_ref()?)
}

/// The `kubernetes.io/tls` keys, which istiod (1.15+) also reads from `cacerts` — and then
/// prefers over the `*.pem` keys.
pub const TLS_CRT: &str = "tls.crt";
/// The `kubernetes.io/tls` private key.
pub const TLS_KEY: &str = "tls.key";
/// The `kubernetes.io/tls` CA bundle (cert-manager's convention).
pub const CA_CRT: &str = "ca.crt";
const TLS_KEYS: [&str; 3] = [TLS_CRT, TLS_KEY, CA_CRT];

/// The data keys and values `bundle` is written as in `layout`. In the TLS layout `tls.crt` is
/// the certificate and its issuers without the self-signed root, which `ca.crt` holds.
pub fn data_of(bundle: &Bundle, layout: Layout) -> Vec<(&'static str, Zeroizing<String>)> {
    let z = |s: &str| Zeroizing::new(s.to_string());
    match layout {
        Layout::IstioCacerts => bundle.files().iter().map(|(n, t)| (*n, z(t))).collect(),
        Layout::Tls => vec![
            (TLS_CRT, Zeroizing::new(chain_without_roots(bundle))),
            (TLS_KEY, z(&bundle.ca_key)),
            (CA_CRT, z(&bundle.root_cert)),
        ],
    }
}

fn chain_without_roots(bundle: &Bundle) -> String {
    let roots =
        meshca_core::pem::certificates(bundle::ROOT_CERT, &bundle.root_cert).unwrap_or_default();
    let chain =
        meshca_core::pem::certificates(bundle::CERT_CHAIN, &bundle.cert_chain).unwrap_or_default();
    meshca_core::pem::encode(
        meshca_core::pem::CERTIFICATE,
        &chain
            .into_iter()
            .filter(|c| !roots.contains(c))
            .collect::<Vec<_>>(),
    )
}

/// The bundle in force, read the way its consumer reads it: for `cacerts`, istiod takes
/// `tls.crt`/`tls.key`/`ca.crt` whenever `tls.crt` is there, else the four `*.pem` keys.
pub(crate) fn bundle_of(secret: &Secret, layout: Layout) -> Option<Bundle> {
    let data = secret.data.as_ref()?;
    let text = |k: &str| {
        data.get(k)
            .and_then(|b| std::str::from_utf8(&b.0).ok())
            .map(|s| Zeroizing::new(s.to_string()))
    };
    if layout == Layout::Tls || data.contains_key(TLS_CRT) {
        return from_tls_keys(&text(TLS_CRT)?, &text(TLS_KEY)?, &text(CA_CRT)?).ok();
    }
    Bundle::from_pems(
        &text(bundle::CA_CERT)?,
        &text(bundle::CA_KEY)?,
        &text(bundle::CERT_CHAIN)?,
        &text(bundle::ROOT_CERT)?,
    )
    .ok()
}

/// A bundle from `tls.crt` (the certificate first, then its issuers), `tls.key` and `ca.crt`.
#[allow(
    clippy::expect_used,
    reason = "pem::certificates refuses a text holding no certificate"
)]
pub fn from_tls_keys(chain: &str, key: &str, root: &str) -> Result<Bundle, PemError> {
    let first = meshca_core::pem::certificates(TLS_CRT, chain)?
        .into_iter()
        .next()
        .expect("certificates() returns at least one");
    let cert = meshca_core::pem::encode(meshca_core::pem::CERTIFICATE, &[first]);
    Bundle::from_pems(&cert, key, &format!("{chain}{root}"), root)
}

/// The secret to write at `landing`: `current` (other labels, annotations and data keys kept)
/// with our label, annotations and the bundle's keys — and, in `cacerts`, without `tls.*` keys
/// that would make istiod use another bundle than ours.
pub fn render(
    current: Option<Secret>,
    bundle: &Bundle,
    meta: &BundleMeta,
    landing: &Landing,
) -> Secret {
    let mut s = current.unwrap_or_default();
    s.metadata.name = Some(landing.name.clone());
    s.metadata.namespace = Some(landing.namespace.clone());
    s.metadata.managed_fields = None;
    s.metadata
        .labels
        .get_or_insert_default()
        .insert(MANAGED_BY_LABEL.into(), MANAGED_BY_VALUE.into());
    s.metadata
        .annotations
        .get_or_insert_default()
        .extend(annotations(meta));
    if s.type_.is_none() {
        s.type_ = Some(match landing.layout {
            Layout::IstioCacerts => "Opaque".into(),
            Layout::Tls => "kubernetes.io/tls".into(),
        });
    }
    let data = s.data.get_or_insert_default();
    if landing.layout == Layout::IstioCacerts {
        for k in TLS_KEYS {
            data.remove(k);
        }
    }
    for (name, text) in data_of(bundle, landing.layout) {
        data.insert(name.into(), ByteString(text.as_bytes().to_vec()));
    }
    s.string_data = None;
    s
}

/// The ConfigMap of trust anchors a kind lands beside its secret (Linkerd's
/// `linkerd-identity-trust-roots`): the root bundle under the kind's key, labelled and annotated
/// as ours like the secret. `None` for a kind without one.
pub fn render_anchors(
    current: Option<ConfigMap>,
    bundle: &Bundle,
    meta: &BundleMeta,
    landing: &Landing,
) -> Option<ConfigMap> {
    let anchors = landing.anchors?;
    Some(anchors_map(current, bundle, meta, landing, anchors))
}

/// [`render_anchors`] for a landing known to have `anchors`.
pub fn anchors_map(
    current: Option<ConfigMap>,
    bundle: &Bundle,
    meta: &BundleMeta,
    landing: &Landing,
    anchors: AnchorMap,
) -> ConfigMap {
    let mut c = current.unwrap_or_default();
    c.metadata.name = Some(anchors.name.into());
    c.metadata.namespace = Some(landing.namespace.clone());
    c.metadata.managed_fields = None;
    c.metadata
        .labels
        .get_or_insert_default()
        .insert(MANAGED_BY_LABEL.into(), MANAGED_BY_VALUE.into());
    c.metadata
        .annotations
        .get_or_insert_default()
        .extend(annotations(meta));
    c.data
        .get_or_insert_default()
        .insert(anchors.key.into(), bundle.root_cert.clone());
    c
}

/// The manifest `kubectl apply -f` takes: [`render`] of a new secret as YAML, followed by the
/// kind's anchors ConfigMap if it has one. It holds the key, hence `Zeroizing`.
#[allow(
    clippy::expect_used,
    reason = "a Secret and a ConfigMap of strings always serialise"
)]
pub fn manifest(bundle: &Bundle, meta: &BundleMeta, landing: &Landing) -> Zeroizing<String> {
    let mut text = serde_yaml_ng::to_string(&render(None, bundle, meta, landing))
        .expect("a Secret of strings serialises");
    if let Some(anchors) = render_anchors(None, bundle, meta, landing) {
        text.push_str("---\n");
        text.push_str(
            &serde_yaml_ng::to_string(&anchors).expect("a ConfigMap of strings serialises"),
        );
    }
    Zeroizing::new(text)
}

/// The `cacerts` manifest with the fleet's CRLs under `ca-crl.pem` (istio layout only: istiod
/// reads no CRL from the TLS layout).
#[allow(clippy::expect_used, reason = "a Secret of strings always serialises")]
pub fn manifest_with_crl(
    bundle: &Bundle,
    meta: &BundleMeta,
    landing: &Landing,
    crl_pem: &str,
) -> Zeroizing<String> {
    let mut secret = render(None, bundle, meta, landing);
    secret.data.get_or_insert_default().insert(
        meshca_core::bundle::CA_CRL.into(),
        ByteString(crl_pem.as_bytes().to_vec()),
    );
    Zeroizing::new(serde_yaml_ng::to_string(&secret).expect("a Secret of strings serialises"))
}

/// The fleet's CRLs the secret carries (`ca-crl.pem`), when it carries any: istiod ignores an
/// empty one.
pub(crate) fn crls_of(secret: &Secret) -> Option<&str> {
    secret
        .data
        .as_ref()?
        .get(meshca_core::bundle::CA_CRL)
        .and_then(|b| std::str::from_utf8(&b.0).ok())
        .filter(|t| !t.trim().is_empty())
}

/// The first of the bundle's keys that the secret does not hold byte for byte — or, in
/// `cacerts`, a `tls.*` key that overrides them for istiod.
pub(crate) fn differing_file(
    secret: &Secret,
    bundle: &Bundle,
    layout: Layout,
) -> Option<&'static str> {
    let data = secret.data.as_ref();
    if layout == Layout::IstioCacerts
        && let Some(k) = TLS_KEYS
            .iter()
            .find(|k| data.is_some_and(|d| d.contains_key(**k)))
    {
        return Some(k);
    }
    data_of(bundle, layout)
        .into_iter()
        .find(|(n, t)| data.and_then(|d| d.get(*n)).map(|b| b.0.as_slice()) != Some(t.as_bytes()))
        .map(|(n, _)| n)
}

/// Whether the secret is ours and already holds exactly this bundle and record. The owner
/// annotations are not asked for: a secret written before they were recorded is not rewritten
/// (nor istiod restarted) for them alone; its next write adds them.
pub(crate) fn holds(secret: &Secret, bundle: &Bundle, meta: &BundleMeta, layout: Layout) -> bool {
    let ann = secret.metadata.annotations.clone().unwrap_or_default();
    let record = BundleMeta {
        owner: None,
        ..meta.clone()
    };
    is_ours(secret)
        && differing_file(secret, bundle, layout).is_none()
        && annotations(&record)
            .iter()
            .all(|(k, v)| ann.get(k) == Some(v))
}

/// The root bundle's bytes as the consumer reads them (istiod: `ca.crt` when `tls.crt` is there).
pub(crate) fn effective_root(secret: &Secret, layout: Layout) -> Option<&[u8]> {
    let data = secret.data.as_ref()?;
    let key = if layout == Layout::Tls || data.contains_key(TLS_CRT) {
        CA_CRT
    } else {
        bundle::ROOT_CERT
    };
    data.get(key).map(|b| b.0.as_slice())
}

/// Reads a Secret manifest (YAML or JSON; `data` base64 or `stringData`), as written by
/// `meshca issue` or printed by `kubectl get secret cacerts -o yaml`: the bundle and the
/// annotations. Lenient where kubectl's output varies (whitespace in base64, no apiVersion).
pub fn read_manifest(path: &Path) -> Result<(Bundle, BTreeMap<String, String>), ManifestError> {
    let text =
        Zeroizing::new(
            std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
                path: path.display().to_string(),
                source,
            })?,
        );
    let bad = |reason: String| ManifestError::NotASecret {
        path: path.display().to_string(),
        reason,
    };
    // The Secret, or the first Secret of a manifest of several documents (a kind with a
    // trust-anchor ConfigMap writes both).
    let mut first_kind = None;
    let mut found = None;
    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        let doc = <SecretDoc as serde::Deserialize>::deserialize(document)
            .map_err(|e| bad(e.to_string()))?;
        if doc.kind.as_deref() == Some("Secret") {
            found = Some(doc);
            break;
        }
        first_kind.get_or_insert(doc.kind.clone().unwrap_or_default());
    }
    let doc = found.ok_or_else(|| {
        bad(format!(
            "kind is {:?}, not Secret",
            first_kind.unwrap_or_default()
        ))
    })?;
    let mut files: BTreeMap<String, Zeroizing<String>> = BTreeMap::new();
    for (k, v) in doc.data.unwrap_or_default() {
        let bytes = Zeroizing::new(
            B64.decode(v.trim())
                .map_err(|e| bad(format!("data.{k} is not base64: {e}")))?,
        );
        let s = String::from_utf8(bytes.to_vec())
            .map_err(|_| bad(format!("data.{k} is not UTF-8 text")))?;
        files.insert(k, Zeroizing::new(s));
    }
    for (k, v) in doc.string_data.unwrap_or_default() {
        files.insert(k, Zeroizing::new(v));
    }
    let get = |name: &str| {
        files
            .get(name)
            .ok_or_else(|| ManifestError::Missing(format!("{name} (in {})", path.display())))
    };
    // Read as istiod reads cacerts, and as a kubernetes.io/tls secret is read: tls.* first.
    let bundle = if files.contains_key(TLS_CRT) {
        from_tls_keys(get(TLS_CRT)?, get(TLS_KEY)?, get(CA_CRT)?)?
    } else {
        Bundle::from_pems(
            get(bundle::CA_CERT)?,
            get(bundle::CA_KEY)?,
            get(bundle::CERT_CHAIN)?,
            get(bundle::ROOT_CERT)?,
        )?
    };
    Ok((
        bundle,
        doc.metadata.map(|m| m.annotations).unwrap_or_default(),
    ))
}

/// The parts of a manifest [`read_manifest`] reads; anything else is ignored.
#[derive(Debug, serde::Deserialize)]
struct SecretDoc {
    kind: Option<String>,
    metadata: Option<SecretDocMeta>,
    data: Option<BTreeMap<String, String>>,
    #[serde(rename = "stringData")]
    string_data: Option<BTreeMap<String, String>>,
}

#[derive(Debug, serde::Deserialize)]
struct SecretDocMeta {
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}
