//! The catalogue as a contract: every row of `meshca_core::kind::CATALOGUE` goes the whole way
//! through the `meshca` command — parsed from `--kind`, issued, written, inspected by its own
//! rules, listed by `meshca fleet`, carried by a root rotation and revoked by `meshca retire`.
//! A row added to the catalogue and left half-wired fails here, naming the row.

use assert_cmd::Command;
use meshca_core::kind::{CATALOGUE, Input, Layout};

fn meshca(dir: &std::path::Path) -> Command {
    let mut cmd = Command::cargo_bin("meshca").unwrap();
    cmd.current_dir(dir)
        .env_remove("KUBECONFIG")
        .env("NO_COLOR", "1");
    cmd
}

fn stdout(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Where a row's files land for cluster `c1`.
fn files_of(name: &str, layout: Layout) -> String {
    match layout {
        Layout::IstioCacerts => "out/c1".into(),
        Layout::Tls => format!("out/c1/{name}"),
    }
}

/// The flags a row's inputs need, as a user would give them.
fn inputs(inputs: &[Input]) -> Vec<&'static str> {
    let mut args = Vec::new();
    for input in inputs {
        args.extend(match input {
            Input::TsbName => ["--tsb-name", "c1-in-tsb"],
            Input::Addresses => ["--central-address", "central.tsb.example"],
            Input::TsbNamespace => ["--tsb-namespace", "tsb"],
            Input::SecretName => ["--cert-manager-secret", "cert-manager/istio-ca"],
        });
    }
    args
}

/// The inputs `meshca inspect` judges a bundle by (its identity); landings are not its concern.
fn judged_by(all: &[Input]) -> Vec<Input> {
    all.iter()
        .copied()
        .filter(|i| matches!(i, Input::TsbName | Input::Addresses))
        .collect()
}

#[test]
fn every_catalogue_row_is_issued_inspected_listed_rotated_and_retired() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A P-256 root: the one authority every row accepts (Linkerd's issuer demands it).
    let mut issue = meshca(d);
    issue.args([
        "issue",
        "--cluster",
        "c1",
        "--root-key-algorithm",
        "ec-p256",
    ]);
    let mut needed: Vec<Input> = Vec::new();
    for p in &CATALOGUE {
        issue.args(["--kind", p.name]);
        for input in p.inputs {
            if !needed.contains(input) {
                needed.push(*input);
            }
        }
    }
    issue.args(inputs(&needed));
    let issued = stdout(&mut issue);
    for p in &CATALOGUE {
        let label = match p.layout {
            Layout::IstioCacerts => "c1: issued generation 1".to_string(),
            Layout::Tls => format!("c1 {}: issued generation 1", p.name),
        };
        assert!(issued.contains(&label), "{}: not issued:\n{issued}", p.name);
        let files = files_of(p.name, p.layout);
        let mut inspect = meshca(d);
        inspect
            .args(["inspect", &files, "--kind", p.name])
            .args(inputs(&judged_by(p.inputs)));
        let judged = stdout(&mut inspect);
        assert!(judged.contains("valid"), "{}: {judged}", p.name);
        if let Some(anchors) = p.anchors {
            assert!(
                d.join(&files).join(anchors.key).exists(),
                "{}: the anchors file {} beside the secret",
                p.name,
                anchors.key
            );
        }
    }

    let fleet: serde_json::Value =
        serde_json::from_str(&stdout(meshca(d).args(["fleet", "--json"]))).unwrap();
    let listed: Vec<&str> = fleet
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    for p in &CATALOGUE {
        assert!(
            listed.contains(&p.name),
            "{}: not in the fleet: {fleet}",
            p.name
        );
    }

    let plan = stdout(meshca(d).args([
        "rotate-root",
        "start",
        "--to",
        "local:.meshca/ca-next",
        "--create",
        "--root-key-algorithm",
        "ec-p256",
        "--dry-run",
    ]));
    for p in &CATALOGUE {
        let member = match p.layout {
            Layout::IstioCacerts => "  c1: ".to_string(),
            Layout::Tls => format!("  c1.{}: ", p.name),
        };
        assert!(
            plan.contains(&member),
            "{}: not a rotation member:\n{plan}",
            p.name
        );
    }

    let retired = stdout(meshca(d).args(["retire", "--cluster", "c1", "--yes"]));
    for p in &CATALOGUE {
        let label = match p.layout {
            Layout::IstioCacerts => "c1: revoked".to_string(),
            Layout::Tls => format!("c1.{}: revoked", p.name),
        };
        assert!(
            retired.contains(&label),
            "{}: not revoked:\n{retired}",
            p.name
        );
    }
    let revoked = std::fs::read_dir(d.join(".meshca/ca/revoked"))
        .unwrap()
        .count();
    assert_eq!(revoked, CATALOGUE.len(), "one revocation per row");
}

/// The access command the CDK and Terraform outputs print (their tests check they print it
/// with these flags) grants exactly the namespaces the kinds land in, moved landings included:
/// TSB's management plane in its namespace, cert-manager's secret where it was put, Linkerd's.
#[test]
fn the_deploy_outputs_access_command_grants_exactly_the_kinds_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &[&str]); 3] = [
        (&["--kind", "istio-cacerts"], &["istio-system"]),
        (
            &[
                "--kind",
                "xcp-central",
                "--kind",
                "mpc",
                "--kind",
                "cert-manager-ca",
                "--kind",
                "linkerd-issuer",
            ],
            &["cert-manager", "linkerd", "tsb"],
        ),
        (
            &[
                "--kind",
                "mpc",
                "--kind",
                "cert-manager-ca",
                "--kind",
                "linkerd-issuer",
                "--tsb-namespace",
                "tetrate",
                "--cert-manager-secret",
                "istio-csr/ca",
            ],
            &["istio-csr", "linkerd", "tetrate"],
        ),
    ];
    for (flags, namespaces) in cases {
        let rbac = stdout(meshca(dir.path()).arg("access").args(flags));
        let mut granted: Vec<&str> = Vec::new();
        for doc in rbac.split("\n---") {
            if doc.contains("kind: Role\n") {
                let (_, rest) = doc
                    .split_once("namespace: ")
                    .expect("a Role names its namespace");
                let ns = &rest[..rest.find([',', '}', '\n']).unwrap_or(rest.len())];
                granted.push(ns.trim().trim_matches('"'));
            }
        }
        granted.sort();
        assert_eq!(granted, namespaces, "{flags:?}:\n{rbac}");
        assert!(!rbac.contains("ClusterRole"), "{rbac}");
    }
    // The one cluster-wide grant, only when asked for: list of pods, nothing else.
    let rbac = stdout(meshca(dir.path()).args(["access", "--crl-readers"]));
    let cluster: Vec<&str> = rbac
        .split("\n---")
        .filter(|d| d.contains("kind: ClusterRole\n"))
        .collect();
    assert_eq!(cluster.len(), 1, "{rbac}");
    assert!(
        cluster[0].ends_with("rules:\n- {apiGroups: [\"\"], resources: [pods], verbs: [list]}"),
        "{rbac}"
    );
}
