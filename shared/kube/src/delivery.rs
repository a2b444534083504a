//! [`KubeDelivery`], the [`Delivery`] that writes `cacerts` through a cluster's Kubernetes API.
//!
//! Writes are replace-with-resourceVersion, never delete-then-create, so there is no moment
//! without a `cacerts` and no lost update: a 409 means somebody else wrote in between, and we
//! re-read and decide again, a bounded number of times.

use std::future::Future;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use meshca_core::bundle::{self, Bundle, BundleMeta};
use meshca_core::cert::sha256_hex;
use meshca_core::crl;
use meshca_core::delivery::{
    Change, CrlsChange, CrlsDelivered, Delivered, Delivery, DeliveryError, DeliveryOptions,
    IstioVersion, Istiod, Observed, RestartDecision, decide_restart,
};
use meshca_core::timestamp::rfc3339;
use meshca_core::{rotation, validate};
use time::OffsetDateTime;

use meshca_core::error_chain as chain;
use meshca_core::kind::{Landing, Layout};

use crate::secret::{
    anchors_map, bundle_of, crls_of, differing_file, effective_root, holds, is_ours, meta_from,
    meta_of, render,
};

/// The pod-template annotation `kubectl rollout restart` sets.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
/// istiod's switch for accepting a root bundle that contains, or is contained in, the previous one.
pub const MULTIROOT_ENV: &str = "ISTIO_MULTIROOT_MESH";
/// How istiod Deployments are found (every revision of a default or revisioned install).
pub const ISTIOD_SELECTOR: &str = "app=istiod";

/// [`Delivery`] into one cluster through its Kubernetes API.
pub struct KubeDelivery {
    client: Client,
    endpoint: String,
    options: DeliveryOptions,
    pub(crate) pods_per_page: u32,
}

/// The longest one call to a cluster may take, retries included.
pub const CALL_DEADLINE: std::time::Duration = std::time::Duration::from_secs(15);

impl KubeDelivery {
    /// Delivers through `client` to the cluster at `endpoint` (named in errors).
    pub fn new(client: Client, endpoint: impl Into<String>, options: DeliveryOptions) -> Self {
        KubeDelivery {
            client,
            endpoint: endpoint.into(),
            options,
            pods_per_page: crate::readers::PODS_PER_PAGE,
        }
    }

    /// Lists pods `n` at a time when judging sidecars (default 500): a big cluster answers in
    /// pages rather than one huge list.
    pub fn paging_pods_by(mut self, n: u32) -> Self {
        self.pods_per_page = n.max(1);
        self
    }

    pub(crate) fn landing(&self) -> &Landing {
        &self.options.landing
    }

    fn layout(&self) -> Layout {
        self.options.landing.layout
    }

    /// What replacing `current` with this bundle would be — or why it must not be replaced.
    fn change_from(
        &self,
        current: &Secret,
        bundle: &Bundle,
        meta: &BundleMeta,
    ) -> Result<Change, DeliveryError> {
        let ours = is_ours(current);
        if !ours && !self.options.adopt {
            return Err(self.unmanaged());
        }
        let theirs = if ours { meta_of(current) } else { None };
        if let (Some(t), Some(o)) = (&theirs, &meta.owner)
            && let Some(refusal) = t.owned_by_another(o)
        {
            return Err(refusal);
        }
        // Generations are compared within one cluster and kind only (legacy secrets name none).
        if let Some(theirs) = theirs
            && theirs.generation > meta.generation
        {
            let (namespace, name) = (
                self.landing().namespace.clone(),
                self.landing().name.clone(),
            );
            return Err(DeliveryError::NewerInCluster {
                namespace,
                name,
                theirs: theirs.generation,
                ours: meta.generation,
            });
        }
        if holds(current, bundle, meta, self.layout()) {
            return Ok(Change::Unchanged);
        }
        // `render` keeps the secret's ca-crl.pem: istiod must find the new intermediate's CRL in it.
        if let Some(crls) = crls_of(current) {
            self.check_crls(crls, &bundle.ca_cert, "being delivered")?;
        }
        let old_root = effective_root(current, self.layout());
        let contained = old_root
            .and_then(|r| std::str::from_utf8(r).ok())
            .is_some_and(|r| rotation::contained(r, &bundle.root_cert));
        Ok(
            match (
                ours,
                old_root == Some(bundle.root_cert.as_bytes()),
                contained,
            ) {
                (false, _, _) => Change::Adopted,
                (true, true, _) => Change::Rotated,
                (true, false, true) => Change::RootContained,
                (true, false, false) => Change::RootChanged,
            },
        )
    }

    /// Restarts each istiod that needs it after `change`. Only cacerts is istiod's; the other
    /// kinds' consumers pick their secrets up themselves.
    async fn restart_where_needed(
        &self,
        change: Change,
    ) -> Result<Vec<(String, RestartDecision)>, DeliveryError> {
        if self.layout() != Layout::IstioCacerts {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for d in self.istiods().await? {
            let decision = decide_restart(self.options.restart, change, &d);
            if decision.restart {
                self.restart(&d.name).await?;
            }
            out.push((d.name, decision));
        }
        Ok(out)
    }

    /// istiod's rule (1.27+): `crls` hold a CRL in force signed by the intermediate `ca_cert`.
    fn check_crls(&self, crls: &str, ca_cert: &str, what: &str) -> Result<(), DeliveryError> {
        let lacking = |detail: String| DeliveryError::CrlsLackOwn {
            namespace: self.landing().namespace.clone(),
            name: self.landing().name.clone(),
            what: what.to_string(),
            detail,
        };
        let set = crl::CrlSet::parse(crls).map_err(|e| lacking(e.to_string()))?;
        set.signed_by_own(ca_cert, OffsetDateTime::now_utc())
            .map_err(|e| lacking(e.to_string()))
    }

    fn no_crls_here(&self, why: &str) -> DeliveryError {
        DeliveryError::NoCrlsHere {
            namespace: self.landing().namespace.clone(),
            name: self.landing().name.clone(),
            why: why.to_string(),
        }
    }

    /// Writes `crls` into the `cacerts` found, retrying conflicts; what the write did. CRLs that
    /// say the same as those held (signed again, nothing changed) are left as they are.
    async fn write_crls(&self, crls: &str) -> Result<CrlsDelivered, DeliveryError> {
        let secrets = self.secrets();
        let mut conflicts = 0;
        loop {
            let found = self
                .call(&self.secret_call("get"), || {
                    secrets.get_opt(&self.landing().name)
                })
                .await?;
            let Some(current) = found else {
                return Ok(CrlsDelivered {
                    change: CrlsChange::NoBundleYet,
                    generation: None,
                    readers: None,
                });
            };
            if !is_ours(&current) {
                return Err(self.unmanaged());
            }
            let generation = meta_of(&current).map(|m| m.generation);
            let done = |change| CrlsDelivered {
                change,
                generation,
                readers: None,
            };
            if crls_of(&current).is_some_and(|held| crl::equivalent(held, crls)) {
                return Ok(done(CrlsChange::Unchanged));
            }
            match self.replace_crls(current, crls).await {
                Ok(()) => return Ok(done(CrlsChange::Written)),
                Err(DeliveryError::Api { code: 409, .. })
                    if conflicts < self.options.conflict_retries =>
                {
                    conflicts += 1
                }
                Err(DeliveryError::Api { code: 409, .. }) => {
                    return Err(DeliveryError::Conflicts {
                        namespace: self.landing().namespace.clone(),
                        name: self.landing().name.clone(),
                        attempts: conflicts + 1,
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `current` with `crls` as its `ca-crl.pem`, once istiod's rule holds for the intermediate
    /// it carries; what the server stored is its answer, read back without another call.
    async fn replace_crls(&self, mut current: Secret, crls: &str) -> Result<(), DeliveryError> {
        let held = bundle_of(&current, self.layout())
            .ok_or_else(|| self.no_crls_here("it holds no istio-layout bundle (ca-cert.pem)"))?;
        self.check_crls(crls, &held.ca_cert, "it holds")?;
        current.metadata.managed_fields = None;
        current.data.get_or_insert_default().insert(
            bundle::CA_CRL.into(),
            k8s_openapi::ByteString(crls.as_bytes().to_vec()),
        );
        let (secrets, pp) = (self.secrets(), PostParams::default());
        let stored = self
            .call(&self.secret_call("replace"), || {
                secrets.replace(&self.landing().name, &pp, &current)
            })
            .await?;
        match crls_of(&stored) == Some(crls) {
            true => Ok(()),
            false => Err(DeliveryError::ReadBack {
                namespace: self.landing().namespace.clone(),
                name: self.landing().name.clone(),
                detail: format!("{} differs", bundle::CA_CRL),
            }),
        }
    }

    fn unmanaged(&self) -> DeliveryError {
        DeliveryError::Unmanaged {
            namespace: self.landing().namespace.clone(),
            name: self.landing().name.clone(),
        }
    }

    pub(crate) fn client(&self) -> Client {
        self.client.clone()
    }

    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.landing().namespace)
    }

    /// Runs `call`, retrying throttling, server errors and transport failures until the deadline.
    /// `call` with retries of transient errors, bounded as a whole by [`CALL_DEADLINE`]: a
    /// cluster that accepts and never answers costs that once, not every retry's timeout.
    /// What a call on the landing secret is, as errors name it: `get secret cert-manager/istio-ca`.
    fn secret_call(&self, verb: &str) -> String {
        let landing = self.landing();
        format!("{verb} secret {}/{}", landing.namespace, landing.name)
    }

    pub(crate) async fn call<T, F, Fut>(&self, what: &str, call: F) -> Result<T, DeliveryError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        match tokio::time::timeout(CALL_DEADLINE, self.call_with_retries(what, call)).await {
            Ok(done) => done,
            Err(_) => Err(DeliveryError::Unreachable {
                endpoint: self.endpoint.clone(),
                detail: format!("{what}: no answer within {} s", CALL_DEADLINE.as_secs()),
            }),
        }
    }

    async fn call_with_retries<T, F, Fut>(
        &self,
        what: &str,
        mut call: F,
    ) -> Result<T, DeliveryError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        let mut attempts = self.options.backoff.start();
        loop {
            let err = match call().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let transient = match &err {
                kube::Error::Api(s) => matches!(s.code, 429 | 500 | 502 | 503 | 504),
                kube::Error::HyperError(_) | kube::Error::Service(_) => true,
                _ => false,
            };
            match attempts.next_pause() {
                Some(pause) if transient => tokio::time::sleep(pause).await,
                _ => return Err(self.map(err, what)),
            }
        }
    }

    fn map(&self, err: kube::Error, what: &str) -> DeliveryError {
        match err {
            kube::Error::Api(s) => match s.code {
                401 => DeliveryError::Unauthorized(s.message.clone()),
                403 => DeliveryError::Forbidden(format!("{what}: {}", s.message)),
                code => DeliveryError::Api {
                    code,
                    reason: s.reason.clone(),
                    what: what.to_string(),
                    message: s.message.clone(),
                },
            },
            other => DeliveryError::Unreachable {
                endpoint: self.endpoint.clone(),
                detail: chain(&other),
            },
        }
    }

    /// Creates the namespace when it is missing and we may; a 403 on reading it means a
    /// namespace-scoped grant, where the create of the secret will tell whether it exists.
    async fn ensure_namespace(&self) -> Result<(), DeliveryError> {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        match namespaces.get_opt(&self.landing().namespace).await {
            Ok(Some(_)) => return Ok(()),
            Ok(None) => {}
            Err(kube::Error::Api(s)) if s.code == 403 => return Ok(()),
            Err(e) => return Err(self.map(e, "get namespace")),
        }
        let ns = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(self.landing().namespace.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        match namespaces.create(&PostParams::default(), &ns).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 403 => Err(DeliveryError::NamespaceMissing(
                self.landing().namespace.clone(),
            )),
            Err(e) => Err(self.map(e, "create namespace")),
        }
    }

    pub(crate) async fn istiods(&self) -> Result<Vec<Istiod>, DeliveryError> {
        let deployments: Api<Deployment> =
            Api::namespaced(self.client.clone(), &self.landing().namespace);
        let lp = ListParams::default().labels(ISTIOD_SELECTOR);
        let list = self
            .call("list istiod deployments", || deployments.list(&lp))
            .await?;
        Ok(list
            .items
            .into_iter()
            .map(|d| {
                let pod = d.spec.as_ref().and_then(|s| s.template.spec.as_ref());
                let container = crate::readers::template_container(pod, &["discovery"]);
                let image = container.and_then(|c| c.image.clone()).unwrap_or_default();
                Istiod {
                    name: d.metadata.name.clone().unwrap_or_default(),
                    version: IstioVersion::from_image(&image),
                    image,
                    running: d
                        .status
                        .as_ref()
                        .and_then(|s| s.ready_replicas)
                        .unwrap_or(0)
                        > 0,
                    multiroot: container.and_then(|c| c.env.as_ref()).is_some_and(|env| {
                        env.iter().any(|e| {
                            e.name == MULTIROOT_ENV
                                && e.value
                                    .as_deref()
                                    .is_some_and(|v| v.eq_ignore_ascii_case("true"))
                        })
                    }),
                }
            })
            .collect())
    }

    async fn restart(&self, name: &str) -> Result<(), DeliveryError> {
        let deployments: Api<Deployment> =
            Api::namespaced(self.client.clone(), &self.landing().namespace);
        let now = rfc3339(OffsetDateTime::now_utc());
        let patch = serde_json::json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}});
        let what = format!("restart deployment {name}");
        let (params, patch) = (PatchParams::default(), Patch::Strategic(&patch));
        self.call(&what, || deployments.patch(name, &params, &patch))
            .await?;
        Ok(())
    }

    /// Writes the kind's trust-anchor ConfigMap (Linkerd's `linkerd-identity-trust-roots`) when
    /// it has one: created, or replaced when its anchors differ. One meshca did not write is
    /// refused unless adoption is on, and one of another cluster's is refused always.
    async fn deliver_anchors(
        &self,
        bundle: &Bundle,
        meta: &BundleMeta,
    ) -> Result<(), DeliveryError> {
        let Some(anchors) = self.landing().anchors else {
            return Ok(());
        };
        let maps: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.landing().namespace);
        let current = self
            .call("get trust anchors", || maps.get_opt(anchors.name))
            .await?;
        let pp = PostParams::default();
        let Some(current) = current else {
            self.ensure_namespace().await?;
            let new = anchors_map(None, bundle, meta, self.landing(), anchors);
            self.call("create trust anchors", || maps.create(&pp, &new))
                .await?;
            return Ok(());
        };
        let ours = crate::secret::is_ours_meta(&current.metadata);
        if !ours && !self.options.adopt {
            return Err(DeliveryError::Unmanaged {
                namespace: self.landing().namespace.clone(),
                name: anchors.name.into(),
            });
        }
        let theirs = current.metadata.annotations.as_ref().and_then(meta_from);
        if let (Some(t), Some(o)) = (&theirs, &meta.owner)
            && let Some(refusal) = t.owned_by_another(o)
        {
            return Err(refusal);
        }
        let held = current.data.as_ref().and_then(|d| d.get(anchors.key));
        if ours && held == Some(&bundle.root_cert) {
            return Ok(());
        }
        let new = anchors_map(Some(current), bundle, meta, self.landing(), anchors);
        self.call("replace trust anchors", || {
            maps.replace(anchors.name, &pp, &new)
        })
        .await?;
        Ok(())
    }

    /// Reads the secret back and checks it holds exactly the bundle; returns the fingerprint.
    async fn read_back(&self, bundle: &Bundle, meta: &BundleMeta) -> Result<String, DeliveryError> {
        let fail = |detail: String| DeliveryError::ReadBack {
            namespace: self.landing().namespace.clone(),
            name: self.landing().name.clone(),
            detail,
        };
        let secrets = self.secrets();
        let back = self
            .call(&self.secret_call("read back"), || {
                secrets.get_opt(&self.landing().name)
            })
            .await?
            .ok_or_else(|| fail("the secret is gone".into()))?;
        // A rival wrote a newer generation of the same cluster between our write and this read:
        // the cluster moved on, which is no failure to verify ours.
        if let Some(theirs) = meta_of(&back)
            && theirs.owner == meta.owner
            && theirs.generation > meta.generation
        {
            return Err(DeliveryError::NewerInCluster {
                namespace: self.landing().namespace.clone(),
                name: self.landing().name.clone(),
                theirs: theirs.generation,
                ours: meta.generation,
            });
        }
        if let Some(name) = differing_file(&back, bundle, self.layout()) {
            return Err(fail(format!("{name} differs")));
        }
        let der = meshca_core::pem::certificates(bundle::CA_CERT, &bundle.ca_cert)
            .map_err(|e| fail(e.to_string()))?;
        let fingerprint = der.first().map(|d| sha256_hex(d)).unwrap_or_default();
        if fingerprint != meta.fingerprint_sha256 {
            return Err(fail(format!(
                "ca-cert.pem fingerprint {fingerprint} is not the recorded {}",
                meta.fingerprint_sha256
            )));
        }
        Ok(fingerprint)
    }
}

#[async_trait]
impl Delivery for KubeDelivery {
    async fn observe(&self) -> Result<Observed, DeliveryError> {
        let secrets = self.secrets();
        let found = self
            .call(&self.secret_call("get"), || {
                secrets.get_opt(&self.landing().name)
            })
            .await?;
        Ok(match found {
            None => Observed::Absent,
            Some(s) if is_ours(&s) => Observed::Managed {
                bundle: bundle_of(&s, self.layout()),
                meta: meta_of(&s),
            },
            Some(s) => Observed::Unmanaged {
                bundle: bundle_of(&s, self.layout()),
            },
        })
    }

    fn refuses(&self, observed: &Observed) -> Option<DeliveryError> {
        matches!(observed, Observed::Unmanaged { .. } if !self.options.adopt)
            .then(|| self.unmanaged())
    }

    async fn observe_crls(&self) -> Result<Option<String>, DeliveryError> {
        let secrets = self.secrets();
        let found = self
            .call(&self.secret_call("get"), || {
                secrets.get_opt(&self.landing().name)
            })
            .await?;
        Ok(found.as_ref().and_then(crls_of).map(str::to_string))
    }

    async fn crl_readers(
        &self,
    ) -> Result<Option<meshca_core::enforcement::CrlReaders>, DeliveryError> {
        Ok(Some(self.readers().await?))
    }

    async fn deliver_crls(&self, crls: &str) -> Result<CrlsDelivered, DeliveryError> {
        if self.layout() != Layout::IstioCacerts {
            return Err(
                self.no_crls_here("its layout is kubernetes.io/tls, where no reader takes a CRL")
            );
        }
        let mut done = self.write_crls(crls).await?;
        if done.change != CrlsChange::NoBundleYet {
            done.readers = Some(self.readers().await?);
        }
        Ok(done)
    }

    async fn deliver(
        &self,
        bundle: &Bundle,
        meta: &BundleMeta,
    ) -> Result<Delivered, DeliveryError> {
        validate::validate(bundle, &self.options.profile, OffsetDateTime::now_utc())?;
        // Trust before issuer: the anchors hold the new roots before a certificate under them.
        self.deliver_anchors(bundle, meta).await?;
        let secrets = self.secrets();
        let mut conflicts = 0;
        let mut namespace_checked = false;
        let change = loop {
            if conflicts > self.options.conflict_retries {
                return Err(DeliveryError::Conflicts {
                    namespace: self.landing().namespace.clone(),
                    name: self.landing().name.clone(),
                    attempts: conflicts,
                });
            }
            let current = self
                .call(&self.secret_call("get"), || {
                    secrets.get_opt(&self.landing().name)
                })
                .await?;
            let Some(current) = current else {
                if !namespace_checked {
                    self.ensure_namespace().await?;
                    namespace_checked = true;
                }
                let new = render(None, bundle, meta, self.landing());
                let pp = PostParams::default();
                match self
                    .call(&self.secret_call("create"), || secrets.create(&pp, &new))
                    .await
                {
                    Ok(_) => break Change::Created,
                    Err(DeliveryError::Api { code: 409, .. }) => conflicts += 1,
                    Err(DeliveryError::Api { code: 404, .. }) => {
                        return Err(DeliveryError::NamespaceMissing(
                            self.landing().namespace.clone(),
                        ));
                    }
                    Err(e) => return Err(e),
                }
                continue;
            };
            let change = self.change_from(&current, bundle, meta)?;
            if change == Change::Unchanged {
                break change;
            }
            let new = render(Some(current), bundle, meta, self.landing());
            let pp = PostParams::default();
            match self
                .call(&self.secret_call("replace"), || {
                    secrets.replace(&self.landing().name, &pp, &new)
                })
                .await
            {
                Ok(_) => break change,
                Err(DeliveryError::Api { code: 409, .. }) => conflicts += 1,
                Err(e) => return Err(e),
            }
        };
        let fingerprint_sha256 = self.read_back(bundle, meta).await?;
        let istiod = self.restart_where_needed(change).await?;
        Ok(Delivered {
            change,
            fingerprint_sha256,
            istiod,
            conflicts,
        })
    }
}
