//! A fleet of 20 clusters (test API servers over HTTPS) through a whole root rotation, with the
//! trust invariant judged by openssl at every phase boundary and after every injected crash:
//! a workload leaf signed by any cluster's intermediate verifies against every cluster's
//! `root-cert.pem`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::Engine;
use hyper::Method;
use meshca_core::bundle::{Bundle, BundleMeta};
use meshca_core::delivery::{Delivered, Delivery, DeliveryError, Observed};
use meshca_core::rollout::{Member, Rollout, RolloutReport};
use meshca_core::rotation::{Anchor, Phase, RotationStore};
use meshca_core::{Authority, ClusterName, DeliveryOptions, Reconciler, Settings};
use meshca_kube::{self as k8s, KubeDelivery, TokenSource};
use meshca_local::{LocalCa, LocalEscrow, LocalRootSpec, LocalRotationStore};
use meshca_test_apiserver::store::Resource;
use meshca_test_apiserver::{ApiServer, Settings as ServerSettings};
use meshca_test_support::openssl;
use zeroize::Zeroizing;

const TOKEN: &str = "static-admin-token";
const FLEET: usize = 20;

struct Static;

#[async_trait]
impl TokenSource for Static {
    async fn bearer(&self) -> Result<Zeroizing<String>, String> {
        Ok(Zeroizing::new(TOKEN.to_string()))
    }
}

/// The fleet: servers with three kinds of istiod, two local CAs, one escrow and record.
struct Fleet {
    dir: tempfile::TempDir,
    servers: Vec<ApiServer>,
    a: Arc<LocalCa>,
    b: Arc<LocalCa>,
    escrow: Arc<LocalEscrow>,
    store: Arc<LocalRotationStore>,
    settings: Arc<Settings>,
    /// Every root-cert.pem seen per cluster, in order.
    roots_seen: Mutex<BTreeMap<String, Vec<String>>>,
}

fn name(i: usize) -> ClusterName {
    format!("c{i:02}").parse().unwrap()
}

/// Istio 1.24 with ISTIO_MULTIROOT_MESH for the first third, 1.24 without it for the second,
/// 1.18 (no hot reload at all) for the rest.
fn istiod_for(i: usize) -> serde_json::Value {
    let image = if i < 14 {
        "docker.io/istio/pilot:1.24.2"
    } else {
        "docker.io/istio/pilot:1.18.7"
    };
    let mut d = meshca_test_apiserver::istiod(image);
    if i < 7 {
        d["spec"]["template"]["spec"]["containers"][0]["env"] =
            serde_json::json!([{"name": "ISTIO_MULTIROOT_MESH", "value": "true"}]);
    }
    d
}

impl Fleet {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut servers = Vec::new();
        for i in 0..FLEET {
            let s = ApiServer::start(ServerSettings {
                cluster: name(i).to_string(),
                static_token: Some(TOKEN.into()),
                ..Default::default()
            })
            .await
            .unwrap();
            s.seed_istio(None);
            s.create(Resource::Deployments, "istio-system", istiod_for(i))
                .unwrap();
            servers.push(s);
        }
        let ca = |d: &str| {
            Arc::new(
                LocalCa::open_or_create(&dir.path().join(d), &LocalRootSpec::default()).unwrap(),
            )
        };
        let (a, b) = (ca("ca-a"), ca("ca-b"));
        let escrow = Arc::new(LocalEscrow::new(dir.path().join("escrow")));
        let store = Arc::new(LocalRotationStore::new(dir.path().join("escrow")));
        let settings = Arc::new(Settings::default());
        Fleet {
            dir,
            servers,
            a,
            b,
            escrow,
            store,
            settings,
            roots_seen: Mutex::new(BTreeMap::new()),
        }
    }

    fn members(&self, crash: &Option<Arc<Crash>>) -> Vec<Member> {
        let options = DeliveryOptions {
            profile: self.settings.profile.clone(),
            ..DeliveryOptions::default()
        };
        (0..FLEET)
            .map(|i| {
                let s = &self.servers[i];
                let client =
                    k8s::from_endpoint(name(i).as_str(), &s.url(), s.ca_pem(), Arc::new(Static))
                        .unwrap();
                let kube: Arc<dyn Delivery> =
                    Arc::new(KubeDelivery::new(client, s.url(), options.clone()));
                let delivery = match crash {
                    Some(c) => Arc::new(Crashing {
                        inner: kube,
                        crash: c.clone(),
                    }) as Arc<dyn Delivery>,
                    None => kube,
                };
                Member {
                    kind: meshca_core::KindSpec::default(),
                    cluster: name(i),
                    delivery,
                }
            })
            .collect()
    }

    fn rollout(&self) -> Rollout<'_> {
        let authorities: Vec<(String, Arc<dyn Authority>)> = vec![
            (self.a.id(), self.a.clone() as Arc<dyn Authority>),
            (self.b.id(), self.b.clone() as Arc<dyn Authority>),
        ];
        Rollout {
            store: self.store.as_ref(),
            escrow: self.escrow.as_ref(),
            settings: &self.settings,
            authorities,
            crls: None,
        }
    }

    async fn anchors(&self) -> (Anchor, Anchor) {
        let anchor = |info: meshca_core::AuthorityInfo| Anchor {
            locator: info.id.clone(),
            authority_id: info.id,
            root_bundle: info.root_bundle,
        };
        (
            anchor(self.a.describe().await.unwrap()),
            anchor(self.b.describe().await.unwrap()),
        )
    }

    fn secret(&self, i: usize) -> HashMap<String, String> {
        let s = self.servers[i]
            .get(Resource::Secrets, "istio-system", "cacerts")
            .expect("cacerts exists");
        let data = s["data"].as_object().unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        data.iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    String::from_utf8(b64.decode(v.as_str().unwrap()).unwrap()).unwrap(),
                )
            })
            .collect()
    }

    /// istiod restarts each server has seen so far (strategic-merge patches of the Deployment).
    /// Requests each server has answered so far.
    fn requests(&self) -> usize {
        self.servers.iter().map(|s| s.seen().len()).sum()
    }

    fn restarts(&self) -> Vec<usize> {
        let patched = |s: &ApiServer| {
            s.seen()
                .iter()
                .filter(|r| r.method == Method::PATCH && r.path.contains("/deployments/istiod"))
                .count()
        };
        self.servers.iter().map(patched).collect()
    }

    /// The trust invariant, judged by openssl: every cluster's leaf verifies in every cluster.
    /// Also records each root-cert.pem so containment can be checked across the whole run.
    fn assert_trust_everywhere(&self, when: &str) {
        let work = self
            .dir
            .path()
            .join(format!("invariant-{}", when.replace(' ', "-")));
        let mut roots: Vec<String> = Vec::new();
        for i in 0..FLEET {
            let files = self.secret(i);
            let d = work.join(name(i).as_str());
            std::fs::create_dir_all(&d).unwrap();
            for (k, v) in &files {
                std::fs::write(d.join(k), v).unwrap();
            }
            openssl::sign(&d, "leaf", "ca-cert.pem", "ca-key.pem", false);
            roots.push(files["root-cert.pem"].clone());
            let mut seen = self.roots_seen.lock().unwrap();
            let history = seen.entry(name(i).to_string()).or_default();
            if history.last() != Some(&files["root-cert.pem"]) {
                history.push(files["root-cert.pem"].clone());
            }
        }
        let mut verdicts: HashMap<(usize, &str), bool> = HashMap::new();
        for x in 0..FLEET {
            for (y, root) in roots.iter().enumerate() {
                let ok = *verdicts
                    .entry((x, root.as_str()))
                    .or_insert_with(|| verifies(&work, x, y));
                assert!(
                    ok,
                    "{when}: a leaf of {} does not verify against the root-cert.pem of {}",
                    name(x),
                    name(y)
                );
            }
        }
    }
}

fn verifies(work: &Path, x: usize, y: usize) -> bool {
    let (xd, yd) = (work.join(name(x).as_str()), work.join(name(y).as_str()));
    let root = yd.join("root-cert.pem").display().to_string();
    let chain = xd.join("cert-chain.pem").display().to_string();
    let (ok, out) = openssl::run(
        &["verify", "-CAfile", &root, "-untrusted", &chain, "leaf.pem"],
        &xd,
    );
    ok && out.contains("leaf.pem: OK")
}

/// A process that dies (the task panics) at its `at`-th delivery: before writing it, or after.
struct Crash {
    calls: AtomicUsize,
    at: usize,
    before_write: bool,
}

impl Crash {
    fn at(at: usize, before_write: bool) -> Option<Arc<Crash>> {
        Some(Arc::new(Crash {
            calls: AtomicUsize::new(0),
            at,
            before_write,
        }))
    }
}

struct Crashing {
    inner: Arc<dyn Delivery>,
    crash: Arc<Crash>,
}

#[async_trait]
impl Delivery for Crashing {
    async fn observe(&self) -> Result<Observed, DeliveryError> {
        self.inner.observe().await
    }
    async fn deliver(
        &self,
        bundle: &Bundle,
        meta: &BundleMeta,
    ) -> Result<Delivered, DeliveryError> {
        let dies = self.crash.calls.fetch_add(1, Ordering::SeqCst) + 1 == self.crash.at;
        if dies && self.crash.before_write {
            panic!("injected crash before delivery {}", self.crash.at);
        }
        let done = self.inner.deliver(bundle, meta).await;
        if dies {
            panic!("injected crash after delivery {}", self.crash.at);
        }
        done
    }
    fn refuses(&self, observed: &Observed) -> Option<DeliveryError> {
        self.inner.refuses(observed)
    }
}

fn issued(ca: &LocalCa) -> usize {
    std::fs::read_dir(ca.dir().join("issued")).map_or(0, |d| {
        d.filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "pem")
        })
        .count()
    })
}

/// Every cluster issued by A with A's root, as before any rotation.
async fn seed(fleet: &Fleet) {
    let reconciler = Reconciler {
        authority: fleet.a.as_ref(),
        escrow: fleet.escrow.as_ref(),
        settings: &fleet.settings,
    };
    for m in fleet.members(&None) {
        let o = reconciler
            .apply(&m.cluster, m.delivery.as_ref(), false)
            .await;
        assert_eq!(o.label(), "renewed", "{o:?}");
    }
    fleet.assert_trust_everywhere("seeded");
}

fn assert_all_confirmed(report: &RolloutReport, phase: Phase) {
    assert_eq!(report.rotation.phase, phase);
    let stuck: Vec<_> = report
        .clusters
        .iter()
        .filter(|s| !s.confirmed)
        .map(|s| format!("{}: {:?}", s.cluster, s.blocking))
        .collect();
    assert!(stuck.is_empty(), "{phase}: {stuck:?}");
    assert!(
        report.blockers.is_empty(),
        "soak 0 and all confirmed: {:?}",
        report.blockers
    );
}

fn assert_contained_throughout(fleet: &Fleet) {
    for (cluster, roots) in fleet.roots_seen.lock().unwrap().iter() {
        for pair in roots.windows(2) {
            assert!(
                meshca_core::rotation::contained(&pair[0], &pair[1]),
                "{cluster}: a root-cert.pem neither contains nor is contained in the one before"
            );
        }
    }
}

fn restarted_since(fleet: &Fleet, before: &[usize]) -> Vec<usize> {
    fleet
        .restarts()
        .iter()
        .zip(before)
        .enumerate()
        .filter(|(_, (now, was))| now > was)
        .map(|(i, _)| i)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_clusters_rotate_their_root_with_trust_at_every_boundary() {
    let fleet = Fleet::new().await;
    seed(&fleet).await;
    let members = fleet.members(&None);
    let (a, b) = fleet.anchors().await;
    let rollout = fleet.rollout();
    let (a_issued, b_issued) = (issued(&fleet.a), issued(&fleet.b));

    // What each phase costs, printed for the record (run with --nocapture); not asserted.
    let mut costs = Vec::new();
    let mut measure =
        |phase: &str, started: std::time::Instant, requests: usize, restarts: usize| {
            costs.push(format!(
                "{phase}: {} ms, {:.1} API requests per cluster, {restarts} istiod restarts",
                started.elapsed().as_millis(),
                requests as f64 / FLEET as f64
            ));
        };
    let (t, q) = (std::time::Instant::now(), fleet.requests());
    let before = fleet.restarts();
    let r = rollout
        .start(a.clone(), b.clone(), time::Duration::ZERO, &members)
        .await
        .unwrap();
    measure(
        "trust-both",
        t,
        fleet.requests() - q,
        restarted_since(&fleet, &before).len(),
    );
    assert_all_confirmed(&r, Phase::TrustBoth);
    assert!(
        r.clusters
            .iter()
            .all(|s| s.outcome.as_ref().unwrap().label() == "delivered"),
        "trust-both costs no certificate"
    );
    assert_eq!(
        fleet.secret(0)["root-cert.pem"],
        format!("{}{}", a.root_bundle, b.root_bundle),
        "A's bytes first, then B's"
    );
    fleet.assert_trust_everywhere("trust-both");
    // A contained root bundle: only istiod with ISTIO_MULTIROOT_MESH (1.20+) reloads it alone.
    assert_eq!(
        restarted_since(&fleet, &before),
        (7..FLEET).collect::<Vec<_>>()
    );

    let before = fleet.restarts();
    let (t, q) = (std::time::Instant::now(), fleet.requests());
    let r = rollout.advance(&members, false).await.unwrap();
    measure(
        "switch",
        t,
        fleet.requests() - q,
        restarted_since(&fleet, &before).len(),
    );
    assert_all_confirmed(&r, Phase::Switch);
    assert_eq!(
        issued(&fleet.b) - b_issued,
        FLEET,
        "one intermediate from B per cluster"
    );
    fleet.assert_trust_everywhere("switch");
    // Same root bytes, new intermediate: 1.19+ hot-reloads it, 1.18 is restarted.
    assert_eq!(
        restarted_since(&fleet, &before),
        (14..FLEET).collect::<Vec<_>>()
    );

    let before = fleet.restarts();
    let (t, q) = (std::time::Instant::now(), fleet.requests());
    let r = rollout.advance(&members, false).await.unwrap();
    measure(
        "drop-old",
        t,
        fleet.requests() - q,
        restarted_since(&fleet, &before).len(),
    );
    assert_all_confirmed(&r, Phase::DropOld);
    assert_eq!(
        fleet.secret(FLEET - 1)["root-cert.pem"],
        b.root_bundle,
        "B's root alone"
    );
    fleet.assert_trust_everywhere("drop-old");
    assert_eq!(
        restarted_since(&fleet, &before),
        (7..FLEET).collect::<Vec<_>>()
    );

    let r = rollout.advance(&members, false).await.unwrap();
    assert_eq!(r.rotation.phase, Phase::Done);
    assert_eq!(r.rotation.history.len(), 4);
    assert_eq!(
        (issued(&fleet.a) - a_issued, issued(&fleet.b) - b_issued),
        (0, FLEET),
        "certificates in the whole rotation"
    );
    assert!(
        rollout
            .advance(&members, false)
            .await
            .unwrap_err()
            .to_string()
            .contains("done")
    );
    assert_contained_throughout(&fleet);
    eprintln!("rotation of {FLEET} clusters:\n  {}", costs.join("\n  "));
}

/// Runs `f` on its own task, as its own process would: a panic there is a crash, and
/// whatever it left behind is what the next run finds.
async fn crashing_run<F, Fut>(f: F) -> bool
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move { f().await }).await.is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crashes_at_phase_boundaries_and_mid_phase_converge_with_one_certificate_per_phase() {
    let fleet = Arc::new(Fleet::new().await);
    seed(&fleet).await;
    let (a, b) = fleet.anchors().await;
    let b_issued = issued(&fleet.b);

    // start dies after half the fleet got A+B: the record says trust-both, half is behind.
    let f = fleet.clone();
    let crash = Crash::at(FLEET / 2, false);
    assert!(
        crashing_run(move || async move {
            let _ = f
                .rollout()
                .start(a, b, time::Duration::ZERO, &f.members(&crash))
                .await;
        })
        .await
    );
    assert_eq!(
        fleet.store.load().await.unwrap().unwrap().phase,
        Phase::TrustBoth
    );
    fleet.assert_trust_everywhere("crash mid trust-both");
    // The rerun finishes trust-both before it may move on: its gates see the whole fleet.
    let r = fleet
        .rollout()
        .converge(
            fleet.store.load().await.unwrap().unwrap(),
            &fleet.members(&None),
        )
        .await
        .unwrap();
    assert_all_confirmed(&r, Phase::TrustBoth);
    fleet.assert_trust_everywhere("trust-both after the rerun");

    // advance dies at the boundary: switch recorded, the first cluster's B intermediate issued
    // and escrowed, nothing of the phase delivered (the first FLEET calls re-checked trust-both).
    let f = fleet.clone();
    let crash = Crash::at(FLEET + 1, true);
    assert!(
        crashing_run(move || async move {
            let _ = f.rollout().advance(&f.members(&crash), false).await;
        })
        .await
    );
    assert_eq!(
        fleet.store.load().await.unwrap().unwrap().phase,
        Phase::Switch
    );
    fleet.assert_trust_everywhere("crash at the switch boundary");

    // the next run dies mid-switch, half the fleet on B's intermediates.
    let f = fleet.clone();
    let crash = Crash::at(FLEET / 2, false);
    let rotation = fleet.store.load().await.unwrap().unwrap();
    assert!(
        crashing_run(move || async move {
            let _ = f.rollout().converge(rotation, &f.members(&crash)).await;
        })
        .await
    );
    fleet.assert_trust_everywhere("crash mid switch");

    let r = fleet
        .rollout()
        .converge(
            fleet.store.load().await.unwrap().unwrap(),
            &fleet.members(&None),
        )
        .await
        .unwrap();
    assert_all_confirmed(&r, Phase::Switch);
    assert_eq!(
        issued(&fleet.b) - b_issued,
        FLEET,
        "three runs through switch, still one certificate per cluster"
    );
    fleet.assert_trust_everywhere("switch after the reruns");

    // advance into drop-old dies half-way through it (the first FLEET calls re-checked switch).
    let f = fleet.clone();
    let crash = Crash::at(FLEET + FLEET / 2, false);
    assert!(
        crashing_run(move || async move {
            let _ = f.rollout().advance(&f.members(&crash), false).await;
        })
        .await
    );
    assert_eq!(
        fleet.store.load().await.unwrap().unwrap().phase,
        Phase::DropOld
    );
    fleet.assert_trust_everywhere("crash mid drop-old");
    let r = fleet
        .rollout()
        .converge(
            fleet.store.load().await.unwrap().unwrap(),
            &fleet.members(&None),
        )
        .await
        .unwrap();
    assert_all_confirmed(&r, Phase::DropOld);
    assert_eq!(
        issued(&fleet.b) - b_issued,
        FLEET,
        "still one certificate per cluster for the whole rotation"
    );
    fleet.assert_trust_everywhere("drop-old after the rerun");
    assert_contained_throughout(&fleet);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn abort_in_trust_both_or_in_switch_returns_to_the_old_root_alone() {
    for abort_in in [Phase::TrustBoth, Phase::Switch] {
        let fleet = Fleet::new().await;
        seed(&fleet).await;
        let members = fleet.members(&None);
        let (a, b) = fleet.anchors().await;
        let rollout = fleet.rollout();
        let a_issued = issued(&fleet.a);
        rollout
            .start(a.clone(), b, time::Duration::ZERO, &members)
            .await
            .unwrap();
        if abort_in == Phase::Switch {
            rollout.advance(&members, false).await.unwrap();
        }
        let r = rollout.abort(&members).await.unwrap();
        assert_all_confirmed(&r, Phase::Switch);
        assert!(r.rotation.aborted);
        fleet.assert_trust_everywhere(&format!("aborted in {abort_in}"));
        let reissued = if abort_in == Phase::Switch { FLEET } else { 0 };
        assert_eq!(
            issued(&fleet.a) - a_issued,
            reissued,
            "A issues again only where B had issued"
        );

        let r = rollout.advance(&members, false).await.unwrap();
        assert_all_confirmed(&r, Phase::DropOld);
        assert!(
            (0..FLEET).all(|i| fleet.secret(i)["root-cert.pem"] == a.root_bundle),
            "A's root alone again"
        );
        fleet.assert_trust_everywhere(&format!("back to A after abort in {abort_in}"));
        assert!(
            rollout.abort(&members).await.is_err(),
            "no abort of an abort"
        );
        assert_contained_throughout(&fleet);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_cluster_blocks_the_next_phase_and_is_named() {
    let fleet = Fleet::new().await;
    seed(&fleet).await;
    let mut members = fleet.members(&None);
    let (a, b) = fleet.anchors().await;
    // c03's API now answers on a port where nothing listens.
    let gone = format!(
        "https://127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    );
    let client =
        k8s::from_endpoint("c03", &gone, fleet.servers[3].ca_pem(), Arc::new(Static)).unwrap();
    let quick = DeliveryOptions {
        backoff: meshca_core::retry::Backoff {
            first: std::time::Duration::from_millis(5),
            max: std::time::Duration::from_millis(10),
            deadline: std::time::Duration::from_millis(100),
        },
        ..DeliveryOptions::default()
    };
    members[3].delivery = Arc::new(KubeDelivery::new(client, gone, quick));
    let r = fleet
        .rollout()
        .start(a, b, time::Duration::ZERO, &members)
        .await
        .unwrap();
    assert_eq!(r.clusters.iter().filter(|s| !s.confirmed).count(), 1);
    assert!(
        r.blockers.len() == 1 && r.blockers[0].starts_with("c03: "),
        "{:?}",
        r.blockers
    );
    let e = fleet
        .rollout()
        .advance(&members, false)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cannot advance from trust-both") && e.contains("c03"),
        "{e}"
    );
    assert_eq!(
        fleet.store.load().await.unwrap().unwrap().phase,
        Phase::TrustBoth,
        "never skipped silently"
    );
    let r = fleet.rollout().advance(&members, true).await.unwrap();
    assert_eq!(
        r.rotation.history.last().unwrap().overridden.len(),
        1,
        "--force records what it overrode"
    );
}
