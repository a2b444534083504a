//! Every kind delivered into the test API server and read back; cert-manager-ca judged by
//! openssl as istio-csr would use it; and a `cacerts` whose `tls.*` keys would make istiod use
//! another bundle than meshca's.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use meshca_core::delivery::{Change, Delivery, DeliveryOptions, Observed};
use meshca_core::kind::{Kind, KindSpec};
use meshca_core::{ClusterName, Reconciler, Secured, Settings};
use meshca_kube::{KubeDelivery, TokenSource};
use meshca_local::{LocalCa, LocalEscrow, LocalRootSpec};
use meshca_test_apiserver::store::Resource;
use meshca_test_apiserver::{ApiServer, Settings as ServerSettings};
use meshca_test_support::openssl::{run as openssl, sign};
use serde_json::json;
use zeroize::Zeroizing;

const TOKEN: &str = "static-admin-token";

struct Static;

#[async_trait]
impl TokenSource for Static {
    async fn bearer(&self) -> Result<Zeroizing<String>, String> {
        Ok(Zeroizing::new(TOKEN.to_string()))
    }
}

async fn server() -> ApiServer {
    let s = ServerSettings {
        cluster: "c1".into(),
        static_token: Some(TOKEN.into()),
        ..Default::default()
    };
    let server = ApiServer::start(s).await.unwrap();
    server.seed_istio(Some("docker.io/istio/pilot:1.24.2"));
    server
}

/// Issues `spec` for cluster c1 from a local CA in `dir`.
async fn issued(dir: &Path, spec: &KindSpec) -> (Settings, Secured) {
    let started = std::time::Instant::now();
    // A kind whose mesh pins its issuer's key (Linkerd) gets a root of that key.
    let root = LocalRootSpec {
        key_algorithm: spec
            .kind
            .profile()
            .parent_key
            .unwrap_or(LocalRootSpec::default().key_algorithm),
        ..LocalRootSpec::default()
    };
    let ca =
        LocalCa::open_or_create(&dir.join(format!("ca-{}", root.key_algorithm)), &root).unwrap();
    let escrow = LocalEscrow::new(dir.join("escrow"));
    let settings = Settings {
        kind: spec.clone(),
        ..Settings::default()
    };
    let c: ClusterName = "c1".parse().unwrap();
    let secured = Reconciler {
        authority: &ca,
        escrow: &escrow,
        settings: &settings,
    }
    .ensure_bundle(&c, false)
    .await
    .unwrap();
    eprintln!(
        "{}: issued and escrowed in {} ms",
        spec.kind,
        started.elapsed().as_millis()
    );
    (settings, secured)
}

fn delivery(server: &ApiServer, settings: &Settings, adopt: bool) -> KubeDelivery {
    let c: ClusterName = "c1".parse().unwrap();
    let client =
        meshca_kube::from_endpoint("c1", &server.url(), server.ca_pem(), Arc::new(Static)).unwrap();
    let options = DeliveryOptions {
        landing: settings.kind.landing(),
        profile: settings.profile_for(&c),
        adopt,
        ..DeliveryOptions::default()
    };
    KubeDelivery::new(client, server.url(), options)
}

fn data(server: &ApiServer, ns: &str, name: &str) -> BTreeMap<String, Vec<u8>> {
    let s = server
        .get(Resource::Secrets, ns, name)
        .unwrap_or_else(|| panic!("{ns}/{name} exists"));
    let b64 = base64::engine::general_purpose::STANDARD;
    s["data"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), b64.decode(v.as_str().unwrap()).unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kind_lands_in_its_secret_and_reads_back_as_delivered() {
    let server = server().await;
    for ns in ["tsb", "cert-manager"] {
        server
            .create(Resource::Namespaces, "", json!({"metadata": {"name": ns}}))
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    for kind in Kind::ALL {
        let spec = KindSpec::new(kind);
        let (settings, secured) = issued(dir.path(), &spec).await;
        let d = delivery(&server, &settings, false);
        let started = std::time::Instant::now();
        let out = d.deliver(&secured.bundle, &secured.meta).await.unwrap();
        eprintln!("{kind}: delivered in {} ms", started.elapsed().as_millis());
        assert_eq!(out.change, Change::Created, "{kind}");
        let landing = spec.landing();
        let got = data(&server, &landing.namespace, &landing.name);
        let secret = server
            .get(Resource::Secrets, &landing.namespace, &landing.name)
            .unwrap();
        if kind == Kind::IstioCacerts {
            assert_eq!(secret["type"], "Opaque");
            assert_eq!(got["ca-cert.pem"], secured.bundle.ca_cert.as_bytes());
            assert!(!got.contains_key("tls.crt"));
        } else {
            assert_eq!(secret["type"], "kubernetes.io/tls", "{kind}");
            let tls_crt = String::from_utf8(got["tls.crt"].clone()).unwrap();
            assert!(
                tls_crt.starts_with(&secured.bundle.ca_cert),
                "{kind}: tls.crt starts with the certificate"
            );
            assert!(
                !tls_crt.contains(&secured.bundle.root_cert),
                "{kind}: tls.crt holds no root"
            );
            assert_eq!(got["ca.crt"], secured.bundle.root_cert.as_bytes(), "{kind}");
            assert_eq!(got["tls.key"], secured.bundle.ca_key.as_bytes(), "{kind}");
            assert!(
                out.istiod.is_empty(),
                "{kind}: istiod is not touched for other secrets"
            );
        }
        match d.observe().await.unwrap() {
            Observed::Managed {
                bundle: Some(b),
                meta: Some(m),
            } => assert_eq!(
                (b, m),
                (secured.bundle.clone(), secured.meta.clone()),
                "{kind}"
            ),
            other => panic!("{kind}: {other:?}"),
        }
        assert_eq!(
            d.deliver(&secured.bundle, &secured.meta)
                .await
                .unwrap()
                .change,
            Change::Unchanged,
            "{kind}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn istio_csr_s_ca_issuer_signs_workloads_that_verify_and_no_ca_below_it() {
    let server = server().await;
    server
        .create(
            Resource::Namespaces,
            "",
            json!({"metadata": {"name": "cert-manager"}}),
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = KindSpec::new(Kind::CertManagerCa);
    let (settings, secured) = issued(dir.path(), &spec).await;
    delivery(&server, &settings, false)
        .deliver(&secured.bundle, &secured.meta)
        .await
        .unwrap();
    // What cert-manager's CA issuer reads: the secret as delivered, nothing else.
    let got = data(&server, "cert-manager", "istio-ca");
    let work = dir.path().join("issuer");
    std::fs::create_dir_all(&work).unwrap();
    for (file, key) in [
        ("tls.crt", "tls.crt"),
        ("tls.key", "tls.key"),
        ("ca.crt", "ca.crt"),
    ] {
        std::fs::write(work.join(file), &got[key]).unwrap();
    }
    sign(&work, "workload", "tls.crt", "tls.key", false);
    let (ok, text) = openssl(
        &[
            "verify",
            "-CAfile",
            "ca.crt",
            "-untrusted",
            "tls.crt",
            "workload.pem",
        ],
        &work,
    );
    assert!(ok, "{text}");
    sign(&work, "sub-ca", "tls.crt", "tls.key", true);
    sign(&work, "deep", "sub-ca.pem", "sub-ca.key", false);
    let chain = format!(
        "{}{}",
        std::fs::read_to_string(work.join("sub-ca.pem")).unwrap(),
        String::from_utf8(got["tls.crt"].clone()).unwrap()
    );
    std::fs::write(work.join("chain.pem"), chain).unwrap();
    let (ok, text) = openssl(
        &[
            "verify",
            "-CAfile",
            "ca.crt",
            "-untrusted",
            "chain.pem",
            "deep.pem",
        ],
        &work,
    );
    assert!(
        !ok && text.contains("path length"),
        "a CA below the istio-csr intermediate must not be usable: {text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_adopted_cacerts_with_stale_tls_keys_ends_with_meshca_s_bundle_in_force() {
    let server = server().await;
    let dir = tempfile::tempdir().unwrap();
    // cert-manager's old CA in tls.*, which istiod prefers over the *.pem keys.
    let (_, stale) = issued(&dir.path().join("old"), &KindSpec::new(Kind::CertManagerCa)).await;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let theirs = json!({"metadata": {"name": "cacerts"}, "type": "Opaque", "data": {
        "tls.crt": b64(&stale.bundle.cert_chain), "tls.key": b64(&stale.bundle.ca_key), "ca.crt": b64(&stale.bundle.root_cert),
        "extra.txt": b64("keep")}});
    server
        .create(Resource::Secrets, "istio-system", theirs)
        .unwrap();

    let (settings, ours) = issued(&dir.path().join("new"), &KindSpec::default()).await;
    let d = delivery(&server, &settings, false);
    match d.observe().await.unwrap() {
        Observed::Unmanaged { bundle: Some(b) } => assert_eq!(
            b.ca_cert, stale.bundle.ca_cert,
            "istiod's reading: the tls.* bundle"
        ),
        other => panic!("{other:?}"),
    }
    let out = delivery(&server, &settings, true)
        .deliver(&ours.bundle, &ours.meta)
        .await
        .unwrap();
    assert_eq!(out.change, Change::Adopted);
    let got = data(&server, "istio-system", "cacerts");
    assert!(
        !got.contains_key("tls.crt") && !got.contains_key("tls.key") && !got.contains_key("ca.crt"),
        "{:?}",
        got.keys()
    );
    assert_eq!(got["extra.txt"], b"keep");
    match d.observe().await.unwrap() {
        Observed::Managed {
            bundle: Some(b), ..
        } => assert_eq!(b, ours.bundle, "the bundle in force is meshca's"),
        other => panic!("{other:?}"),
    }
}
