//! `meshca rotate-root` through the built binary: a fleet of files, and a fleet of test API
//! servers reached through one kubeconfig; openssl judges trust between every pair.

use std::path::Path;

use assert_cmd::Command;
use meshca_test_apiserver::{ApiServer, Settings};
use meshca_test_support::openssl;
use predicates::prelude::*;
use serde_json::Value;

fn meshca(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("meshca").unwrap();
    c.current_dir(dir)
        .env_remove("MESHCA_CA_DIR")
        .env_remove("MESHCA_ESCROW_DIR")
        .env_remove("KUBECONFIG");
    c
}

fn json(dir: &Path, args: &[&str]) -> Value {
    let out = meshca(dir).args(args).arg("--json").output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every cluster's leaf verifies against every cluster's root-cert.pem (files under out/).
fn assert_mutual_trust(d: &Path, clusters: &[&str]) {
    for x in clusters {
        let xd = d.join("out").join(x);
        openssl::sign(&xd, "leaf", "ca-cert.pem", "ca-key.pem", false);
        for y in clusters {
            let root = d
                .join("out")
                .join(y)
                .join("root-cert.pem")
                .display()
                .to_string();
            let (ok, out) = openssl::run(
                &[
                    "verify",
                    "-CAfile",
                    &root,
                    "-untrusted",
                    "cert-chain.pem",
                    "leaf.pem",
                ],
                &xd,
            );
            assert!(
                ok,
                "a leaf of {x} does not verify under the root of {y}: {out}"
            );
        }
    }
}

fn phase(doc: &Value) -> &str {
    doc["rotation"]["phase"].as_str().unwrap()
}

#[test]
fn a_fleet_of_files_rotates_and_a_new_cluster_joins_mid_way() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for c in ["alpha", "beta", "gamma"] {
        meshca(d).args(["issue", "--cluster", c]).assert().success();
    }
    let old_root = std::fs::read_to_string(d.join("out/alpha/root-cert.pem")).unwrap();

    let doc = json(
        d,
        &[
            "rotate-root",
            "start",
            "--to",
            "local:.meshca/ca-2027",
            "--create",
            "--soak",
            "0",
        ],
    );
    assert_eq!(phase(&doc), "trust-both");
    assert_eq!(doc["may_advance"], true);
    assert_eq!(doc["clusters"].as_array().unwrap().len(), 3);
    let both = std::fs::read_to_string(d.join("out/beta/root-cert.pem")).unwrap();
    assert!(
        both.starts_with(&old_root) && both.len() > old_root.len(),
        "the old bytes first, then the new root"
    );

    // A cluster created during the rotation joins at the current phase.
    meshca(d)
        .args(["issue", "--cluster", "delta"])
        .assert()
        .success()
        .stdout(predicate::str::contains("delta: issued generation 1"));
    assert_eq!(
        std::fs::read_to_string(d.join("out/delta/root-cert.pem")).unwrap(),
        both
    );
    let fleet = ["alpha", "beta", "gamma", "delta"];
    assert_mutual_trust(d, &fleet);

    meshca(d)
        .args(["rotate-root", "status"])
        .assert()
        .success()
        .stdout(predicate::str::contains("phase     trust-both"))
        .stdout(predicate::str::contains("delta                    yes"))
        .stdout(predicate::str::contains(
            "next      meshca rotate-root advance",
        ));

    let doc = json(d, &["rotate-root", "advance"]);
    assert_eq!(phase(&doc), "switch");
    assert!(
        doc["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["outcome"]["outcome"] == "renewed"),
        "{doc}"
    );
    assert_mutual_trust(d, &fleet);
    assert_eq!(phase(&json(d, &["rotate-root", "advance"])), "drop-old");
    assert_mutual_trust(d, &fleet);
    let new_root = std::fs::read_to_string(d.join("out/gamma/root-cert.pem")).unwrap();
    assert!(both.ends_with(&new_root) && !new_root.contains(&old_root));
    assert_eq!(phase(&json(d, &["rotate-root", "advance"])), "done");

    // After the rotation the fleet's authority is its target: by default, and for the next one.
    meshca(d)
        .args(["issue", "--cluster", "alpha"])
        .assert()
        .success()
        .stdout(predicate::str::contains("alpha: reused generation"))
        .stderr(predicate::str::contains("using local:.meshca/ca-2027"));
    meshca(d)
        .args(["issue", "--cluster", "alpha", "--ca-dir", ".meshca/ca"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "issue from the new authority: --ca-dir .meshca/ca-2027",
        ));
    meshca(d)
        .args(["issue", "--cluster", "alpha", "--ca-dir", ".meshca/ca-2027"])
        .assert()
        .success()
        .stdout(predicate::str::contains("alpha: reused generation"));
    // Starting from the retired authority, named on purpose, is refused.
    meshca(d)
        .args([
            "rotate-root",
            "start",
            "--ca-dir",
            ".meshca/ca",
            "--to",
            "local:.meshca/ca-2028",
            "--create",
            "--soak",
            "0",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("rotated away from"));
    let doc = json(
        d,
        &[
            "rotate-root",
            "start",
            "--to",
            "local:.meshca/ca-2028",
            "--create",
            "--soak",
            "0",
        ],
    );
    assert_eq!(phase(&doc), "trust-both");
    let next = std::fs::read_to_string(d.join("out/alpha/root-cert.pem")).unwrap();
    assert!(
        next.starts_with(&new_root) && next.len() > new_root.len() && !next.contains(&old_root),
        "the second rotation starts from the first one's target, never from the retired root"
    );
}

#[test]
fn refusals_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    meshca(d)
        .args(["rotate-root", "status"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "no root rotation has been started here",
        ));
    meshca(d)
        .args([
            "rotate-root",
            "start",
            "--to",
            "local:.meshca/ca-new",
            "--create",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no clusters to rotate"))
        .stderr(predicate::str::contains(
            "created a new root CA in .meshca/ca-new",
        ));
    meshca(d)
        .args(["issue", "--cluster", "alpha"])
        .assert()
        .success();
    meshca(d)
        .args(["rotate-root", "start", "--to", "local:.meshca/ca"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("nothing to rotate"));
    // A mistyped --to never becomes a new root.
    for (to, says) in [
        ("s3://bucket/ca", "not an authority"),
        ("local:no/such/dir", "holds no CA"),
        ("no-such-dir", "holds no CA"),
    ] {
        meshca(d)
            .args(["rotate-root", "start", "--to", to])
            .assert()
            .code(1)
            .stderr(predicate::str::contains(says));
    }
    assert!(
        !d.join("no").exists() && !d.join("no-such-dir").exists() && !d.join("s3:").exists(),
        "nothing created"
    );
    // Another directory holding the same root: a re-issue, not a rotation.
    std::fs::create_dir_all(d.join("copy")).unwrap();
    for f in ["root-cert.pem", "root-key.pem"] {
        std::fs::copy(d.join(".meshca/ca").join(f), d.join("copy").join(f)).unwrap();
    }
    meshca(d)
        .args(["rotate-root", "start", "--to", "copy"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("a re-issue, not a root rotation"));
    meshca(d)
        .args([
            "rotate-root",
            "start",
            "--to",
            "local:.meshca/ca-new",
            "--soak",
            "1w",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unit must be"));

    meshca(d)
        .args([
            "rotate-root",
            "start",
            "--to",
            "local:.meshca/ca-new",
            "--create",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("soak 26h"))
        .stderr(predicate::str::contains("created a new root CA").not());
    meshca(d)
        .args([
            "rotate-root",
            "start",
            "--to",
            "local:.meshca/ca-other",
            "--create",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("already in phase trust-both"));
    meshca(d)
        .args(["rotate-root", "advance"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "cannot advance from trust-both: soaking until",
        ));
    let doc = json(d, &["rotate-root", "advance", "--force"]);
    assert_eq!(phase(&doc), "switch");
    assert!(
        doc["rotation"]["history"][1]["overridden"][0]
            .as_str()
            .unwrap()
            .starts_with("soaking until"),
        "{doc}"
    );
    meshca(d)
        .args(["rotate-root", "advance", "--force"])
        .assert()
        .success();
    meshca(d)
        .args(["rotate-root", "abort"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "abort is allowed only before drop-old",
        ));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kubeconfig_fleet_rotates_and_aborts_back_to_the_old_root() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let servers = kubeconfig_fleet(d, &["east", "west"], &[]).await;
    issue_by_context(d, &["east", "west"]);
    let k = ["--kubeconfig", "fleet.yaml"];
    let doc = json(
        d,
        &[
            "rotate-root",
            "start",
            "--to",
            "local:.meshca/ca-b",
            "--create",
            "--soak",
            "0",
            "--kubeconfig",
            "fleet.yaml",
        ],
    );
    assert_eq!(phase(&doc), "trust-both");
    let restarted = doc["clusters"][0]["outcome"]["restarted"][0]
        .as_str()
        .unwrap();
    assert!(
        restarted.contains("ISTIO_MULTIROOT_MESH is not enabled"),
        "{restarted}"
    );
    assert_eq!(
        phase(&json(d, &["rotate-root", "advance", k[0], k[1]])),
        "switch"
    );
    let doc = json(d, &["rotate-root", "abort", k[0], k[1]]);
    assert_eq!(
        (phase(&doc), doc["rotation"]["aborted"].as_bool()),
        ("switch", Some(true))
    );
    assert!(
        doc["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["confirmed"] == true && c["outcome"]["outcome"] == "renewed"),
        "{doc}"
    );
    assert_eq!(
        phase(&json(d, &["rotate-root", "advance", k[0], k[1]])),
        "drop-old"
    );
    let old = std::fs::read_to_string(d.join(".meshca/ca/root-cert.pem")).unwrap();
    for s in &servers {
        let secret = s
            .get(
                meshca_test_apiserver::store::Resource::Secrets,
                "istio-system",
                "cacerts",
            )
            .unwrap();
        use base64::Engine;
        let root = base64::engine::general_purpose::STANDARD
            .decode(secret["data"]["root-cert.pem"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            String::from_utf8(root).unwrap(),
            old,
            "the old root alone again"
        );
    }
    meshca(d)
        .args(["rotate-root", "status"])
        .args(k)
        .assert()
        .success()
        .stdout(predicate::str::contains("done").not())
        .stdout(predicate::str::contains("aborted"));
}

#[tokio::test(flavor = "multi_thread")]
async fn between_two_private_cas_over_eks_with_the_record_in_secrets_manager() {
    use meshca_test_support::aws::{self, AwsEmulator};
    let emu = AwsEmulator::start();
    let old = emu.hierarchy("EC_prime256v1", 2)["issuing"]
        .as_str()
        .unwrap()
        .to_string();
    let new = emu.hierarchy("EC_prime256v1", 2)["issuing"]
        .as_str()
        .unwrap()
        .to_string();
    let mut servers = Vec::new();
    for name in ["prod-eu-1", "prod-eu-2"] {
        let server = ApiServer::start(Settings::eks_scoped(name, "testing", "testing"))
            .await
            .unwrap();
        server.seed_istio(Some("docker.io/istio/pilot:1.24.2"));
        emu.control("eks/cluster", serde_json::json!({"region": aws::REGION, "name": name, "endpoint": server.url(), "ca_pem": server.ca_pem()}));
        servers.push(server);
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |args: &[&str]| {
        let mut c = meshca(d);
        c.envs(emu.child_env());
        for v in aws::AWS_UNSET {
            c.env_remove(v);
        }
        c.args(args)
            .args(["--escrow", "secrets-manager", "--region", aws::REGION]);
        c
    };
    for name in ["prod-eu-1", "prod-eu-2"] {
        run(&[
            "issue",
            "--eks-cluster",
            name,
            "--ca-arn",
            &old,
            "--no-files",
        ])
        .assert()
        .success();
    }
    let fleet = [
        "--cluster",
        "prod-eu-1",
        "--cluster",
        "prod-eu-2",
        "--eks",
        "--ca-arn",
        &old,
    ];
    let out = run(&[
        "rotate-root",
        "start",
        "--to",
        &new,
        "--soak",
        "0",
        "--json",
    ])
    .args(fleet)
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (phase(&doc), doc["may_advance"].as_bool()),
        ("trust-both", Some(true)),
        "{doc}"
    );
    let issued = emu.issued();
    let out = run(&["rotate-root", "advance", "--json"])
        .args(fleet)
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        phase(&doc),
        "switch",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        emu.issued() - issued,
        2,
        "one intermediate from the new CA per cluster"
    );
    // Without --cluster only the record is read: the sweep's view of the same secret.
    run(&["rotate-root", "status", "--ca-arn", &old])
        .assert()
        .success()
        .stdout(predicate::str::contains("phase     switch"))
        .stderr(predicate::str::contains(
            "the expiry sweep carries out each phase",
        ));
    assert!(
        servers
            .iter()
            .all(|s| s.seen().iter().all(|r| r.caller == "eks:testing"))
    );
}

/// A cluster that accepts and never answers, and one without a kubeconfig context: each is a row
/// of the report (unconfirmed, with the reason), contacted beside the others, which are served.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_cluster_is_a_row_and_the_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Accepts connections and never says a word.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hung_port = hung.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in hung.incoming().flatten().take(64) {
            held.push(s);
        }
    });
    let hung_url = format!("https://127.0.0.1:{hung_port}");
    let _servers = kubeconfig_fleet(d, &["east", "west", "hung"], &[("hung", &hung_url)]).await;
    issue_by_context(d, &["east", "west"]);
    let out = meshca(d)
        .args([
            "rotate-root",
            "start",
            "--to",
            "local:.meshca/ca-b",
            "--create",
            "--soak",
            "0",
            "--kubeconfig",
            "fleet.yaml",
            "--json",
        ])
        .args([
            "--cluster",
            "east",
            "--cluster",
            "hung",
            "--cluster",
            "missing",
            "--cluster",
            "west",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("reaching 4 clusters"), "{stderr}");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = |name: &str| {
        doc["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["cluster"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no row for {name}: {doc}"))
    };
    for served in ["east", "west"] {
        assert_eq!(row(served)["confirmed"], true, "{}", row(served));
    }
    let (hung_row, missing_row) = (row("hung"), row("missing"));
    assert_eq!(hung_row["confirmed"], false);
    assert!(
        hung_row["blocking"].as_str().unwrap().contains("failed"),
        "{hung_row}"
    );
    assert_eq!(missing_row["confirmed"], false);
    assert!(
        missing_row["blocking"]
            .as_str()
            .unwrap()
            .contains("no way to the cluster: context missing"),
        "{missing_row}"
    );
    assert_eq!(
        doc["may_advance"], false,
        "an unconfirmed cluster blocks the next phase"
    );
}

/// Test API servers (istiod 1.24 seeded) for `names`, and `fleet.yaml` in `d` with a context of
/// each name; `elsewhere` points a context at another URL (the server's CA still trusted).
async fn kubeconfig_fleet(d: &Path, names: &[&str], elsewhere: &[(&str, &str)]) -> Vec<ApiServer> {
    use base64::Engine;
    let mut servers = Vec::new();
    let mut kubeconfig = String::from("apiVersion: v1\nkind: Config\nclusters:\n");
    let (mut users, mut contexts) = (String::from("users:\n"), String::from("contexts:\n"));
    for &name in names {
        let settings = Settings {
            cluster: name.into(),
            static_token: Some("t0ken".into()),
            ..Default::default()
        };
        let s = ApiServer::start(settings).await.unwrap();
        s.seed_istio(Some("docker.io/istio/pilot:1.24.2"));
        let ca = base64::engine::general_purpose::STANDARD.encode(s.ca_pem());
        let url = elsewhere
            .iter()
            .find(|(n, _)| *n == name)
            .map_or_else(|| s.url().to_string(), |(_, u)| u.to_string());
        kubeconfig += &format!(
            "- name: {name}\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\n"
        );
        users += &format!("- name: {name}\n  user:\n    token: t0ken\n");
        contexts += &format!("- name: {name}\n  context:\n    cluster: {name}\n    user: {name}\n");
        servers.push(s);
    }
    std::fs::write(
        d.join("fleet.yaml"),
        format!("{kubeconfig}{users}{contexts}"),
    )
    .unwrap();
    servers
}

/// `meshca issue` for each of `names` into the context of its name in `fleet.yaml`, no files.
fn issue_by_context(d: &Path, names: &[&str]) {
    for name in names {
        meshca(d)
            .args([
                "issue",
                "--cluster",
                name,
                "--context",
                name,
                "--kubeconfig",
                "fleet.yaml",
                "--no-files",
            ])
            .assert()
            .success();
    }
}

/// Finding 3 of the guard rails: a rotation keeps each cluster's recorded terms. A fleet issued
/// with RSA-2048 for 90 days keeps its intermediates through trust-both (re-rooted, not
/// re-issued) and is re-issued in switch with RSA-2048 and 90 days, not the defaults.
#[test]
fn a_rotation_keeps_the_fleets_recorded_key_algorithm_and_validity() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for c in ["rsa-a", "rsa-b"] {
        meshca(d)
            .args([
                "issue",
                "--cluster",
                c,
                "--key-algorithm",
                "rsa-2048",
                "--validity-days",
                "90",
            ])
            .assert()
            .success();
    }
    let first = std::fs::read_to_string(d.join("out/rsa-a/ca-cert.pem")).unwrap();
    let doc = json(
        d,
        &[
            "rotate-root",
            "start",
            "--to",
            "local:.meshca/ca-next",
            "--create",
            "--soak",
            "0",
        ],
    );
    assert_eq!(phase(&doc), "trust-both");
    assert!(
        doc["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["outcome"]["outcome"] == "delivered"),
        "trust-both re-roots, it does not re-issue: {doc}"
    );
    assert_eq!(
        std::fs::read_to_string(d.join("out/rsa-a/ca-cert.pem")).unwrap(),
        first
    );
    let doc = json(d, &["rotate-root", "advance"]);
    assert_eq!(phase(&doc), "switch");
    let fleet = json(d, &["fleet"]);
    for row in fleet.as_array().unwrap() {
        assert_eq!(row["generation"], 3, "{row}");
        assert_eq!(row["terms"]["key_algorithm"], "rsa-2048", "{row}");
        assert_eq!(row["terms"]["validity"]["days"], 90, "{row}");
        assert!(row.get("history").is_none(), "nothing changed: {row}");
    }
    let (ok, shown) = openssl::run(
        &["x509", "-in", "out/rsa-b/ca-cert.pem", "-noout", "-text"],
        d,
    );
    assert!(ok && shown.contains("Public-Key: (2048 bit)"), "{shown}");
}

/// `rotate-root start --dry-run` and `advance --dry-run` say what they would create and change,
/// and change nothing: no new root, no rotation record, no file touched.
#[test]
fn rotation_dry_runs_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for c in ["a", "b"] {
        meshca(d).args(["issue", "--cluster", c]).assert().success();
    }
    let root = std::fs::read_to_string(d.join("out/a/root-cert.pem")).unwrap();
    meshca(d)
        .args([
            "rotate-root",
            "start",
            "--to",
            "local:.meshca/ca-next",
            "--create",
            "--soak",
            "0",
            "--dry-run",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "would create a new root CA in .meshca/ca-next",
        ))
        .stdout(predicate::str::contains(
            "a: root-cert.pem would become the old root followed by the new one",
        ))
        .stdout(predicate::str::contains("b: root-cert.pem would become"));
    assert!(!d.join(".meshca/ca-next").exists(), "no root created");
    meshca(d)
        .args(["rotate-root", "status"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "no root rotation has been started",
        ));
    // A mistyped target is refused in a dry run as in a real one.
    meshca(d)
        .args(["rotate-root", "start", "--to", "local:nowhere", "--dry-run"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("holds no CA"));
    meshca(d)
        .args([
            "rotate-root",
            "start",
            "--to",
            "local:.meshca/ca-next",
            "--create",
            "--soak",
            "0",
        ])
        .assert()
        .success();
    let both = std::fs::read_to_string(d.join("out/a/root-cert.pem")).unwrap();
    assert!(both.starts_with(&root) && both.len() > root.len());
    let cert = std::fs::read_to_string(d.join("out/b/ca-cert.pem")).unwrap();
    meshca(d)
        .args(["rotate-root", "advance", "--dry-run"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "would finish trust-both and move to switch",
        ));
    assert_eq!(
        std::fs::read_to_string(d.join("out/b/ca-cert.pem")).unwrap(),
        cert,
        "no new intermediate"
    );
    meshca(d)
        .args(["rotate-root", "status"])
        .assert()
        .success()
        .stdout(predicate::str::contains("phase     trust-both"));
}

/// A rotation moves every kind a cluster has, not its Istio intermediate alone: TSB's xcp-edge
/// and Linkerd's issuer get the old and new roots in trust-both (Linkerd's anchors ConfigMap
/// too, with a note to restart meshed workloads), and a new certificate in switch.
#[test]
fn a_rotation_moves_every_kind_of_every_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p256 = ["--root-key-algorithm", "ec-p256"];
    meshca(d)
        .args([
            "issue",
            "--cluster",
            "c1",
            "--kind",
            "istio-cacerts",
            "--kind",
            "xcp-edge",
        ])
        .args(["--kind", "linkerd-issuer"])
        .args(p256)
        .assert()
        .success();
    let old_root = std::fs::read_to_string(d.join("out/c1/root-cert.pem")).unwrap();
    let out = meshca(d)
        .args([
            "rotate-root",
            "start",
            "--to",
            "local:.meshca/ca-next",
            "--create",
            "--soak",
            "0",
        ])
        .args(p256)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for row in ["c1 ", "c1.xcp-edge ", "c1.linkerd-issuer "] {
        assert!(text.contains(row), "{row}: {text}");
    }
    assert!(
        text.contains("restart   the meshed workloads of c1"),
        "{text}"
    );
    for anchors in [
        "out/c1/root-cert.pem",
        "out/c1/xcp-edge/ca.crt",
        "out/c1/linkerd-issuer/ca.crt",
        "out/c1/linkerd-issuer/ca-bundle.crt",
    ] {
        let both = std::fs::read_to_string(d.join(anchors)).unwrap();
        assert!(
            both.starts_with(&old_root) && both.len() > old_root.len(),
            "{anchors} holds the old root, then the new one"
        );
    }
    let issuer = std::fs::read_to_string(d.join("out/c1/linkerd-issuer/tls.crt")).unwrap();
    let doc = json(d, &["rotate-root", "advance"]);
    assert_eq!(phase(&doc), "switch");
    let kinds: Vec<&str> = doc["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap_or("istio-cacerts"))
        .collect();
    assert_eq!(
        kinds,
        ["istio-cacerts", "xcp-edge", "linkerd-issuer"],
        "{doc}"
    );
    assert!(
        doc["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["outcome"]["outcome"] == "renewed"),
        "{doc}"
    );
    assert_ne!(
        std::fs::read_to_string(d.join("out/c1/linkerd-issuer/tls.crt")).unwrap(),
        issuer,
        "a new issuer under the new root"
    );
}
