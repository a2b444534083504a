//! Delivery into the test Kubernetes API server (tests/apiserver) over HTTPS: create, rotate,
//! refuse, adopt, conflicts, faults, restart decisions, and the real kubectl reading our work.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use hyper::Method;
use meshca_core::DeliveryOptions;
use meshca_core::delivery::{Change, Delivery, DeliveryError, Observed};
use meshca_core::retry::Backoff;
use meshca_core::{ClusterName, Reconciler, Secured, Settings};
use meshca_kube::{self as k8s, KubeDelivery, RESTARTED_AT, TokenSource};
use meshca_local::LocalEscrow;
use meshca_local::{LocalCa, LocalRootSpec};
use meshca_test_apiserver::store::Resource;
use meshca_test_apiserver::{ApiServer, Fault, Settings as ServerSettings};
use serde_json::json;
use zeroize::Zeroizing;

const TOKEN: &str = "static-admin-token";

struct Static(&'static str);

#[async_trait]
impl TokenSource for Static {
    async fn bearer(&self) -> Result<Zeroizing<String>, String> {
        Ok(Zeroizing::new(self.0.to_string()))
    }
}

/// A local CA and escrow producing real bundles for one cluster.
struct Pki {
    _dir: tempfile::TempDir,
    ca: LocalCa,
    escrow: LocalEscrow,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca =
            LocalCa::open_or_create(&dir.path().join("ca"), &LocalRootSpec::default()).unwrap();
        let escrow = LocalEscrow::new(dir.path().join("escrow"));
        Pki {
            _dir: dir,
            ca,
            escrow,
        }
    }

    /// Generation 1 on the first call; a new generation with `renew`.
    async fn bundle(&self, renew: bool) -> Secured {
        let c: ClusterName = "c1".parse().unwrap();
        let s = Settings::default();
        Reconciler {
            authority: &self.ca,
            escrow: &self.escrow,
            settings: &s,
        }
        .ensure_bundle(&c, renew)
        .await
        .unwrap()
    }
}

fn server_settings() -> ServerSettings {
    ServerSettings {
        cluster: "c1".into(),
        static_token: Some(TOKEN.into()),
        aws_keys: BTreeMap::from([("AKIDTEST".to_string(), "test-secret".to_string())]),
        ..Default::default()
    }
}

fn quick() -> DeliveryOptions {
    DeliveryOptions {
        backoff: Backoff {
            first: Duration::from_millis(5),
            max: Duration::from_millis(20),
            deadline: Duration::from_millis(800),
        },
        ..DeliveryOptions::default()
    }
}

fn delivery(server: &ApiServer, options: DeliveryOptions) -> KubeDelivery {
    let client = k8s::from_endpoint(
        "c1",
        &server.url(),
        server.ca_pem(),
        Arc::new(Static(TOKEN)),
    )
    .unwrap();
    KubeDelivery::new(client, server.url(), options)
}

fn delivery_with(server: &ApiServer, token: &'static str) -> KubeDelivery {
    let client = k8s::from_endpoint(
        "c1",
        &server.url(),
        server.ca_pem(),
        Arc::new(Static(token)),
    )
    .unwrap();
    KubeDelivery::new(client, server.url(), quick())
}

fn restarted_at(server: &ApiServer) -> Option<String> {
    let d = server.get(Resource::Deployments, "istio-system", "istiod")?;
    d["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT]
        .as_str()
        .map(str::to_string)
}

fn secret_data(server: &ApiServer, key: &str) -> Vec<u8> {
    let s = server
        .get(Resource::Secrets, "istio-system", "cacerts")
        .expect("cacerts exists");
    base64::engine::general_purpose::STANDARD
        .decode(s["data"][key].as_str().unwrap())
        .unwrap()
}

fn writes(server: &ApiServer) -> Vec<(Method, String)> {
    server
        .seen()
        .into_iter()
        .filter(|s| s.method != Method::GET && s.path.contains("/secrets"))
        .map(|s| (s.method, s.path))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn first_delivery_creates_cacerts_and_restarts_a_running_istiod() {
    let server = ApiServer::start(server_settings()).await.unwrap();
    server.seed_istio(Some("docker.io/istio/pilot:1.24.2"));
    let pki = Pki::new();
    let g1 = pki.bundle(false).await;
    let d = delivery(&server, quick());
    assert!(matches!(d.observe().await.unwrap(), Observed::Absent));

    let out = d.deliver(&g1.bundle, &g1.meta).await.unwrap();
    assert_eq!(out.change, Change::Created);
    assert_eq!(out.fingerprint_sha256, g1.meta.fingerprint_sha256);
    assert_eq!(out.istiod.len(), 1);
    assert!(out.istiod[0].1.restart, "{:?}", out.istiod);
    assert!(
        restarted_at(&server).is_some(),
        "istiod's pod template carries restartedAt"
    );

    let s = server
        .get(Resource::Secrets, "istio-system", "cacerts")
        .unwrap();
    assert_eq!(s["type"], "Opaque");
    assert_eq!(
        s["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "meshca"
    );
    assert_eq!(s["metadata"]["annotations"]["meshca.io/generation"], "1");
    assert_eq!(
        secret_data(&server, "root-cert.pem"),
        g1.bundle.root_cert.as_bytes()
    );
    match d.observe().await.unwrap() {
        Observed::Managed {
            bundle: Some(b),
            meta: Some(m),
        } => {
            assert_eq!(m, g1.meta);
            assert_eq!(b.ca_cert, g1.bundle.ca_cert);
        }
        other => panic!("{other:?}"),
    }

    // The same bundle again: nothing written, nothing restarted.
    let before = writes(&server).len();
    let again = d.deliver(&g1.bundle, &g1.meta).await.unwrap();
    assert_eq!(again.change, Change::Unchanged);
    assert_eq!(writes(&server).len(), before);
    assert!(!again.istiod[0].1.restart);
}

async fn rotate_on(image: &str) -> (bool, Option<String>, Option<String>) {
    let server = ApiServer::start(server_settings()).await.unwrap();
    server.seed_istio(Some(image));
    let pki = Pki::new();
    let d = delivery(&server, quick());
    let g1 = pki.bundle(false).await;
    d.deliver(&g1.bundle, &g1.meta).await.unwrap();
    let first = restarted_at(&server);
    tokio::time::sleep(Duration::from_millis(1100)).await; // restartedAt has one-second resolution
    let g2 = pki.bundle(true).await;
    assert_eq!(g2.meta.generation, 2);
    let out = d.deliver(&g2.bundle, &g2.meta).await.unwrap();
    assert_eq!(out.change, Change::Rotated);
    assert_eq!(
        secret_data(&server, "ca-cert.pem"),
        g2.bundle.ca_cert.as_bytes()
    );
    (out.istiod[0].1.restart, first, restarted_at(&server))
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_under_the_same_root_restarts_only_istio_older_than_1_19() {
    let (restart, first, after) = rotate_on("docker.io/istio/pilot:1.24.2").await;
    assert!(!restart, "1.24 hot-reloads");
    assert_eq!(first, after, "the pod template was not touched");

    let (restart, first, after) = rotate_on("docker.io/istio/pilot:1.18.7-distroless").await;
    assert!(restart, "1.18 must be restarted");
    assert_ne!(first, after, "restartedAt moved");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_root_restarts_istiod() {
    let server = ApiServer::start(server_settings()).await.unwrap();
    server.seed_istio(Some("docker.io/istio/pilot:1.24.2"));
    let d = delivery(&server, quick());
    let a = Pki::new().bundle(false).await;
    d.deliver(&a.bundle, &a.meta).await.unwrap();
    let b = Pki::new().bundle(false).await;
    let out = d.deliver(&b.bundle, &b.meta).await.unwrap();
    assert_eq!(out.change, Change::RootChanged);
    assert!(out.istiod[0].1.restart);
    assert_eq!(
        secret_data(&server, "root-cert.pem"),
        b.bundle.root_cert.as_bytes()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unmanaged_cacerts_is_refused_unless_adoption_is_enabled() {
    let server = ApiServer::start(server_settings()).await.unwrap();
    server.seed_istio(None);
    let theirs = json!({"metadata": {"name": "cacerts"}, "data": {"ca-cert.pem": "dGhlaXJz", "extra.txt": "a2VlcA=="}});
    server
        .create(Resource::Secrets, "istio-system", theirs)
        .unwrap();
    let g1 = Pki::new().bundle(false).await;

    let err = delivery(&server, quick())
        .deliver(&g1.bundle, &g1.meta)
        .await
        .unwrap_err();
    assert!(matches!(err, DeliveryError::Unmanaged { .. }), "{err}");
    assert!(err.to_string().contains("enable adoption"), "{err}");
    assert_eq!(secret_data(&server, "ca-cert.pem"), b"theirs", "untouched");

    let out = delivery(
        &server,
        DeliveryOptions {
            adopt: true,
            ..quick()
        },
    )
    .deliver(&g1.bundle, &g1.meta)
    .await
    .unwrap();
    assert_eq!(out.change, Change::Adopted);
    assert_eq!(
        secret_data(&server, "ca-cert.pem"),
        g1.bundle.ca_cert.as_bytes()
    );
    assert_eq!(
        secret_data(&server, "extra.txt"),
        b"keep",
        "keys we do not own are kept"
    );
    assert!(
        writes(&server).iter().all(|(m, _)| *m != Method::DELETE),
        "never delete-then-create"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn conflicts_are_re_read_and_retried_a_bounded_number_of_times() {
    let server = ApiServer::start(server_settings()).await.unwrap();
    server.seed_istio(None);
    let pki = Pki::new();
    let d = delivery(&server, quick());
    let g1 = pki.bundle(false).await;
    d.deliver(&g1.bundle, &g1.meta).await.unwrap();
    let g2 = pki.bundle(true).await;

    let put = |times| Fault {
        method: Some(Method::PUT),
        path_contains: "/secrets/cacerts".into(),
        status: 409,
        times,
        delay: Duration::ZERO,
    };
    server.inject(put(2));
    let out = d.deliver(&g2.bundle, &g2.meta).await.unwrap();
    assert_eq!(out.conflicts, 2);
    assert_eq!(
        secret_data(&server, "ca-cert.pem"),
        g2.bundle.ca_cert.as_bytes()
    );

    let g3 = pki.bundle(true).await;
    server.inject(put(100));
    let err = d.deliver(&g3.bundle, &g3.meta).await.unwrap_err();
    assert!(
        matches!(err, DeliveryError::Conflicts { attempts: 6, .. }),
        "{err}"
    );
    assert_eq!(
        secret_data(&server, "ca-cert.pem"),
        g2.bundle.ca_cert.as_bytes(),
        "the valid bundle stays"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_conflict_from_a_concurrent_writer_is_resolved_by_re_reading() {
    let server = ApiServer::start(server_settings()).await.unwrap();
    server.seed_istio(None);
    let pki = Pki::new();
    let g1 = pki.bundle(false).await;
    let g2 = pki.bundle(true).await;
    // Two deliveries race; one may see the other's resourceVersion go stale under it.
    let (a, b) = (delivery(&server, quick()), delivery(&server, quick()));
    let (ra, rb) = tokio::join!(
        a.deliver(&g1.bundle, &g1.meta),
        b.deliver(&g2.bundle, &g2.meta)
    );
    assert!(rb.is_ok(), "{rb:?}");
    // g1 either landed first or was refused as older than g2; g2 is what stays.
    if let Err(e) = ra {
        assert!(
            matches!(
                e,
                DeliveryError::NewerInCluster {
                    theirs: 2,
                    ours: 1,
                    ..
                }
            ),
            "{e}"
        );
    }
    assert_eq!(
        secret_data(&server, "ca-cert.pem"),
        g2.bundle.ca_cert.as_bytes()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_are_retried_then_reported() {
    let server = ApiServer::start(server_settings()).await.unwrap();
    server.seed_istio(None);
    let g1 = Pki::new().bundle(false).await;
    let d = delivery(&server, quick());
    server.inject(Fault {
        method: Some(Method::GET),
        path_contains: "/secrets/cacerts".into(),
        status: 503,
        times: 3,
        delay: Duration::ZERO,
    });
    d.deliver(&g1.bundle, &g1.meta).await.unwrap();

    server.inject(Fault {
        method: None,
        path_contains: "/secrets".into(),
        status: 500,
        times: 10_000,
        delay: Duration::ZERO,
    });
    let started = std::time::Instant::now();
    let err = d.observe().await.unwrap_err();
    assert!(matches!(err, DeliveryError::Api { code: 500, .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by the backoff deadline"
    );

    server.clear_faults();
    server.inject(Fault {
        method: None,
        path_contains: "/secrets".into(),
        status: 0,
        times: 1,
        delay: Duration::from_millis(300),
    });
    assert!(
        matches!(d.observe().await.unwrap(), Observed::Managed { .. }),
        "a slow answer is still an answer"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_or_older_bundle_never_replaces_a_valid_one() {
    let server = ApiServer::start(server_settings()).await.unwrap();
    server.seed_istio(None);
    let pki = Pki::new();
    let d = delivery(&server, quick());
    let g1 = pki.bundle(false).await;
    let g2 = pki.bundle(true).await;
    d.deliver(&g2.bundle, &g2.meta).await.unwrap();

    let err = d.deliver(&g1.bundle, &g1.meta).await.unwrap_err();
    assert!(
        matches!(
            err,
            DeliveryError::NewerInCluster {
                theirs: 2,
                ours: 1,
                ..
            }
        ),
        "{err}"
    );

    let mut bad = g2.bundle.clone();
    bad.ca_key = g1.bundle.ca_key.clone(); // key does not match the certificate
    let writes_before = writes(&server).len();
    let err = d.deliver(&bad, &g2.meta).await.unwrap_err();
    assert!(matches!(err, DeliveryError::Invalid(_)), "{err}");
    assert_eq!(writes(&server).len(), writes_before, "nothing was written");
    assert_eq!(
        secret_data(&server, "ca-key.pem"),
        g2.bundle.ca_key.as_bytes()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_namespace_is_created_when_allowed_and_reported_when_not() {
    // Cluster-wide caller: creates istio-system.
    let server = ApiServer::start(server_settings()).await.unwrap();
    let g1 = Pki::new().bundle(false).await;
    let out = delivery(&server, quick())
        .deliver(&g1.bundle, &g1.meta)
        .await
        .unwrap();
    assert_eq!(out.change, Change::Created);
    assert!(out.istiod.is_empty());
    assert!(
        server
            .get(Resource::Namespaces, "", "istio-system")
            .is_some()
    );
    // (An EKS access entry scoped to istio-system: meshca-aws's eks_delivery tests.)
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_credentials_and_wrong_endpoints_are_clear_errors() {
    let server = ApiServer::start(server_settings()).await.unwrap();
    server.seed_istio(None);

    // (Bad EKS tokens: meshca-aws's eks_delivery tests.)
    let err = delivery_with(&server, "not-the-token")
        .observe()
        .await
        .unwrap_err();
    assert!(matches!(err, DeliveryError::Unauthorized(_)), "{err}");

    // A CA that did not sign the server's certificate: TLS refuses, no token is ever sent.
    let other = ApiServer::start(server_settings()).await.unwrap();
    let client =
        k8s::from_endpoint("c1", &server.url(), other.ca_pem(), Arc::new(Static(TOKEN))).unwrap();
    let seen_before = server.seen().len();
    let err = KubeDelivery::new(client, server.url(), quick())
        .observe()
        .await
        .unwrap_err();
    assert!(matches!(err, DeliveryError::Unreachable { .. }), "{err}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    assert_eq!(server.seen().len(), seen_before);

    // Nothing listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("https://127.0.0.1:{port}");
    let client = k8s::from_endpoint("c1", &url, server.ca_pem(), Arc::new(Static(TOKEN))).unwrap();
    let err = KubeDelivery::new(client, &url, quick())
        .observe()
        .await
        .unwrap_err();
    assert!(matches!(err, DeliveryError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains(&url), "{err}");

    let Err(err) = k8s::from_endpoint(
        "c1",
        "http://127.0.0.1:1",
        server.ca_pem(),
        Arc::new(Static(TOKEN)),
    ) else {
        panic!("a plain-http endpoint was accepted")
    };
    assert!(err.to_string().contains("not https"), "{err}");
}

fn kubectl() -> std::path::PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("kubectl"))
        .find(|p| p.exists());
    found.expect(
        "kubectl is not installed: tests/run installs it (Debian package kubernetes-client)",
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_reads_what_meshca_wrote_and_meshca_reads_what_kubectl_applied() {
    let server = ApiServer::start(server_settings()).await.unwrap();
    server.seed_istio(Some("docker.io/istio/pilot:1.24.2"));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig("kind-c1", TOKEN)).unwrap();
    let pki = Pki::new();

    // meshca writes through a kubeconfig context; kubectl reads.
    let (client, endpoint) = k8s::from_context(Some(&kubeconfig), Some("kind-c1"))
        .await
        .unwrap();
    let d = KubeDelivery::new(client, endpoint, quick());
    let g1 = pki.bundle(false).await;
    d.deliver(&g1.bundle, &g1.meta).await.unwrap();
    let out = Command::new(kubectl())
        .args([
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "get",
            "secret",
            "cacerts",
            "-n",
            "istio-system",
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let b64 = |k: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(got["data"][k].as_str().unwrap())
            .unwrap()
    };
    assert_eq!(b64("ca-cert.pem"), g1.bundle.ca_cert.as_bytes());
    assert_eq!(b64("cert-chain.pem"), g1.bundle.cert_chain.as_bytes());
    assert_eq!(
        got["metadata"]["annotations"]["meshca.io/fingerprint-sha256"],
        g1.meta.fingerprint_sha256.as_str()
    );

    // kubectl applies the manifest `meshca issue` writes; meshca reads it back as its own.
    let g2 = pki.bundle(true).await;
    let manifest = dir.path().join("cacerts.yaml");
    std::fs::write(
        &manifest,
        meshca_kube::secret::manifest(
            &g2.bundle,
            &g2.meta,
            &meshca_core::KindSpec::default().landing(),
        )
        .as_str(),
    )
    .unwrap();
    // The test server publishes no OpenAPI document, so client-side schema validation is off.
    let out = Command::new(kubectl())
        .args([
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "apply",
            "--validate=false",
            "-f",
            manifest.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    match d.observe().await.unwrap() {
        Observed::Managed {
            bundle: Some(b),
            meta: Some(m),
        } => {
            assert_eq!(m, g2.meta);
            assert_eq!(b.ca_cert, g2.bundle.ca_cert);
        }
        other => panic!("{other:?}"),
    }
    // Delivering what kubectl put there is a no-op.
    assert_eq!(
        d.deliver(&g2.bundle, &g2.meta).await.unwrap().change,
        Change::Unchanged
    );
}
