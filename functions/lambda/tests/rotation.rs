//! A root rotation carried by the expiry sweep: each sweep reconciles the fleet at the phase of
//! the record in Secrets Manager, reads every cluster back, and advances the record; a cluster
//! created mid-way joins at the phase. Emulated PCA (two hierarchies, two roots), emulated EKS,
//! one test API server per cluster.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use meshca_core::rotation::{Anchor, Phase, RootRotation};
use meshca_lambda::{App, Config};
use meshca_test_apiserver::store::Resource;
use meshca_test_apiserver::{ApiServer, Settings};
use meshca_test_support::aws::{AwsEmulator, REGION};
use meshca_wiring::{AuthoritySpec, EscrowSpec};
use serde_json::json;

struct World {
    emu: AwsEmulator,
    a: String,
    b: String,
    servers: HashMap<String, ApiServer>,
}

impl World {
    async fn cluster(&mut self, name: &str) {
        let server = ApiServer::start(Settings::eks_scoped(name, "testing", "testing"))
            .await
            .unwrap();
        server.seed_istio(Some("docker.io/istio/pilot:1.24.2"));
        let tags = json!({"meshca.io/enabled": "true"});
        self.emu.control(
            "eks/cluster",
            json!({"region": REGION, "name": name, "endpoint": server.url(), "ca_pem": server.ca_pem(), "status": "ACTIVE", "tags": tags}),
        );
        self.servers.insert(name.to_string(), server);
    }

    /// A fresh function instance configured with `ca` (its record cache is empty).
    async fn app(&self, ca: &str) -> App {
        let vars: HashMap<String, String> = HashMap::from([
            ("MESHCA_CA_ARN".into(), ca.to_string()),
            ("MESHCA_REGIONS".into(), REGION.into()),
            ("MESHCA_ISSUE_RATE".into(), "100".into()),
        ]);
        let config = Config::from(&move |k: &str| vars.get(k).cloned()).unwrap();
        App::with_sdk_config(config, &self.emu.sdk_config().await)
            .await
            .unwrap()
    }

    async fn anchor(&self, ca: &str) -> Anchor {
        let spec = AuthoritySpec::Pca {
            ca: ca.parse().unwrap(),
            template_arn: None,
            signing_algorithm: None,
            issue_rate: None,
            assume_role: None,
            root_crls: Vec::new(),
        };
        let info = meshca_wiring::authority(&spec, Some(&self.emu.sdk_config().await))
            .await
            .unwrap()
            .describe()
            .await
            .unwrap();
        Anchor {
            authority_id: info.id,
            locator: spec.locator(),
            root_bundle: info.root_bundle,
        }
    }

    fn file(&self, cluster: &str, name: &str) -> String {
        let s = self.servers[cluster]
            .get(Resource::Secrets, "istio-system", "cacerts")
            .unwrap();
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(s["data"][name].as_str().unwrap())
                .unwrap(),
        )
        .unwrap()
    }
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(600)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sweep_carries_a_root_rotation_through_its_phases() {
    let emu = AwsEmulator::start();
    let a = emu.hierarchy("EC_prime256v1", 2)["issuing"]
        .as_str()
        .unwrap()
        .to_string();
    let b = emu.hierarchy("EC_prime256v1", 2)["issuing"]
        .as_str()
        .unwrap()
        .to_string();
    let mut w = World {
        emu,
        a,
        b,
        servers: HashMap::new(),
    };
    for n in ["red", "green", "blue"] {
        w.cluster(n).await;
    }
    let first = w.app(&w.a).await.sweep(soon()).await;
    assert_eq!(
        (first.renewed, first.failed),
        (3, 0),
        "{:?}",
        first.failures
    );
    assert!(first.rotation.is_none());

    let (from, to) = (w.anchor(&w.a).await, w.anchor(&w.b).await);
    assert_ne!(
        from.root_bundle, to.root_bundle,
        "two hierarchies, two roots"
    );
    let config = w.emu.sdk_config().await;
    let escrow = EscrowSpec::SecretsManager {
        prefix: None,
        kms_key_id: None,
        recovery_window_days: None,
    };
    let store = meshca_wiring::rotation_store(&escrow, Some(&config), Some(REGION)).unwrap();
    store
        .save(
            &RootRotation::start(
                from.clone(),
                to.clone(),
                time::Duration::ZERO,
                time::OffsetDateTime::now_utc(),
            )
            .unwrap(),
        )
        .await
        .unwrap();

    let issued = w.emu.issued();
    let sweep = w.app(&w.a).await.sweep(soon()).await;
    let r = sweep
        .rotation
        .clone()
        .expect("the sweep reports the rotation");
    assert_eq!(
        (r.advanced_to, sweep.delivered, sweep.failed),
        (Some(Phase::Switch), 3, 0),
        "{sweep:?}"
    );
    assert_eq!(w.emu.issued(), issued, "trust-both costs no certificate");
    assert_eq!(
        w.file("red", "root-cert.pem"),
        format!("{}{}", from.root_bundle, to.root_bundle)
    );

    // cluster-events, mid-rotation: a new cluster joins at the phase (switch: B's intermediate under A+B).
    w.cluster("late").await;
    let report = w
        .app(&w.a)
        .await
        .reconcile("late", Some(REGION), false, None)
        .await;
    assert_eq!(report.outcome.label(), "renewed", "{report:?}");
    assert_eq!(
        w.file("late", "root-cert.pem"),
        format!("{}{}", from.root_bundle, to.root_bundle)
    );
    assert!(
        w.file("late", "cert-chain.pem").ends_with(&to.root_bundle),
        "issued under B"
    );

    let issued = w.emu.issued();
    let sweep = w.app(&w.a).await.sweep(soon()).await;
    assert_eq!(
        (
            sweep.rotation.as_ref().unwrap().advanced_to,
            sweep.renewed,
            sweep.failed
        ),
        (Some(Phase::DropOld), 3, 0),
        "{sweep:?}"
    );
    assert_eq!(
        w.emu.issued() - issued,
        3,
        "one intermediate from B per cluster that had A's"
    );

    let sweep = w.app(&w.a).await.sweep(soon()).await;
    assert_eq!(
        sweep.rotation.as_ref().unwrap().advanced_to,
        Some(Phase::Done),
        "{sweep:?}"
    );
    for n in ["red", "green", "blue", "late"] {
        assert_eq!(
            w.file(n, "root-cert.pem"),
            to.root_bundle,
            "{n}: B's root alone"
        );
    }

    // Finished: functions still configured with A refuse to sweep (they would bring A back) …
    let stale = w.app(&w.a).await.sweep(soon()).await;
    assert!(
        stale.errors.iter().any(|e| e.contains("rotated away from")),
        "{:?}",
        stale.errors
    );
    assert_eq!(stale.checked, 0);
    // … and with B everything is in order.
    let done = w.app(&w.b).await.sweep(soon()).await;
    assert_eq!(
        (done.unchanged, done.failed, done.rotation.is_none()),
        (4, 0, true),
        "{done:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_the_sweep_cannot_write_holds_the_rotation_in_its_phase() {
    let emu = AwsEmulator::start();
    let a = emu.hierarchy("EC_prime256v1", 2)["issuing"]
        .as_str()
        .unwrap()
        .to_string();
    let b = emu.hierarchy("EC_prime256v1", 2)["issuing"]
        .as_str()
        .unwrap()
        .to_string();
    let mut w = World {
        emu,
        a,
        b,
        servers: HashMap::new(),
    };
    for n in ["near", "far"] {
        w.cluster(n).await;
    }
    w.app(&w.a).await.sweep(soon()).await;
    let config = w.emu.sdk_config().await;
    let escrow = EscrowSpec::SecretsManager {
        prefix: None,
        kms_key_id: None,
        recovery_window_days: None,
    };
    let store = meshca_wiring::rotation_store(&escrow, Some(&config), Some(REGION)).unwrap();
    let (from, to) = (w.anchor(&w.a).await, w.anchor(&w.b).await);
    store
        .save(
            &RootRotation::start(
                from,
                to,
                time::Duration::ZERO,
                time::OffsetDateTime::now_utc(),
            )
            .unwrap(),
        )
        .await
        .unwrap();

    // far's API now refuses meshca (an access entry removed): fast, and not retried.
    let refuse = meshca_test_apiserver::Fault {
        method: None,
        path_contains: "/secrets".into(),
        status: 403,
        times: 100,
        delay: Duration::ZERO,
    };
    w.servers["far"].inject(refuse);
    let sweep = w.app(&w.a).await.sweep(soon()).await;
    let r = sweep.rotation.expect("reported");
    assert_eq!(
        (r.phase, r.advanced_to, r.unconfirmed),
        (Phase::TrustBoth, None, 1),
        "{r:?}"
    );
    assert!(
        r.blockers.iter().any(|b| b.starts_with("far: ")),
        "{:?}",
        r.blockers
    );
    assert_eq!(store.load().await.unwrap().unwrap().phase, Phase::TrustBoth);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_deleted_mid_rotation_has_its_certificate_revoked_by_whichever_ca_issued_it() {
    let emu = AwsEmulator::start();
    let a = emu.hierarchy("EC_prime256v1", 2)["issuing"]
        .as_str()
        .unwrap()
        .to_string();
    let b = emu.hierarchy("EC_prime256v1", 2)["issuing"]
        .as_str()
        .unwrap()
        .to_string();
    let mut w = World {
        emu,
        a,
        b,
        servers: HashMap::new(),
    };
    w.cluster("old-one").await;
    w.app(&w.a).await.sweep(soon()).await;
    let config = w.emu.sdk_config().await;
    let escrow = EscrowSpec::SecretsManager {
        prefix: None,
        kms_key_id: None,
        recovery_window_days: None,
    };
    let store = meshca_wiring::rotation_store(&escrow, Some(&config), Some(REGION)).unwrap();
    let (from, to) = (w.anchor(&w.a).await, w.anchor(&w.b).await);
    let mut rotation = RootRotation::start(
        from,
        to,
        time::Duration::ZERO,
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    rotation
        .advance(
            vec!["test: straight to switch".into()],
            true,
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
    store.save(&rotation).await.unwrap();
    // In switch, a new cluster gets B's intermediate; old-one still holds A's.
    w.cluster("new-one").await;
    assert_eq!(
        w.app(&w.a)
            .await
            .reconcile("new-one", Some(REGION), false, None)
            .await
            .outcome
            .label(),
        "renewed"
    );

    let app = w.app(&w.a).await;
    for (cluster, ca) in [("old-one", &w.a), ("new-one", &w.b)] {
        let request = meshca_lambda::event::Request::Deleted {
            cluster: cluster.into(),
            region: REGION.into(),
            account: None,
        };
        let report = app.handle(request, soon()).await;
        let meshca_core::Outcome::Revoked { certificates } = &report.outcome else {
            panic!("{cluster}: {report:?}")
        };
        assert_eq!(certificates.len(), 1);
        assert!(
            certificates[0].starts_with(ca.as_str()),
            "{cluster}: revoked by the CA that issued it: {certificates:?}"
        );
    }
}
