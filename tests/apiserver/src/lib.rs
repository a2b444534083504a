//! A Kubernetes API server for the slice of the API meshca uses, over HTTPS with its own CA.
//!
//! It is a protocol peer, not a mock of meshca: kube-rs and the real `kubectl` talk to it the
//! way they talk to EKS. It serves discovery, namespaces, secrets and deployments (create, get,
//! list, replace, merge and strategic-merge patch, delete) with resourceVersion, answers
//! failures with `Status` bodies, checks bearer tokens (a static token or an EKS token for its
//! cluster), can limit a caller to some namespaces (an EKS access entry scoped to
//! `istio-system`), and injects faults (errors, conflicts, slow answers) on request.

pub mod eks_auth;
pub mod store;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub use eks_auth::Expectation;
use store::{Failure, Resource, Store};

/// How the server is set up.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// The cluster name EKS tokens must be signed for.
    pub cluster: String,
    /// A bearer token accepted as is (as for a kubeconfig user).
    pub static_token: Option<String>,
    /// Access key id → secret, to check EKS token signatures; empty: structure only.
    pub aws_keys: std::collections::BTreeMap<String, String>,
    /// Namespaces EKS-token callers may touch; `None`: cluster-wide access.
    pub eks_namespaces: Option<BTreeSet<String>>,
    /// Port to listen on (0: any free port).
    pub port: u16,
    /// Answer TokenReviews at [`TOKEN_REVIEW_PATH`] (unauthenticated, as a webhook is called), so
    /// a real kube-apiserver authenticates EKS tokens through this server as EKS does.
    pub token_review: bool,
    /// Identities from the emulated STS: an EKS token signed with an assumed role's key is
    /// checked with the secret STS holds for it, and admitted only for the role the cluster's
    /// access entry names.
    pub sts: Option<StsIdentities>,
}

/// Where this server asks who signed a token (the emulated AWS), and the IAM role the
/// cluster's access entry names: EKS admits an assumed-role session of exactly that role.
#[derive(Clone, Debug)]
pub struct StsIdentities {
    /// The emulator's address, `127.0.0.1:<port>`.
    pub emulator: SocketAddr,
    /// `arn:aws:iam::<account>:role/<name>`.
    pub role_arn: String,
}

impl Settings {
    /// A cluster reached only with EKS tokens signed by `key_id`/`secret`, and only in
    /// `istio-system`: an access entry with a policy scoped to that namespace.
    pub fn eks_scoped(cluster: &str, key_id: &str, secret: &str) -> Self {
        Settings {
            cluster: cluster.into(),
            aws_keys: std::collections::BTreeMap::from([(key_id.to_string(), secret.to_string())]),
            eks_namespaces: Some(BTreeSet::from(["istio-system".to_string()])),
            ..Default::default()
        }
    }
}

/// A fault to inject: the next `times` requests that match answer `status` (after `delay`).
/// `status` 0 only delays and then serves the request normally.
#[derive(Clone, Debug)]
pub struct Fault {
    /// Only requests of this method (`None`: any).
    pub method: Option<Method>,
    /// Only requests whose path contains this.
    pub path_contains: String,
    /// The status to answer with (0: none, only the delay).
    pub status: u16,
    /// How many requests it applies to.
    pub times: u32,
    /// How long to wait before answering.
    pub delay: Duration,
}

/// One request as the server saw it, for tests to assert on.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The method.
    pub method: Method,
    /// The path and query.
    pub path: String,
    /// The status answered.
    pub status: u16,
    /// Who: "static", "eks:&lt;access key id&gt;" or "anonymous".
    pub caller: String,
}

#[derive(Default)]
struct State {
    store: Store,
    faults: Vec<Fault>,
    seen: Vec<Seen>,
    /// TLS connections completed.
    connections: usize,
}

/// A running server. Dropping it stops accepting connections.
pub struct ApiServer {
    addr: SocketAddr,
    ca_pem: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Ctx {
    settings: Settings,
    state: Arc<Mutex<State>>,
    addr: SocketAddr,
}

impl ApiServer {
    /// Makes a CA and a server certificate for 127.0.0.1 and localhost, and starts listening.
    pub async fn start(settings: Settings) -> anyhow::Result<Self> {
        let ca_key = rcgen::KeyPair::generate()?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "meshca test apiserver CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let ca = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = rcgen::KeyPair::generate()?;
        let mut leaf =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
        leaf.distinguished_name
            .push(rcgen::DnType::CommonName, "kube-apiserver");
        leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_cert = leaf.signed_by(&leaf_key, &ca)?;

        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf_cert.der().clone(), ca_cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
            )?;
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(tls));

        let listener = TcpListener::bind(("127.0.0.1", settings.port)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let ctx = Arc::new(Ctx {
            settings,
            state: state.clone(),
            addr,
        });
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, ctx) = (acceptor.clone(), ctx.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    ctx.state.lock().unwrap().connections += 1;
                    let service = hyper::service::service_fn(move |req| {
                        let ctx = ctx.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(&ctx, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Ok(ApiServer {
            addr,
            ca_pem: ca_cert.pem(),
            state,
            task,
        })
    }

    /// The server's base URL.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The PEM of the CA that signed the serving certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A kubeconfig with one context `name`, this server's CA and `token`.
    pub fn kubeconfig(&self, name: &str, token: &str) -> String {
        use base64::Engine;
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem);
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: {name}\nclusters:\n- name: {name}\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\nusers:\n- name: {name}\n  user:\n    token: {token}\ncontexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: {name}\n",
            self.url()
        )
    }

    /// Adds a fault for the next matching requests.
    pub fn inject(&self, fault: Fault) {
        self.state.lock().unwrap().faults.push(fault);
    }

    /// Drops every fault not yet used up.
    pub fn clear_faults(&self) {
        self.state.lock().unwrap().faults.clear();
    }

    /// TLS connections clients completed so far (a client reusing its connection adds none).
    pub fn connections(&self) -> usize {
        self.state.lock().unwrap().connections
    }

    /// Every request so far, oldest first.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Creates an object directly (no auth, no faults): test fixtures.
    pub fn create(&self, kind: Resource, ns: &str, obj: Value) -> Result<Value, Failure> {
        self.state.lock().unwrap().store.create(kind, ns, obj)
    }

    /// Deletes an object directly; whether it was there.
    pub fn delete(&self, kind: Resource, ns: &str, name: &str) -> bool {
        self.state
            .lock()
            .unwrap()
            .store
            .delete(kind, ns, name)
            .is_ok()
    }

    /// An object in the store, as JSON.
    pub fn get(&self, kind: Resource, ns: &str, name: &str) -> Option<Value> {
        self.state.lock().unwrap().store.get(kind, ns, name).ok()
    }

    /// A namespace and an istiod Deployment running `image` (as `istioctl install` leaves them).
    pub fn seed_istio(&self, image: Option<&str>) {
        let mut st = self.state.lock().unwrap();
        let _ = st.store.create(
            Resource::Namespaces,
            "",
            json!({"metadata": {"name": "istio-system"}}),
        );
        if let Some(image) = image {
            let _ = st
                .store
                .create(Resource::Deployments, "istio-system", istiod(image));
        }
    }
}

/// The istiod Deployment of a default install, one replica ready.
pub fn istiod(image: &str) -> Value {
    json!({
        "metadata": {"name": "istiod", "labels": {"app": "istiod", "istio": "pilot"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "istiod", "istio": "pilot"}},
            "template": {
                "metadata": {"labels": {"app": "istiod", "istio": "pilot"}},
                "spec": {"containers": [{"name": "discovery", "image": image}]}
            }
        },
        "status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1}
    })
}

fn respond(status: u16, body: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("static response parts")
}

/// Where a real kube-apiserver sends TokenReviews when this server plays EKS's authenticator
/// (aws-iam-authenticator) for it: `--authentication-token-webhook-config-file`.
pub const TOKEN_REVIEW_PATH: &str = "/apis/authentication.k8s.io/v1/tokenreviews";

/// A TokenReview answered the way EKS's authenticator answers it: the token checked for this
/// server's cluster, the caller named `eks:<access key id>` (an access entry's principal).
fn token_review(ctx: &Ctx, body: &[u8]) -> Value {
    let review: Value = serde_json::from_slice(body).unwrap_or_default();
    let token = review["spec"]["token"].as_str().unwrap_or_default();
    let expect = Expectation {
        cluster: ctx.settings.cluster.clone(),
        keys: ctx.settings.aws_keys.clone(),
    };
    let status = match eks_auth::verify(token, &expect, time::OffsetDateTime::now_utc()) {
        Ok(key) => {
            serde_json::json!({"authenticated": true, "user": {"username": format!("eks:{key}"), "groups": ["system:authenticated"]}})
        }
        Err(why) => serde_json::json!({"authenticated": false, "error": why}),
    };
    let seen = Seen {
        method: Method::POST,
        path: TOKEN_REVIEW_PATH.into(),
        status: 200,
        caller: format!("token-review: {}", status["user"]["username"]),
    };
    ctx.state.lock().unwrap().seen.push(seen);
    serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status})
}

async fn handle(ctx: &Ctx, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    if method == Method::POST && path == TOKEN_REVIEW_PATH && ctx.settings.token_review {
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return respond(200, &token_review(ctx, &body));
    }
    let query = req.uri().query().unwrap_or_default().to_string();
    let caller = authenticate(ctx, &req).await;
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();

    let (status, value) = match caller {
        Err(ref why) => {
            let f = Failure::new(401, "Unauthorized", format!("Unauthorized: {why}"));
            (401, f.body())
        }
        Ok(ref who) => {
            let fault = take_fault(ctx, &method, &path);
            if let Some(f) = &fault
                && !f.delay.is_zero()
            {
                tokio::time::sleep(f.delay).await;
            }
            match fault.filter(|f| f.status != 0) {
                Some(f) => {
                    let reason = match f.status {
                        409 => "Conflict",
                        429 => "TooManyRequests",
                        503 => "ServiceUnavailable",
                        _ => "InternalError",
                    };
                    let fail = Failure::new(
                        f.status,
                        reason,
                        format!("injected fault {} on {path}", f.status),
                    );
                    (f.status, fail.body())
                }
                None => match route(ctx, who, &method, &path, &query, &content_type, &body) {
                    Ok((s, v)) => (s, v),
                    Err(f) => (f.code, f.body()),
                },
            }
        }
    };
    ctx.state.lock().unwrap().seen.push(Seen {
        method,
        path,
        status,
        caller: caller.unwrap_or_else(|_| "anonymous".into()),
    });
    respond(status, &value)
}

async fn authenticate<B>(ctx: &Ctx, req: &Request<B>) -> Result<String, String> {
    let header = req
        .headers()
        .get("authorization")
        .ok_or("no bearer token")?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or("not a bearer token")?;
    if ctx.settings.static_token.as_deref() == Some(token) {
        return Ok("static".into());
    }
    let expect = Expectation {
        cluster: ctx.settings.cluster.clone(),
        keys: ctx.settings.aws_keys.clone(),
    };
    match &ctx.settings.sts {
        None => eks_auth::verify(token, &expect, time::OffsetDateTime::now_utc())
            .map(|key| format!("eks:{key}")),
        Some(sts) => assumed_role(token, expect, sts).await,
    }
}

/// What EKS does with a token from another account: STS says whose key signed it (here: the
/// emulator, which holds the secret too), the signature is checked, and only a session of the
/// access entry's role is let in. The caller is named by its session ARN.
async fn assumed_role(
    token: &str,
    mut expect: Expectation,
    sts: &StsIdentities,
) -> Result<String, String> {
    let now = time::OffsetDateTime::now_utc();
    let key = eks_auth::verify(
        token,
        &Expectation {
            cluster: expect.cluster.clone(),
            keys: Default::default(),
        },
        now,
    )?;
    let identity = sts_key(sts.emulator, &key).await?;
    let field = |f: &str| {
        identity[f]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("STS does not know access key {key}"))
    };
    expect.keys = std::collections::BTreeMap::from([(key.clone(), field("secret")?)]);
    eks_auth::verify(token, &expect, now)?;
    let (role, session) = (field("role_arn")?, field("arn")?);
    if role != sts.role_arn {
        return Err(format!(
            "{session} has no access entry in this cluster (it admits {})",
            sts.role_arn
        ));
    }
    Ok(format!("eks:{session}"))
}

/// The emulator's answer for one access key (`/_meshca/sts/key`), over plain HTTP/1.1.
async fn sts_key(emulator: SocketAddr, key: &str) -> Result<Value, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = serde_json::json!({"id": key}).to_string();
    let request = format!(
        "POST /_meshca/sts/key HTTP/1.1\r\nHost: {emulator}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let unreachable = |e: std::io::Error| format!("STS unreachable: {e}");
    let mut stream = tokio::net::TcpStream::connect(emulator)
        .await
        .map_err(unreachable)?;
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(unreachable)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.map_err(unreachable)?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, json) = answer
        .split_once("\r\n\r\n")
        .ok_or("STS answered without a body")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("STS does not know access key {key}"));
    }
    serde_json::from_str(json).map_err(|e| format!("STS answered {e}"))
}

fn take_fault(ctx: &Ctx, method: &Method, path: &str) -> Option<Fault> {
    let mut st = ctx.state.lock().unwrap();
    let i = st.faults.iter().position(|f| {
        f.times > 0
            && f.method.as_ref().is_none_or(|m| m == method)
            && path.contains(&f.path_contains)
    })?;
    st.faults[i].times -= 1;
    let f = st.faults[i].clone();
    if st.faults[i].times == 0 {
        st.faults.remove(i);
    }
    Some(f)
}

fn discovery(path: &str, addr: SocketAddr) -> Option<Value> {
    let res = |name: &str, singular: &str, kind: &str, namespaced: bool, short: &[&str]| {
        json!({
            "name": name, "singularName": singular, "namespaced": namespaced, "kind": kind,
            "verbs": ["create", "delete", "get", "list", "patch", "update"], "shortNames": short,
        })
    };
    Some(match path {
        "/version" => {
            json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-meshca-test", "platform": "linux/amd64"})
        }
        "/api" => json!({
            "kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr.to_string()}],
        }),
        "/apis" => json!({
            "kind": "APIGroupList", "apiVersion": "v1",
            "groups": [{"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
                        "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}}],
        }),
        "/api/v1" => json!({
            "kind": "APIResourceList", "groupVersion": "v1",
            "resources": [res("namespaces", "namespace", "Namespace", false, &["ns"]),
                          res("secrets", "secret", "Secret", true, &[]),
                          res("pods", "pod", "Pod", true, &["po"])],
        }),
        "/apis/apps/v1" => json!({
            "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "apps/v1",
            "resources": [res("deployments", "deployment", "Deployment", true, &["deploy"]),
                          res("daemonsets", "daemonset", "DaemonSet", true, &["ds"])],
        }),
        _ => return None,
    })
}

/// Splits an API path into (resource, namespace, name).
fn parse_path(path: &str) -> Option<(Resource, Option<String>, Option<String>)> {
    let rest = path
        .strip_prefix("/api/v1/")
        .map(|r| (r, false))
        .or_else(|| path.strip_prefix("/apis/apps/v1/").map(|r| (r, true)))?;
    let (rest, apps) = rest;
    let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    let kind = |s: &str| match (s, apps) {
        ("namespaces", false) => Some(Resource::Namespaces),
        ("secrets", false) => Some(Resource::Secrets),
        ("configmaps", false) => Some(Resource::ConfigMaps),
        ("pods", false) => Some(Resource::Pods),
        ("deployments", true) => Some(Resource::Deployments),
        ("daemonsets", true) => Some(Resource::DaemonSets),
        _ => None,
    };
    match parts.as_slice() {
        ["namespaces"] if !apps => Some((Resource::Namespaces, None, None)),
        ["namespaces", name] if !apps => Some((Resource::Namespaces, None, Some(name.to_string()))),
        [plural] => Some((kind(plural)?, None, None)),
        ["namespaces", ns, plural] => Some((kind(plural)?, Some(ns.to_string()), None)),
        ["namespaces", ns, plural, name] => {
            Some((kind(plural)?, Some(ns.to_string()), Some(name.to_string())))
        }
        _ => None,
    }
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| {
            let v = v.replace('+', " ");
            let mut out = Vec::new();
            let b = v.as_bytes();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'%'
                    && let Some(n) = v
                        .get(i + 1..i + 3)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    out.push(n);
                    i += 3;
                    continue;
                }
                out.push(b[i]);
                i += 1;
            }
            String::from_utf8_lossy(&out).into_owned()
        })
    })
}

fn route(
    ctx: &Ctx,
    caller: &str,
    method: &Method,
    path: &str,
    query: &str,
    content_type: &str,
    body: &[u8],
) -> Result<(u16, Value), Failure> {
    if method == Method::GET
        && let Some(v) = discovery(path, ctx.addr)
    {
        return Ok((200, v));
    }
    let (kind, ns, name) = parse_path(path).ok_or_else(|| {
        Failure::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    })?;
    if let (Some(allowed), true) = (&ctx.settings.eks_namespaces, caller.starts_with("eks:")) {
        let verb = match *method {
            Method::GET if name.is_none() => "list",
            Method::GET => "get",
            Method::POST => "create",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE => "delete",
            _ => "unknown",
        };
        let scope_ok = match (&ns, kind) {
            (Some(n), _) => allowed.contains(n),
            (None, _) => false,
        };
        if !scope_ok {
            let at = match &ns {
                Some(n) => format!("in the namespace \"{n}\""),
                None => "at the cluster scope".into(),
            };
            let group = if kind.api_version() == "apps/v1" {
                "\"apps\""
            } else {
                "\"\""
            };
            return Err(Failure::new(
                403,
                "Forbidden",
                format!(
                    "{} is forbidden: User \"{caller}\" cannot {verb} resource \"{}\" in API group {group} {at}",
                    kind.plural(),
                    kind.plural()
                ),
            ));
        }
    }
    let ns_str = ns.clone().unwrap_or_default();
    if kind.namespaced() && ns.is_none() && method != Method::GET {
        return Err(Failure::new(
            405,
            "MethodNotAllowed",
            "namespaced resources are written under /namespaces/{ns}/",
        ));
    }
    let parse_body = || -> Result<Value, Failure> {
        let ct = content_type.split(';').next().unwrap_or_default().trim();
        if method != Method::PATCH && !ct.is_empty() && ct != "application/json" {
            return Err(Failure::new(
                415,
                "UnsupportedMediaType",
                format!("the body of the request was in an unsupported format: {ct}"),
            ));
        }
        serde_json::from_slice(body)
            .map_err(|e| Failure::new(400, "BadRequest", format!("body is not JSON: {e}")))
    };
    let mut st = ctx.state.lock().unwrap();
    let store = &mut st.store;
    match (method.clone(), name) {
        (Method::GET, None) => Ok((
            200,
            store.list(
                kind,
                ns.as_deref(),
                query_param(query, "labelSelector").as_deref(),
            )?,
        )),
        (Method::GET, Some(n)) => Ok((200, store.get(kind, &ns_str, &n)?)),
        (Method::POST, None) => {
            let obj = parse_body()?;
            if query_param(query, "dryRun").is_some() {
                return Ok((201, obj));
            }
            Ok((201, store.create(kind, &ns_str, obj)?))
        }
        (Method::PUT, Some(n)) => Ok((200, store.replace(kind, &ns_str, &n, parse_body()?)?)),
        (Method::PATCH, Some(n)) => {
            let ct = content_type.split(';').next().unwrap_or_default().trim();
            if ct != "application/merge-patch+json"
                && ct != "application/strategic-merge-patch+json"
            {
                return Err(Failure::new(
                    415,
                    "UnsupportedMediaType",
                    format!("the body of the request was in an unsupported format: {ct}"),
                ));
            }
            Ok((200, store.patch(kind, &ns_str, &n, &parse_body()?)?))
        }
        (Method::DELETE, Some(n)) => Ok((200, store.delete(kind, &ns_str, &n)?)),
        _ => Err(Failure::new(
            405,
            "MethodNotAllowed",
            format!("{method} is not supported on {path}"),
        )),
    }
}
