//! `meshca issue --vault-addr …` against a real OpenBao dev server, through the built binary.

use assert_cmd::Command;
use meshca_test_support::vault::Bao;
use predicates::prelude::*;

const POLICY: &str = include_str!("../../shared/vault/meshca-policy.hcl");

fn meshca(dir: &std::path::Path, bao: &Bao) -> Command {
    let mut c = Command::cargo_bin("meshca").unwrap();
    c.current_dir(dir)
        .env_remove("VAULT_TOKEN")
        .env_remove("VAULT_ADDR")
        .env("VAULT_CACERT", bao.ca_file());
    c
}

#[test]
fn issue_from_openbao_with_a_token_file_then_reuse_and_rotate() {
    let bao = Bao::start();
    bao.two_level_pki();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, bao.token_with_policy("meshca", POLICY)).unwrap();
    let issue = |extra: &[&str]| {
        let mut c = meshca(dir.path(), &bao);
        c.args([
            "issue",
            "--cluster",
            "c1",
            "--vault-addr",
            &bao.addr,
            "--vault-token-file",
            token.to_str().unwrap(),
        ])
        .args(extra);
        c
    };
    issue(&[])
        .assert()
        .success()
        .stdout(predicate::str::contains("c1: issued generation 1"));
    let out = dir.path().join("out/c1");
    let verify = std::process::Command::new("openssl")
        .args([
            "verify",
            "-CAfile",
            "root-cert.pem",
            "-untrusted",
            "cert-chain.pem",
            "ca-cert.pem",
        ])
        .current_dir(&out)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let root = std::fs::read(out.join("root-cert.pem")).unwrap();
    issue(&[])
        .assert()
        .success()
        .stdout(predicate::str::contains("c1: reused generation 1"));
    issue(&["--force"])
        .assert()
        .success()
        .stdout(predicate::str::contains("c1: issued generation 2"));
    assert_eq!(
        std::fs::read(out.join("root-cert.pem")).unwrap(),
        root,
        "root-cert.pem byte for byte the same"
    );
    // The token via VAULT_TOKEN works the same; a token Vault refuses is a clear error.
    meshca(dir.path(), &bao)
        .env("VAULT_TOKEN", "hvs.not-a-token")
        .args(["issue", "--cluster", "c2", "--vault-addr", &bao.addr])
        .assert()
        .failure()
        .stderr(predicate::str::contains("permission denied"));
    assert!(!dir.path().join("out/c2").exists());
}

#[test]
fn vault_flags_are_checked_before_anything_is_issued() {
    let bao = Bao::start();
    let dir = tempfile::tempdir().unwrap();
    meshca(dir.path(), &bao)
        .args(["issue", "--cluster", "c1", "--vault-addr", &bao.addr])
        .assert()
        .failure()
        .stderr(predicate::str::contains("--vault-addr needs a login"));
    meshca(dir.path(), &bao)
        .args([
            "issue",
            "--cluster",
            "c1",
            "--vault-addr",
            "vault:8200",
            "--vault-token-file",
            "/dev/null",
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains("is not an http(s) URL"));
    meshca(dir.path(), &bao)
        .args([
            "issue",
            "--cluster",
            "c1",
            "--vault-addr",
            &bao.addr,
            "--ca-arn",
            "arn:aws:acm-pca:eu-west-1:1:certificate-authority/x",
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains("cannot be used with"));
    // No mount `pki` on a fresh server: Vault's words, nothing written.
    let token = dir.path().join("token");
    std::fs::write(&token, &bao.root_token).unwrap();
    meshca(dir.path(), &bao)
        .args([
            "issue",
            "--cluster",
            "c1",
            "--vault-addr",
            &bao.addr,
            "--vault-token-file",
            token.to_str().unwrap(),
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains("not found"));
    assert!(!dir.path().join("out").exists());
}
