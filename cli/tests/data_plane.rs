//! The data plane as the judge: what `meshca` writes, used the way Istio's sidecars use it, in a
//! real Envoy (tests/support/src/envoy.rs). Workloads of clusters under one root complete mTLS
//! both ways; a workload under another root is refused both ways, for that reason.

use std::path::Path;

use assert_cmd::Command;
use meshca_test_support::envoy::{self, Handshake, LeafKey, Mesh, Workload};

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

fn completed(h: &Handshake, what: &str, mesh: &Mesh) {
    assert!(
        h.completed(),
        "{what}: {h:?} (configs in {})",
        mesh.dir().display()
    );
}

fn refused_unknown_ca(h: &Handshake, what: &str) {
    assert!(
        h.is_unknown_ca(),
        "{what} must be refused as an unknown CA: {h:?}"
    );
}

#[tokio::test]
async fn local_ca_clusters_of_one_root_trust_each_other_and_refuse_another_root() {
    let d = tempfile::tempdir().unwrap();
    issue(d.path(), &["--cluster", "a"]);
    issue(d.path(), &["--cluster", "b", "--key-algorithm", "rsa-2048"]);
    issue(
        d.path(),
        &[
            "--cluster",
            "x",
            "--ca-dir",
            "other-root",
            "--escrow-dir",
            "other-escrow",
        ],
    );
    let out = d.path().join("out");
    let workloads: Vec<Workload> = vec![
        envoy::istio_workload(&out.join("a"), "a", LeafKey::Rsa2048),
        envoy::istio_workload(&out.join("b"), "b", LeafKey::EcP256),
        envoy::istio_workload(&out.join("x"), "x", LeafKey::Rsa2048),
    ];
    let mesh = Mesh::start(&workloads).await;
    let (ab, ba) = mesh.both_ways("a", "b").await;
    completed(&ab, "a → b (one root)", &mesh);
    completed(&ba, "b → a (one root)", &mesh);
    let (ax, xa) = mesh.both_ways("a", "x").await;
    refused_unknown_ca(&ax, "a → x (another root)");
    refused_unknown_ca(&xa, "x → a (another root)");
}

#[tokio::test]
async fn a_spiffe_id_other_than_the_expected_one_is_refused_for_that_reason() {
    let d = tempfile::tempdir().unwrap();
    issue(d.path(), &["--cluster", "a"]);
    let out = d.path().join("out/a");
    let a = envoy::istio_workload(&out, "a", LeafKey::EcP256);
    // Signed for ns/impostor, but its clients expect a's id.
    let mut impostor = envoy::istio_workload(&out, "impostor", LeafKey::EcP256);
    impostor.spiffe = a.spiffe.replace("/ns/a/", "/ns/b/");
    let mesh = Mesh::start(&[a, impostor]).await;
    completed(
        &mesh.call("impostor", "a").await,
        "impostor → a (a checks the CA, not the id)",
        &mesh,
    );
    let h = mesh.call("a", "impostor").await;
    assert!(
        h.is_san_mismatch(),
        "a → impostor must be refused on its SPIFFE id: {h:?}"
    );
}

mod pca {
    use super::*;
    use meshca_test_support::aws::{self, AwsEmulator};

    fn issue_pca(dir: &Path, emu: &AwsEmulator, cluster: &str, arn: &str, extra: &[&str]) {
        let mut c = Command::cargo_bin("meshca").unwrap();
        c.current_dir(dir)
            .envs(emu.child_env())
            .env_remove("MESHCA_CA_DIR")
            .env_remove("MESHCA_ESCROW_DIR");
        for v in aws::AWS_UNSET {
            c.env_remove(v);
        }
        let out = c
            .args([
                "issue",
                "--cluster",
                cluster,
                "--ca-arn",
                arn,
                "--escrow",
                "secrets-manager",
            ])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "meshca issue {cluster}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A two-level Private CA hierarchy (root → issuing CA → cluster intermediates: chains of 3),
    /// EC and RSA; a cluster of another hierarchy is refused both ways.
    #[tokio::test]
    async fn pca_clusters_of_one_hierarchy_trust_each_other_and_refuse_another() {
        let emu = AwsEmulator::start();
        let ec = emu.hierarchy("EC_prime256v1", 2);
        let rsa = emu.hierarchy("RSA_2048", 2);
        let d = tempfile::tempdir().unwrap();
        let arn = |h: &serde_json::Value| h["issuing"].as_str().unwrap().to_string();
        issue_pca(d.path(), &emu, "p1", &arn(&ec), &[]);
        issue_pca(
            d.path(),
            &emu,
            "p2",
            &arn(&ec),
            &["--key-algorithm", "rsa-2048"],
        );
        issue_pca(
            d.path(),
            &emu,
            "r1",
            &arn(&rsa),
            &["--key-algorithm", "rsa-2048"],
        );
        issue_pca(d.path(), &emu, "r2", &arn(&rsa), &[]);
        let out = d.path().join("out");
        let chain_len = std::fs::read_to_string(out.join("p1/cert-chain.pem"))
            .unwrap()
            .matches("BEGIN CERTIFICATE")
            .count();
        assert_eq!(chain_len, 3, "intermediate, issuing CA, root");
        let w = |c: &str, k| envoy::istio_workload(&out.join(c), c, k);
        let mesh = Mesh::start(&[
            w("p1", LeafKey::Rsa2048),
            w("p2", LeafKey::EcP256),
            w("r1", LeafKey::Rsa2048),
            w("r2", LeafKey::EcP256),
        ])
        .await;
        for (a, b) in [("p1", "p2"), ("r1", "r2")] {
            let (ab, ba) = mesh.both_ways(a, b).await;
            completed(&ab, &format!("{a} → {b}"), &mesh);
            completed(&ba, &format!("{b} → {a}"), &mesh);
        }
        let (x, y) = mesh.both_ways("p1", "r1").await;
        refused_unknown_ca(&x, "p1 → r1 (another hierarchy)");
        refused_unknown_ca(&y, "r1 → p1 (another hierarchy)");
    }
}

mod openbao {
    use super::*;
    use meshca_test_support::vault::Bao;

    const POLICY: &str = include_str!("../../shared/vault/meshca-policy.hcl");

    /// OpenBao with an intermediate mount under a root mount: clusters it signs trust each other;
    /// a local-CA cluster is another root, refused both ways.
    #[tokio::test]
    async fn openbao_clusters_trust_each_other_and_refuse_another_root() {
        let bao = Bao::start();
        bao.two_level_pki();
        let d = tempfile::tempdir().unwrap();
        let token = d.path().join("token");
        std::fs::write(&token, bao.token_with_policy("meshca", POLICY)).unwrap();
        for (cluster, key) in [("v1", "ec-p256"), ("v2", "rsa-2048")] {
            let out = Command::cargo_bin("meshca")
                .unwrap()
                .current_dir(d.path())
                .env_remove("VAULT_TOKEN")
                .env("VAULT_CACERT", bao.ca_file())
                .args([
                    "issue",
                    "--cluster",
                    cluster,
                    "--key-algorithm",
                    key,
                    "--vault-addr",
                    &bao.addr,
                ])
                .args(["--vault-token-file", token.to_str().unwrap()])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{cluster}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        issue(d.path(), &["--cluster", "l1"]);
        let out = d.path().join("out");
        let w = |c: &str, k| envoy::istio_workload(&out.join(c), c, k);
        let mesh = Mesh::start(&[
            w("v1", LeafKey::Rsa2048),
            w("v2", LeafKey::EcP256),
            w("l1", LeafKey::Rsa2048),
        ])
        .await;
        let (ab, ba) = mesh.both_ways("v1", "v2").await;
        completed(&ab, "v1 → v2", &mesh);
        completed(&ba, "v2 → v1", &mesh);
        let (x, y) = mesh.both_ways("v1", "l1").await;
        refused_unknown_ca(&x, "v1 → l1 (another root)");
        refused_unknown_ca(&y, "l1 → v1 (another root)");
    }
}

/// A `kubernetes.io/tls` kind's files: `tls.crt` (certificate, then its issuers), `tls.key`,
/// `ca.crt` (the root).
struct Tls {
    crt: String,
    key: String,
    ca: String,
}

fn tls_files(dir: &Path) -> Tls {
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .unwrap_or_else(|e| panic!("{}/{f}: {e}", dir.display()))
    };
    Tls {
        crt: read("tls.crt"),
        key: read("tls.key"),
        ca: read("ca.crt"),
    }
}

/// TSB: xcp-central (a server with its SPIFFE id and its DNS name) accepts the xcp-edge of a
/// control plane under the same root and refuses one from another root; mpc likewise.
#[tokio::test]
async fn tsb_central_and_mpc_accept_edges_of_their_root_and_refuse_another() {
    let d = tempfile::tempdir().unwrap();
    issue(
        d.path(),
        &[
            "--cluster",
            "mgmt",
            "--kind",
            "xcp-central",
            "--kind",
            "mpc",
            "--central-address",
            "central.tsb.example",
        ],
    );
    issue(
        d.path(),
        &[
            "--cluster",
            "east",
            "--kind",
            "xcp-edge",
            "--tsb-name",
            "prod-east",
        ],
    );
    issue(
        d.path(),
        &[
            "--cluster",
            "rogue",
            "--kind",
            "xcp-edge",
            "--tsb-name",
            "prod-east",
            "--ca-dir",
            "other-root",
            "--escrow-dir",
            "other-escrow",
        ],
    );
    let out = d.path().join("out");
    let identity = |cluster: &str, kind: &str, name: &str, spiffe: &str| {
        let t = tls_files(&out.join(cluster).join(kind));
        Workload {
            name: name.into(),
            spiffe: spiffe.into(),
            chain_pem: t.crt,
            key_pem: t.key,
            trust_pem: t.ca,
            crl_pem: None,
        }
    };
    let central = identity(
        "mgmt",
        "xcp-central",
        "central",
        "spiffe://xcp.tetrate.io/central",
    );
    let mpc = identity("mgmt", "mpc", "mpc", "spiffe://xcp.tetrate.io/mpc");
    let edge = identity(
        "east",
        "xcp-edge",
        "edge",
        "spiffe://xcp.tetrate.io/prod-east",
    );
    let rogue = identity(
        "rogue",
        "xcp-edge",
        "rogue",
        "spiffe://xcp.tetrate.io/prod-east",
    );
    let text = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName"])
        .stdin(std::fs::File::open(out.join("mgmt/xcp-central/tls.crt")).unwrap())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("DNS:central.tsb.example"),
        "xcp-central carries its address"
    );
    let mesh = Mesh::start(&[central, mpc, edge, rogue]).await;
    for server in ["central", "mpc"] {
        completed(
            &mesh.call("edge", server).await,
            &format!("edge → {server}"),
            &mesh,
        );
        let h = mesh.call("rogue", server).await;
        refused_unknown_ca(&h, &format!("an edge of another root → {server}"));
    }
    completed(
        &mesh.call("central", "edge").await,
        "central → edge (the edge's SPIFFE id checked)",
        &mesh,
    );
}

/// istio-csr: a workload leaf signed with the cert-manager CA secret's key, presented with
/// `tls.crt`'s chain, is accepted by a workload of another cluster trusting its `ca.crt`.
#[tokio::test]
async fn istio_csr_leaves_of_two_clusters_trust_each_other_and_refuse_another_root() {
    let d = tempfile::tempdir().unwrap();
    for c in ["c1", "c2"] {
        issue(d.path(), &["--cluster", c, "--kind", "cert-manager-ca"]);
    }
    issue(
        d.path(),
        &[
            "--cluster",
            "c3",
            "--kind",
            "cert-manager-ca",
            "--ca-dir",
            "other-root",
            "--escrow-dir",
            "other-escrow",
        ],
    );
    let out = d.path().join("out");
    let leaf = |c: &str| {
        let t = tls_files(&out.join(c).join("cert-manager-ca"));
        let ca_cert = t
            .crt
            .split_inclusive("-----END CERTIFICATE-----\n")
            .next()
            .unwrap()
            .to_string();
        envoy::sign_workload(
            c,
            &format!("spiffe://cluster.local/ns/{c}/sa/{c}"),
            &ca_cert,
            &t.key,
            &t.crt,
            &t.ca,
            LeafKey::Rsa2048,
        )
    };
    let mesh = Mesh::start(&[leaf("c1"), leaf("c2"), leaf("c3")]).await;
    let (ab, ba) = mesh.both_ways("c1", "c2").await;
    completed(&ab, "c1 → c2", &mesh);
    completed(&ba, "c2 → c1", &mesh);
    let (x, y) = mesh.both_ways("c1", "c3").await;
    refused_unknown_ca(&x, "c1 → c3 (another root)");
    refused_unknown_ca(&y, "c3 → c1 (another root)");
}

/// Issues a fleet of files (alpha, beta), then runs `steps`, keeping each cluster's files
/// before the first step and after each, and judges every pair of the two clusters at any two
/// of those phases in a real Envoy. `phases` says, for each, which root issued the intermediate
/// and which roots `root-cert.pem` holds (DESIGN.md's table): a pair completes mTLS both ways
/// exactly when each trusts the other's issuer — always for neighbouring phases (a fleet moves
/// one cluster at a time), never for some two apart (why the gates exist).
async fn judge_rotation(steps: &[&[&str]], phases: &[(char, &str)]) {
    let d = tempfile::tempdir().unwrap();
    for c in ["alpha", "beta"] {
        issue(d.path(), &["--cluster", c]);
    }
    let files = |snap: &Path, c: &str| {
        for f in [
            "ca-cert.pem",
            "ca-key.pem",
            "cert-chain.pem",
            "root-cert.pem",
        ] {
            std::fs::copy(d.path().join("out").join(c).join(f), snap.join(f)).unwrap();
        }
    };
    judge_phases(d.path(), steps, &[], phases, files).await;
}

/// Runs `steps` (each with `extra` arguments) in `d` on the fleet alpha, beta; after each (and
/// before the first) `snapshot` copies a cluster's four files into the directory it is given.
async fn judge_phases(
    d: &Path,
    steps: &[&[&str]],
    extra: &[&str],
    phases: &[(char, &str)],
    snapshot: impl Fn(&Path, &str),
) {
    assert_eq!(phases.len(), steps.len() + 1);
    let mut workloads = Vec::new();
    for i in 0..=steps.len() {
        if i > 0 {
            let out = meshca(d).args(steps[i - 1]).args(extra).output().unwrap();
            assert!(
                out.status.success(),
                "{:?}: {}",
                steps[i - 1],
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for c in ["alpha", "beta"] {
            let snap = d.join(format!("snap/{i}/{c}"));
            std::fs::create_dir_all(&snap).unwrap();
            snapshot(&snap, c);
            let roots = std::fs::read_to_string(snap.join("root-cert.pem"))
                .unwrap()
                .matches("BEGIN CERTIFICATE")
                .count();
            assert_eq!(
                roots,
                phases[i].1.len(),
                "{c} after step {i}: root-cert.pem holds {roots} roots"
            );
            workloads.push(envoy::istio_workload(
                &snap,
                &format!("{c}{i}"),
                LeafKey::Rsa2048,
            ));
        }
    }
    let mesh = Mesh::start(&workloads).await;
    let phase = |i: usize| {
        if i == 0 {
            "before".to_string()
        } else {
            steps[i - 1].join(" ")
        }
    };
    let (mut trusted, mut refused) = (0, 0);
    for i in 0..=steps.len() {
        for j in 0..=steps.len() {
            let ((issuer_i, trust_i), (issuer_j, trust_j)) = (phases[i], phases[j]);
            let expect = trust_i.contains(issuer_j) && trust_j.contains(issuer_i);
            assert!(
                expect || i.abs_diff(j) > 1,
                "the phase table lets neighbours {i}, {j} distrust each other"
            );
            let (ab, ba) = mesh
                .both_ways(&format!("alpha{i}"), &format!("beta{j}"))
                .await;
            let what = format!("alpha ({}) and beta ({})", phase(i), phase(j));
            if expect {
                trusted += 1;
                completed(&ab, &format!("{what}: alpha → beta"), &mesh);
                completed(&ba, &format!("{what}: beta → alpha"), &mesh);
            } else {
                refused += 1;
                assert!(
                    ab.is_unknown_ca() && ba.is_unknown_ca(),
                    "{what} must refuse each other as unknown CAs: {ab:?} / {ba:?}"
                );
            }
        }
    }
    assert!(
        trusted > 0 && refused > 0,
        "{trusted} pairs trusted, {refused} refused"
    );
}

const START: &[&str] = &[
    "rotate-root",
    "start",
    "--to",
    "local:.meshca/ca-2027",
    "--create",
    "--soak",
    "0",
];
const ADVANCE: &[&str] = &["rotate-root", "advance"];

/// before → trust-both → switch → drop-old → done.
#[tokio::test]
async fn every_rotation_phase_keeps_neighbours_in_trust_and_two_phases_apart_do_not() {
    judge_rotation(
        &[START, ADVANCE, ADVANCE, ADVANCE],
        &[('A', "A"), ('A', "AB"), ('B', "AB"), ('B', "B"), ('B', "B")],
    )
    .await;
}

/// before → trust-both → switch → abort (the old root issues again) → the old root alone.
#[tokio::test]
async fn an_aborted_rotation_keeps_neighbours_in_trust_on_the_way_back() {
    judge_rotation(
        &[START, ADVANCE, &["rotate-root", "abort"], ADVANCE],
        &[
            ('A', "A"),
            ('A', "AB"),
            ('B', "AB"),
            ('A', "AB"),
            ('A', "A"),
        ],
    )
    .await;
}

/// Two real kube-apiservers, alpha and beta, each with istiod `istiod` in istio-system, and
/// `fleet.yaml` in `d` with a context for each (merged by kubectl); both issued through it.
fn kube_fleet(d: &Path, istiod: &str) -> [meshca_test_support::kube::RealApiServer; 2] {
    use meshca_test_support::kube::RealApiServer;
    let servers = [RealApiServer::start(), RealApiServer::start()];
    for s in &servers {
        s.kubectl(&["create", "namespace", "istio-system"], None);
        s.seed_istiod(istiod);
    }
    RealApiServer::fleet_kubeconfig(
        &[(&servers[0], "alpha"), (&servers[1], "beta")],
        &d.join("fleet.yaml"),
    );
    for c in ["alpha", "beta"] {
        let out = meshca(d)
            .args(["issue", "--cluster", c, "--context", c, "--no-files"])
            .args(FLEET_KUBECONFIG)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{c}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    servers
}

const FLEET_KUBECONFIG: [&str; 2] = ["--kubeconfig", "fleet.yaml"];

/// Copies `files` of cluster `c`'s live `cacerts` (alpha in `servers[0]`, beta in
/// `servers[1]`), as kubectl reads it, into `snap`.
fn snapshot_cacerts(
    servers: &[meshca_test_support::kube::RealApiServer; 2],
    files: &[&str],
    snap: &Path,
    c: &str,
) {
    let s = &servers[usize::from(c == "beta")];
    for f in files {
        let text = s
            .cacerts_file(f)
            .unwrap_or_else(|| panic!("{c}: cacerts has no {f}"));
        std::fs::write(snap.join(f), text).unwrap();
    }
}

const BUNDLE_FILES: [&str; 4] = [
    "ca-cert.pem",
    "ca-key.pem",
    "cert-chain.pem",
    "root-cert.pem",
];

/// The same phases delivered into two real kube-apiservers (`cacerts` read back with kubectl
/// after each step), through a kubeconfig fleet.
#[tokio::test]
async fn rotation_phases_delivered_to_real_apiservers_keep_neighbours_in_trust() {
    let d = tempfile::tempdir().unwrap();
    let servers = kube_fleet(d.path(), "docker.io/istio/pilot:1.24.2");
    let steps: &[&[&str]] = &[START, ADVANCE, ADVANCE, ADVANCE];
    judge_phases(
        d.path(),
        steps,
        &FLEET_KUBECONFIG,
        &[('A', "A"), ('A', "AB"), ('B', "AB"), ('B', "B"), ('B', "B")],
        |snap, c| snapshot_cacerts(&servers, &BUNDLE_FILES, snap, c),
    )
    .await;
}

/// Runs a whole root rotation in CRL mode (alpha and beta issued, CRL mode on) with `extra`
/// arguments, `snapshot` copying a cluster's five files (`ca-crl.pem` among them) after each
/// step, and judges it in Envoy, each workload checking its peers against its own cluster's
/// `ca-crl.pem`. Every step gives every cluster the CRLs of the intermediates it issued (and
/// both roots') before any of them is put in force, so at every moment of a step neighbours
/// complete mTLS: the cluster still on the old phase already holds the CRLs the new phase's
/// chain needs. A CRL file from before the switch, checking a chain from after it, refuses it for
/// want of a CRL: what delivering them first prevents.
async fn judge_rotation_with_crls(d: &Path, extra: &[&str], snapshot: impl Fn(&Path, &str)) {
    let steps: &[&[&str]] = &[START, ADVANCE, ADVANCE, ADVANCE];
    let snap = |i: usize, c: &str| d.join(format!("snap/{i}/{c}"));
    for i in 0..=steps.len() {
        if i > 0 {
            let out = meshca(d).args(steps[i - 1]).args(extra).output().unwrap();
            let said = String::from_utf8_lossy(&out.stdout);
            let step = steps[i - 1];
            assert!(
                out.status.success(),
                "{step:?}: {said}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                !said.contains("awaiting-crls"),
                "{step:?} left a generation waiting:\n{said}"
            );
        }
        for c in ["alpha", "beta"] {
            std::fs::create_dir_all(snap(i, c)).unwrap();
            snapshot(&snap(i, c), c);
        }
    }
    // The workload of cluster c on the bundle of phase i, checking peers against the CRLs
    // its cluster held at phase k (k = i, or i + 1 while the next step is under way).
    let workload = |c: &str, i: usize, k: usize| {
        let name = format!("{c}{i}crl{k}");
        let mut w = envoy::istio_workload(&snap(i, c), &name, LeafKey::Rsa2048);
        w.crl_pem = Some(std::fs::read_to_string(snap(k, c).join("ca-crl.pem")).unwrap());
        w
    };
    let last = steps.len();
    let mut workloads = Vec::new();
    for i in 0..=last {
        for c in ["alpha", "beta"] {
            workloads.push(workload(c, i, i));
            if i < last {
                workloads.push(workload(c, i, i + 1));
            }
        }
    }
    let mesh = Mesh::start(&workloads).await;
    let pair = |a: (usize, usize), b: (usize, usize)| {
        (
            format!("alpha{}crl{}", a.0, a.1),
            format!("beta{}crl{}", b.0, b.1),
        )
    };
    for i in 0..=last {
        let mut pairs = vec![pair((i, i), (i, i))];
        if i < last {
            // Mid-step: one cluster on the new phase, the other not yet; both hold the new CRLs.
            pairs.push(pair((i + 1, i + 1), (i, i + 1)));
            pairs.push(pair((i, i + 1), (i + 1, i + 1)));
        }
        for (a, b) in pairs {
            let (ab, ba) = mesh.both_ways(&a, &b).await;
            completed(&ab, &format!("{a} → {b}"), &mesh);
            completed(&ba, &format!("{b} → {a}"), &mesh);
        }
    }
    let (switched, stale) = pair((2, 2), (1, 1));
    let (stale_checks_switched, _) = mesh.both_ways(&stale, &switched).await;
    assert!(
        stale_checks_switched.is_crl_missing(),
        "a CRL file from before the switch must lack the new intermediate's CRL: {stale_checks_switched:?}"
    );
}

/// A root rotation in CRL mode through two real kube-apiservers running istiod 1.28: each step
/// writes the CRLs into both clusters' `cacerts` before the bundles that need them.
#[tokio::test]
async fn a_rotation_in_crl_mode_through_the_apis_keeps_neighbours_in_trust() {
    let d = tempfile::tempdir().unwrap();
    let servers = kube_fleet(d.path(), "docker.io/istio/pilot:1.28.1");
    let enable = meshca(d.path())
        .args(["crl", "enable", "--fleet-kubeconfig", "fleet.yaml"])
        .output()
        .unwrap();
    assert!(
        enable.status.success(),
        "{}",
        String::from_utf8_lossy(&enable.stderr)
    );
    let files = [BUNDLE_FILES.as_slice(), &["ca-crl.pem"]].concat();
    judge_rotation_with_crls(d.path(), &FLEET_KUBECONFIG, |snap, c| {
        snapshot_cacerts(&servers, &files, snap, c)
    })
    .await;
}

/// The same on files: each step writes every cluster's `ca-crl.pem` anew, with the CRLs of the
/// intermediates it issued.
#[tokio::test]
async fn a_rotation_in_crl_mode_on_files_keeps_neighbours_in_trust() {
    let d = tempfile::tempdir().unwrap();
    for c in ["alpha", "beta"] {
        issue(d.path(), &["--cluster", c]);
    }
    let enable = meshca(d.path()).args(["crl", "enable"]).output().unwrap();
    assert!(enable.status.success());
    let out = d.path().join("out");
    judge_rotation_with_crls(d.path(), &[], |snap, c| {
        for f in BUNDLE_FILES.iter().chain(&["ca-crl.pem"]) {
            std::fs::copy(out.join(c).join(f), snap.join(f)).unwrap();
        }
    })
    .await;
}
