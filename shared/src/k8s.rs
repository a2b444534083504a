//! The Kubernetes adapter: connecting (kubeconfig context, or an endpoint + cluster CA + bearer
//! token source for EKS) and [`KubeDelivery`], the [`Delivery`] that writes `cacerts`.
//!
//! Writes are replace-with-resourceVersion, never delete-then-create, so there is no moment
//! without a `cacerts` and no lost update: a 409 means somebody else wrote in between, and we
//! re-read and decide again, a bounded number of times.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Config};
use time::OffsetDateTime;
use tower::{BoxError, Layer, Service, ServiceExt, buffer::Buffer};
use zeroize::Zeroizing;

use crate::bundle::{self, Bundle, BundleMeta, MANAGED_BY_LABEL, MANAGED_BY_VALUE, SECRET_NAME, SECRET_NAMESPACE};
use crate::cert::sha256_hex;
use crate::delivery::{Change, Delivered, Delivery, DeliveryError, IstioVersion, Istiod, Observed, RestartPolicy, decide_restart};
use crate::retry::Backoff;
use crate::validate::{self, Profile};

/// The pod-template annotation `kubectl rollout restart` sets.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
/// How istiod Deployments are found (every revision of a default or revisioned install).
pub const ISTIOD_SELECTOR: &str = "app=istiod";

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("kubeconfig context {context:?}: {detail}")]
    Kubeconfig { context: String, detail: String },
    #[error("cluster {cluster}: {detail}")]
    Endpoint { cluster: String, detail: String },
}

/// A source of bearer tokens that may change over time (EKS tokens live 15 minutes).
#[async_trait]
pub trait TokenSource: Send + Sync + 'static {
    async fn bearer(&self) -> Result<Zeroizing<String>, String>;
}

/// A client for a kubeconfig context (`None`: the current context) from `path`, or from
/// `$KUBECONFIG` / `~/.kube/config` when no path is given.
pub async fn from_context(path: Option<&std::path::Path>, context: Option<&str>) -> Result<(Client, String), ConnectError> {
    let name = context.unwrap_or("(current)").to_string();
    let fail = |detail: String| ConnectError::Kubeconfig { context: name.clone(), detail };
    let options = kube::config::KubeConfigOptions { context: context.map(str::to_string), ..Default::default() };
    let mut config = match path {
        Some(p) => {
            let file = kube::config::Kubeconfig::read_from(p).map_err(|e| fail(chain(&e)))?;
            Config::from_custom_kubeconfig(file, &options).await.map_err(|e| fail(chain(&e)))?
        }
        None => Config::from_kubeconfig(&options).await.map_err(|e| fail(chain(&e)))?,
    };
    tune(&mut config);
    let endpoint = config.cluster_url.to_string();
    Ok((Client::try_from(config).map_err(|e| fail(chain(&e)))?, endpoint))
}

/// A client for `endpoint` that trusts only `ca_pem` and authenticates with `tokens`.
pub fn from_endpoint(cluster: &str, endpoint: &str, ca_pem: &str, tokens: Arc<dyn TokenSource>) -> Result<Client, ConnectError> {
    let fail = |detail: String| ConnectError::Endpoint { cluster: cluster.to_string(), detail };
    let uri: http::Uri = endpoint.parse().map_err(|e| fail(format!("endpoint {endpoint:?} is not a URL: {e}")))?;
    if uri.scheme_str() != Some("https") {
        return Err(fail(format!("endpoint {endpoint} is not https")));
    }
    let roots = crate::pem::certificates("cluster certificate authority", ca_pem).map_err(|e| fail(e.to_string()))?;
    let mut config = Config::new(uri);
    config.root_cert = Some(roots);
    tune(&mut config);
    let builder = kube::client::ClientBuilder::try_from(config).map_err(|e| fail(chain(&e)))?;
    Ok(builder.with_layer(&BearerLayer(tokens)).build())
}

fn tune(config: &mut Config) {
    config.default_namespace = SECRET_NAMESPACE.to_string();
    config.connect_timeout = Some(Duration::from_secs(10));
    config.read_timeout = Some(Duration::from_secs(30));
    config.write_timeout = Some(Duration::from_secs(30));
}

/// Sets `Authorization: Bearer …` on every request from a [`TokenSource`].
#[derive(Clone)]
struct BearerLayer(Arc<dyn TokenSource>);

impl<S> Layer<S> for BearerLayer
where
    S: Service<http::Request<kube::client::Body>> + Send + 'static,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Into<BoxError> + Send + Sync,
{
    type Service = Bearer<S>;
    fn layer(&self, inner: S) -> Bearer<S> {
        Bearer { inner: Buffer::new(inner, 64), tokens: self.0.clone() }
    }
}

struct Bearer<S: Service<http::Request<kube::client::Body>>> {
    inner: Buffer<http::Request<kube::client::Body>, S::Future>,
    tokens: Arc<dyn TokenSource>,
}

impl<S> Service<http::Request<kube::client::Body>> for Bearer<S>
where
    S: Service<http::Request<kube::client::Body>> + Send + 'static,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Into<BoxError> + Send + Sync,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: http::Request<kube::client::Body>) -> Self::Future {
        let mut inner = self.inner.clone();
        let tokens = self.tokens.clone();
        Box::pin(async move {
            let token = tokens.bearer().await.map_err(BoxError::from)?;
            let mut value = http::HeaderValue::from_str(&format!("Bearer {}", token.as_str()))?;
            value.set_sensitive(true);
            req.headers_mut().insert(http::header::AUTHORIZATION, value);
            inner.ready().await?.call(req).await
        })
    }
}

/// Delivery settings.
#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    /// Take over a `cacerts` meshca did not create.
    pub adopt: bool,
    pub restart: RestartPolicy,
    /// How many 409s to re-read and retry before giving up.
    pub conflict_retries: u32,
    /// Retries of 429/5xx and unreachable endpoints, per call.
    pub backoff: Backoff,
    /// What a bundle must satisfy to be written.
    pub profile: Profile,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        DeliveryOptions {
            adopt: false,
            restart: RestartPolicy::Auto,
            conflict_retries: 5,
            backoff: Backoff { first: Duration::from_millis(200), max: Duration::from_secs(3), deadline: Duration::from_secs(30) },
            profile: Profile::default(),
        }
    }
}

/// [`Delivery`] into one cluster through its Kubernetes API.
pub struct KubeDelivery {
    client: Client,
    endpoint: String,
    options: DeliveryOptions,
}

impl KubeDelivery {
    pub fn new(client: Client, endpoint: impl Into<String>, options: DeliveryOptions) -> Self {
        KubeDelivery { client, endpoint: endpoint.into(), options }
    }

    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), SECRET_NAMESPACE)
    }

    /// Runs `call`, retrying throttling, server errors and transport failures until the deadline.
    async fn call<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T, DeliveryError>
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
                code => DeliveryError::Api { code, reason: s.reason.clone(), what: what.to_string(), message: s.message.clone() },
            },
            other => DeliveryError::Unreachable { endpoint: self.endpoint.clone(), detail: chain(&other) },
        }
    }

    /// Creates the namespace when it is missing and we may; a 403 on reading it means a
    /// namespace-scoped grant, where the create of the secret will tell whether it exists.
    async fn ensure_namespace(&self) -> Result<(), DeliveryError> {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        match namespaces.get_opt(SECRET_NAMESPACE).await {
            Ok(Some(_)) => return Ok(()),
            Ok(None) => {}
            Err(kube::Error::Api(s)) if s.code == 403 => return Ok(()),
            Err(e) => return Err(self.map(e, "get namespace")),
        }
        let ns = Namespace {
            metadata: kube::api::ObjectMeta { name: Some(SECRET_NAMESPACE.to_string()), ..Default::default() },
            ..Default::default()
        };
        match namespaces.create(&PostParams::default(), &ns).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 403 => Err(DeliveryError::NamespaceMissing(SECRET_NAMESPACE.to_string())),
            Err(e) => Err(self.map(e, "create namespace")),
        }
    }

    async fn istiods(&self) -> Result<Vec<Istiod>, DeliveryError> {
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), SECRET_NAMESPACE);
        let lp = ListParams::default().labels(ISTIOD_SELECTOR);
        let list = self.call("list istiod deployments", || deployments.list(&lp)).await?;
        Ok(list
            .items
            .into_iter()
            .map(|d| {
                let containers = d.spec.as_ref().and_then(|s| s.template.spec.as_ref()).map(|p| p.containers.clone()).unwrap_or_default();
                let container = containers.iter().find(|c| c.name == "discovery").or(containers.first());
                let image = container.and_then(|c| c.image.clone()).unwrap_or_default();
                Istiod {
                    name: d.metadata.name.clone().unwrap_or_default(),
                    version: IstioVersion::from_image(&image),
                    image,
                    running: d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0) > 0,
                }
            })
            .collect())
    }

    async fn restart(&self, name: &str) -> Result<(), DeliveryError> {
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), SECRET_NAMESPACE);
        let now = OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        let patch = serde_json::json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}});
        let what = format!("restart deployment {name}");
        let (params, patch) = (PatchParams::default(), Patch::Strategic(&patch));
        self.call(&what, || deployments.patch(name, &params, &patch)).await?;
        Ok(())
    }

    /// Reads the secret back and checks it holds exactly the bundle; returns the fingerprint.
    async fn read_back(&self, bundle: &Bundle, meta: &BundleMeta) -> Result<String, DeliveryError> {
        let fail = |detail: String| DeliveryError::ReadBack { namespace: SECRET_NAMESPACE.into(), name: SECRET_NAME.into(), detail };
        let secrets = self.secrets();
        let back = self.call("read back cacerts", || secrets.get_opt(SECRET_NAME)).await?.ok_or_else(|| fail("the secret is gone".into()))?;
        if let Some(name) = differing_file(&back, bundle) {
            return Err(fail(format!("{name} differs")));
        }
        let der = crate::pem::certificates(bundle::CA_CERT, &bundle.ca_cert).map_err(|e| fail(e.to_string()))?;
        let fingerprint = der.first().map(|d| sha256_hex(d)).unwrap_or_default();
        if fingerprint != meta.fingerprint_sha256 {
            return Err(fail(format!("ca-cert.pem fingerprint {fingerprint} is not the recorded {}", meta.fingerprint_sha256)));
        }
        Ok(fingerprint)
    }
}

fn is_ours(secret: &Secret) -> bool {
    secret.metadata.labels.as_ref().and_then(|l| l.get(MANAGED_BY_LABEL)).map(String::as_str) == Some(MANAGED_BY_VALUE)
}

fn annotations(secret: &Secret) -> BTreeMap<String, String> {
    secret.metadata.annotations.clone().unwrap_or_default()
}

/// The bundle in a secret's data, when all four files are there and parse.
fn bundle_of(secret: &Secret) -> Option<Bundle> {
    let data = secret.data.as_ref()?;
    let text = |k: &str| data.get(k).and_then(|b| std::str::from_utf8(&b.0).ok()).map(|s| Zeroizing::new(s.to_string()));
    Bundle::from_pems(&text(bundle::CA_CERT)?, &text(bundle::CA_KEY)?, &text(bundle::CERT_CHAIN)?, &text(bundle::ROOT_CERT)?).ok()
}

/// The secret to write: `current` (other labels, annotations and data keys kept) with our
/// label, annotations and the four files.
fn desired(current: Option<Secret>, bundle: &Bundle, meta: &BundleMeta) -> Secret {
    let mut s = current.unwrap_or_default();
    s.metadata.name = Some(SECRET_NAME.into());
    s.metadata.namespace = Some(SECRET_NAMESPACE.into());
    s.metadata.managed_fields = None;
    s.metadata.labels.get_or_insert_default().insert(MANAGED_BY_LABEL.into(), MANAGED_BY_VALUE.into());
    s.metadata.annotations.get_or_insert_default().extend(meta.annotations());
    if s.type_.is_none() {
        s.type_ = Some("Opaque".into());
    }
    let data = s.data.get_or_insert_default();
    for (name, text) in bundle.files() {
        data.insert(name.into(), ByteString(text.as_bytes().to_vec()));
    }
    s.string_data = None;
    s
}

/// The first of the bundle's four files that the secret does not hold byte for byte.
fn differing_file(secret: &Secret, bundle: &Bundle) -> Option<&'static str> {
    let data = secret.data.as_ref();
    bundle.files().into_iter().find(|(n, t)| data.and_then(|d| d.get(*n)).map(|b| b.0.as_slice()) != Some(t.as_bytes())).map(|(n, _)| n)
}

fn holds(secret: &Secret, bundle: &Bundle, meta: &BundleMeta) -> bool {
    let ann = annotations(secret);
    is_ours(secret) && differing_file(secret, bundle).is_none() && meta.annotations().iter().all(|(k, v)| ann.get(k) == Some(v))
}

fn unmanaged() -> DeliveryError {
    DeliveryError::Unmanaged { namespace: SECRET_NAMESPACE.into(), name: SECRET_NAME.into() }
}

#[async_trait]
impl Delivery for KubeDelivery {
    async fn observe(&self) -> Result<Observed, DeliveryError> {
        let secrets = self.secrets();
        let found = self.call("get cacerts", || secrets.get_opt(SECRET_NAME)).await?;
        Ok(match found {
            None => Observed::Absent,
            Some(s) if is_ours(&s) => Observed::Managed { bundle: bundle_of(&s), meta: BundleMeta::from_annotations(&annotations(&s)) },
            Some(s) => Observed::Unmanaged { bundle: bundle_of(&s) },
        })
    }

    fn refuses(&self, observed: &Observed) -> Option<DeliveryError> {
        matches!(observed, Observed::Unmanaged { .. } if !self.options.adopt).then(unmanaged)
    }

    async fn deliver(&self, bundle: &Bundle, meta: &BundleMeta) -> Result<Delivered, DeliveryError> {
        validate::validate(bundle, &self.options.profile, OffsetDateTime::now_utc())?;
        let secrets = self.secrets();
        let mut conflicts = 0;
        let mut namespace_checked = false;
        let change = loop {
            if conflicts > self.options.conflict_retries {
                return Err(DeliveryError::Conflicts {
                    namespace: SECRET_NAMESPACE.into(),
                    name: SECRET_NAME.into(),
                    attempts: conflicts,
                });
            }
            let current = self.call("get cacerts", || secrets.get_opt(SECRET_NAME)).await?;
            let Some(current) = current else {
                if !namespace_checked {
                    self.ensure_namespace().await?;
                    namespace_checked = true;
                }
                let new = desired(None, bundle, meta);
                let pp = PostParams::default();
                match self.call("create cacerts", || secrets.create(&pp, &new)).await {
                    Ok(_) => break Change::Created,
                    Err(DeliveryError::Api { code: 409, .. }) => conflicts += 1,
                    Err(DeliveryError::Api { code: 404, .. }) => {
                        return Err(DeliveryError::NamespaceMissing(SECRET_NAMESPACE.into()));
                    }
                    Err(e) => return Err(e),
                }
                continue;
            };
            let ours = is_ours(&current);
            if !ours && !self.options.adopt {
                return Err(unmanaged());
            }
            if ours
                && let Some(theirs) = BundleMeta::from_annotations(&annotations(&current))
                && theirs.generation > meta.generation
            {
                return Err(DeliveryError::NewerInCluster {
                    namespace: SECRET_NAMESPACE.into(),
                    name: SECRET_NAME.into(),
                    theirs: theirs.generation,
                    ours: meta.generation,
                });
            }
            if holds(&current, bundle, meta) {
                break Change::Unchanged;
            }
            let same_root = current.data.as_ref().and_then(|d| d.get(bundle::ROOT_CERT)).map(|b| b.0.as_slice())
                == Some(bundle.root_cert.as_bytes());
            let change = match (ours, same_root) {
                (false, _) => Change::Adopted,
                (true, true) => Change::Rotated,
                (true, false) => Change::RootChanged,
            };
            let new = desired(Some(current), bundle, meta);
            let pp = PostParams::default();
            match self.call("replace cacerts", || secrets.replace(SECRET_NAME, &pp, &new)).await {
                Ok(_) => break change,
                Err(DeliveryError::Api { code: 409, .. }) => conflicts += 1,
                Err(e) => return Err(e),
            }
        };
        let fingerprint_sha256 = self.read_back(bundle, meta).await?;
        let mut istiod = Vec::new();
        for d in self.istiods().await? {
            let decision = decide_restart(self.options.restart, change, &d);
            if decision.restart {
                self.restart(&d.name).await?;
            }
            istiod.push((d.name, decision));
        }
        Ok(Delivered { change, fingerprint_sha256, istiod, conflicts })
    }
}

/// An error and its sources on one line (TLS and connection causes are in the sources).
fn chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !s.contains(&next) {
            s.push_str(": ");
            s.push_str(&next);
        }
        source = e.source();
    }
    s
}
