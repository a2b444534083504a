//! Who in a cluster enforces the CRLs in its `cacerts`, judged from what meshca could read.
//!
//! Writing `ca-crl.pem` protects nothing by itself. istiod 1.27+ reads it and copies it into
//! every namespace; a sidecar then refuses what it lists only if its injector (1.27+) mounted the
//! `istio-ca-crl` ConfigMap into the pod, which a pod injected earlier lacks until it restarts;
//! ambient workloads are guarded by ztunnel, which reads it from 1.29. A revocation report that
//! said "delivered" for a cluster where any of these falls short would be a false comfort, so each
//! gap is said, and so is each reader meshca was not allowed to look at.

use crate::istio::{IstioVersion, Istiod};

/// The volume Istio 1.27's injection template adds for the CRLs: a pod whose
/// `sidecar.istio.io/status` lists it has its sidecar reading them.
pub const CRL_VOLUME: &str = "istio-ca-crl";

/// The first release whose ztunnel refuses what `ca-crl.pem` lists.
pub const ZTUNNEL_CRL: IstioVersion = IstioVersion {
    major: 1,
    minor: 29,
};

/// How many pods a report names before it only counts.
const PODS_NAMED: usize = 3;

/// A ztunnel DaemonSet (ambient mode) as found in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ztunnel {
    /// The DaemonSet's name.
    pub name: String,
    /// Its ztunnel container's image.
    pub image: String,
}

/// What the cluster's injected pods say about their sidecars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sidecars {
    /// Read: how many pods carry an injected sidecar, and those (`namespace/name`) injected
    /// without the CRL volume.
    Read {
        /// Pods with an injected sidecar.
        injected: usize,
        /// Of them, those whose sidecar does not read the CRLs until the pod restarts.
        without_crls: Vec<String>,
    },
    /// Not read, and why (listing pods takes a cluster-wide grant meshca does not ask for by
    /// default).
    Unread(String),
}

/// Everything that reads, or should read, a cluster's CRLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlReaders {
    /// istiod Deployments: each copies `ca-crl.pem` to the sidecars (1.27+).
    pub istiods: Vec<Istiod>,
    /// ztunnel DaemonSets, or why they could not be listed.
    pub ztunnels: Result<Vec<Ztunnel>, String>,
    /// The injected pods.
    pub sidecars: Sidecars,
}

/// A cluster's enforcement of its CRLs: the gaps found, and what could not be looked at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Enforcement {
    /// Why (part of) the cluster does not refuse what the CRLs list. Empty: nothing found.
    pub gaps: Vec<String>,
    /// Readers meshca could not inspect, and why: the judgement does not cover them.
    pub unread: Vec<String>,
}

impl Enforcement {
    /// `None` when no gap was found; else every gap, on one line.
    pub fn not_protected(&self) -> Option<String> {
        (!self.gaps.is_empty()).then(|| self.gaps.join("; "))
    }

    /// `None` when every reader was inspected; else what was not, on one line.
    pub fn not_checked(&self) -> Option<String> {
        (!self.unread.is_empty()).then(|| self.unread.join("; "))
    }
}

/// For people: "enforced", or "not protected: GAPS", then what was not checked.
impl std::fmt::Display for Enforcement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.not_protected() {
            None => f.write_str("enforced by istiod (Istio 1.27+)")?,
            Some(gaps) => write!(f, "not protected: {gaps}")?,
        }
        match self.not_checked() {
            None => Ok(()),
            Some(unread) => write!(f, "; {unread}"),
        }
    }
}

/// Judges `readers`: the cluster enforces its CRLs when every istiod is 1.27+, every ztunnel
/// 1.29+ and every injected pod has the CRL volume.
pub fn judge(readers: &CrlReaders) -> Enforcement {
    let mut e = Enforcement::default();
    if readers.istiods.is_empty() {
        e.gaps.push("no istiod found in istio-system".into());
    }
    for d in &readers.istiods {
        e.gaps
            .extend(too_old("istiod", &d.name, &d.image, IstioVersion::CRL));
    }
    match &readers.ztunnels {
        Ok(found) => {
            for z in found {
                e.gaps
                    .extend(too_old("ztunnel", &z.name, &z.image, ZTUNNEL_CRL));
            }
        }
        Err(why) => e.unread.push(format!("ztunnels (ambient) {why}")),
    }
    match &readers.sidecars {
        Sidecars::Read {
            injected,
            without_crls,
        } if !without_crls.is_empty() => e.gaps.push(stale_sidecars(*injected, without_crls)),
        Sidecars::Read { .. } => {}
        Sidecars::Unread(why) => e.unread.push(format!("sidecars {why}")),
    }
    e
}

/// Why a `what` of `image` does not read the CRLs, or `None` when it is `from` or later.
fn too_old(what: &str, name: &str, image: &str, from: IstioVersion) -> Option<String> {
    match IstioVersion::from_image(image) {
        Some(v) if v >= from => None,
        Some(v) => Some(format!(
            "{what} {name} is Istio {v}, which ignores ca-crl.pem (read from {from})"
        )),
        None => Some(format!(
            "{what} {name} runs {image}, whose tag names no Istio version: whether it reads ca-crl.pem ({from}+) is unknown"
        )),
    }
}

fn stale_sidecars(injected: usize, without: &[String]) -> String {
    let mut named = without
        .iter()
        .take(PODS_NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if without.len() > PODS_NAMED {
        named.push_str(&format!(" and {} more", without.len() - PODS_NAMED));
    }
    format!(
        "{} of {injected} pods with a sidecar were injected without the {CRL_VOLUME} volume (before Istio {}) and enforce nothing until restarted: {named}",
        without.len(),
        IstioVersion::CRL
    )
}

/// Whether a pod's `sidecar.istio.io/status` annotation (the injector's JSON record of what it
/// added) lists the CRL volume. An annotation that is not that JSON counts as without.
pub fn injected_with_crls(status: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(status)
        .ok()
        .and_then(|v| {
            v.get("volumes")?
                .as_array()
                .map(|vs| vs.iter().any(|v| v.as_str() == Some(CRL_VOLUME)))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn istiod(image: &str) -> Istiod {
        Istiod {
            name: "istiod".into(),
            image: image.into(),
            version: IstioVersion::from_image(image),
            running: true,
            multiroot: false,
        }
    }

    fn readers(istiods: &[&str]) -> CrlReaders {
        CrlReaders {
            istiods: istiods.iter().map(|i| istiod(i)).collect(),
            ztunnels: Ok(vec![]),
            sidecars: Sidecars::Read {
                injected: 0,
                without_crls: vec![],
            },
        }
    }

    #[test]
    fn a_cluster_enforces_crls_only_where_every_istiod_reads_them() {
        let with = |images: &[&str]| judge(&readers(images)).not_protected();
        assert_eq!(with(&["docker.io/istio/pilot:1.27.0"]), None);
        assert_eq!(with(&["docker.io/istio/pilot:1.31.2-distroless"]), None);
        let old = with(&["docker.io/istio/pilot:1.26.3"]).unwrap();
        assert!(
            old.contains("Istio 1.26, which ignores ca-crl.pem (read from 1.27)"),
            "{old}"
        );
        let unknown = with(&["registry.example/pilot@sha256:abc"]).unwrap();
        assert!(unknown.contains("names no Istio version"), "{unknown}");
        assert_eq!(with(&[]).unwrap(), "no istiod found in istio-system");
        // A revision still on an old release leaves the cluster unprotected.
        assert!(
            with(&[
                "docker.io/istio/pilot:1.28.0",
                "docker.io/istio/pilot:1.24.1"
            ])
            .is_some()
        );
    }

    #[test]
    fn ambient_needs_ztunnel_1_29() {
        let mut r = readers(&["istio/pilot:1.28.1"]);
        let z = |image: &str| Ztunnel {
            name: "ztunnel".into(),
            image: image.into(),
        };
        r.ztunnels = Ok(vec![z("docker.io/istio/ztunnel:1.29.0-distroless")]);
        assert_eq!(judge(&r), Enforcement::default());
        r.ztunnels = Ok(vec![z("docker.io/istio/ztunnel:1.28.1")]);
        let why = judge(&r).not_protected().unwrap();
        assert!(
            why.contains(
                "ztunnel ztunnel is Istio 1.28, which ignores ca-crl.pem (read from 1.29)"
            ),
            "{why}"
        );
        r.ztunnels = Err("not checked: meshca's role may not list daemonsets".into());
        let e = judge(&r);
        assert_eq!(e.not_protected(), None);
        assert_eq!(
            e.to_string(),
            "enforced by istiod (Istio 1.27+); ztunnels (ambient) not checked: meshca's role may not list daemonsets"
        );
    }

    #[test]
    fn pods_injected_before_the_crl_volume_are_named_and_counted() {
        let mut r = readers(&["istio/pilot:1.27.0"]);
        let pods: Vec<String> = (1..=5).map(|i| format!("shop/cart-{i}")).collect();
        r.sidecars = Sidecars::Read {
            injected: 12,
            without_crls: pods,
        };
        let why = judge(&r).not_protected().unwrap();
        assert!(why.starts_with("5 of 12 pods with a sidecar"), "{why}");
        assert!(
            why.ends_with("shop/cart-1, shop/cart-2, shop/cart-3 and 2 more"),
            "{why}"
        );
        assert!(judge(&r).to_string().starts_with("not protected: 5 of 12"));
        r.sidecars = Sidecars::Unread("not checked: pods".into());
        let e = judge(&r);
        assert_eq!(e.not_protected(), None);
        assert_eq!(e.not_checked().unwrap(), "sidecars not checked: pods");
    }

    #[test]
    fn the_injector_s_record_says_whether_the_crl_volume_came_with_the_sidecar() {
        let status = |volumes: &str| {
            format!(
                r#"{{"initContainers":["istio-init"],"containers":["istio-proxy"],"volumes":[{volumes}],"revision":"default"}}"#
            )
        };
        assert!(injected_with_crls(&status(
            r#""istio-envoy","istiod-ca-cert","istio-ca-crl""#
        )));
        assert!(!injected_with_crls(&status(
            r#""istio-envoy","istiod-ca-cert""#
        )));
        assert!(!injected_with_crls("not json"));
        assert!(!injected_with_crls("{}"));
    }
}
