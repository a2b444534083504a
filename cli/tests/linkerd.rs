//! Linkerd's identity issuer (`--kind linkerd-issuer`), judged as Linkerd judges it: by openssl
//! (not meshca's validator) and by a real TLS handshake of workloads it signs, trusting only the
//! anchors meshca writes (`ca-bundle.crt`).

use std::path::Path;

use assert_cmd::Command;
use meshca_test_support::envoy::{self, LeafKey, Mesh};
use meshca_test_support::openssl;
use predicates::prelude::*;

fn meshca(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("meshca").unwrap();
    c.current_dir(dir)
        .env_remove("MESHCA_CA_DIR")
        .env_remove("MESHCA_ESCROW_DIR")
        .env_remove("KUBECONFIG");
    c
}

fn issue(dir: &Path, args: &[&str]) {
    let out = meshca(dir).arg("issue").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "meshca issue {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn openssl_ok(dir: &Path, args: &[&str]) -> String {
    let (ok, out) = openssl::run(args, dir);
    assert!(ok, "openssl {args:?}: {out}");
    out
}

/// The `notAfter=` date of a certificate file, as openssl prints it, in seconds since the epoch.
fn not_after(dir: &Path, file: &str) -> i64 {
    let line = openssl_ok(dir, &["x509", "-in", file, "-noout", "-enddate"]);
    let date = line.trim().trim_start_matches("notAfter=");
    let out = std::process::Command::new("date")
        .args(["-u", "-d", date, "+%s"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn the_issuer_is_what_linkerds_identity_controller_accepts() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    issue(
        d,
        &[
            "--cluster",
            "l1",
            "--kind",
            "linkerd-issuer",
            "--root-key-algorithm",
            "ec-p256",
        ],
    );
    let out = d.join("out/l1/linkerd-issuer");
    for f in ["tls.crt", "tls.key", "ca.crt", "ca-bundle.crt"] {
        assert!(out.join(f).exists(), "{f}");
    }
    let text = openssl_ok(&out, &["x509", "-in", "tls.crt", "-noout", "-text"]);
    assert!(text.contains("NIST CURVE: P-256"), "P-256 key: {text}");
    assert!(
        text.contains("Signature Algorithm: ecdsa-with-SHA256"),
        "signed with ECDSA-SHA256: {text}"
    );
    assert!(
        text.contains("CA:TRUE, pathlen:0"),
        "a CA, path length 0: {text}"
    );
    // The chain verifies to the anchors, as proxies check it; the issuer ends inside its parent.
    openssl_ok(
        &out,
        &[
            "verify",
            "-CAfile",
            "ca-bundle.crt",
            "-x509_strict",
            "tls.crt",
        ],
    );
    assert!(not_after(&out, "tls.crt") <= not_after(&out, "ca-bundle.crt"));
    // The manifest carries the secret and the trust-anchor ConfigMap.
    let manifest = std::fs::read_to_string(out.join("linkerd-identity-issuer.yaml")).unwrap();
    assert!(
        manifest.contains("name: linkerd-identity-issuer"),
        "{manifest}"
    );
    assert!(manifest.contains("type: kubernetes.io/tls"), "{manifest}");
    assert!(manifest.contains("kind: ConfigMap"), "{manifest}");
    assert!(
        manifest.contains("name: linkerd-identity-trust-roots"),
        "{manifest}"
    );
    assert!(manifest.contains("meshca.io/cluster: l1"), "{manifest}");
}

/// Before any certificate is paid for: an issuer whose parent is not an EC P-256 CA, or a
/// configured key other than P-256, is refused with the reason; no root is created for it.
#[test]
fn a_parent_or_key_linkerd_would_refuse_is_refused_before_issuing() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    meshca(d)
        .args(["issue", "--cluster", "l1", "--kind", "linkerd-issuer"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "linkerd-issuer must be signed by an ec-p256 CA",
        ))
        .stderr(predicate::str::contains("--root-key-algorithm ec-p256"));
    assert!(!d.join(".meshca").exists(), "nothing created");
    // An RSA root that exists: refused at the authority, nothing issued.
    issue(
        d,
        &["--cluster", "istio", "--root-key-algorithm", "rsa-2048"],
    );
    let issued = || {
        std::fs::read_dir(d.join(".meshca/ca/issued"))
            .unwrap()
            .count()
    };
    let before = issued();
    meshca(d)
        .args(["issue", "--cluster", "l1", "--kind", "linkerd-issuer"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "linkerd-issuer must be signed by an ec-p256 CA",
        ))
        .stderr(
            predicate::str::contains("the key of local:")
                .and(predicate::str::contains("is rsa-2048")),
        );
    assert_eq!(issued(), before, "no certificate issued");
    meshca(d)
        .args([
            "issue",
            "--cluster",
            "l2",
            "--kind",
            "linkerd-issuer",
            "--key-algorithm",
            "rsa-2048",
            "--ca-dir",
            "p256",
            "--root-key-algorithm",
            "ec-p256",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "--key-algorithm rsa-2048: linkerd-issuer is ec-p256 only",
        ));
}

/// Workloads signed by two clusters' issuers of one root complete mTLS trusting only
/// `ca-bundle.crt`; one signed under another root's issuer is refused as an unknown CA.
#[tokio::test]
async fn workloads_of_two_clusters_trust_each_other_through_the_anchors_alone() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    let p256 = [
        "--root-key-algorithm",
        "ec-p256",
        "--kind",
        "linkerd-issuer",
    ];
    issue(d, &[&["--cluster", "l1"][..], &p256].concat());
    issue(d, &[&["--cluster", "l2"][..], &p256].concat());
    issue(
        d,
        &[
            &[
                "--cluster",
                "x",
                "--ca-dir",
                "other",
                "--escrow-dir",
                "other-escrow",
            ][..],
            &p256,
        ]
        .concat(),
    );
    let workload = |cluster: &str, name: &str| {
        let dir = d.join("out").join(cluster).join("linkerd-issuer");
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        envoy::sign_workload(
            name,
            &format!("spiffe://identity.linkerd.cluster.local/ns/{name}/sa/{name}"),
            &read("tls.crt"),
            &read("tls.key"),
            &read("tls.crt"),
            &read("ca-bundle.crt"),
            LeafKey::EcP256,
        )
    };
    let mesh = Mesh::start(&[
        workload("l1", "web"),
        workload("l2", "api"),
        workload("x", "stranger"),
    ])
    .await;
    let (there, back) = mesh.both_ways("web", "api").await;
    assert!(there.completed() && back.completed(), "{there:?} {back:?}");
    let (there, back) = mesh.both_ways("web", "stranger").await;
    assert!(there.is_unknown_ca(), "{there:?}");
    assert!(back.is_unknown_ca(), "{back:?}");
}
