//! `meshca fleet`: the fleet as escrow knows it, across accounts and regions, with no cluster
//! or CA call — from a local escrow and from Secrets Manager (emulated) through the binary.

use meshca_test_support::aws;

use assert_cmd::Command;
use serde_json::Value;

fn meshca(dir: &std::path::Path, emu: Option<&aws::AwsEmulator>) -> Command {
    let mut c = Command::cargo_bin("meshca").unwrap();
    c.current_dir(dir);
    if let Some(emu) = emu {
        c.envs(emu.child_env());
        for v in aws::AWS_UNSET {
            c.env_remove(v);
        }
    }
    c
}

fn json(out: &[u8]) -> Vec<Value> {
    serde_json::from_slice::<Vec<Value>>(out)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(out)))
}

#[test]
fn a_local_escrow_lists_every_cluster_and_kind_with_one_root() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    meshca(d, None)
        .args([
            "issue",
            "--cluster",
            "east",
            "--kind",
            "istio-cacerts",
            "--kind",
            "xcp-edge",
        ])
        .assert()
        .success();
    meshca(d, None)
        .args(["issue", "--cluster", "west"])
        .assert()
        .success();
    let out = meshca(d, None)
        .args(["fleet", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let rows = json(&out);
    let seen: Vec<(&str, &str, &str, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["cluster"].as_str().unwrap(),
                r["kind"].as_str().unwrap(),
                r["state"].as_str().unwrap(),
                r["generation"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("east", "istio-cacerts", "current", 1),
            ("east", "xcp-edge", "current", 1),
            ("west", "istio-cacerts", "current", 1)
        ]
    );
    assert!(
        rows.iter()
            .all(|r| r["root_sha256"] == rows[0]["root_sha256"]
                && r["root_sha256"].as_str().unwrap().len() == 16)
    );
    assert!(
        rows.iter()
            .all(|r| (364..=365).contains(&r["days_left"].as_i64().unwrap())),
        "{rows:?}"
    );
    let table = meshca(d, None)
        .args(["fleet"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let table = String::from_utf8(table).unwrap();
    assert!(
        table.starts_with("ACCOUNT")
            && table.contains("west")
            && table.ends_with("3 certificates\n"),
        "{table}"
    );
    assert!(!table.contains("PRIVATE KEY"));
}

#[test]
fn secrets_manager_records_of_home_and_a_member_account_are_listed_with_no_other_call() {
    let emu = aws::AwsEmulator::start();
    let arn = emu.hierarchy("EC_prime256v1", 2)["issuing"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let issue = |cluster: &str, prefix: Option<&str>| {
        let mut c = meshca(d, Some(&emu));
        c.args([
            "issue",
            "--cluster",
            cluster,
            "--ca-arn",
            &arn,
            "--escrow",
            "secrets-manager",
            "--validity-days",
            "30",
        ]);
        if let Some(p) = prefix {
            c.args(["--secret-prefix", p]);
        }
        c.assert().success();
    };
    issue("core", None);
    // A member's record, where the functions keep it: meshca/<account>/<region>/<cluster>.
    issue("payments", Some("meshca/222233334444/eu-west-1"));
    let calls = |op: &str| emu.calls(op);
    let (describe, issued) = (
        calls("DescribeCertificateAuthority"),
        calls("IssueCertificate"),
    );
    let out = meshca(d, Some(&emu))
        .args([
            "fleet",
            "--escrow",
            "secrets-manager",
            "--regions",
            "eu-west-1",
            "--account",
            "222233334444",
            "--json",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let rows = json(&out);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        (rows[0]["cluster"].as_str(), rows[0].get("account")),
        (Some("core"), None)
    );
    assert_eq!(
        (rows[1]["cluster"].as_str(), rows[1]["account"].as_str()),
        (Some("payments"), Some("222233334444"))
    );
    assert!(
        rows.iter()
            .all(|r| r["region"] == "eu-west-1" && r["days_left"].as_i64() == Some(29)),
        "{rows:?}"
    );
    assert_eq!(
        (
            calls("DescribeCertificateAuthority"),
            calls("IssueCertificate")
        ),
        (describe, issued),
        "escrow alone was read"
    );
    meshca(d, Some(&emu))
        .args([
            "fleet",
            "--escrow",
            "secrets-manager",
            "--region",
            "eu-west-1",
            "--account",
            "2222",
        ])
        .assert()
        .failure()
        .stderr(predicates::str::contains(
            "--account \"2222\" is not an AWS account id",
        ));
}
