//! `meshca issue --kind …`: TSB's management plane and control planes, and istio-csr's CA, from
//! one root, through the built binary — files, and delivery into the test API server.

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

async fn cluster(dir: &std::path::Path, name: &str) -> ApiServer {
    let server = ApiServer::start(Settings {
        cluster: name.into(),
        static_token: Some("t0ken".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    std::fs::write(
        dir.join(format!("{name}.kubeconfig")),
        server.kubeconfig(name, "t0ken"),
    )
    .unwrap();
    server
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tsb_management_plane_and_two_control_planes_from_one_root() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mgmt = cluster(d, "mgmt").await;
    mgmt.create(
        Resource::Namespaces,
        "",
        json!({"metadata": {"name": "tsb"}}),
    )
    .unwrap();
    meshca(d)
        .args([
            "issue",
            "--cluster",
            "mgmt",
            "--kind",
            "xcp-central",
            "--kind",
            "mpc",
            "--central-address",
            "central.tsb.example",
        ])
        .args(["--context", "mgmt", "--kubeconfig", "mgmt.kubeconfig"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "mgmt xcp-central: issued generation 1",
        ))
        .stdout(predicate::str::contains(
            "delivered to context mgmt: tsb/xcp-central-cert created",
        ))
        .stdout(predicate::str::contains(
            "delivered to context mgmt: tsb/mpc-certs created",
        ));
    let central = mgmt
        .get(Resource::Secrets, "tsb", "xcp-central-cert")
        .unwrap();
    assert_eq!(central["type"], "kubernetes.io/tls");
    for edge in ["east-1", "west-2"] {
        let server = cluster(d, edge).await;
        server.seed_istio(Some("docker.io/istio/pilot:1.24.2"));
        meshca(d)
            .args([
                "issue",
                "--cluster",
                edge,
                "--kind",
                "istio-cacerts",
                "--kind",
                "xcp-edge",
            ])
            .args([
                "--context",
                edge,
                "--kubeconfig",
                &format!("{edge}.kubeconfig"),
            ])
            .assert()
            .success()
            .stdout(predicate::str::contains(format!(
                "delivered to context {edge}: istio-system/cacerts created"
            )))
            .stdout(predicate::str::contains(format!(
                "delivered to context {edge}: istio-system/xcp-edge-cert created"
            )));
        assert!(
            server
                .get(Resource::Secrets, "istio-system", "xcp-edge-cert")
                .is_some()
        );
        // Each kind judged by its own rules, from the files and live.
        meshca(d)
            .args([
                "inspect",
                &format!("out/{edge}/xcp-edge"),
                "--kind",
                "xcp-edge",
                "--tsb-name",
                edge,
            ])
            .assert()
            .success()
            .stdout(predicate::str::contains("valid"));
        meshca(d)
            .args([
                "inspect",
                "--kind",
                "xcp-edge",
                "--tsb-name",
                edge,
                "--context",
                edge,
                "--kubeconfig",
                &format!("{edge}.kubeconfig"),
            ])
            .assert()
            .success()
            .stdout(predicate::str::contains(format!(
                "context {edge} istio-system/xcp-edge-cert (managed by meshca): valid"
            )));
        // Another control plane's name is not this identity.
        meshca(d)
            .args([
                "inspect",
                &format!("out/{edge}/xcp-edge"),
                "--kind",
                "xcp-edge",
                "--tsb-name",
                "elsewhere",
            ])
            .assert()
            .code(1)
            .stdout(predicate::str::contains(
                "do not include spiffe://xcp.tetrate.io/elsewhere",
            ));
    }
    // Files of a TLS kind: the secret's keys and its manifest; all kinds under one root.
    for f in ["tls.crt", "tls.key", "ca.crt", "xcp-edge-cert.yaml"] {
        assert!(d.join("out/east-1/xcp-edge").join(f).exists(), "{f}");
    }
    let root = std::fs::read(d.join("out/east-1/root-cert.pem")).unwrap();
    assert_eq!(
        std::fs::read(d.join("out/mgmt/xcp-central/ca.crt")).unwrap(),
        root
    );
    assert_eq!(
        std::fs::read(d.join("out/west-2/xcp-edge/ca.crt")).unwrap(),
        root
    );
    // A rerun reuses every kind's escrowed certificate.
    meshca(d)
        .args([
            "issue",
            "--cluster",
            "east-1",
            "--kind",
            "istio-cacerts",
            "--kind",
            "xcp-edge",
            "--json",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("\"action\": \"reused\"").count(2));
}

#[test]
fn kind_flags_are_checked_before_anything_is_issued() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    meshca(d)
        .args(["issue", "--cluster", "c1", "--kind", "xcp"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("is not a kind of certificate"));
    meshca(d)
        .args(["issue", "--cluster", "c1", "--kind", "mpc", "--kind", "mpc"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("--kind mpc is given twice"));
    meshca(d)
        .args([
            "issue",
            "--cluster",
            "c1",
            "--kind",
            "cert-manager-ca",
            "--cert-manager-secret",
            "istio-ca",
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains("is not NAMESPACE/NAME"));
    meshca(d)
        .args(["inspect", "out/c1", "--kind", "xcp-edge"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("needs --tsb-name"));
    assert!(!d.join("out").exists() && !d.join(".meshca").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn inspect_reads_cacerts_the_way_istiod_does() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = cluster(d, "c9").await;
    server.seed_istio(None);
    meshca(d)
        .args(["issue", "--cluster", "c9"])
        .assert()
        .success();
    meshca(d)
        .args(["issue", "--cluster", "other", "--kind", "cert-manager-ca"])
        .assert()
        .success();
    // A cacerts holding both layouts: istiod uses tls.*, so that is the bundle in force.
    let b64 = |p: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(d.join(p)).unwrap())
    };
    let mut data = serde_json::Map::new();
    for f in [
        "ca-cert.pem",
        "ca-key.pem",
        "cert-chain.pem",
        "root-cert.pem",
    ] {
        data.insert(f.into(), b64(&format!("out/c9/{f}")).into());
    }
    for f in ["tls.crt", "tls.key", "ca.crt"] {
        data.insert(
            f.into(),
            b64(&format!("out/other/cert-manager-ca/{f}")).into(),
        );
    }
    server
        .create(
            Resource::Secrets,
            "istio-system",
            json!({"metadata": {"name": "cacerts"}, "data": data}),
        )
        .unwrap();
    meshca(d)
        .args([
            "inspect",
            "--context",
            "c9",
            "--kubeconfig",
            "c9.kubeconfig",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("(not managed by meshca): valid"))
        .stdout(predicate::str::contains("other istio-csr CA"))
        .stdout(predicate::str::contains("c9 istio intermediate CA").not());
}

/// The kinds page's table (docs/kinds.md) is the catalogue's: every row a kind of the
/// catalogue, every kind a row, each with its default landing.
#[test]
fn the_docs_kinds_table_is_the_catalogue() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/kinds.md")).unwrap();
    let rows: Vec<&str> = readme
        .lines()
        .skip_while(|l| !l.starts_with("| kind | what | template | secret (default) |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .collect();
    let named: Vec<&str> = rows
        .iter()
        .map(|r| r.split('`').nth(1).unwrap_or_default())
        .collect();
    let catalogue: Vec<&str> = meshca_core::kind::CATALOGUE
        .iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(named, catalogue);
    for (row, p) in rows.iter().zip(&meshca_core::kind::CATALOGUE) {
        assert!(
            row.contains(&format!("`{}/{}`", p.namespace, p.secret)),
            "{row}"
        );
        if let Some(a) = p.anchors {
            assert!(row.contains(a.name) && row.contains(a.key), "{row}");
        }
    }
}
