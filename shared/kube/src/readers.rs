//! Reading who enforces a cluster's CRLs: istiod (read by [`KubeDelivery`] already), ztunnel
//! DaemonSets beside it, and the injected pods anywhere. Only what the role may read: a refusal
//! (403) is an answer to report, not a failed delivery.

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use kube::Api;
use kube::api::ListParams;
use meshca_core::delivery::DeliveryError;
use meshca_core::enforcement::{CrlReaders, Sidecars, Ztunnel, injected_with_crls};

use crate::delivery::KubeDelivery;

/// How ztunnel DaemonSets are found (Istio's ambient install labels them so).
pub const ZTUNNEL_SELECTOR: &str = "app=ztunnel";
/// The label the injector puts on every pod it gives a sidecar.
pub const INJECTED_SELECTOR: &str = "security.istio.io/tlsMode=istio";
/// The injector's record of what it added to a pod.
pub const SIDECAR_STATUS: &str = "sidecar.istio.io/status";
/// The pods read, as reports name the call.
const PODS_CALL: &str = "list pods in all namespaces";
/// Pods per list call: a large cluster pages rather than answering one huge list.
pub(crate) const PODS_PER_PAGE: u32 = 500;

impl KubeDelivery {
    /// Everything that reads the CRLs in this cluster, as far as the role may look.
    pub(crate) async fn readers(&self) -> Result<CrlReaders, DeliveryError> {
        Ok(CrlReaders {
            istiods: self.istiods().await?,
            ztunnels: readable(&self.ztunnel_call(), self.ztunnels().await)?,
            sidecars: match readable(PODS_CALL, self.injected_pods().await)? {
                Ok((injected, without_crls)) => Sidecars::Read {
                    injected,
                    without_crls,
                },
                Err(why) => Sidecars::Unread(why),
            },
        })
    }

    fn ztunnel_call(&self) -> String {
        format!("list daemonsets in {}", self.landing().namespace)
    }

    async fn ztunnels(&self) -> Result<Vec<Ztunnel>, DeliveryError> {
        let namespace = &self.landing().namespace;
        let sets: Api<DaemonSet> = Api::namespaced(self.client(), namespace);
        let lp = ListParams::default().labels(ZTUNNEL_SELECTOR);
        let list = self.call(&self.ztunnel_call(), || sets.list(&lp)).await?;
        Ok(list
            .items
            .into_iter()
            .map(|d| {
                let pod = d.spec.as_ref().and_then(|s| s.template.spec.as_ref());
                Ztunnel {
                    image: template_container(pod, &["istio-proxy", "ztunnel"])
                        .and_then(|c| c.image.clone())
                        .unwrap_or_default(),
                    name: d.metadata.name.unwrap_or_default(),
                }
            })
            .collect())
    }

    /// The pods carrying an injected sidecar, in every namespace (metadata only), and those
    /// (`namespace/name`) whose injector did not add the CRL volume.
    async fn injected_pods(&self) -> Result<(usize, Vec<String>), DeliveryError> {
        let pods: Api<Pod> = Api::all(self.client());
        let (mut injected, mut without) = (0, Vec::new());
        let mut token: Option<String> = None;
        loop {
            let mut lp = ListParams::default()
                .labels(INJECTED_SELECTOR)
                .limit(self.pods_per_page);
            if let Some(t) = &token {
                lp = lp.continue_token(t);
            }
            let page = self.call(PODS_CALL, || pods.list_metadata(&lp)).await?;
            for pod in page.items {
                let m = pod.metadata;
                let Some(status) = m.annotations.as_ref().and_then(|a| a.get(SIDECAR_STATUS))
                else {
                    continue;
                };
                injected += 1;
                if !injected_with_crls(status) {
                    let (ns, name) = (m.namespace.unwrap_or_default(), m.name.unwrap_or_default());
                    without.push(format!("{ns}/{name}"));
                }
            }
            token = page.metadata.continue_.filter(|t| !t.is_empty());
            if token.is_none() {
                return Ok((injected, without));
            }
        }
    }
}

/// The container of a workload's pod template named one of `names`, else its first: where the
/// image that says the workload's Istio release is.
pub(crate) fn template_container<'a>(
    pod: Option<&'a PodSpec>,
    names: &[&str],
) -> Option<&'a Container> {
    let containers = &pod?.containers;
    containers
        .iter()
        .find(|c| names.contains(&c.name.as_str()))
        .or(containers.first())
}

/// A read the role was refused is an answer (`Err(why)`) the report names; any other failure
/// stays a failure.
fn readable<T>(
    what: &str,
    read: Result<T, DeliveryError>,
) -> Result<Result<T, String>, DeliveryError> {
    match read {
        Ok(found) => Ok(Ok(found)),
        Err(DeliveryError::Forbidden(_)) => Ok(Err(format!(
            "not checked: meshca's role may not {what} (`meshca access --crl-readers` prints the grant)"
        ))),
        Err(other) => Err(other),
    }
}
