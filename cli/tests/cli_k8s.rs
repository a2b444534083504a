//! `meshca issue|inspect --context / --eks-cluster` against the test API server, through the
//! built binary.

use meshca_test_support::aws;

use assert_cmd::Command;
use meshca_test_apiserver::store::Resource;
use meshca_test_apiserver::{ApiServer, Settings};
use predicates::prelude::*;
use serde_json::json;

fn meshca(dir: &std::path::Path) -> Command {
    let mut c = Command::cargo_bin("meshca").unwrap();
    c.current_dir(dir).env_remove("KUBECONFIG");
    c
}

async fn kind_cluster(dir: &std::path::Path) -> ApiServer {
    let server = ApiServer::start(Settings {
        cluster: "c1".into(),
        static_token: Some("t0ken".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    std::fs::write(
        dir.join("kubeconfig"),
        server.kubeconfig("kind-c1", "t0ken"),
    )
    .unwrap();
    server
}

#[tokio::test(flavor = "multi_thread")]
async fn issue_into_a_kubeconfig_context_then_inspect_it_live() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = kind_cluster(d).await;
    server.seed_istio(Some("docker.io/istio/pilot:1.22.1"));

    meshca(d)
        .args([
            "inspect",
            "--context",
            "kind-c1",
            "--kubeconfig",
            "kubeconfig",
        ])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("MISSING"));

    let ctx = ["--context", "kind-c1", "--kubeconfig", "kubeconfig"];
    meshca(d)
        .args(["issue", "--cluster", "c1"])
        .args(ctx)
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "delivered to context kind-c1: istio-system/cacerts created",
        ))
        .stdout(predicate::str::contains(
            "istiod restarted: cacerts created while istiod runs",
        ));
    assert!(d.join("out/c1/ca-key.pem").exists());
    meshca(d)
        .args(["issue", "--cluster", "c1"])
        .args(ctx)
        .assert()
        .success()
        .stdout(predicate::str::contains("cacerts unchanged"));
    let out = meshca(d)
        .args([
            "issue",
            "--cluster",
            "c1",
            "--force",
            "--no-files",
            "--json",
        ])
        .args(ctx)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["delivery"]["change"], "rotated");
    assert_eq!(doc["delivery"]["istiod"][0]["restart"], false);
    assert_eq!(doc["out_dir"], serde_json::Value::Null);

    meshca(d)
        .args(["inspect"])
        .args(ctx)
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "context kind-c1 istio-system/cacerts (managed by meshca): valid",
        ))
        .stdout(predicate::str::contains("generation 2"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_cacerts_is_left_alone_unless_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = kind_cluster(d).await;
    server.seed_istio(None);
    server
        .create(
            Resource::Secrets,
            "istio-system",
            json!({"metadata": {"name": "cacerts"}, "data": {"ca-cert.pem": "eA=="}}),
        )
        .unwrap();
    let ctx = ["--context", "kind-c1", "--kubeconfig", "kubeconfig"];
    meshca(d)
        .args(["inspect"])
        .args(ctx)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("INVALID: the secret lacks one of"));
    meshca(d)
        .args(["issue", "--cluster", "c1"])
        .args(ctx)
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("was not created by meshca")
                .and(predicate::str::contains("--adopt")),
        );
    meshca(d)
        .args(["issue", "--cluster", "c1", "--adopt"])
        .args(ctx)
        .assert()
        .success()
        .stdout(predicate::str::contains("istio-system/cacerts adopted"));
    meshca(d)
        .args([
            "issue",
            "--cluster",
            "c1",
            "--context",
            "missing",
            "--kubeconfig",
            "kubeconfig",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("connecting to context missing"));
    meshca(d)
        .args(["issue", "--cluster", "c1", "--no-files"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "--no-files needs --context or --eks-cluster",
        ));
}

#[tokio::test(flavor = "multi_thread")]
async fn issue_from_pca_into_an_eks_cluster_found_by_describe_cluster() {
    let emu = aws::AwsEmulator::start();
    let arn = emu.hierarchy("EC_prime256v1", 2)["issuing"]
        .as_str()
        .unwrap()
        .to_string();
    let server = ApiServer::start(Settings::eks_scoped("prod-eu-1", "testing", "testing"))
        .await
        .unwrap();
    server.seed_istio(Some("docker.io/istio/pilot:1.24.2"));
    emu.control("eks/cluster", json!({"region": aws::REGION, "name": "prod-eu-1", "endpoint": server.url(), "ca_pem": server.ca_pem()}));
    let dir = tempfile::tempdir().unwrap();
    let aws_env = |c: &mut Command| {
        c.envs(emu.child_env());
        for v in aws::AWS_UNSET {
            c.env_remove(v);
        }
    };
    let mut c = meshca(dir.path());
    aws_env(&mut c);
    c.args([
        "issue",
        "--eks-cluster",
        "prod-eu-1",
        "--ca-arn",
        &arn,
        "--escrow",
        "secrets-manager",
        "--no-files",
        "--validity-days",
        "30",
    ])
    .assert()
    .success()
    .stdout(predicate::str::contains("prod-eu-1: issued generation 1"))
    .stdout(predicate::str::contains(
        "delivered to EKS cluster prod-eu-1: istio-system/cacerts created",
    ));
    assert!(!dir.path().join("out").exists(), "--no-files wrote nothing");
    let mut c = meshca(dir.path());
    aws_env(&mut c);
    c.args([
        "inspect",
        "--eks-cluster",
        "prod-eu-1",
        "--region",
        aws::REGION,
    ])
    .assert()
    .success()
    .stdout(predicate::str::contains(
        "EKS cluster prod-eu-1 istio-system/cacerts (managed by meshca): valid",
    ));
    assert!(server.seen().iter().all(|s| s.caller == "eks:testing"));

    emu.control(
        "eks/cluster",
        json!({"region": aws::REGION, "name": "prod-eu-1", "status": "CREATING"}),
    );
    let mut c = meshca(dir.path());
    aws_env(&mut c);
    c.args([
        "issue",
        "--eks-cluster",
        "prod-eu-1",
        "--ca-arn",
        &arn,
        "--escrow",
        "secrets-manager",
        "--no-files",
        "--force",
    ])
    .assert()
    .code(1)
    .stderr(predicate::str::contains("is CREATING, not ACTIVE"));
    assert_eq!(
        emu.calls("IssueCertificate"),
        1,
        "a cluster that cannot take the CA costs no certificate"
    );
}
