//! `meshca issue|inspect` against a real kube-apiserver (tests/kube/build), through the built
//! binary: a kubeconfig context, and an EKS cluster found by DescribeCluster whose API server
//! authenticates meshca's IAM token through a TokenReview webhook and authorises it with RBAC.

use assert_cmd::Command;
use meshca_test_apiserver::{ApiServer, Settings, TOKEN_REVIEW_PATH};
use meshca_test_support::aws;
use meshca_test_support::kube::RealApiServer;
use predicates::prelude::*;
use serde_json::json;

fn meshca(dir: &std::path::Path) -> Command {
    let mut c = Command::cargo_bin("meshca").unwrap();
    c.current_dir(dir).env_remove("KUBECONFIG");
    c
}

#[test]
fn issue_into_a_real_apiserver_by_context_then_inspect_and_kubectl_it() {
    let real = RealApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("kubeconfig"), real.kubeconfig("real")).unwrap();
    let ctx = ["--context", "real", "--kubeconfig", "kubeconfig"];
    meshca(d)
        .args(["inspect"])
        .args(ctx)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("MISSING"));
    meshca(d)
        .args(["issue", "--cluster", "c1"])
        .args(ctx)
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "delivered to context real: istio-system/cacerts created",
        ));
    meshca(d)
        .args(["inspect"])
        .args(ctx)
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "context real istio-system/cacerts (managed by meshca): valid",
        ));
    // kubectl re-applies the manifest meshca wrote, validation on: the same secret, unchanged.
    real.kubectl(
        &[
            "apply",
            "-f",
            d.join("out/c1/cacerts.yaml").to_str().unwrap(),
        ],
        None,
    );
    meshca(d)
        .args(["issue", "--cluster", "c1"])
        .args(ctx)
        .assert()
        .success()
        .stdout(predicate::str::contains("cacerts unchanged"));
}

/// An emulated AWS with a P-256 Private CA (its ARN), and a real kube-apiserver that
/// authenticates IAM tokens for EKS cluster `prod-eu-1` through the test server's TokenReview
/// webhook (kept alive by the caller); RBAC is the caller's to grant.
async fn eks_behind_the_iam_webhook() -> (aws::AwsEmulator, String, ApiServer, RealApiServer) {
    let emu = aws::AwsEmulator::start();
    let arn = emu.hierarchy("EC_prime256v1", 2)["issuing"]
        .as_str()
        .unwrap()
        .to_string();
    let settings = Settings {
        cluster: "prod-eu-1".into(),
        aws_keys: std::collections::BTreeMap::from([(
            "testing".to_string(),
            "testing".to_string(),
        )]),
        token_review: true,
        ..Default::default()
    };
    let authenticator = ApiServer::start(settings).await.unwrap();
    let real = RealApiServer::with_token_webhook(
        &format!("{}{TOKEN_REVIEW_PATH}", authenticator.url()),
        authenticator.ca_pem(),
    );
    (emu, arn, authenticator, real)
}

/// `meshca issue` into EKS cluster `prod-eu-1` from the Private CA `arn`, escrow in Secrets
/// Manager, no files, with the emulator's credentials and endpoints only.
fn eks_issue(dir: &std::path::Path, emu: &aws::AwsEmulator, arn: &str) -> Command {
    let mut c = meshca(dir);
    c.envs(emu.child_env());
    for v in aws::AWS_UNSET {
        c.env_remove(v);
    }
    c.args([
        "issue",
        "--eks-cluster",
        "prod-eu-1",
        "--ca-arn",
        arn,
        "--escrow",
        "secrets-manager",
        "--no-files",
        "--validity-days",
        "30",
    ]);
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn issue_from_pca_into_an_eks_cluster_whose_real_apiserver_checks_the_iam_token() {
    let (emu, arn, _authenticator, real) = eks_behind_the_iam_webhook().await;
    real.grant_namespace("istio-system", "eks:testing");
    emu.control("eks/cluster", json!({"region": aws::REGION, "name": "prod-eu-1", "endpoint": real.url, "ca_pem": real.ca_pem}));
    let dir = tempfile::tempdir().unwrap();
    eks_issue(dir.path(), &emu, &arn)
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "delivered to EKS cluster prod-eu-1: istio-system/cacerts created",
        ));
    let labels = real.kubectl(
        &[
            "get",
            "secret",
            "cacerts",
            "-n",
            "istio-system",
            "-o",
            "jsonpath={.metadata.labels}",
        ],
        None,
    );
    assert!(labels.contains("meshca"), "{labels}");

    // meshca fleet judges the CRL column from the cluster itself, as the caller through EKS:
    // no ca-crl.pem there, no istiod to enforce one, and what the grant does not let it see.
    let mut fleet = meshca(dir.path());
    fleet.envs(emu.child_env());
    for v in aws::AWS_UNSET {
        fleet.env_remove(v);
    }
    let out = fleet
        .args([
            "fleet",
            "--escrow",
            "secrets-manager",
            "--region",
            aws::REGION,
            "--eks",
            "--json",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let rows: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let row = &rows[0];
    assert_eq!(
        (row["cluster"].as_str(), row["crl"]["state"].as_str()),
        (Some("prod-eu-1"), Some("missing")),
        "{rows}"
    );
    let said = row["enforcement"]["said"].as_str().unwrap();
    assert_eq!(row["enforcement"]["protected"], false, "{rows}");
    assert!(
        said.starts_with("not protected: no istiod found in istio-system"),
        "{said}"
    );
    assert!(
        said.contains("sidecars not checked: meshca's role may not list pods"),
        "{said}"
    );
}

/// A wrong --context: the secret says whose it is, and another cluster's bundle never replaces
/// it (the error names both); the owner's own reruns go on as before.
#[test]
fn a_secret_says_whose_it_is_and_another_cluster_never_overwrites_it() {
    let real = RealApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("kubeconfig"), real.kubeconfig("real")).unwrap();
    let ctx = ["--context", "real", "--kubeconfig", "kubeconfig"];
    meshca(d)
        .args(["issue", "--cluster", "c1"])
        .args(ctx)
        .assert()
        .success();
    let secret = || real.cacerts();
    let before = secret();
    let ann = &before["metadata"]["annotations"];
    assert_eq!(
        (
            ann["meshca.io/cluster"].as_str(),
            ann["meshca.io/kind"].as_str()
        ),
        (Some("c1"), Some("istio-cacerts")),
        "{ann}"
    );
    meshca(d)
        .args(["issue", "--cluster", "other"])
        .args(ctx)
        .assert()
        .failure()
        .stderr(predicate::str::contains("belongs to c1"))
        .stderr(predicate::str::contains("with the bundle of other"));
    assert!(
        !d.join("out/other").exists() && !d.join(".meshca/escrow/other").exists(),
        "refused before anything was issued for other"
    );
    let after = secret();
    assert_eq!(after["data"], before["data"], "c1's cacerts untouched");
    assert_eq!(
        after["metadata"]["annotations"],
        before["metadata"]["annotations"]
    );
    meshca(d)
        .args(["issue", "--cluster", "c1", "--force"])
        .args(ctx)
        .assert()
        .success()
        .stdout(predicate::str::contains("c1: issued generation 2"));
}

/// Linkerd's issuer lands in a real kube-apiserver as Linkerd reads it: the `kubernetes.io/tls`
/// secret linkerd/linkerd-identity-issuer and the ConfigMap linkerd-identity-trust-roots whose
/// `ca-bundle.crt` is the root bundle, both saying whose they are. A trust-roots ConfigMap that
/// meshca did not write (Linkerd's own install) is refused, not overwritten.
#[test]
fn linkerd_issuer_and_its_anchors_land_in_a_real_apiserver() {
    let real = RealApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("kubeconfig"), real.kubeconfig("real")).unwrap();
    let ctx = ["--context", "real", "--kubeconfig", "kubeconfig"];
    let linkerd = [
        "--kind",
        "linkerd-issuer",
        "--root-key-algorithm",
        "ec-p256",
    ];
    meshca(d)
        .args(["issue", "--cluster", "l1"])
        .args(linkerd)
        .args(ctx)
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "delivered to context real: linkerd/linkerd-identity-issuer created",
        ));
    let secret: serde_json::Value = serde_json::from_str(&real.kubectl(
        &[
            "get",
            "secret",
            "-n",
            "linkerd",
            "linkerd-identity-issuer",
            "-o",
            "json",
        ],
        None,
    ))
    .unwrap();
    assert_eq!(secret["type"], "kubernetes.io/tls");
    assert_eq!(secret["metadata"]["annotations"]["meshca.io/cluster"], "l1");
    let roots: serde_json::Value = serde_json::from_str(&real.kubectl(
        &[
            "get",
            "configmap",
            "-n",
            "linkerd",
            "linkerd-identity-trust-roots",
            "-o",
            "json",
        ],
        None,
    ))
    .unwrap();
    let anchors = roots["data"]["ca-bundle.crt"].as_str().unwrap();
    assert_eq!(
        anchors,
        std::fs::read_to_string(d.join("out/l1/linkerd-issuer/ca-bundle.crt")).unwrap()
    );
    assert_eq!(roots["metadata"]["annotations"]["meshca.io/cluster"], "l1");
    assert_eq!(
        roots["metadata"]["annotations"]["meshca.io/kind"],
        "linkerd-issuer"
    );
    meshca(d)
        .args(["issue", "--cluster", "l1", "--kind", "linkerd-issuer"])
        .args(ctx)
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "linkerd-identity-issuer unchanged",
        ));
    // Another cluster's issuer into this cluster: refused before anything is issued.
    meshca(d)
        .args(["issue", "--cluster", "l2", "--kind", "linkerd-issuer"])
        .args(ctx)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("l1"));
    // Linkerd's own trust roots (not meshca's) are not overwritten.
    real.kubectl(
        &[
            "delete",
            "secret",
            "-n",
            "linkerd",
            "linkerd-identity-issuer",
        ],
        None,
    );
    real.kubectl(
        &[
            "delete",
            "configmap",
            "-n",
            "linkerd",
            "linkerd-identity-trust-roots",
        ],
        None,
    );
    real.kubectl(
        &[
            "create",
            "configmap",
            "-n",
            "linkerd",
            "linkerd-identity-trust-roots",
            "--from-literal=ca-bundle.crt=theirs",
        ],
        None,
    );
    meshca(d)
        .args(["issue", "--cluster", "l1", "--kind", "linkerd-issuer"])
        .args(ctx)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("linkerd-identity-trust-roots"));
    let kept = real.kubectl(
        &[
            "get",
            "configmap",
            "-n",
            "linkerd",
            "linkerd-identity-trust-roots",
            "-o",
            "jsonpath={.data.ca-bundle\\.crt}",
        ],
        None,
    );
    assert_eq!(kept.trim(), "theirs");
}

/// The RBAC `meshca access` prints is enough, and no more: meshca's EKS identity, bound by it for
/// istio-cacerts and linkerd-issuer, delivers both (istiod restarted, the anchors ConfigMap
/// written), and is forbidden a kind it was not granted.
#[tokio::test(flavor = "multi_thread")]
async fn the_access_meshca_prints_is_exactly_enough_for_its_kinds() {
    let (emu, arn, _authenticator, real) = eks_behind_the_iam_webhook().await;
    for ns in ["istio-system", "linkerd", "cert-manager"] {
        real.kubectl(&["create", "namespace", ns], None);
    }
    real.seed_istiod("docker.io/istio/pilot:1.24.2");
    let dir = tempfile::tempdir().unwrap();
    let rbac = meshca(dir.path())
        .args([
            "access",
            "--kind",
            "istio-cacerts",
            "--kind",
            "linkerd-issuer",
            "--user",
            "eks:testing",
        ])
        .output()
        .unwrap();
    assert!(rbac.status.success());
    let rbac = String::from_utf8(rbac.stdout).unwrap();
    assert!(!rbac.contains("cert-manager"), "{rbac}");
    real.kubectl(&["apply", "-f", "-"], Some(&rbac));
    emu.control("eks/cluster", json!({"region": aws::REGION, "name": "prod-eu-1", "endpoint": real.url, "ca_pem": real.ca_pem}));
    let run = |kinds: &[&str]| {
        let mut c = eks_issue(dir.path(), &emu, &arn);
        for k in kinds {
            c.args(["--kind", k]);
        }
        c
    };
    run(&["istio-cacerts", "linkerd-issuer"])
        .assert()
        .success()
        .stdout(predicate::str::contains("istio-system/cacerts created"))
        .stdout(predicate::str::contains(
            "linkerd/linkerd-identity-issuer created",
        ))
        .stdout(predicate::str::contains("istiod restarted"));
    let anchors = real.kubectl(
        &[
            "get",
            "configmap",
            "-n",
            "linkerd",
            "linkerd-identity-trust-roots",
            "-o",
            "name",
        ],
        None,
    );
    assert!(
        anchors.contains("linkerd-identity-trust-roots"),
        "{anchors}"
    );
    run(&["cert-manager-ca"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("forbidden"));
    // Listing pods everywhere (to judge sidecars in CRL mode) only when asked for.
    let can_list_pods = || real.can_i("eks:testing", "list", "pods", &["--all-namespaces"]);
    assert!(!can_list_pods());
    assert!(real.can_i("eks:testing", "list", "daemonsets", &["-n", "istio-system"]));
    let readers = meshca(dir.path())
        .args(["access", "--crl-readers", "--user", "eks:testing"])
        .output()
        .unwrap();
    real.kubectl(
        &["apply", "-f", "-"],
        Some(&String::from_utf8(readers.stdout).unwrap()),
    );
    assert!(can_list_pods());
}

/// `meshca revoke` of cluster x, for key compromise, without asking.
const REVOKE_X: [&str; 6] = [
    "revoke",
    "--cluster",
    "x",
    "--reason",
    "key-compromise",
    "--yes",
];

/// The serial of the intermediate in `out/<cluster>/ca-cert.pem`.
fn serial_in_files(d: &std::path::Path, cluster: &str) -> String {
    let pem = std::fs::read_to_string(d.join("out").join(cluster).join("ca-cert.pem")).unwrap();
    meshca_core::cert::Certificate::from_der(
        cluster,
        meshca_core::pem::certificates(cluster, &pem)
            .unwrap()
            .remove(0),
    )
    .unwrap()
    .serial
}

/// CRL mode through the API server: a cluster's first bundle gets the fleet's CRLs right after
/// it, `meshca crl publish --context` carries a revocation into a cluster, and a renewal puts
/// its new generation's CRL into the cluster before its bundle (istiod would discard a bundle
/// whose ca-crl.pem lacks it), saying whether istiod enforces the CRLs.
#[test]
fn crl_mode_reaches_a_real_apiserver_and_a_renewal_lands_after_its_crl() {
    let real = RealApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("kubeconfig"), real.kubeconfig("y")).unwrap();
    let ctx = ["--context", "y", "--kubeconfig", "kubeconfig"];
    for c in ["x", "z"] {
        meshca(d).args(["issue", "--cluster", c]).assert().success();
    }
    meshca(d).args(["crl", "enable"]).assert().success();
    // istiod 1.28 runs in y: it reads ca-crl.pem.
    real.kubectl(&["create", "namespace", "istio-system"], None);
    real.kubectl(
        &["apply", "-f", "-"],
        Some(
            &json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "istiod", "namespace": "istio-system", "labels": {"app": "istiod"}},
                "spec": {"selector": {"matchLabels": {"app": "istiod"}},
                         "template": {"metadata": {"labels": {"app": "istiod"}},
                                      "spec": {"containers": [{"name": "discovery", "image": "docker.io/istio/pilot:1.28.1"}]}}}
            })
            .to_string(),
        ),
    );
    meshca(d)
        .args(["issue", "--cluster", "y"])
        .args(ctx)
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "context y: istio-system/cacerts ca-crl.pem written (4 CRLs, 0 revoked certificates listed); enforced by istiod (Istio 1.27+)",
        ));
    let now = time::OffsetDateTime::now_utc();
    let y1 = real.cacerts_file("ca-cert.pem").unwrap();
    meshca_core::crl::signed_by_own(&real.cacerts_file("ca-crl.pem").unwrap(), &y1, now).unwrap();

    meshca(d).args(REVOKE_X).assert().success();
    meshca(d)
        .args(["crl", "publish"])
        .args(ctx)
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "ca-crl.pem written (4 CRLs, 1 revoked certificates listed)",
        ));
    let x_serial = serial_in_files(d, "x");
    meshca(d)
        .args(["inspect"])
        .args(ctx)
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "CRLs         4 in ca-crl.pem, its own among them, 1 revoked certificates listed",
        ));
    let held = real.cacerts_file("ca-crl.pem").unwrap();
    assert!(
        meshca_core::fleet_crls::FleetCrls::assemble(&held, Vec::new())
            .unwrap()
            .lists(&x_serial),
        "y's cacerts lists x"
    );

    // y renews: its new intermediate's CRL goes in first, then the bundle, which istiod takes.
    meshca(d)
        .args(["issue", "--cluster", "y", "--force"])
        .args(ctx)
        .assert()
        .success()
        .stdout(predicate::str::contains("y: issued generation 2"))
        .stdout(predicate::str::contains("istio-system/cacerts rotated"));
    let y2 = real.cacerts_file("ca-cert.pem").unwrap();
    assert_ne!(y1, y2);
    let crls = real.cacerts_file("ca-crl.pem").unwrap();
    for ca in [&y1, &y2] {
        meshca_core::crl::signed_by_own(&crls, ca, now).unwrap();
    }

    // meshca fleet --kubeconfig judges each cluster's own ca-crl.pem: y ready and enforced;
    // x and z have no context there, said so.
    let out = meshca(d)
        .args(["fleet", "--kubeconfig", "kubeconfig"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let table = String::from_utf8_lossy(&out);
    let y_row = table.lines().find(|l| l.contains(" y ")).unwrap();
    assert!(y_row.contains("ready ("), "{table}");
    assert!(
        table.contains("x: unreachable: context x in kubeconfig"),
        "{table}"
    );
    let json = meshca(d)
        .args(["fleet", "--kubeconfig", "kubeconfig", "--json"])
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let y = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["cluster"] == "y")
        .unwrap();
    assert_eq!(
        y["enforcement"]["said"], "enforced by istiod (Istio 1.27+)",
        "{rows}"
    );
}

/// A revocation reaches every other cluster's cacerts through a fleet kubeconfig (one context
/// per cluster, as `meshca rotate-root --kubeconfig` takes): two real kube-apiservers (east, west) list
/// x's intermediate after one `meshca revoke`; a cluster without a context is said so, and the
/// revoked one is not written to.
#[test]
fn a_revocation_reaches_every_cluster_of_a_fleet_kubeconfig() {
    let servers = [RealApiServer::start(), RealApiServer::start()];
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    RealApiServer::fleet_kubeconfig(
        &[(&servers[0], "east"), (&servers[1], "west")],
        &d.join("fleet.yaml"),
    );
    meshca(d)
        .args(["issue", "--cluster", "x"])
        .assert()
        .success();
    for c in ["east", "west"] {
        meshca(d)
            .args([
                "issue",
                "--cluster",
                c,
                "--context",
                c,
                "--kubeconfig",
                "fleet.yaml",
            ])
            .assert()
            .success();
    }
    let fleet = ["--fleet-kubeconfig", "fleet.yaml"];
    meshca(d)
        .args(["crl", "enable"])
        .args(fleet)
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "context east: istio-system/cacerts ca-crl.pem written (4 CRLs, 0 revoked",
        ))
        .stdout(predicate::str::contains(
            "context west: istio-system/cacerts ca-crl.pem written (4 CRLs, 0 revoked",
        ))
        .stdout(predicate::str::contains("context x: NOT REACHED"));
    // The dry run names who would get the CRLs, and who enforces them there (no istiod runs in
    // these API servers); nothing is written.
    meshca(d)
        .args(["revoke", "--cluster", "x", "--reason", "key-compromise", "--dry-run"])
        .args(fleet)
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "would write the fleet's CRLs, listing it, into east: its files' ca-crl.pem",
        ))
        .stdout(predicate::str::contains(
            "would write the fleet's CRLs, listing it, into context west: its cacerts; not protected: no istiod found in istio-system",
        ));
    meshca(d)
        .args(REVOKE_X)
        .args(fleet)
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "context east: istio-system/cacerts ca-crl.pem written (4 CRLs, 1 revoked",
        ))
        .stdout(predicate::str::contains(
            "context west: istio-system/cacerts ca-crl.pem written (4 CRLs, 1 revoked",
        ))
        .stdout(predicate::str::contains("context x:").not());
    let x_serial = serial_in_files(d, "x");
    for s in &servers {
        let held = s.cacerts_file("ca-crl.pem").unwrap();
        assert!(
            meshca_core::fleet_crls::FleetCrls::assemble(&held, Vec::new())
                .unwrap()
                .lists(&x_serial)
        );
    }
}
