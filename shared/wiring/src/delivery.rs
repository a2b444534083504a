//! Where a bundle goes: a cluster's API server (a kubeconfig context, or EKS by name) or
//! files on this machine, and reading a bundle back from files.

use std::path::Path;
use std::sync::Arc;

use aws_config::SdkConfig;
use meshca_aws::EksClusters;
use meshca_core::kind::{Landing, Layout};
use meshca_core::{Bundle, BundleMeta, Delivery, DeliveryOptions};
use meshca_kube::KubeDelivery;

use crate::WiringError;

/// Delivery into the cluster of a kubeconfig context (`None`: the current one) in `path`
/// (`None`: `$KUBECONFIG`, then `~/.kube/config`).
pub async fn kubeconfig_delivery(
    path: Option<&Path>,
    context: Option<&str>,
    options: DeliveryOptions,
) -> Result<Arc<dyn Delivery>, WiringError> {
    let (client, endpoint) = meshca_kube::from_context(path, context).await?;
    Ok(Arc::new(KubeDelivery::new(client, endpoint, options)))
}

/// Delivery into the EKS cluster `name`, found by DescribeCluster in the region of `aws`.
pub async fn eks_delivery(
    aws: &SdkConfig,
    name: &str,
    options: DeliveryOptions,
) -> Result<Arc<dyn Delivery>, WiringError> {
    let eks = EksClusters::new(aws);
    let cluster = eks.describe(name).await?;
    let client = eks.client(&cluster)?;
    Ok(Arc::new(KubeDelivery::new(
        client,
        cluster.endpoint.clone().unwrap_or_default(),
        options,
    )))
}

/// Writes the bundle as files into `dir`: the four PEM files and the manifest of the Secret at
/// `landing`.
/// In the TLS layout the files are the secret's own keys (`tls.crt`, `tls.key`, `ca.crt`) and the
/// manifest is `<secret name>.yaml`.
pub fn write_files(
    dir: &Path,
    bundle: &Bundle,
    meta: &BundleMeta,
    landing: &Landing,
) -> Result<(), WiringError> {
    let manifest = meshca_kube::secret::manifest(bundle, meta, landing);
    if landing.layout == Layout::IstioCacerts {
        return Ok(meshca_local::files::write_dir(
            dir,
            bundle,
            Some(&manifest),
        )?);
    }
    let data = meshca_kube::secret::data_of(bundle, landing.layout);
    let manifest_name = manifest_file(landing);
    let mut entries: Vec<(&str, &str, bool)> = data
        .iter()
        .map(|(n, t)| (*n, t.as_str(), *n == meshca_kube::secret::TLS_KEY))
        .collect();
    if let Some(anchors) = &landing.anchors {
        entries.push((anchors.key, &bundle.root_cert, false));
    }
    entries.push((&manifest_name, &manifest, true));
    Ok(meshca_local::files::write_all_or_nothing(dir, &entries)?)
}

/// The manifest's file name beside the files: `cacerts.yaml`, or `<secret name>.yaml`.
pub fn manifest_file(landing: &Landing) -> String {
    match landing.layout {
        Layout::IstioCacerts => meshca_local::files::MANIFEST.to_string(),
        Layout::Tls => format!("{}.yaml", landing.name),
    }
}

/// Reads a bundle from a directory of PEM files or a Secret manifest, with the manifest's
/// meshca record (none for a directory).
pub fn read_bundle(path: &Path) -> Result<(Bundle, Option<BundleMeta>), WiringError> {
    use meshca_kube::secret::{CA_CRT, TLS_CRT, TLS_KEY};
    if path.is_dir() && path.join(TLS_CRT).exists() {
        let read = |name: &str| {
            std::fs::read_to_string(path.join(name))
                .map(zeroize::Zeroizing::new)
                .map_err(|source| meshca_local::files::FilesError::Read {
                    path: path.join(name),
                    source,
                })
        };
        let (chain, key, root) = (read(TLS_CRT)?, read(TLS_KEY)?, read(CA_CRT)?);
        let bundle = meshca_kube::secret::from_tls_keys(&chain, &key, &root)
            .map_err(meshca_local::files::FilesError::Pem)?;
        return Ok((bundle, None));
    }
    if path.is_dir() {
        return Ok((meshca_local::files::read_dir(path)?, None));
    }
    let (bundle, annotations) = meshca_kube::secret::read_manifest(path)?;
    Ok((bundle, meshca_kube::secret::meta_from(&annotations)))
}

/// Writes a cluster's CRLs beside its istio files: `ca-crl.pem`, and the `cacerts.yaml` that
/// carries it (written together, or neither).
pub fn write_crl_files(
    dir: &Path,
    bundle: &Bundle,
    meta: &BundleMeta,
    crl_pem: &str,
) -> Result<(), WiringError> {
    let landing = meshca_core::KindSpec::default().landing();
    let manifest = meshca_kube::secret::manifest_with_crl(bundle, meta, &landing, crl_pem);
    Ok(meshca_local::files::write_all_or_nothing(
        dir,
        &[
            (meshca_core::bundle::CA_CRL, crl_pem, false),
            (meshca_local::files::MANIFEST, &manifest, true),
        ],
    )?)
}

/// Writes one plain file `name` into `dir` (a note people read beside the bundle).
pub fn write_note(dir: &Path, name: &str, text: &str) -> Result<(), WiringError> {
    Ok(meshca_local::files::write_all_or_nothing(
        dir,
        &[(name, text, false)],
    )?)
}
