//! `meshca revoke` on the embedded CA, as a user runs it: what a dry run says, what is refused,
//! the hold that keeps a revoked cluster from being issued again, a second revocation that
//! changes nothing, a run stopped between the hold and the authority, and the lift.

use assert_cmd::Command;
use predicates::prelude::*;

fn meshca(dir: &std::path::Path) -> Command {
    let mut cmd = Command::cargo_bin("meshca").unwrap();
    cmd.current_dir(dir)
        .env_remove("KUBECONFIG")
        .env("NO_COLOR", "1");
    cmd
}

fn revoked(dir: &std::path::Path) -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir(dir.join(".meshca/ca/revoked")) else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = entries
        .map(|e| {
            let path = e.unwrap().path();
            let reason = std::fs::read_to_string(&path).unwrap();
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                reason,
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_revoked_cluster_is_held_until_lifted_and_its_neighbours_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for c in ["x", "y"] {
        meshca(d).args(["issue", "--cluster", c]).assert().success();
    }
    let serial = |c: &str| {
        let out = meshca(d).args(["fleet", "--json"]).output().unwrap();
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let row = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["cluster"] == c)
            .cloned();
        row.map(|r| r["generation"].as_u64().unwrap())
    };
    meshca(d)
        .args([
            "revoke",
            "--cluster",
            "x",
            "--reason",
            "key-compromise",
            "--dry-run",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "would revoke (key-compromise) and hold x: generation 1",
        ))
        .stdout(predicate::str::contains(
            "would deliver nothing: CRL mode is off, so no other cluster's proxies would refuse it",
        ));
    meshca(d)
        .args(["revoke", "--cluster", "x", "--reason", "stolen", "--yes"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "one of: key-compromise, ca-compromise",
        ));
    meshca(d)
        .args(["revoke", "--cluster", "x", "--reason", "key-compromise"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("give --yes"));
    meshca(d)
        .args([
            "revoke",
            "--cluster",
            "nobody",
            "--reason",
            "key-compromise",
            "--yes",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("nothing is escrowed for nobody"));
    assert!(
        revoked(d).is_empty(),
        "nothing revoked by a dry run or a refusal"
    );

    meshca(d)
        .args([
            "revoke",
            "--cluster",
            "x",
            "--reason",
            "key-compromise",
            "--yes",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "at the authority; generation 1 held",
        ));
    let fleet = meshca(d).args(["fleet", "--json"]).output().unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&fleet.stdout).unwrap();
    let x = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["cluster"] == "x")
        .unwrap();
    assert_eq!(x["state"], "held", "{x}");
    assert_eq!(x["revoked"]["reason"], "KEY_COMPROMISE", "{x}");
    meshca(d)
        .args(["fleet"])
        .assert()
        .success()
        .stdout(predicate::str::contains(" held "));
    let first = revoked(d);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].1, "KEY_COMPROMISE");
    // Held: a rerun of issue (as a sweep or an event would) issues and writes nothing.
    let before = std::fs::read_to_string(d.join("out/x/ca-cert.pem")).unwrap();
    meshca(d)
        .args(["issue", "--cluster", "x", "--force"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "held, nothing is issued or delivered for it",
        ))
        .stderr(predicate::str::contains("meshca revoke --cluster x --lift"));
    assert_eq!(
        std::fs::read_to_string(d.join("out/x/ca-cert.pem")).unwrap(),
        before
    );
    meshca(d)
        .args(["issue", "--cluster", "y"])
        .assert()
        .success();
    // Again: nothing changes, nothing is revoked twice.
    meshca(d)
        .args([
            "revoke",
            "--cluster",
            "x",
            "--reason",
            "key-compromise",
            "--yes",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("nothing changed"));
    assert_eq!(revoked(d), first);

    meshca(d)
        .args(["revoke", "--cluster", "x", "--lift", "--yes"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "hold lifted (generation 1 stays revoked)",
        ));
    meshca(d)
        .args(["issue", "--cluster", "x"])
        .assert()
        .success()
        .stdout(predicate::str::contains("x: issued generation 2"));
    assert_ne!(
        std::fs::read_to_string(d.join("out/x/ca-cert.pem")).unwrap(),
        before
    );
    assert_eq!(serial("x"), Some(2));
    meshca(d)
        .args(["revoke", "--cluster", "x", "--lift", "--yes"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("not held by a revocation"));
}

/// A run stopped after the hold was written and before the authority revoked (here: the local
/// CA cannot write its revocation) leaves the cluster held; the next revoke finishes the job.
#[test]
fn a_revocation_the_authority_did_not_take_is_held_and_finished_by_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    meshca(d)
        .args(["issue", "--cluster", "x"])
        .assert()
        .success();
    let blocked = d.join(".meshca/ca/revoked");
    std::fs::write(&blocked, "not a directory").unwrap();
    meshca(d)
        .args([
            "revoke",
            "--cluster",
            "x",
            "--reason",
            "ca-compromise",
            "--yes",
        ])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("revoke"));
    meshca(d)
        .args(["issue", "--cluster", "x"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("held"));
    std::fs::remove_file(&blocked).unwrap();
    meshca(d)
        .args([
            "revoke",
            "--cluster",
            "x",
            "--reason",
            "ca-compromise",
            "--yes",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "at the authority; generation 1 held",
        ));
    let done = revoked(d);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].1, "CERTIFICATE_AUTHORITY_COMPROMISE");
}

/// CRL mode can be turned on before the first cluster; afterwards each issue publishes the
/// fleet's CRLs, names the kinds they cannot protect, and leaves `--json` output one document.
#[test]
fn crl_mode_starts_on_an_empty_fleet_and_names_what_it_cannot_protect() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    meshca(d)
        .args(["crl", "enable"])
        .assert()
        .success()
        .stdout(predicate::str::contains("CRL mode is on"));
    let out = meshca(d)
        .args([
            "issue",
            "--cluster",
            "c1",
            "--kind",
            "istio-cacerts",
            "--kind",
            "xcp-edge",
        ])
        .args(["--tsb-name", "c1", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc.as_array().map(Vec::len), Some(2), "{doc}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("c1.xcp-edge: not protected"), "{said}");
    assert!(said.contains("c1: ca-crl.pem written"), "{said}");
    assert!(d.join("out/c1/ca-crl.pem").exists());
    assert!(!d.join("out/c1/xcp-edge/ca-crl.pem").exists());
}

/// The serial (hex, lowercase) of the intermediate in a cluster's files.
fn serial_in_files(dir: &std::path::Path, cluster: &str) -> String {
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(dir.join("out").join(cluster).join("ca-cert.pem"))
        .output()
        .expect("openssl runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("serial=")
        .to_ascii_lowercase()
}

/// A renewed cluster's earlier intermediate is still valid (its workloads keep presenting it
/// until their leaves rotate) and lived on the same machines: the ledger keeps it, and a
/// revocation revokes both generations, each once.
#[test]
fn a_revocation_reaches_every_generation_still_valid_through_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    meshca(d)
        .args(["issue", "--cluster", "x"])
        .assert()
        .success();
    let first = serial_in_files(d, "x");
    meshca(d)
        .args(["issue", "--cluster", "x", "--force"])
        .assert()
        .success()
        .stdout(predicate::str::contains("issued generation 2"));
    let second = serial_in_files(d, "x");
    assert_ne!(first, second);
    // The dry run names the earlier generation the ledger keeps, still valid.
    meshca(d)
        .args([
            "revoke",
            "--cluster",
            "x",
            "--reason",
            "superseded",
            "--dry-run",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("x: generation 2"))
        .stdout(predicate::str::contains("  and generation 1 (certificate "))
        .stdout(predicate::str::contains(format!(
            "serial {first}), still valid until"
        )));

    let doc = revoke_json(d, "x");
    let serials: Vec<String> = doc[0]["outcome"]["serials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap()
                .trim_start_matches('0')
                .to_ascii_lowercase()
        })
        .collect();
    let plain = |s: &str| s.trim_start_matches('0').to_string();
    assert!(serials.contains(&plain(&first)), "{doc}");
    assert!(serials.contains(&plain(&second)), "{doc}");
    assert_eq!(doc[0]["outcome"].get("unknown"), None, "{doc}");
    let names: Vec<String> = revoked(d).into_iter().map(|(name, _)| name).collect();
    assert_eq!(names.len(), 2, "{names:?}");

    // Again: nothing new is revoked, not even the earlier generation.
    meshca(d)
        .args([
            "revoke",
            "--cluster",
            "x",
            "--reason",
            "key-compromise",
            "--yes",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("revoked and held already"));
    assert_eq!(revoked(d).len(), 2);
}

/// `meshca fleet` shows each cluster's revocation readiness: off before CRL mode, ready with
/// the days until its CRLs lapse after, n/a for a kind whose reader takes no CRL, missing when
/// the file is gone and stale when it lacks the cluster's own CRL (istiod would refuse it).
#[test]
fn the_fleet_view_says_which_clusters_are_revocation_ready() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let crl_of = |cluster: &str, kind: &str| {
        let out = meshca(d).args(["fleet", "--json"]).output().unwrap();
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["cluster"] == cluster && r["kind"] == kind)
            .map(|r| r["crl"].clone())
            .unwrap()
    };
    for c in ["x", "y"] {
        meshca(d).args(["issue", "--cluster", c]).assert().success();
    }
    meshca(d)
        .args([
            "issue",
            "--cluster",
            "x",
            "--kind",
            "xcp-edge",
            "--tsb-name",
            "x",
        ])
        .assert()
        .success();
    assert_eq!(crl_of("x", "istio-cacerts")["state"], "off");

    meshca(d).args(["crl", "enable"]).assert().success();
    let ready = crl_of("x", "istio-cacerts");
    assert_eq!(ready["state"], "ready", "{ready}");
    // The local root's CRL is valid 30 days; the intermediates' own ones much longer.
    assert!(
        (29..=30).contains(&ready["days_left"].as_i64().unwrap()),
        "{ready}"
    );
    assert_eq!(crl_of("x", "xcp-edge")["state"], "not-applicable");
    meshca(d).args(["fleet"]).assert().success().stdout(
        predicate::str::contains("ready (29d)").or(predicate::str::contains("ready (30d)")),
    );

    // y's file holding only x's CRLs: istiod would discard y's whole update.
    let y = d.join("out/y/ca-crl.pem");
    std::fs::copy(d.join("out/x/ca-crl.pem"), &y).unwrap();
    let listed = std::fs::read_to_string(&y).unwrap();
    let foreign: String = listed
        .split_inclusive("-----END X509 CRL-----\n")
        .filter(|block| {
            let text = std::process::Command::new("openssl")
                .args(["crl", "-noout", "-issuer"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .and_then(|mut p| {
                    use std::io::Write;
                    p.stdin.take().unwrap().write_all(block.as_bytes())?;
                    p.wait_with_output()
                })
                .unwrap();
            !String::from_utf8_lossy(&text.stdout).contains("y istio")
        })
        .collect();
    std::fs::write(&y, foreign).unwrap();
    let stale = crl_of("y", "istio-cacerts");
    assert_eq!(stale["state"], "stale", "{stale}");
    assert!(
        stale["why"]
            .as_str()
            .unwrap()
            .contains("istiod would discard"),
        "{stale}"
    );
    std::fs::remove_file(&y).unwrap();
    assert_eq!(crl_of("y", "istio-cacerts")["state"], "missing");
}

/// The revocation in `doc` revoked the generation in service alone: the one before it, issued
/// before the ledger, is said to be unknown, `because` (a piece of the reason).
fn assert_first_generation_unknown(doc: &serde_json::Value, because: &str) {
    assert_eq!(
        doc[0]["outcome"]["serials"].as_array().unwrap().len(),
        1,
        "{doc}"
    );
    let unknown = doc[0]["outcome"]["unknown"].to_string();
    assert!(
        unknown.contains("generations 1 to 1 were issued before meshca kept a ledger"),
        "{doc}"
    );
    assert!(unknown.contains(because), "{doc}");
}

/// Issues `n` generations of `cluster` (the first, then `--force` renewals), each by a command
/// `make` gives, with `more` arguments; each generation's serial, read from its files.
fn generations(
    d: &std::path::Path,
    make: impl Fn() -> Command,
    cluster: &str,
    n: usize,
    more: &[&str],
) -> Vec<String> {
    (0..n)
        .map(|i| {
            let mut issue = make();
            issue.args(["issue", "--cluster", cluster]).args(more);
            if i > 0 {
                issue.arg("--force");
            }
            issue.assert().success();
            serial_in_files(d, cluster)
        })
        .collect()
}

/// Takes the ledger out of a cluster's record, as a meshca that kept none wrote it.
fn forget_ledger(dir: &std::path::Path, cluster: &str) {
    let path = dir
        .join(".meshca/escrow")
        .join(cluster)
        .join("current.json");
    let mut record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let o = record.as_object_mut().unwrap();
    o.remove("superseded");
    o.remove("ledger_from");
    std::fs::write(&path, serde_json::to_string(&record).unwrap()).unwrap();
}

fn revoke_json(dir: &std::path::Path, cluster: &str) -> serde_json::Value {
    revoke_json_by(meshca(dir), cluster, &[])
}

/// `meshca revoke --cluster <cluster> --json` (key compromise, no prompt) run by `cmd`, with
/// `more` arguments; its JSON.
fn revoke_json_by(mut cmd: Command, cluster: &str, more: &[&str]) -> serde_json::Value {
    let out = cmd
        .args(["revoke", "--cluster", cluster, "--reason", "key-compromise"])
        .args(["--yes", "--json"])
        .args(more)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The revocation in `doc` revoked the certificates of `serials` (as hex, in any order) and
/// left nothing unknown.
fn assert_revoked_exactly(doc: &serde_json::Value, serials: &[String]) {
    let plain = |s: &str| s.trim_start_matches('0').to_ascii_lowercase();
    let mut got: Vec<String> = doc[0]["outcome"]["serials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| plain(s.as_str().unwrap()))
        .collect();
    got.sort();
    let mut want: Vec<String> = serials.iter().map(|s| plain(s)).collect();
    want.sort();
    assert_eq!(got, want, "{doc}");
    assert_eq!(doc[0]["outcome"].get("unknown"), None, "{doc}");
}

/// Generations issued before meshca kept a ledger are found where the authority lists what it
/// issued (the local CA's issued/ folder), by the subject that names the cluster, and revoked
/// with the rest; another cluster's are not touched. A subject that does not name its cluster
/// cannot be told from another's: those generations are said to be unknown, not guessed at.
#[test]
fn generations_before_the_ledger_are_found_at_the_authority_by_the_subject_naming_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let x = generations(d, || meshca(d), "x", 3, &[]);
    meshca(d)
        .args(["issue", "--cluster", "y"])
        .assert()
        .success();
    let y = serial_in_files(d, "y");
    forget_ledger(d, "x");

    let doc = revoke_json(d, "x");
    assert_revoked_exactly(&doc, &x);
    let plain = |s: &str| s.trim_start_matches('0').to_ascii_lowercase();
    let names: Vec<String> = revoked(d)
        .into_iter()
        .map(|(name, _)| plain(&name))
        .collect();
    assert!(
        !names.contains(&plain(&y)),
        "y is another cluster: {names:?}"
    );
    assert_eq!(names.len(), 3, "{names:?}");

    // A common name that does not name its cluster: its earlier generation stays unknown.
    generations(
        d,
        || meshca(d),
        "w",
        2,
        &["--common-name", "mesh intermediate"],
    );
    forget_ledger(d, "w");
    let doc = revoke_json(d, "w");
    assert_first_generation_unknown(
        &doc,
        "Not listed: the certificate's subject does not name w",
    );
}

/// A Private CA lists what it issued only in its audit report, which it writes into the bucket
/// of its CRL configuration: a revocation asks for one, waits while PCA writes it, and revokes
/// the generations before the ledger it lists under the record's subject (another cluster's are
/// left alone). PCA writes one report a CA each 30 minutes: a second revocation in that time
/// says why its earlier generations stay unknown.
#[test]
fn generations_before_the_ledger_are_found_in_a_private_ca_s_audit_report() {
    use meshca_test_support::aws::{self, AwsEmulator};
    let emu = AwsEmulator::start();
    let h = emu.control(
        "fixtures/hierarchy",
        serde_json::json!({"key_algorithm": "EC_prime256v1", "levels": 2, "crl_bucket": "meshca-crls"}),
    );
    let arn = h["issuing"].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pca = || {
        let mut c = meshca(d);
        c.envs(emu.child_env());
        for v in aws::AWS_UNSET {
            c.env_remove(v);
        }
        c
    };
    let ca = ["--ca-arn", arn.as_str()];
    let x = generations(d, pca, "x", 3, &ca);
    generations(d, pca, "y", 2, &ca);
    forget_ledger(d, "x");
    forget_ledger(d, "y");
    emu.control("configure", serde_json::json!({"audit_polls": 2}));

    assert_revoked_exactly(&revoke_json_by(pca(), "x", &ca), &x);
    assert_eq!(emu.calls("CreateCertificateAuthorityAuditReport"), 1);
    assert_eq!(
        emu.calls("DescribeCertificateAuthorityAuditReport"),
        3,
        "two polls while PCA writes it"
    );
    assert_eq!(
        emu.calls("RevokeCertificate"),
        3,
        "x's three generations, none of y's"
    );

    // Within 30 minutes the CA writes no second report: y's first generation stays unknown, said why.
    let doc = revoke_json_by(pca(), "y", &ca);
    assert_first_generation_unknown(&doc, "less than 30 minutes ago");
}
