//! Delivery into a directory of files: the embedded default's "cluster". The same port as a
//! Kubernetes API, so a root rotation (or any reconcile) runs unchanged against files that a
//! GitOps pipeline applies later.

use std::path::PathBuf;

use async_trait::async_trait;
use meshca_core::bundle::{Bundle, BundleMeta, ROOT_CERT};
use meshca_core::cert::sha256_hex;
use meshca_core::delivery::{Change, Delivered, Delivery, DeliveryError, Observed};
use meshca_core::kind::Landing;
use meshca_core::validate::{self, Profile};
use time::OffsetDateTime;

/// A cluster's bundle as files in `dir` (the four PEM files and the Secret manifest).
pub struct FilesDelivery {
    dir: PathBuf,
    landing: Landing,
    profile: Profile,
}

impl FilesDelivery {
    /// Writes into `dir` what `landing` would hold in a cluster, judged by `profile`.
    pub fn new(dir: impl Into<PathBuf>, landing: Landing, profile: Profile) -> Self {
        FilesDelivery {
            dir: dir.into(),
            landing,
            profile,
        }
    }

    fn failed(&self, detail: impl std::fmt::Display) -> DeliveryError {
        DeliveryError::Unreachable {
            endpoint: self.dir.display().to_string(),
            detail: detail.to_string(),
        }
    }
}

#[async_trait]
impl Delivery for FilesDelivery {
    async fn observe(&self) -> Result<Observed, DeliveryError> {
        let marker = match self.landing.layout {
            meshca_core::kind::Layout::IstioCacerts => ROOT_CERT,
            meshca_core::kind::Layout::Tls => meshca_kube::secret::TLS_CRT,
        };
        if !self.dir.join(marker).exists() {
            return Ok(Observed::Absent);
        }
        let (bundle, _) = crate::read_bundle(&self.dir).map_err(|e| self.failed(e))?;
        let manifest = self.dir.join(crate::manifest_file(&self.landing));
        let meta = crate::read_bundle(&manifest)
            .ok()
            .and_then(|(_, meta)| meta);
        Ok(Observed::Managed {
            bundle: Some(bundle),
            meta,
        })
    }

    async fn deliver(
        &self,
        bundle: &Bundle,
        meta: &BundleMeta,
    ) -> Result<Delivered, DeliveryError> {
        validate::validate(bundle, &self.profile, OffsetDateTime::now_utc())?;
        let change = match self.observe().await? {
            Observed::Managed {
                bundle: Some(old),
                meta: Some(m),
            } if old == *bundle && m == *meta => Change::Unchanged,
            Observed::Managed {
                bundle: Some(old), ..
            } if old.root_cert == bundle.root_cert => Change::Rotated,
            Observed::Managed {
                bundle: Some(old), ..
            } if meshca_core::rotation::contained(&old.root_cert, &bundle.root_cert) => {
                Change::RootContained
            }
            Observed::Managed { .. } | Observed::Unmanaged { .. } => Change::RootChanged,
            Observed::Absent => Change::Created,
        };
        if change != Change::Unchanged {
            crate::write_files(&self.dir, bundle, meta, &self.landing)
                .map_err(|e| self.failed(e))?;
        }
        let der = meshca_core::pem::certificates("ca-cert.pem", &bundle.ca_cert)
            .map_err(|e| self.failed(e))?;
        let fingerprint_sha256 = der.first().map(|d| sha256_hex(d)).unwrap_or_default();
        Ok(Delivered {
            change,
            fingerprint_sha256,
            istiod: Vec::new(),
            conflicts: 0,
        })
    }

    fn refuses(&self, _: &Observed) -> Option<DeliveryError> {
        None
    }
}
