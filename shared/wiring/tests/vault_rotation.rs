//! A root rotation between two OpenBao PKI mounts (two roots), named by locators as the CLI and
//! the functions name them, over a fleet of files; openssl judges trust between every pair.

use std::sync::Arc;

use meshca_core::rollout::{Member, Rollout};
use meshca_core::rotation::{Anchor, Phase};
use meshca_core::{ClusterName, Settings, Validity};
use meshca_local::{LocalEscrow, LocalRotationStore};
use meshca_test_support::openssl;
use meshca_test_support::vault::Bao;
use meshca_wiring::{AuthoritySpec, FilesDelivery, VaultLogin, VaultSpec};
use zeroize::Zeroizing;

const POLICY: &str = include_str!("../../vault/meshca-policy.hcl");

#[tokio::test(flavor = "multi_thread")]
async fn two_openbao_mounts_rotate_a_fleet_of_files() {
    let bao = Bao::start();
    bao.two_level_pki();
    // The new root: a second, independent mount pki2 whose own root signs directly.
    bao.cli(&["secrets", "enable", "-path=pki2", "pki"]);
    bao.cli(&["secrets", "tune", "-max-lease-ttl=87600h", "pki2"]);
    bao.cli(&[
        "write",
        "pki2/root/generate/internal",
        "common_name=meshca test root 2027",
        "ttl=87600h",
        "key_type=ec",
        "key_bits=256",
    ]);
    let policy = format!("{POLICY}\n{}", POLICY.replace("\"pki/", "\"pki2/"));
    let token = bao.token_with_policy("meshca-both", &policy);
    let old = AuthoritySpec::Vault(VaultSpec {
        addr: bao.addr.clone(),
        ca_pem: Some(bao.ca_pem.clone()),
        namespace: None,
        mount: "pki".into(),
        issuer: None,
        login: VaultLogin::Token(Zeroizing::new(token)),
    });
    let new = AuthoritySpec::from_locator("vault:pki2", &old).unwrap();
    assert_eq!(new.locator(), "vault:pki2");
    let (a, b) = (
        meshca_wiring::authority(&old, None).await.unwrap(),
        meshca_wiring::authority(&new, None).await.unwrap(),
    );
    let anchor = |spec: &AuthoritySpec, info: meshca_core::AuthorityInfo| Anchor {
        authority_id: info.id,
        locator: spec.locator(),
        root_bundle: info.root_bundle,
    };
    let (from, to) = (
        anchor(&old, a.describe().await.unwrap()),
        anchor(&new, b.describe().await.unwrap()),
    );

    let dir = tempfile::tempdir().unwrap();
    let escrow = LocalEscrow::new(dir.path().join("escrow"));
    let store = LocalRotationStore::new(dir.path().join("escrow"));
    let settings = Settings {
        validity: Validity::Days(30),
        ..Settings::default()
    };
    let names = ["v1", "v2", "v3"];
    let members: Vec<Member> = names
        .iter()
        .map(|n| Member {
            kind: meshca_core::KindSpec::default(),
            cluster: n.parse::<ClusterName>().unwrap(),
            delivery: Arc::new(FilesDelivery::new(
                dir.path().join("out").join(n),
                settings.kind.landing(),
                settings.profile.clone(),
            )),
        })
        .collect();
    let seed = meshca_core::Reconciler {
        authority: a.as_ref(),
        escrow: &escrow,
        settings: &settings,
    };
    for m in &members {
        assert_eq!(
            seed.apply(&m.cluster, m.delivery.as_ref(), false)
                .await
                .label(),
            "renewed"
        );
    }
    let rollout = Rollout {
        store: &store,
        escrow: &escrow,
        settings: &settings,
        authorities: vec![
            (from.authority_id.clone(), a.clone()),
            (to.authority_id.clone(), b.clone()),
        ],
        crls: None,
    };
    let serials = bao.serials("pki2").len();
    let mut r = rollout
        .start(from, to.clone(), time::Duration::ZERO, &members)
        .await
        .unwrap();
    for phase in [Phase::TrustBoth, Phase::Switch, Phase::DropOld] {
        assert_eq!(r.rotation.phase, phase);
        assert!(
            r.clusters.iter().all(|s| s.confirmed),
            "{phase}: {:?}",
            r.clusters
        );
        assert_mutual_trust(&dir.path().join("out"), &names);
        r = rollout.advance(&members, false).await.unwrap();
    }
    assert_eq!(r.rotation.phase, Phase::Done);
    assert_eq!(
        bao.serials("pki2").len() - serials,
        names.len(),
        "one certificate per cluster from the new mount"
    );
    let root = std::fs::read_to_string(dir.path().join("out/v1/root-cert.pem")).unwrap();
    assert_eq!(root, to.root_bundle);
}

fn assert_mutual_trust(out: &std::path::Path, clusters: &[&str]) {
    for x in clusters {
        let xd = out.join(x);
        openssl::sign(&xd, "leaf", "ca-cert.pem", "ca-key.pem", false);
        for y in clusters {
            let root = out.join(y).join("root-cert.pem").display().to_string();
            let (ok, text) = openssl::run(
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
                "a leaf of {x} does not verify under the root of {y}: {text}"
            );
        }
    }
}
