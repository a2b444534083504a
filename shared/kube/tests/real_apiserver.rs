//! Delivery against a real kube-apiserver (1.20, with etcd; built by tests/kube/build): what our
//! own test server might agree with us on wrongly — namespace creation, resourceVersion rules,
//! secret type validation, the status subresource, strategic-merge patches, and `kubectl apply`
//! of the manifest meshca writes, with client-side validation on (the real server publishes its
//! OpenAPI document).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use meshca_core::delivery::{Change, Delivery, DeliveryError, DeliveryOptions, Observed};
use meshca_core::kind::{Kind, KindSpec};
use meshca_core::{ClusterName, Reconciler, Secured, Settings};
use meshca_kube::{KubeDelivery, RESTARTED_AT, TokenSource};
use meshca_local::{LocalCa, LocalEscrow, LocalRootSpec};
use meshca_test_support::kube::RealApiServer;
use serde_json::json;
use zeroize::Zeroizing;

struct Token(String);

#[async_trait]
impl TokenSource for Token {
    async fn bearer(&self) -> Result<Zeroizing<String>, String> {
        Ok(Zeroizing::new(self.0.clone()))
    }
}

fn client(server: &RealApiServer) -> kube::Client {
    meshca_kube::from_endpoint(
        "real",
        &server.url,
        &server.ca_pem,
        Arc::new(Token(server.token.clone())),
    )
    .unwrap()
}

fn delivery(server: &RealApiServer, settings: &Settings, adopt: bool) -> KubeDelivery {
    let c: ClusterName = "c1".parse().unwrap();
    let options = DeliveryOptions {
        landing: settings.kind.landing(),
        profile: settings.profile_for(&c),
        adopt,
        ..DeliveryOptions::default()
    };
    KubeDelivery::new(client(server), &server.url, options)
}

async fn issue(dir: &Path, spec: KindSpec, force: bool) -> (Settings, Secured) {
    let ca = LocalCa::open_or_create(&dir.join("ca"), &LocalRootSpec::default()).unwrap();
    let escrow = LocalEscrow::new(dir.join("escrow"));
    let settings = Settings {
        kind: spec,
        ..Settings::default()
    };
    let c: ClusterName = "c1".parse().unwrap();
    let secured = Reconciler {
        authority: &ca,
        escrow: &escrow,
        settings: &settings,
    }
    .ensure_bundle(&c, force)
    .await
    .unwrap();
    (settings, secured)
}

/// An istiod Deployment of `image` whose status says one replica is ready (no controller runs
/// here: the status subresource is written as the controller would).
async fn istiod(server: &RealApiServer, image: &str) {
    let deployments: Api<Deployment> = Api::namespaced(client(server), "istio-system");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "istiod", "labels": {"app": "istiod"}},
        "spec": {"selector": {"matchLabels": {"app": "istiod"}},
                 "template": {"metadata": {"labels": {"app": "istiod"}},
                              "spec": {"containers": [{"name": "discovery", "image": image}]}}}
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    let status = json!({"status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1}});
    deployments
        .patch_status("istiod", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

async fn restarted_at(server: &RealApiServer) -> Option<String> {
    let deployments: Api<Deployment> = Api::namespaced(client(server), "istio-system");
    let d = deployments.get("istiod").await.unwrap();
    d.spec?
        .template
        .metadata?
        .annotations?
        .get(RESTARTED_AT)
        .cloned()
}

#[tokio::test(flavor = "multi_thread")]
async fn cacerts_is_created_rotated_and_restarts_istiod_on_a_real_apiserver() {
    let server = RealApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (settings, g1) = issue(dir.path(), KindSpec::default(), false).await;
    let d = delivery(&server, &settings, false);
    assert!(matches!(d.observe().await.unwrap(), Observed::Absent));
    // istio-system does not exist yet: meshca creates it, then the secret.
    let out = d.deliver(&g1.bundle, &g1.meta).await.unwrap();
    assert_eq!(out.change, Change::Created);
    assert!(out.istiod.is_empty());
    assert_eq!(
        d.deliver(&g1.bundle, &g1.meta).await.unwrap().change,
        Change::Unchanged
    );

    // Istio 1.18 does not hot-reload: a rotation restarts it through a strategic-merge patch.
    istiod(&server, "docker.io/istio/pilot:1.18.7").await;
    let (_, g2) = issue(dir.path(), KindSpec::default(), true).await;
    let out = d.deliver(&g2.bundle, &g2.meta).await.unwrap();
    assert_eq!(out.change, Change::Rotated);
    assert!(out.istiod[0].1.restart, "{:?}", out.istiod);
    assert!(
        restarted_at(&server).await.is_some(),
        "the pod template carries kubectl's restartedAt"
    );
    match d.observe().await.unwrap() {
        Observed::Managed {
            bundle: Some(b),
            meta: Some(m),
        } => assert_eq!((b, m), (g2.bundle.clone(), g2.meta.clone())),
        other => panic!("{other:?}"),
    }
    // Going back to generation 1 is refused.
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
}

#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_cacerts_is_refused_then_adopted_keeping_its_other_keys() {
    let server = RealApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (settings, g1) = issue(dir.path(), KindSpec::default(), false).await;
    let secrets: Api<Secret> = Api::namespaced(client(&server), "istio-system");
    kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client(&server))
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "istio-system"}})).unwrap(),
        )
        .await
        .unwrap();
    let theirs: Secret = serde_json::from_value(
        json!({"metadata": {"name": "cacerts"}, "stringData": {"extra.txt": "keep"}}),
    )
    .unwrap();
    secrets
        .create(&PostParams::default(), &theirs)
        .await
        .unwrap();
    let err = delivery(&server, &settings, false)
        .deliver(&g1.bundle, &g1.meta)
        .await
        .unwrap_err();
    assert!(matches!(err, DeliveryError::Unmanaged { .. }), "{err}");
    let out = delivery(&server, &settings, true)
        .deliver(&g1.bundle, &g1.meta)
        .await
        .unwrap();
    assert_eq!(out.change, Change::Adopted);
    let s = secrets.get("cacerts").await.unwrap();
    assert_eq!(s.data.as_ref().unwrap()["extra.txt"].0, b"keep");
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_kinds_pass_the_real_apiserver_s_kubernetes_io_tls_validation() {
    let server = RealApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (settings, edge) = issue(dir.path(), KindSpec::new(Kind::XcpEdge), false).await;
    let d = delivery(&server, &settings, false);
    assert_eq!(
        d.deliver(&edge.bundle, &edge.meta).await.unwrap().change,
        Change::Created
    );
    let secrets: Api<Secret> = Api::namespaced(client(&server), "istio-system");
    let s = secrets.get("xcp-edge-cert").await.unwrap();
    assert_eq!(s.type_.as_deref(), Some("kubernetes.io/tls"));
    assert_eq!(
        d.deliver(&edge.bundle, &edge.meta).await.unwrap().change,
        Change::Unchanged
    );
}

fn kubectl() -> String {
    std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into())
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_applies_the_manifest_meshca_writes_with_validation_on() {
    let server = RealApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (settings, g1) = issue(dir.path(), KindSpec::default(), false).await;
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig("real")).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(kubectl())
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    run(&["create", "namespace", "istio-system"]);
    let manifest = dir.path().join("cacerts.yaml");
    std::fs::write(
        &manifest,
        meshca_kube::secret::manifest(&g1.bundle, &g1.meta, &settings.kind.landing()).as_str(),
    )
    .unwrap();
    run(&["apply", "-f", manifest.to_str().unwrap()]);
    let d = delivery(&server, &settings, false);
    match d.observe().await.unwrap() {
        Observed::Managed {
            bundle: Some(b),
            meta: Some(m),
        } => assert_eq!((b, m), (g1.bundle.clone(), g1.meta.clone())),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        d.deliver(&g1.bundle, &g1.meta).await.unwrap().change,
        Change::Unchanged,
        "what kubectl applied is meshca's own"
    );
    let listed = run(&[
        "get",
        "secret",
        "cacerts",
        "-n",
        "istio-system",
        "-o",
        "jsonpath={.metadata.labels}",
    ]);
    assert!(listed.contains("meshca"), "{listed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn racing_generations_end_with_the_newer_and_bad_credentials_or_ca_are_clear_errors() {
    let server = RealApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (settings, g1) = issue(dir.path(), KindSpec::default(), false).await;
    let (_, g2) = issue(dir.path(), KindSpec::default(), true).await;
    // Two writers at once on a real server's resourceVersion rules: generation 2 stays.
    let (a, b) = (
        delivery(&server, &settings, false),
        delivery(&server, &settings, false),
    );
    let (r1, r2) = tokio::join!(
        a.deliver(&g1.bundle, &g1.meta),
        b.deliver(&g2.bundle, &g2.meta)
    );
    assert!(r2.is_ok(), "{r2:?}");
    assert!(
        r1.is_ok() || matches!(r1, Err(DeliveryError::NewerInCluster { .. })),
        "{r1:?}"
    );
    match a.observe().await.unwrap() {
        Observed::Managed { meta: Some(m), .. } => assert_eq!(m.generation, 2),
        other => panic!("{other:?}"),
    }
    // A token the server does not know: 401 with its message.
    let stranger = meshca_kube::from_endpoint(
        "real",
        &server.url,
        &server.ca_pem,
        Arc::new(Token("not-a-token".into())),
    )
    .unwrap();
    let err = KubeDelivery::new(stranger, &server.url, DeliveryOptions::default())
        .observe()
        .await
        .unwrap_err();
    assert!(matches!(err, DeliveryError::Unauthorized(_)), "{err}");
    // A CA that did not sign the server's certificate: no connection, the endpoint named.
    let other = RealApiServer::start();
    let wrong_ca = meshca_kube::from_endpoint(
        "real",
        &server.url,
        &other.ca_pem,
        Arc::new(Token(server.token.clone())),
    )
    .unwrap();
    let quick = DeliveryOptions {
        backoff: meshca_core::retry::Backoff {
            first: std::time::Duration::from_millis(5),
            max: std::time::Duration::from_millis(20),
            deadline: std::time::Duration::from_millis(300),
        },
        ..DeliveryOptions::default()
    };
    let err = KubeDelivery::new(wrong_ca, &server.url, quick)
        .observe()
        .await
        .unwrap_err();
    assert!(
        matches!(err, DeliveryError::Unreachable { .. }) && err.to_string().contains(&server.url),
        "{err}"
    );
}

/// The intermediate's own empty CRL, as meshca signs one per generation (valid as long as the
/// intermediate; each signature differs).
fn own_crl(secured: &Secured) -> String {
    meshca_core::crl::own(&secured.bundle.ca_cert, &secured.bundle.ca_key).unwrap()
}

fn crls_in(secret: &Secret) -> Option<String> {
    let data = secret.data.as_ref()?;
    Some(String::from_utf8(data.get("ca-crl.pem")?.0.clone()).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn crls_ride_in_cacerts_and_a_renewal_whose_own_crl_is_missing_is_never_written() {
    use meshca_core::delivery::CrlsChange;
    let server = RealApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (settings, g1) = issue(dir.path(), KindSpec::default(), false).await;
    let d = delivery(&server, &settings, false);
    let secrets: Api<Secret> = Api::namespaced(client(&server), "istio-system");
    // No cacerts yet: the first bundle goes first.
    assert_eq!(
        d.deliver_crls(&own_crl(&g1)).await.unwrap().change,
        CrlsChange::NoBundleYet
    );
    d.deliver(&g1.bundle, &g1.meta).await.unwrap();

    // istiod's rule: CRLs without the held intermediate's own are never written.
    let (_, g2) = issue(dir.path(), KindSpec::default(), true).await;
    let err = d.deliver_crls(&own_crl(&g2)).await.unwrap_err();
    assert!(matches!(err, DeliveryError::CrlsLackOwn { .. }), "{err}");
    assert_eq!(crls_in(&secrets.get("cacerts").await.unwrap()), None);

    let first = own_crl(&g1);
    let written = d.deliver_crls(&first).await.unwrap();
    assert_eq!(
        (written.change, written.generation),
        (CrlsChange::Written, Some(1))
    );
    // The same CRL signed again says nothing new: not written again.
    let again = own_crl(&g1);
    assert_ne!(again, first);
    assert_eq!(
        d.deliver_crls(&again).await.unwrap().change,
        CrlsChange::Unchanged
    );
    assert_eq!(
        crls_in(&secrets.get("cacerts").await.unwrap()),
        Some(first.clone())
    );

    // The renewal: its own CRL is not in the secret's ca-crl.pem yet, so istiod would discard
    // it; it is refused and generation 1 stays in force.
    let err = d.deliver(&g2.bundle, &g2.meta).await.unwrap_err();
    assert!(matches!(err, DeliveryError::CrlsLackOwn { .. }), "{err}");
    assert!(err.to_string().contains("meshca crl publish"), "{err}");
    match d.observe().await.unwrap() {
        Observed::Managed { meta: Some(m), .. } => assert_eq!(m.generation, 1),
        other => panic!("{other:?}"),
    }
    // Once the fleet's CRLs carry both generations', the renewal lands and keeps them.
    let both = format!("{first}{}", own_crl(&g2));
    assert_eq!(
        d.deliver_crls(&both).await.unwrap().change,
        CrlsChange::Written
    );
    assert_eq!(
        d.deliver(&g2.bundle, &g2.meta).await.unwrap().change,
        Change::Rotated
    );
    assert_eq!(crls_in(&secrets.get("cacerts").await.unwrap()), Some(both));

    // The kubernetes.io/tls layout has no reader of CRLs: said, never written.
    let spec = KindSpec::new(Kind::CertManagerCa);
    let (tls_settings, _) = issue(dir.path(), spec, false).await;
    let err = delivery(&server, &tls_settings, false)
        .deliver_crls(&first)
        .await
        .unwrap_err();
    assert!(matches!(err, DeliveryError::NoCrlsHere { .. }), "{err}");
}

/// A pod in `shop` as Istio's injector leaves it: its label, and its record of the volumes it
/// added, the CRL volume among them from 1.27's template.
fn injected_pod(name: &str, with_crl_volume: bool) -> serde_json::Value {
    let mut volumes = vec!["istio-envoy", "istio-data", "istio-token", "istiod-ca-cert"];
    if with_crl_volume {
        volumes.push("istio-ca-crl");
    }
    let status = json!({"initContainers": ["istio-init"], "containers": ["istio-proxy"], "volumes": volumes, "revision": "default"});
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "shop",
                        "labels": {"security.istio.io/tlsMode": "istio"},
                        "annotations": {"sidecar.istio.io/status": status.to_string()}},
           "spec": {"automountServiceAccountToken": false,
                    "containers": [{"name": "app", "image": "shop/cart:1"}]}})
}

/// A token for the service account istio-system/meshca, bound to `rules` in istio-system and,
/// when given, `cluster_rules` everywhere: what an EKS access entry with meshca's grant amounts to.
fn scoped_token(server: &RealApiServer, rules: &str, cluster_rules: Option<&str>) -> String {
    let sa = "{kind: ServiceAccount, name: meshca, namespace: istio-system}";
    let mut rbac = format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: meshca, namespace: istio-system}}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: meshca, namespace: istio-system}}\nrules:\n{rules}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: meshca, namespace: istio-system}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: meshca}}\nsubjects: [{sa}]\n"
    );
    if let Some(rules) = cluster_rules {
        rbac.push_str(&format!(
            "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: meshca-crl-readers}}\nrules:\n{rules}\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: meshca-crl-readers}}\n\
             roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: meshca-crl-readers}}\nsubjects: [{sa}]\n"
        ));
    }
    server.kubectl(&["apply", "-f", "-"], Some(&rbac));
    server
        .kubectl(&["create", "token", "meshca", "-n", "istio-system"], None)
        .trim()
        .to_string()
}

/// Who enforces the CRLs is read as far as the role may look: with every grant, a ztunnel before
/// 1.29 and a pod injected before the CRL volume are gaps (pods read page by page); with only
/// the secret and istiod grants, ztunnel and the sidecars are named as not checked, and the
/// delivery still succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn who_enforces_the_crls_is_read_as_far_as_the_role_may_look() {
    use meshca_core::enforcement::{Sidecars, judge};
    let server = RealApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (settings, g1) = issue(dir.path(), KindSpec::default(), false).await;
    let admin = delivery(&server, &settings, false);
    admin.deliver(&g1.bundle, &g1.meta).await.unwrap();
    istiod(&server, "docker.io/istio/pilot:1.28.1").await;
    let ztunnel = json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "ztunnel", "namespace": "istio-system", "labels": {"app": "ztunnel"}},
        "spec": {"selector": {"matchLabels": {"app": "ztunnel"}},
                 "template": {"metadata": {"labels": {"app": "ztunnel"}},
                              "spec": {"containers": [{"name": "istio-proxy", "image": "docker.io/istio/ztunnel:1.28.2-distroless"}]}}}});
    server.kubectl(&["apply", "-f", "-"], Some(&ztunnel.to_string()));
    server.kubectl(&["create", "namespace", "shop"], None);
    server.kubectl(&["create", "serviceaccount", "default", "-n", "shop"], None);
    let mut pods = vec![
        injected_pod("cart-old", false),
        injected_pod("cart-new", true),
        injected_pod("pay-old", false),
    ];
    let mut plain = injected_pod("batch", false);
    plain["metadata"] = json!({"name": "batch", "namespace": "shop"});
    pods.push(plain);
    for p in pods {
        server.kubectl(&["apply", "-f", "-"], Some(&p.to_string()));
    }

    let crls = own_crl(&g1);
    let all = admin.paging_pods_by(2).deliver_crls(&crls).await.unwrap();
    let readers = all.readers.unwrap();
    assert_eq!(
        readers.sidecars,
        Sidecars::Read {
            injected: 3,
            without_crls: vec!["shop/cart-old".into(), "shop/pay-old".into()]
        }
    );
    let gaps = judge(&readers).not_protected().unwrap();
    assert_eq!(
        gaps,
        "ztunnel ztunnel is Istio 1.28, which ignores ca-crl.pem (read from 1.29); \
         2 of 3 pods with a sidecar were injected without the istio-ca-crl volume (before Istio 1.27) \
         and enforce nothing until restarted: shop/cart-old, shop/pay-old"
    );

    // meshca's namespaced grant without the readers: the CRLs go in, the rest is named.
    let secrets_and_istiod = "- {apiGroups: [\"\"], resources: [secrets], verbs: [get, update]}\n\
                              - {apiGroups: [apps], resources: [deployments], verbs: [list]}";
    let token = scoped_token(&server, secrets_and_istiod, None);
    let scoped = |token: String| {
        let client =
            meshca_kube::from_endpoint("real", &server.url, &server.ca_pem, Arc::new(Token(token)))
                .unwrap();
        let options = DeliveryOptions {
            landing: settings.kind.landing(),
            profile: settings.profile_for(&"c1".parse().unwrap()),
            ..DeliveryOptions::default()
        };
        KubeDelivery::new(client, &server.url, options)
    };
    let some = scoped(token).deliver_crls(&crls).await.unwrap();
    let e = judge(&some.readers.unwrap());
    assert_eq!(e.not_protected(), None, "istiod 1.28 is all it could see");
    assert_eq!(
        e.not_checked().unwrap(),
        "ztunnels (ambient) not checked: meshca's role may not list daemonsets in istio-system \
         (`meshca access --crl-readers` prints the grant); sidecars not checked: meshca's role \
         may not list pods in all namespaces (`meshca access --crl-readers` prints the grant)"
    );

    // With the readers granted, it sees what the admin saw.
    let readers_too = format!(
        "{secrets_and_istiod}\n- {{apiGroups: [apps], resources: [daemonsets], verbs: [list]}}"
    );
    let pods_everywhere = "- {apiGroups: [\"\"], resources: [pods], verbs: [list]}";
    let token = scoped_token(&server, &readers_too, Some(pods_everywhere));
    let seen = scoped(token).deliver_crls(&crls).await.unwrap();
    assert_eq!(judge(&seen.readers.unwrap()).not_protected().unwrap(), gaps);
}
