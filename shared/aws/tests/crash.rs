//! The whole pipeline against emulated AWS and the test API server, stopped at every step
//! boundary and run again; and two runs of one cluster at once.
//!
//! A "crash" is a wrapper around the real adapter that ends the run at a named call, before
//! or after the call reached AWS or the cluster — what a Lambda timeout or an OOM kill does.

use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use meshca_aws::eks::EksClusters;
use meshca_aws::{PcaAuthority, SecretsEscrow};
use meshca_core::DeliveryOptions;
use meshca_core::Outcome;
use meshca_core::authority::{
    Authority, AuthorityError, AuthorityInfo, CertificateId, IssueRequest, Issued, RevocationReason,
};
use meshca_core::delivery::{Delivered, Delivery, DeliveryError, Observed};
use meshca_core::escrow::{Claim, Current, Escrow, EscrowError, Escrowed, Pending};
use meshca_core::{Bundle, BundleMeta, ClusterName, Profile, Reconciler, Settings, Validity};
use meshca_kube::KubeDelivery;
use meshca_test_apiserver::store::Resource;
use meshca_test_apiserver::{ApiServer, Settings as ServerSettings};
use meshca_test_support::aws::{AwsEmulator, REGION};
use serde_json::json;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum When {
    Before,
    After,
}

/// Where the run dies: the call, and whether it got through first. Fires once.
struct Crash {
    call: &'static str,
    when: When,
    fired: AtomicBool,
}

impl Crash {
    fn at(call: &'static str, when: When) -> Self {
        Crash {
            call,
            when,
            fired: AtomicBool::new(false),
        }
    }
    fn hits(&self, call: &str, when: When) -> bool {
        call == self.call && when == self.when && !self.fired.swap(true, Ordering::SeqCst)
    }
    fn message(&self) -> String {
        format!("crashed {:?} {}", self.when, self.call)
    }
}

struct CrashingAuthority<'a>(&'a dyn Authority, &'a Crash);
struct CrashingEscrow<'a>(&'a dyn Escrow, &'a Crash);
struct CrashingDelivery<'a>(&'a dyn Delivery, &'a Crash);

macro_rules! guarded {
    ($crash:expr, $call:literal, $err:expr, $body:expr) => {{
        if $crash.hits($call, When::Before) {
            return Err($err);
        }
        let out = $body;
        if out.is_ok() && $crash.hits($call, When::After) {
            return Err($err);
        }
        out
    }};
}

fn authority_crash(c: &Crash) -> AuthorityError {
    AuthorityError::Backend {
        operation: "crash",
        detail: c.message(),
    }
}
fn escrow_crash(c: &Crash) -> EscrowError {
    EscrowError::Backend {
        operation: "crash",
        cluster: "c1".into(),
        detail: c.message(),
    }
}

#[async_trait]
impl Authority for CrashingAuthority<'_> {
    async fn describe(&self) -> Result<AuthorityInfo, AuthorityError> {
        self.0.describe().await
    }
    async fn issue(&self, r: &IssueRequest<'_>) -> Result<CertificateId, AuthorityError> {
        guarded!(
            self.1,
            "issue",
            authority_crash(self.1),
            self.0.issue(r).await
        )
    }
    async fn fetch(&self, id: &CertificateId) -> Result<Issued, AuthorityError> {
        guarded!(
            self.1,
            "fetch",
            authority_crash(self.1),
            self.0.fetch(id).await
        )
    }
    async fn revoke(
        &self,
        id: &CertificateId,
        serial: &str,
        reason: RevocationReason,
    ) -> Result<(), AuthorityError> {
        self.0.revoke(id, serial, reason).await
    }
}

#[async_trait]
impl Escrow for CrashingEscrow<'_> {
    async fn load(&self, c: &meshca_core::escrow::EscrowKey) -> Result<Escrowed, EscrowError> {
        self.0.load(c).await
    }
    async fn keys(&self) -> Result<Vec<meshca_core::escrow::EscrowKey>, EscrowError> {
        self.0.keys().await
    }
    async fn claim(&self, p: &Pending) -> Result<Claim, EscrowError> {
        guarded!(self.1, "claim", escrow_crash(self.1), self.0.claim(p).await)
    }
    async fn record_issued(&self, p: &Pending) -> Result<(), EscrowError> {
        guarded!(
            self.1,
            "record_issued",
            escrow_crash(self.1),
            self.0.record_issued(p).await
        )
    }
    async fn promote(&self, c: &Current) -> Result<(), EscrowError> {
        guarded!(
            self.1,
            "promote",
            escrow_crash(self.1),
            self.0.promote(c).await
        )
    }
    async fn mark_revoked(&self, c: &meshca_core::escrow::Current) -> Result<(), EscrowError> {
        self.0.mark_revoked(c).await
    }
    async fn retire(&self, c: &meshca_core::escrow::EscrowKey) -> Result<(), EscrowError> {
        self.0.retire(c).await
    }
}

#[async_trait]
impl Delivery for CrashingDelivery<'_> {
    async fn observe(&self) -> Result<Observed, DeliveryError> {
        self.0.observe().await
    }
    async fn deliver(&self, b: &Bundle, m: &BundleMeta) -> Result<Delivered, DeliveryError> {
        let err = DeliveryError::Unreachable {
            endpoint: "test".into(),
            detail: self.1.message(),
        };
        guarded!(self.1, "deliver", err, self.0.deliver(b, m).await)
    }
    fn refuses(&self, o: &Observed) -> Option<DeliveryError> {
        self.0.refuses(o)
    }
}

struct World {
    emu: AwsEmulator,
    server: ApiServer,
    authority: PcaAuthority,
    escrow: SecretsEscrow,
    delivery: KubeDelivery,
    settings: Settings,
    /// Certificates the fixture hierarchy itself needed.
    baseline: u64,
}

async fn world() -> World {
    let emu = AwsEmulator::start();
    let config = emu.sdk_config().await;
    let ca = emu.hierarchy("EC_prime256v1", 2)["issuing"]
        .as_str()
        .unwrap()
        .to_string();
    let server = ApiServer::start(ServerSettings::eks_scoped("c1", "testing", "testing"))
        .await
        .unwrap();
    server.seed_istio(Some("docker.io/istio/pilot:1.24.2"));
    emu.control("eks/cluster", json!({"region": REGION, "name": "c1", "endpoint": server.url(), "ca_pem": server.ca_pem()}));
    let eks = EksClusters::new(&config);
    let described = eks.describe("c1").await.unwrap();
    let delivery = KubeDelivery::new(
        eks.client(&described).unwrap(),
        server.url(),
        DeliveryOptions::default(),
    );
    World {
        authority: PcaAuthority::new(aws_sdk_acmpca::Client::new(&config), ca.as_str(), None)
            .unwrap(),
        escrow: SecretsEscrow::new(
            aws_sdk_secretsmanager::Client::new(&config),
            SecretsEscrow::default_prefix(REGION),
        ),
        settings: Settings {
            validity: Validity::Days(30),
            ..Settings::default()
        },
        baseline: emu.issued(),
        emu,
        server,
        delivery,
    }
}

impl World {
    /// Certificates issued for clusters.
    fn issued(&self) -> u64 {
        self.emu.issued() - self.baseline
    }

    fn reconcile(&self) -> Reconciler<'_> {
        Reconciler {
            authority: &self.authority,
            escrow: &self.escrow,
            settings: &self.settings,
        }
    }

    /// The cluster holds a valid bundle of `generation`, and escrow holds the same one.
    async fn assert_one_valid_bundle(&self, generation: u64) {
        let secret = self
            .server
            .get(Resource::Secrets, "istio-system", "cacerts")
            .expect("cacerts delivered");
        let ann = &secret["metadata"]["annotations"];
        assert_eq!(ann["meshca.io/generation"], generation.to_string());
        let file = |n: &str| {
            use base64::Engine;
            let b = base64::engine::general_purpose::STANDARD
                .decode(secret["data"][n].as_str().unwrap())
                .unwrap();
            String::from_utf8(b).unwrap()
        };
        let bundle = Bundle::from_pems(
            &file("ca-cert.pem"),
            &file("ca-key.pem"),
            &file("cert-chain.pem"),
            &file("root-cert.pem"),
        )
        .unwrap();
        let verified = meshca_core::validate::validate(
            &bundle,
            &Profile::default(),
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
        let c1: ClusterName = "c1".parse().unwrap();
        let escrowed = self
            .escrow
            .load(&(&c1).into())
            .await
            .unwrap()
            .current
            .expect("escrowed");
        assert_eq!(escrowed.meta.generation, generation);
        assert_eq!(
            escrowed.meta.fingerprint_sha256,
            verified.ca_cert.sha256_fingerprint
        );
        assert_eq!(
            ann["meshca.io/fingerprint-sha256"],
            verified.ca_cert.sha256_fingerprint
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_stopped_at_any_step_boundary_converges_with_one_certificate() {
    let boundaries = [
        ("claim", When::After),
        ("issue", When::Before),
        ("issue", When::After),
        ("record_issued", When::After),
        ("fetch", When::After),
        ("promote", When::Before),
        ("promote", When::After),
        ("deliver", When::Before),
        ("deliver", When::After),
    ];
    for (call, when) in boundaries {
        let w = world().await;
        let c1: ClusterName = "c1".parse().unwrap();
        let crash = Crash::at(call, when);
        let (a, e, d) = (
            CrashingAuthority(&w.authority, &crash),
            CrashingEscrow(&w.escrow, &crash),
            CrashingDelivery(&w.delivery, &crash),
        );
        let crashed = Reconciler {
            authority: &a,
            escrow: &e,
            settings: &w.settings,
        }
        .apply(&c1, &d, false)
        .await;
        assert!(
            crash.fired.load(Ordering::SeqCst),
            "{call} {when:?} was reached"
        );
        assert!(
            matches!(&crashed, Outcome::Failed { error, .. } if error.contains("crashed")),
            "{call} {when:?}: {crashed:?}"
        );

        let again = w.reconcile().apply(&c1, &w.delivery, false).await;
        match &again {
            Outcome::Renewed { generation: 1, .. }
            | Outcome::Delivered { generation: 1, .. }
            | Outcome::Unchanged { generation: 1, .. } => {}
            other => panic!("{call} {when:?}: rerun gave {other:?}"),
        }
        // What the rerun did depends on where the first run died.
        let expected = match (call, when) {
            ("deliver", When::After) => "unchanged",
            ("promote", When::After) | ("deliver", When::Before) => "delivered",
            _ => "renewed",
        };
        assert_eq!(again.label(), expected, "{call} {when:?}: {again:?}");
        assert_eq!(
            w.issued(),
            1,
            "{call} {when:?}: one certificate for generation 1"
        );
        w.assert_one_valid_bundle(1).await;
        // And a third run has nothing left to do.
        let third = w.reconcile().apply(&c1, &w.delivery, false).await;
        assert!(
            matches!(third, Outcome::Unchanged { generation: 1, .. }),
            "{call} {when:?}: {third:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_runs_of_one_cluster_at_once_issue_one_certificate_and_deliver_one_bundle() {
    let w = world().await;
    let c1: ClusterName = "c1".parse().unwrap();
    for round in 0..3 {
        let force = round > 0;
        let (one, two) = (w.reconcile(), w.reconcile());
        let (a, b) = tokio::join!(
            one.apply(&c1, &w.delivery, force),
            two.apply(&c1, &w.delivery, force)
        );
        let generation = round + 1;
        for o in [&a, &b] {
            assert!(
                matches!(o, Outcome::Renewed { generation: g, .. } | Outcome::Delivered { generation: g, .. } | Outcome::Unchanged { generation: g, .. } if *g == generation),
                "round {round}: {a:?} / {b:?}"
            );
        }
        assert!(
            matches!(a, Outcome::Renewed { .. }) || matches!(b, Outcome::Renewed { .. }),
            "{a:?} / {b:?}"
        );
        assert_eq!(
            w.issued(),
            generation,
            "round {round}: one certificate per generation"
        );
        w.assert_one_valid_bundle(generation).await;
    }
    // Exactly one write of the secret per generation: creates and replaces in the request log.
    let writes = w
        .server
        .seen()
        .iter()
        .filter(|s| s.path.ends_with("/secrets/cacerts") || s.path.ends_with("/secrets"))
        .filter(|s| s.method == hyper::Method::PUT || s.method == hyper::Method::POST)
        .filter(|s| s.status < 300)
        .count();
    assert_eq!(writes, 3, "one successful write per generation");
}
