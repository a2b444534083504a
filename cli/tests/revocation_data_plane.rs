//! Compromise response judged by a real data plane (Envoy, tests/support/src/envoy.rs): three
//! clusters of one root in CRL mode, each workload checking peers against its own cluster's
//! `ca-crl.pem` as an Istio 1.27+ sidecar does. Before `meshca revoke --cluster x` every pair
//! completes mTLS; after it, y and z refuse x's workloads both ways *because x is revoked*, and
//! y ↔ z go on.

use std::path::Path;

use assert_cmd::Command;
use meshca_test_support::envoy::{self, Handshake, LeafKey, Mesh, Workload};

/// `meshca` in `dir`, with none of the caller's CA, escrow or cluster set-up.
fn meshca_in(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("meshca").unwrap();
    c.current_dir(dir)
        .env_remove("MESHCA_CA_DIR")
        .env_remove("MESHCA_ESCROW_DIR")
        .env_remove("KUBECONFIG");
    c
}

/// What a run that succeeded printed; a panic with both streams otherwise.
fn ok(out: std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn meshca(dir: &Path, args: &[&str]) -> String {
    let out = meshca_in(dir).args(args).output().unwrap();
    ok(out, &format!("meshca {args:?}"))
}

/// The workload of cluster `c`, checking peers against the CRLs in its cluster's files.
fn workload(out: &Path, c: &str) -> Workload {
    let mut w = envoy::istio_workload(&out.join(c), c, LeafKey::Rsa2048);
    w.crl_pem = Some(std::fs::read_to_string(out.join(c).join("ca-crl.pem")).unwrap());
    w
}

fn completed(h: &Handshake, what: &str, mesh: &Mesh) {
    assert!(
        h.completed(),
        "{what}: {h:?} (configs in {})",
        mesh.dir().display()
    );
}

fn refused_as_revoked(h: &Handshake, what: &str, mesh: &Mesh) {
    assert!(
        h.is_revoked(),
        "{what} must be refused because x is revoked: {h:?} (configs in {})",
        mesh.dir().display()
    );
}

/// After x's revocation, with each cluster's files as meshca left them: y and z refuse x's
/// workloads both ways because x is revoked, and y ↔ z go on.
async fn x_is_refused_and_the_rest_go_on(out: &Path) {
    let after = Mesh::start(&["x", "y", "z"].map(|c| workload(out, c))).await;
    for other in ["y", "z"] {
        let (to_x, from_x) = after.both_ways(other, "x").await;
        refused_as_revoked(&to_x, &format!("{other} → x"), &after);
        refused_as_revoked(&from_x, &format!("x → {other}"), &after);
    }
    let (yz, zy) = after.both_ways("y", "z").await;
    completed(&yz, "y → z after", &after);
    completed(&zy, "z → y after", &after);
}

#[tokio::test]
async fn a_revoked_cluster_is_refused_by_every_other_and_the_rest_go_on() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    for c in ["x", "y", "z"] {
        meshca(d.path(), &["issue", "--cluster", c]);
    }
    meshca(d.path(), &["crl", "enable"]);
    let before = Mesh::start(&["x", "y", "z"].map(|c| workload(&out, c))).await;
    for (a, b) in [("x", "y"), ("y", "z"), ("x", "z")] {
        let (ab, ba) = before.both_ways(a, b).await;
        completed(&ab, &format!("{a} → {b} before"), &before);
        completed(&ba, &format!("{b} → {a} before"), &before);
    }

    let said = meshca(
        d.path(),
        &[
            "revoke",
            "--cluster",
            "x",
            "--reason",
            "key-compromise",
            "--yes",
        ],
    );
    assert!(said.contains("y: ca-crl.pem written"), "{said}");
    assert!(
        out.join("x/REVOKED").exists(),
        "x's files say it is revoked"
    );
    // The delivered bundle as openssl reads it: x's intermediate revoked, z's not.
    let verify = |c: &str| {
        std::process::Command::new("openssl")
            .args(["verify", "-crl_check_all", "-CRLfile"])
            .arg(out.join("y/ca-crl.pem"))
            .arg("-CAfile")
            .arg(out.join("y/root-cert.pem"))
            .arg(out.join(c).join("ca-cert.pem"))
            .output()
            .expect("openssl runs")
    };
    let x = verify("x");
    assert!(!x.status.success());
    let said = String::from_utf8_lossy(&x.stderr);
    assert!(said.contains("certificate revoked"), "{said}");
    assert!(verify("z").status.success());

    // x keeps its stolen key and files; y and z hold the new CRLs.
    x_is_refused_and_the_rest_go_on(&out).await;

    later_clusters_and_renewals_keep_the_rest_in_trust(&out, |args| meshca(d.path(), args)).await;
}

/// After x's revocation, with `meshca` running the command line on the fleet in `out`'s
/// parent: a cluster w that joins later gets the fleet's CRLs with its first bundle, and a
/// renewal of y puts its new generation's CRL beside the old one's, so y's workloads of both
/// generations (the old ones until their leaves rotate) stay admitted by z and w; x stays
/// refused as revoked.
async fn later_clusters_and_renewals_keep_the_rest_in_trust(
    out: &Path,
    meshca: impl Fn(&[&str]) -> String,
) {
    let y1 = Workload {
        name: "y1".into(),
        ..workload(out, "y")
    };
    meshca(&["issue", "--cluster", "w"]);
    let said = meshca(&["issue", "--cluster", "y", "--force"]);
    assert!(said.contains("y: issued generation 2"), "{said}");
    // y's first-generation workload, checking peers against y's CRLs as they are now.
    let y1 = Workload {
        crl_pem: Some(std::fs::read_to_string(out.join("y/ca-crl.pem")).unwrap()),
        ..y1
    };
    // x's files are no longer kept up to date (held): its proxies check nothing here, so any
    // refusal below is the other side's.
    let attacker = Workload {
        crl_pem: None,
        ..workload(out, "x")
    };
    let renewed = Mesh::start(&[
        attacker,
        workload(out, "y"),
        workload(out, "z"),
        workload(out, "w"),
        y1,
    ])
    .await;
    for (a, b) in [("w", "y"), ("w", "z"), ("z", "y"), ("z", "y1"), ("y", "y1")] {
        let (ab, ba) = renewed.both_ways(a, b).await;
        completed(&ab, &format!("{a} → {b} after y's renewal"), &renewed);
        completed(&ba, &format!("{b} → {a} after y's renewal"), &renewed);
    }
    let (wx, xw) = renewed.both_ways("w", "x").await;
    refused_as_revoked(&wx, "w → x", &renewed);
    refused_as_revoked(&xw, "x → w", &renewed);
}

/// Freshness: a proxy given a lapsed CRL refuses every peer, revoked or not. With the root's CRL
/// past its nextUpdate (nobody published for 30 days), y and z cannot talk, and `meshca fleet`
/// says `stale`; `meshca crl publish` re-signs it and they talk again.
#[tokio::test]
async fn a_lapsed_crl_refuses_every_peer_until_meshca_publishes_again() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    for c in ["y", "z"] {
        meshca(d.path(), &["issue", "--cluster", c]);
    }
    meshca(d.path(), &["crl", "enable"]);
    // The root's CRL comes first in each file: put one there that lapsed yesterday.
    let ca = d.path().join(".meshca/ca");
    let key = std::fs::read_to_string(ca.join("root-key.pem")).unwrap();
    let root = std::fs::read_to_string(ca.join("root-cert.pem")).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let lapsed = meshca_core::crl::sign(
        &root,
        &meshca_core::PrivateKey::from_pkcs8_pem(&key).unwrap(),
        &[],
        now - time::Duration::days(31),
        now - time::Duration::days(1),
    )
    .unwrap();
    for c in ["y", "z"] {
        let file = out.join(c).join("ca-crl.pem");
        let text = std::fs::read_to_string(&file).unwrap();
        let (_, own) = text.split_once("-----END X509 CRL-----\n").unwrap();
        std::fs::write(&file, format!("{lapsed}{own}")).unwrap();
    }
    let fleet = meshca(d.path(), &["fleet", "--out-dir", "out"]);
    assert!(fleet.contains("stale"), "{fleet}");
    let inspected = meshca_in(d.path())
        .args(["inspect", "out/y"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&inspected.stdout);
    assert_eq!(inspected.status.code(), Some(1), "{said}");
    assert!(
        said.contains("INVALID: a CRL in ca-crl.pem lapsed at"),
        "{said}"
    );
    let stale = Mesh::start(&["y", "z"].map(|c| workload(&out, c))).await;
    let (yz, zy) = stale.both_ways("y", "z").await;
    for (h, what) in [(&yz, "y → z"), (&zy, "z → y")] {
        assert!(
            h.reason().contains("crl has expired"),
            "{what} with a lapsed CRL must be refused for it: {h:?} (configs in {})",
            stale.dir().display()
        );
    }

    meshca(d.path(), &["crl", "publish"]);
    let said = meshca(d.path(), &["inspect", "out/y"]);
    assert!(
        said.contains("CRLs         3 in ca-crl.pem, its own among them, 0 revoked certificates listed; the first lapses in 29 days")
            || said.contains("the first lapses in 30 days"),
        "{said}"
    );
    let fresh = Mesh::start(&["y", "z"].map(|c| workload(&out, c))).await;
    let (yz, zy) = fresh.both_ways("y", "z").await;
    completed(&yz, "y → z after crl publish", &fresh);
    completed(&zy, "z → y after crl publish", &fresh);
}

/// The same through an emulated two-level AWS Private CA (root → issuing CA → cluster
/// intermediates) whose CAs publish their CRLs to S3 as PCA does: the fleet bundle holds the
/// root's and the issuing CA's CRLs, read from S3, beside each intermediate's own. PCA
/// publishes a revocation tens of minutes later: until then meshca says "CRL pending" and
/// nothing refuses x; once the CA has published, `meshca crl publish` makes every other cluster
/// refuse x because it is revoked.
mod pca {
    use super::*;
    use meshca_test_support::aws::{self, AwsEmulator};

    fn meshca_pca(dir: &Path, emu: &AwsEmulator, args: &[&str]) -> std::process::Output {
        let mut c = meshca_in(dir);
        c.envs(emu.child_env());
        for v in aws::AWS_UNSET {
            c.env_remove(v);
        }
        c.args(args).output().unwrap()
    }

    #[tokio::test]
    async fn a_revoked_pca_cluster_is_refused_once_its_ca_publishes_the_crl() {
        let emu = AwsEmulator::start();
        let h = emu.control(
            "fixtures/hierarchy",
            serde_json::json!({"key_algorithm": "EC_prime256v1", "levels": 2, "crl_bucket": "meshca-crls"}),
        );
        let arn = h["issuing"].as_str().unwrap().to_string();
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        for c in ["x", "y", "z"] {
            ok(
                meshca_pca(d.path(), &emu, &["issue", "--cluster", c, "--ca-arn", &arn]),
                c,
            );
        }
        let said = ok(
            meshca_pca(d.path(), &emu, &["crl", "enable", "--ca-arn", &arn]),
            "crl enable",
        );
        // Two CAs of the hierarchy and three intermediates: five CRLs.
        assert!(
            said.contains("y: ca-crl.pem written (5 CRLs, 0 revoked"),
            "{said}"
        );
        let before = Mesh::start(&["x", "y", "z"].map(|c| workload(&out, c))).await;
        for (a, b) in [("x", "y"), ("y", "z")] {
            let (ab, ba) = before.both_ways(a, b).await;
            completed(&ab, &format!("{a} → {b} before"), &before);
            completed(&ba, &format!("{b} → {a} before"), &before);
        }

        emu.control("crl/hold", serde_json::json!({}));
        let revoke = [
            "revoke",
            "--cluster",
            "x",
            "--reason",
            "key-compromise",
            "--yes",
            "--ca-arn",
            &arn,
        ];
        let said = ok(meshca_pca(d.path(), &emu, &revoke), "revoke");
        assert!(
            said.contains("x: revoked at the authority, CRL pending"),
            "{said}"
        );
        assert_eq!(emu.calls("RevokeCertificate"), 1);

        emu.control("crl/publish", serde_json::json!({}));
        let said = ok(
            meshca_pca(d.path(), &emu, &["crl", "publish", "--ca-arn", &arn]),
            "crl publish",
        );
        assert!(
            said.contains("y: ca-crl.pem written (5 CRLs, 1 revoked"),
            "{said}"
        );
        assert!(!said.contains("CRL pending"), "{said}");
        x_is_refused_and_the_rest_go_on(&out).await;
        later_clusters_and_renewals_keep_the_rest_in_trust(&out, |args| {
            let with_ca = [args, &["--ca-arn", &arn]].concat();
            ok(meshca_pca(d.path(), &emu, &with_ca), "meshca")
        })
        .await;
        // Revoking again changes nothing and revokes nothing twice.
        let said = ok(meshca_pca(d.path(), &emu, &revoke), "revoke again");
        assert!(said.contains("revoked and held already"), "{said}");
        assert_eq!(emu.calls("RevokeCertificate"), 1);
    }

    #[test]
    fn crl_mode_is_refused_on_a_ca_that_publishes_no_crl_naming_the_setting() {
        let emu = AwsEmulator::start();
        let arn = emu.hierarchy("EC_prime256v1", 2)["issuing"]
            .as_str()
            .unwrap()
            .to_string();
        let d = tempfile::tempdir().unwrap();
        ok(
            meshca_pca(
                d.path(),
                &emu,
                &["issue", "--cluster", "x", "--ca-arn", &arn],
            ),
            "issue",
        );
        let e = meshca_pca(d.path(), &emu, &["crl", "enable", "--ca-arn", &arn]);
        assert_eq!(e.status.code(), Some(1));
        let said = String::from_utf8_lossy(&e.stderr);
        assert!(
            said.contains("RevocationConfiguration.CrlConfiguration"),
            "{said}"
        );
        assert!(said.contains("CrlType COMPLETE"), "{said}");
    }

    /// A root kept offline names no CRL in S3 in what it signed: meshca says to name where its
    /// owner put its CRL, then takes it from there, checked as the root's (signed by it, in
    /// force), and its lapse counts in the fleet's first lapse.
    #[test]
    fn an_offline_root_s_crl_is_taken_from_where_its_owner_put_it() {
        let emu = AwsEmulator::start();
        let h = emu.control(
            "fixtures/hierarchy",
            serde_json::json!({"key_algorithm": "EC_prime256v1", "levels": 2, "crl_bucket": "meshca-crls", "offline_root": true, "offline_crl_days": 3}),
        );
        let (arn, root_crl) = (
            h["issuing"].as_str().unwrap().to_string(),
            h["root_crl"].as_str().unwrap().to_string(),
        );
        let d = tempfile::tempdir().unwrap();
        ok(
            meshca_pca(
                d.path(),
                &emu,
                &["issue", "--cluster", "x", "--ca-arn", &arn],
            ),
            "issue",
        );
        let e = meshca_pca(d.path(), &emu, &["crl", "enable", "--ca-arn", &arn]);
        assert_eq!(e.status.code(), Some(1));
        let said = String::from_utf8_lossy(&e.stderr);
        assert!(said.contains("--root-crl s3://BUCKET/KEY"), "{said}");

        // Another CA's CRL is no root CRL: refused, saying why.
        let issuing_crl = format!(
            "s3://meshca-crls/crl/{}.crl",
            arn.rsplit('/').next().unwrap()
        );
        let e = meshca_pca(
            d.path(),
            &emu,
            &[
                "crl",
                "enable",
                "--ca-arn",
                &arn,
                "--root-crl",
                &issuing_crl,
            ],
        );
        assert_eq!(
            e.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&e.stdout)
        );

        let said = ok(
            meshca_pca(
                d.path(),
                &emu,
                &["crl", "enable", "--ca-arn", &arn, "--root-crl", &root_crl],
            ),
            "crl enable --root-crl",
        );
        // The offline root's, the issuing CA's, x's own.
        assert!(said.contains("x: ca-crl.pem written (3 CRLs"), "{said}");
        let listed = meshca_core::fleet_crls::FleetCrls::assemble(
            &std::fs::read_to_string(d.path().join("out/x/ca-crl.pem")).unwrap(),
            Vec::new(),
        )
        .unwrap();
        assert!(
            listed
                .listed
                .iter()
                .any(|l| l.issuer.contains("meshca test root")),
            "{:?}",
            listed.listed
        );
        // Its 3 days are the fleet's first lapse (the Private CA's last 7).
        let fleet = ok(
            meshca_pca(d.path(), &emu, &["fleet", "--out-dir", "out"]),
            "fleet",
        );
        assert!(
            fleet.contains("ready (2d)") || fleet.contains("ready (3d)"),
            "{fleet}"
        );
    }
}

/// The same with OpenBao: a two-level PKI (a root mount signs the intermediate mount that signs
/// cluster intermediates), meshca holding only its documented policy. The bundle carries the
/// intermediate mount's CRL, read through the issuer, and the root mount's, found through the
/// distribution point in the certificate it signed; Envoy refuses x because it is revoked.
mod openbao {
    use super::*;
    use meshca_test_support::vault::Bao;

    const POLICY: &str = include_str!("../../shared/vault/meshca-policy.hcl");

    fn meshca_bao(dir: &Path, bao: &Bao, token: &Path, args: &[&str]) -> String {
        let out = meshca_in(dir)
            .env_remove("VAULT_TOKEN")
            .env("VAULT_CACERT", bao.ca_file())
            .args(args)
            .args(["--vault-addr", &bao.addr])
            .args(["--vault-token-file", token.to_str().unwrap()])
            .output()
            .unwrap();
        ok(out, &format!("meshca {args:?}"))
    }

    #[tokio::test]
    async fn a_revoked_openbao_cluster_is_refused_by_the_others() {
        let bao = Bao::start();
        bao.two_level_pki();
        let d = tempfile::tempdir().unwrap();
        let token = d.path().join("token");
        std::fs::write(&token, bao.token_with_policy("meshca", POLICY)).unwrap();
        let out = d.path().join("out");
        for c in ["x", "y", "z"] {
            meshca_bao(d.path(), &bao, &token, &["issue", "--cluster", c]);
        }
        let said = meshca_bao(d.path(), &bao, &token, &["crl", "enable"]);
        // The root mount's CRL, the intermediate mount's, and three intermediates' own.
        assert!(
            said.contains("y: ca-crl.pem written (5 CRLs, 0 revoked"),
            "{said}"
        );
        let before = Mesh::start(&["x", "y", "z"].map(|c| workload(&out, c))).await;
        let (xy, yx) = before.both_ways("x", "y").await;
        completed(&xy, "x → y before", &before);
        completed(&yx, "y → x before", &before);

        let said = meshca_bao(
            d.path(),
            &bao,
            &token,
            &[
                "revoke",
                "--cluster",
                "x",
                "--reason",
                "key-compromise",
                "--yes",
            ],
        );
        assert!(
            said.contains("y: ca-crl.pem written (5 CRLs, 1 revoked"),
            "{said}"
        );
        x_is_refused_and_the_rest_go_on(&out).await;
        later_clusters_and_renewals_keep_the_rest_in_trust(&out, |args| {
            meshca_bao(d.path(), &bao, &token, args)
        })
        .await;
    }
}
