//! The built `meshca` binary, run as a user would, in a fresh directory each time.

use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;

fn meshca(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("meshca").unwrap();
    c.current_dir(dir)
        .env_remove("MESHCA_CA_DIR")
        .env_remove("MESHCA_ESCROW_DIR");
    c
}

fn read(p: impl AsRef<Path>) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

#[test]
fn issue_inspect_reuse_force() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    meshca(d)
        .args(["issue", "--cluster", "demo"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "demo: issued generation 1 (no bundle escrowed for this cluster)",
        ))
        .stdout(predicate::str::contains(
            "kubectl apply -f out/demo/cacerts.yaml",
        ));
    use std::os::unix::fs::PermissionsExt;
    for (f, mode) in [
        ("ca-key.pem", 0o600),
        ("cacerts.yaml", 0o600),
        ("ca-cert.pem", 0o644),
        ("cert-chain.pem", 0o644),
        ("root-cert.pem", 0o644),
    ] {
        let m = std::fs::metadata(d.join("out/demo").join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(m, mode, "{f}");
    }
    let m = std::fs::metadata(d.join(".meshca/ca/root-key.pem"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(m, 0o600);

    meshca(d)
        .args(["inspect", "out/demo"])
        .assert()
        .success()
        .stdout(predicate::str::contains("out/demo: valid"));
    meshca(d)
        .args(["inspect", "out/demo/cacerts.yaml"])
        .assert()
        .success()
        .stdout(predicate::str::contains("generation 1"));

    let cert1 = read(d.join("out/demo/ca-cert.pem"));
    let root1 = read(d.join("out/demo/root-cert.pem"));
    meshca(d)
        .args(["issue", "--cluster", "demo"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "demo: reused generation 1 (escrowed bundle is valid",
        ));
    assert_eq!(read(d.join("out/demo/ca-cert.pem")), cert1);

    meshca(d)
        .args(["issue", "--cluster", "demo", "--force"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "demo: issued generation 2 (renewal forced)",
        ));
    assert_ne!(read(d.join("out/demo/ca-cert.pem")), cert1);
    assert_eq!(
        read(d.join("out/demo/root-cert.pem")),
        root1,
        "root-cert.pem must stay byte-identical"
    );
}

#[test]
fn json_output_for_machines() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = meshca(d)
        .args([
            "issue",
            "--cluster",
            "c1",
            "--key-algorithm",
            "rsa-2048",
            "--validity-days",
            "30",
            "-O",
            "Example Corp",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["action"], "issued");
    assert_eq!(v["key_algorithm"], "rsa-2048");
    assert_eq!(v["ca_cert"]["path_len"], 0);
    assert!(
        v["ca_cert"]["subject"]
            .as_str()
            .unwrap()
            .contains("O=Example Corp")
    );
    assert!((28..=30).contains(&v["ca_cert"]["days_left"].as_i64().unwrap()));

    let out = meshca(d)
        .args(["inspect", "out/c1", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["error"], serde_json::Value::Null);
    assert_eq!(v["chain"].as_array().unwrap().len(), 2);
    let secret = String::from_utf8_lossy(&out.stdout);
    assert!(
        !secret.contains("PRIVATE KEY"),
        "inspect must not print key material"
    );
}

#[test]
fn inspect_rejects_a_broken_bundle_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    meshca(d)
        .args(["issue", "--cluster", "a"])
        .assert()
        .success();
    meshca(d)
        .args(["issue", "--cluster", "b"])
        .assert()
        .success();
    // b's key in a's bundle.
    std::fs::copy(d.join("out/b/ca-key.pem"), d.join("out/a/ca-key.pem")).unwrap();
    meshca(d)
        .args(["inspect", "out/a"])
        .assert()
        .failure()
        .code(1)
        .stdout(predicate::str::contains(
            "INVALID: ca-key.pem does not match ca-cert.pem",
        ));
    let out = meshca(d)
        .args(["inspect", "out/a", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["error"], "ca-key.pem does not match ca-cert.pem");

    std::fs::remove_file(d.join("out/b/cert-chain.pem")).unwrap();
    meshca(d)
        .args(["inspect", "out/b"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("cert-chain.pem is missing"));
    meshca(d)
        .args(["inspect", "nowhere"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("nowhere does not exist"));
}

/// Each bad input: a clear message, a non-zero exit, and no output, escrow record or
/// certificate left behind.
#[test]
fn bad_input_fails_cleanly() {
    let cases: &[(&[&str], &str)] = &[
        (&["--cluster", "Demo.1"], "is not an EKS cluster name"),
        (
            &["--cluster", "demo", "--key-algorithm", "dsa-1024"],
            "unknown key algorithm \"dsa-1024\"",
        ),
        (
            &["--cluster", "demo", "--validity-days", "0"],
            "--validity-days must be at least 1",
        ),
        (
            &["--cluster", "demo", "--validity-days", "5000"],
            "after the issuing CA itself",
        ),
        (
            &["--cluster", "demo", "--not-after", "next tuesday"],
            "neither RFC 3339",
        ),
        (
            &["--cluster", "demo", "--not-after", "2001-01-01"],
            "less than a day away",
        ),
        (
            &["--cluster", "demo", "--common-name", &"x".repeat(80)],
            "at most 64",
        ),
        // Settings that can never work are refused before any key exists.
        (
            &["--cluster", "demo", "--validity-days", "1"],
            "would be refused at once",
        ),
        (
            &["--cluster", "demo", "--validity-days", "2"],
            "renewed on every run",
        ),
        (
            &[
                "--cluster",
                "demo",
                "--validity-days",
                "30",
                "--renew-before-days",
                "30",
            ],
            "renewed on every run",
        ),
        (
            &[
                "--cluster",
                "mgmt",
                "--kind",
                "xcp-central",
                "--central-address",
                "https://central.example:8443/",
            ],
            "(the host alone: central.example)",
        ),
        (
            &[
                "--cluster",
                "mgmt",
                "--kind",
                "xcp-central",
                "--central-address",
                "",
            ],
            "it is empty",
        ),
        (
            &[
                "--cluster",
                "east",
                "--kind",
                "xcp-edge",
                "--tsb-name",
                "Bad Name/../x",
            ],
            "not one SPIFFE path segment",
        ),
        (
            &["--cluster", "east", "--tsb-name", "prod-east"],
            "--tsb-name is for --kind xcp-edge",
        ),
        (
            &["--cluster", "mgmt", "--central-address", "central.example"],
            "--central-address is for --kind xcp-central",
        ),
        (
            &["--cluster", "c1", "--cert-manager-secret", "a/b"],
            "--cert-manager-secret is for --kind cert-manager-ca",
        ),
    ];
    for (args, message) in cases {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut cmd = meshca(d);
        cmd.arg("issue").args(*args);
        cmd.assert()
            .failure()
            .code(1)
            .stderr(predicate::str::contains(*message));
        assert!(!d.join("out").exists(), "{args:?} left output behind");
        assert!(
            !d.join(".meshca/escrow").exists(),
            "{args:?} left an escrow record"
        );
        assert!(
            !d.join(".meshca/ca/issued").exists(),
            "{args:?} issued a certificate"
        );
    }
}

#[test]
fn unwritable_output_fails_before_issuing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("out"), "a file where the output directory should be").unwrap();
    meshca(d)
        .args(["issue", "--cluster", "demo"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "output directory out/demo cannot be created",
        ));
    assert!(!d.join(".meshca/escrow").exists());
    assert!(!d.join(".meshca/ca/issued").exists());
}

#[test]
fn corrupt_ca_directory_is_refused_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    meshca(d)
        .args(["issue", "--cluster", "demo"])
        .assert()
        .success();
    let root = read(d.join(".meshca/ca/root-cert.pem"));
    // A well-formed PEM block whose contents are no key at all.
    let not_a_key = format!(
        "-----BEGIN {label}-----\nAAAA\n-----END {label}-----\n",
        label = "PRIVATE KEY"
    );
    std::fs::write(d.join(".meshca/ca/root-key.pem"), not_a_key).unwrap();
    meshca(d)
        .args(["issue", "--cluster", "other"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "local CA at .meshca/ca is unusable",
        ));
    assert_eq!(read(d.join(".meshca/ca/root-cert.pem")), root);
    assert!(!d.join("out/other").exists());

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca-file"), "x").unwrap();
    meshca(dir.path())
        .args(["issue", "--cluster", "demo", "--ca-dir", "ca-file"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("it is not a directory"));
}

#[test]
fn help_teaches() {
    let dir = tempfile::tempdir().unwrap();
    meshca(dir.path())
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("meshca issue --cluster demo"))
        .stdout(predicate::str::contains(
            "kubectl apply -f out/demo/cacerts.yaml",
        ));
    meshca(dir.path())
        .args(["issue", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("--key-algorithm"))
        .stdout(predicate::str::contains(
            "rsa-2048, rsa-3072, rsa-4096, ec-p256, ec-p384",
        ))
        .stdout(predicate::str::contains(
            "root-cert.pem stays byte-identical",
        ));
    meshca(dir.path())
        .arg("issue")
        .assert()
        .failure()
        .code(2)
        .stderr(predicate::str::contains("--cluster"));
}

#[test]
fn a_closed_pipe_ends_output_quietly() {
    let dir = tempfile::tempdir().unwrap();
    meshca(dir.path())
        .args(["issue", "--cluster", "demo"])
        .assert()
        .success();
    // Like `meshca inspect out/demo | true`: the reader is gone before meshca writes.
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("meshca"))
        .args(["inspect", "out/demo"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The longest name EKS allows issues with a CN that fits (the CN is abbreviated, distinctly),
/// as does a name with capitals and underscores.
#[test]
fn every_eks_cluster_name_issues() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let long = format!("Prod_{}", "x".repeat(95));
    for name in ["Prod_EU_1", long.as_str()] {
        meshca(d)
            .args(["issue", "--cluster", name])
            .assert()
            .success()
            .stdout(predicate::str::contains(format!(
                "{name}: issued generation 1"
            )));
        let (ok, out) = meshca_test_support::openssl::run(
            &["x509", "-noout", "-subject", "-in", "ca-cert.pem"],
            &d.join("out").join(name),
        );
        assert!(ok && out.contains("istio intermediate CA"), "{out}");
    }
}

/// A forgotten --ca-dir would move a cluster to another root (a new default root) and cut it off
/// from its mesh: refused, naming the recorded authority and the ways to change it on purpose;
/// the recorded authority goes on working, and --new-root is the lab's escape hatch.
#[test]
fn a_forgotten_ca_dir_never_moves_a_cluster_to_another_root() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    meshca(d)
        .args(["issue", "--cluster", "x", "--ca-dir", "caA"])
        .assert()
        .success();
    let before = std::fs::read_to_string(d.join("out/x/ca-cert.pem")).unwrap();
    meshca(d)
        .args(["issue", "--cluster", "x"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("shares no root with it"))
        .stderr(predicate::str::contains("caA"))
        .stderr(predicate::str::contains("meshca rotate-root start"));
    assert_eq!(
        std::fs::read_to_string(d.join("out/x/ca-cert.pem")).unwrap(),
        before,
        "x's bundle untouched"
    );
    meshca(d)
        .args(["issue", "--cluster", "x", "--ca-dir", "caA"])
        .assert()
        .success()
        .stdout(predicate::str::contains("x: reused generation 1"));
    meshca(d)
        .args(["issue", "--cluster", "x", "--new-root"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "x: issued generation 2 (the authority's root changed)",
        ));
}

/// A root is created only by a command that says so: the first issue on a new machine, once.
#[test]
fn the_first_issue_says_it_created_a_root_and_later_ones_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    meshca(d)
        .args(["issue", "--cluster", "a"])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "created a new local root CA in .meshca/ca",
        ));
    meshca(d)
        .args(["issue", "--cluster", "b"])
        .assert()
        .success()
        .stderr(predicate::str::contains("created a new").not());
}

/// A cluster whose escrow record was deleted issues again under its name: the local CA's
/// idempotency token of generation 1 is bound to its CSR, so the new key gets a new certificate
/// (it once handed back the old one: "ca-key.pem does not match ca-cert.pem").
#[test]
fn a_deleted_escrow_record_does_not_block_the_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    meshca(d)
        .args(["issue", "--cluster", "v"])
        .assert()
        .success();
    let first = std::fs::read_to_string(d.join("out/v/ca-cert.pem")).unwrap();
    std::fs::remove_dir_all(d.join(".meshca/escrow/v")).unwrap();
    meshca(d)
        .args(["issue", "--cluster", "v"])
        .assert()
        .success()
        .stdout(predicate::str::contains("v: issued generation 1"));
    assert_ne!(
        std::fs::read_to_string(d.join("out/v/ca-cert.pem")).unwrap(),
        first
    );
    meshca(d).args(["inspect", "out/v"]).assert().success();
}

/// Finding 3 of the guard rails: a rerun keeps the cluster's recorded terms. A flag left out
/// means "as recorded" (a healthy RSA bundle is reused, not called invalid); a flag that differs
/// is refused, naming the record and --force; with --force the change is issued and kept in the
/// record's history, which `meshca fleet` shows.
#[test]
fn reruns_keep_the_recorded_terms_and_a_change_needs_force() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    meshca(d)
        .args([
            "issue",
            "--cluster",
            "x",
            "--key-algorithm",
            "rsa-2048",
            "--validity-days",
            "90",
            "--common-name",
            "x intermediate",
        ])
        .assert()
        .success();
    meshca(d)
        .args(["issue", "--cluster", "x"])
        .assert()
        .success()
        .stdout(predicate::str::contains("x: reused generation 1"));
    for (flag, value, named) in [
        ("--validity-days", "365", "validity: 90 days → 365 days"),
        (
            "--common-name",
            "other",
            "common name: x intermediate → other",
        ),
        (
            "--key-algorithm",
            "ec-p256",
            "key algorithm: rsa-2048 → ec-p256",
        ),
    ] {
        meshca(d)
            .args(["issue", "--cluster", "x", flag, value])
            .assert()
            .code(1)
            .stderr(predicate::str::contains(
                "x is recorded with rsa-2048, 90 days",
            ))
            .stderr(predicate::str::contains(named))
            .stderr(predicate::str::contains("--force"));
    }
    meshca(d)
        .args([
            "issue",
            "--cluster",
            "x",
            "--validity-days",
            "120",
            "--force",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("x: issued generation 2"));
    // The new validity is the record now; the key algorithm stays as recorded.
    meshca(d)
        .args(["issue", "--cluster", "x", "--validity-days", "120"])
        .assert()
        .success()
        .stdout(predicate::str::contains("x: reused generation 2"));
    let out = meshca(d).args(["fleet", "--json"]).output().unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = &rows[0];
    assert_eq!(row["terms"]["key_algorithm"], "rsa-2048", "{row}");
    assert_eq!(row["terms"]["validity"]["days"], 120, "{row}");
    assert_eq!(row["terms"]["common_name"], "x intermediate", "{row}");
    assert_eq!(row["history"][0]["generation"], 2, "{row}");
    assert_eq!(
        row["history"][0]["changes"][0], "validity: 90 days → 120 days",
        "{row}"
    );
    meshca(d)
        .args(["fleet"])
        .assert()
        .success()
        .stdout(predicate::str::contains("rsa-2048, 120 days"));
    // `inspect` of the manifest (it names its owner) shows the record's terms beside it.
    meshca(d)
        .args(["inspect", "out/x/cacerts.yaml"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "recorded     rsa-2048, 120 days, renews with a third left",
        ));
}

/// `meshca retire` decommissions a cluster by hand: without --yes it only says what it would do;
/// with it each kind's certificate is revoked at the authority and its record retired, the
/// fleet no longer lists it, and the name can be issued again, with a fresh certificate.
#[test]
fn retire_revokes_every_kind_and_frees_the_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    meshca(d)
        .args([
            "issue",
            "--cluster",
            "old",
            "--kind",
            "istio-cacerts",
            "--kind",
            "xcp-edge",
        ])
        .assert()
        .success();
    meshca(d)
        .args(["issue", "--cluster", "kept"])
        .assert()
        .success();
    let revoked_dir = d.join(".meshca/ca/revoked");
    meshca(d)
        .args(["retire", "--cluster", "old"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("would revoke old: generation 1"))
        .stdout(predicate::str::contains("would revoke old.xcp-edge"))
        .stderr(predicate::str::contains("add --yes"));
    assert!(!revoked_dir.exists(), "nothing revoked without --yes");
    meshca(d)
        .args(["retire", "--cluster", "old", "--yes"])
        .assert()
        .success()
        .stdout(predicate::str::contains("old: revoked local:"))
        .stdout(predicate::str::contains("old.xcp-edge: revoked local:"));
    assert_eq!(std::fs::read_dir(&revoked_dir).unwrap().count(), 2);
    let out = meshca(d).args(["fleet", "--json"]).output().unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let clusters: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["cluster"].as_str().unwrap())
        .collect();
    assert_eq!(clusters, ["kept"]);
    meshca(d)
        .args(["retire", "--cluster", "old", "--yes"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("nothing is escrowed for old"));
    let before = std::fs::read_to_string(d.join("out/old/ca-cert.pem")).unwrap();
    meshca(d)
        .args(["issue", "--cluster", "old"])
        .assert()
        .success()
        .stdout(predicate::str::contains("old: issued generation 1"));
    assert_ne!(
        std::fs::read_to_string(d.join("out/old/ca-cert.pem")).unwrap(),
        before
    );
}

/// `issue --dry-run` says what would be created, issued and written, and does none of it: no
/// root, no escrow record, no file; on a cluster with a record it says reuse or renew, and a
/// flag that differs from the record is refused as in a real run.
#[test]
fn a_dry_run_says_what_would_happen_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    meshca(d)
        .args(["issue", "--cluster", "x", "--dry-run"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "would create a new local root CA in .meshca/ca",
        ))
        .stdout(predicate::str::contains(
            "x: would issue generation 1 (no bundle escrowed for this cluster) with ec-p256, 365 days",
        ))
        .stdout(predicate::str::contains("would write  out/x/"))
        .stderr(predicate::str::contains("nothing was created"));
    assert!(!d.join(".meshca").exists(), "no root, no escrow");
    assert!(!d.join("out").exists(), "no files");
    meshca(d)
        .args(["issue", "--cluster", "x"])
        .assert()
        .success();
    let before = std::fs::read_to_string(d.join("out/x/ca-cert.pem")).unwrap();
    meshca(d)
        .args(["issue", "--cluster", "x", "--dry-run"])
        .assert()
        .success()
        .stdout(predicate::str::contains("x: would reuse generation 1"));
    meshca(d)
        .args(["issue", "--cluster", "x", "--dry-run", "--force"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "x: would issue generation 2 (renewal forced)",
        ));
    meshca(d)
        .args([
            "issue",
            "--cluster",
            "x",
            "--dry-run",
            "--validity-days",
            "90",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("validity: 365 days → 90 days"));
    assert_eq!(
        std::fs::read_to_string(d.join("out/x/ca-cert.pem")).unwrap(),
        before
    );
    let out = meshca(d).args(["fleet", "--json"]).output().unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["generation"], 1);
}
