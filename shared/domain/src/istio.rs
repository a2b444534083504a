//! What meshca reads of an Istio install: the release an image's tag names, and the istiod
//! Deployments beside `cacerts`. Both the restart decision and the judgement of who enforces the
//! CRLs rest on these, so they sit below both.

use std::fmt;

/// An Istio release, from the istiod image tag (`pilot:1.24.2`, `pilot:1.24.2-distroless`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct IstioVersion {
    /// The major version (1).
    pub major: u32,
    /// The minor version: what decides whether istiod reloads `cacerts` on its own.
    pub minor: u32,
}

impl IstioVersion {
    /// The first release that hot-reloads a rotated intermediate under an unchanged root.
    pub const HOT_RELOAD: IstioVersion = IstioVersion {
        major: 1,
        minor: 19,
    };
    /// The first release with `ISTIO_MULTIROOT_MESH`, which reloads a root bundle that contains,
    /// or is contained in, the one before.
    pub const MULTIROOT: IstioVersion = IstioVersion {
        major: 1,
        minor: 20,
    };

    /// The first release whose istiod reads `ca-crl.pem` and hands it to its sidecars.
    pub const CRL: IstioVersion = IstioVersion {
        major: 1,
        minor: 27,
    };

    /// Reads the version from an image reference; `None` for digests and custom tags.
    pub fn from_image(image: &str) -> Option<Self> {
        let name = image.split('@').next()?;
        let last = name.rsplit('/').next()?;
        let (_, tag) = last.split_once(':')?;
        let mut parts = tag.trim_start_matches('v').split(['.', '-']);
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(IstioVersion { major, minor })
    }
}

impl fmt::Display for IstioVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// An istiod Deployment as found in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Istiod {
    /// The Deployment's name.
    pub name: String,
    /// Its discovery container's image.
    pub image: String,
    /// The Istio release the image's tag names, when it names one.
    pub version: Option<IstioVersion>,
    /// Ready replicas > 0: it has already loaded a CA.
    pub running: bool,
    /// `ISTIO_MULTIROOT_MESH=true` in its environment.
    pub multiroot: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_image_tags() {
        let v = |s| IstioVersion::from_image(s);
        assert_eq!(
            v("docker.io/istio/pilot:1.24.2"),
            Some(IstioVersion {
                major: 1,
                minor: 24
            })
        );
        assert_eq!(
            v("gcr.io/istio-release/pilot:1.18.7-distroless"),
            Some(IstioVersion {
                major: 1,
                minor: 18
            })
        );
        assert_eq!(
            v("localhost:5000/istio/pilot:1.20.0"),
            Some(IstioVersion {
                major: 1,
                minor: 20
            })
        );
        assert_eq!(v("istio/pilot@sha256:abcd"), None);
        assert_eq!(
            v("localhost:5000/istio/pilot"),
            None,
            "a registry port is not a tag"
        );
        assert_eq!(v("istio/pilot:latest"), None);
    }
}
