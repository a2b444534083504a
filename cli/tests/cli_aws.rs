//! `meshca issue --ca-arn …` against the emulated AWS, through the built binary.

use meshca_test_support::aws;

use assert_cmd::Command;
use predicates::prelude::*;

fn meshca(dir: &std::path::Path, emu: &aws::AwsEmulator) -> Command {
    let mut c = Command::cargo_bin("meshca").unwrap();
    c.current_dir(dir).envs(emu.child_env());
    for v in aws::AWS_UNSET {
        c.env_remove(v);
    }
    c
}

#[test]
fn issue_from_pca_into_secrets_manager_then_inspect() {
    let emu = aws::AwsEmulator::start();
    let h = emu.hierarchy("EC_prime256v1", 2);
    let arn = h["issuing"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    meshca(d, &emu)
        .args([
            "issue",
            "--cluster",
            "prod-eu-1",
            "--ca-arn",
            arn,
            "--escrow",
            "secrets-manager",
            "--validity-days",
            "30",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("prod-eu-1: issued generation 1"));
    meshca(d, &emu)
        .args(["inspect", "out/prod-eu-1"])
        .assert()
        .success()
        .stdout(predicate::str::contains("out/prod-eu-1: valid"))
        .stdout(predicate::str::contains("meshca test issuing CA 1"));
    let manifest = std::fs::read_to_string(d.join("out/prod-eu-1/cacerts.yaml")).unwrap();
    assert!(
        manifest.contains(&format!("meshca.io/certificate-arn: {arn}/certificate/")),
        "{manifest}"
    );
    assert!(
        !d.join(".meshca/escrow").exists(),
        "escrow went to Secrets Manager, not the local directory"
    );

    // A second run finds the record in Secrets Manager: no new certificate.
    meshca(d, &emu)
        .args([
            "issue",
            "--cluster",
            "prod-eu-1",
            "--ca-arn",
            arn,
            "--escrow",
            "secrets-manager",
            "--validity-days",
            "30",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("reused generation 1"));
    assert_eq!(emu.calls("IssueCertificate"), 1);

    // CRL mode for a fleet escrowed in AWS is the functions' setting: said, naming it.
    meshca(d, &emu)
        .args([
            "crl",
            "enable",
            "--ca-arn",
            arn,
            "--escrow",
            "secrets-manager",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "CRL mode is the functions' setting (CDK crlMode, Terraform crl_mode)",
        ));
}

#[test]
fn pca_errors_are_clear() {
    let emu = aws::AwsEmulator::start();
    let h = emu.hierarchy("EC_prime256v1", 1);
    let arn = h["issuing"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    emu.control(
        "ca/status",
        serde_json::json!({"arn": arn, "status": "DISABLED"}),
    );
    meshca(dir.path(), &emu)
        .args(["issue", "--cluster", "c1", "--ca-arn", arn])
        .assert()
        .failure()
        .stderr(predicate::str::contains("is DISABLED, not ACTIVE"));
    meshca(dir.path(), &emu)
        .args([
            "issue",
            "--cluster",
            "c1",
            "--ca-arn",
            "arn:aws:iam::1:role/x",
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains("not a certificate authority ARN"));
    assert!(!dir.path().join("out").exists());
}
