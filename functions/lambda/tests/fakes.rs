//! The handlers over in-memory ports: clusters, delivery and fan-out are fakes, the authority
//! and escrow are the local adapters. No emulator, no API server: this is what holding ports as
//! `Arc<dyn …>` buys — the same `App` the functions run, driven entirely from the test.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use meshca_core::clusters::{ClusterInfo, Clusters, ClustersError};
use meshca_core::delivery::{
    Change, Delivered, Delivery, DeliveryError, DeliveryOptions, Observed,
};
use meshca_core::{Bundle, BundleMeta, FanOut, Outcome, ReconcileRequest};
use meshca_lambda::event::Request;
use meshca_lambda::{App, Config};
use meshca_local::{LocalCa, LocalEscrow, LocalRootSpec};
use meshca_wiring::{Fleet, RegionPorts};

const REGION: &str = "eu-west-1";

/// A cluster's `cacerts`, in memory.
#[derive(Default)]
struct FakeDelivery {
    secret: Mutex<Option<(Bundle, BundleMeta)>>,
    writes: Mutex<u32>,
}

#[async_trait]
impl Delivery for FakeDelivery {
    async fn observe(&self) -> Result<Observed, DeliveryError> {
        Ok(match self.secret.lock().unwrap().clone() {
            None => Observed::Absent,
            Some((bundle, meta)) => Observed::Managed {
                bundle: Some(bundle),
                meta: Some(meta),
            },
        })
    }

    async fn deliver(
        &self,
        bundle: &Bundle,
        meta: &BundleMeta,
    ) -> Result<Delivered, DeliveryError> {
        let mut secret = self.secret.lock().unwrap();
        let change = match secret.as_ref() {
            None => Change::Created,
            Some((b, _)) if b == bundle => Change::Unchanged,
            Some(_) => Change::Rotated,
        };
        if change != Change::Unchanged {
            *secret = Some((bundle.clone(), meta.clone()));
            *self.writes.lock().unwrap() += 1;
        }
        Ok(Delivered {
            change,
            fingerprint_sha256: meta.fingerprint_sha256.clone(),
            istiod: vec![],
            conflicts: 0,
        })
    }

    fn refuses(&self, _: &Observed) -> Option<DeliveryError> {
        None
    }
}

/// One region's clusters, each with its in-memory `cacerts`.
#[derive(Default)]
struct FakeClusters {
    clusters: BTreeMap<String, (ClusterInfo, Arc<FakeDelivery>)>,
}

impl FakeClusters {
    fn with(mut self, name: &str, status: &str, opted_in: bool) -> Self {
        let tags = if opted_in {
            BTreeMap::from([("meshca.io/enabled".into(), "true".into())])
        } else {
            BTreeMap::new()
        };
        let info = ClusterInfo {
            name: name.into(),
            id: format!("arn:aws:eks:{REGION}:111122223333:cluster/{name}"),
            status: status.into(),
            endpoint: Some(format!("https://{name}.example")),
            ca_data: None,
            tags,
            authentication_mode: Some("API".into()),
        };
        self.clusters.insert(name.into(), (info, Arc::default()));
        self
    }

    fn secret(&self, name: &str) -> Option<BundleMeta> {
        self.clusters[name]
            .1
            .secret
            .lock()
            .unwrap()
            .as_ref()
            .map(|(_, m)| m.clone())
    }
}

#[async_trait]
impl Clusters for FakeClusters {
    fn region(&self) -> &str {
        REGION
    }

    async fn list(&self) -> Result<Vec<String>, ClustersError> {
        Ok(self.clusters.keys().cloned().collect())
    }

    async fn describe(&self, name: &str) -> Result<ClusterInfo, ClustersError> {
        self.clusters
            .get(name)
            .map(|(i, _)| i.clone())
            .ok_or_else(|| ClustersError::NotFound(format!("no cluster {name}").into()))
    }

    fn connect(
        &self,
        cluster: &ClusterInfo,
        _: DeliveryOptions,
    ) -> Result<Arc<dyn Delivery>, ClustersError> {
        Ok(self.clusters[&cluster.name].1.clone())
    }
}

#[derive(Default)]
struct FakeFanOut {
    sent: Mutex<Vec<ReconcileRequest>>,
}

#[async_trait]
impl FanOut for FakeFanOut {
    fn destination(&self) -> &str {
        "in-memory"
    }

    async fn send(&self, requests: &[ReconcileRequest]) -> Vec<Result<(), String>> {
        self.sent.lock().unwrap().extend_from_slice(requests);
        requests.iter().map(|_| Ok(())).collect()
    }
}

struct World {
    _dir: tempfile::TempDir,
    clusters: Arc<FakeClusters>,
    fan_out: Arc<FakeFanOut>,
    app: App,
}

fn world(clusters: FakeClusters, env: &[(&str, &str)]) -> World {
    let dir = tempfile::tempdir().unwrap();
    let ca = LocalCa::open_or_create(&dir.path().join("ca"), &LocalRootSpec::default()).unwrap();
    let clusters = Arc::new(clusters);
    let fan_out = Arc::new(FakeFanOut::default());
    let fleet = Fleet {
        authority: Arc::new(ca),
        xcp_authority: None,
        issue_budget: None,
        places: BTreeMap::from([(
            meshca_core::Place::home(REGION),
            RegionPorts {
                clusters: clusters.clone(),
                escrow: Arc::new(LocalEscrow::new(dir.path().join("escrow"))),
            },
        )]),
        home_account: None,
        fan_out: fan_out.clone(),
        notices: None,
        rotation: None,
        authority_spec: None,
        home: None,
    };
    let mut vars: HashMap<String, String> = HashMap::from([
        (
            "MESHCA_CA_ARN".into(),
            format!("arn:aws:acm-pca:{REGION}:111122223333:certificate-authority/unused"),
        ),
        ("MESHCA_REGIONS".into(), REGION.into()),
        ("MESHCA_VALIDITY_DAYS".into(), "30".into()),
    ]);
    vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let config = Config::from(&move |k: &str| vars.get(k).cloned()).unwrap();
    World {
        _dir: dir,
        clusters,
        fan_out,
        app: App::with_fleet(config, fleet),
    }
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

fn reconcile(cluster: &str) -> Request {
    Request::Reconcile {
        cluster: cluster.into(),
        region: Some(REGION.into()),
        force: false,
        account: None,
        sender: None,
    }
}

#[tokio::test]
async fn a_reconcile_request_issues_delivers_and_says_when_to_look_again() {
    let w = world(FakeClusters::default().with("c1", "ACTIVE", true), &[]);
    let first = w.app.handle(reconcile("c1"), soon()).await.outcome;
    let Outcome::Renewed {
        generation: 1,
        change: Change::Created,
        not_after,
        renew_at,
        ..
    } = first
    else {
        panic!("{first:?}")
    };
    assert_eq!(w.clusters.secret("c1").map(|m| m.generation), Some(1));
    // 30-day bundle: renewal due at two thirds of its life (a third left).
    let life_left = not_after - renew_at;
    assert!(
        life_left > time::Duration::days(9) && life_left < time::Duration::days(11),
        "{life_left}"
    );
    assert_eq!(first.renew_at(), Some(renew_at));

    let again = w.app.handle(reconcile("c1"), soon()).await.outcome;
    assert!(
        matches!(again, Outcome::Unchanged { generation: 1, renew_at: r, .. } if r == renew_at),
        "{again:?}"
    );
    assert_eq!(
        *w.clusters.clusters["c1"].1.writes.lock().unwrap(),
        1,
        "one write: the second run found it in place"
    );
}

#[tokio::test]
async fn a_deleted_cluster_is_revoked_and_its_escrow_retired() {
    let w = world(FakeClusters::default().with("c1", "ACTIVE", true), &[]);
    w.app.handle(reconcile("c1"), soon()).await;
    let deleted = Request::Deleted {
        cluster: "c1".into(),
        region: REGION.into(),
        account: None,
    };
    let outcome = w.app.handle(deleted.clone(), soon()).await.outcome;
    assert!(
        matches!(&outcome, Outcome::Revoked { certificates } if certificates.len() == 1),
        "{outcome:?}"
    );
    // Redelivered: the local escrow has moved the record aside, so there is nothing to revoke twice.
    let outcome = w.app.handle(deleted, soon()).await.outcome;
    assert!(outcome.found_nothing(), "{outcome:?}");
}

#[tokio::test]
async fn a_large_fleet_is_fanned_out_through_the_port_and_nothing_is_issued_inline() {
    let mut clusters = FakeClusters::default()
        .with("creating", "CREATING", true)
        .with("untagged", "ACTIVE", false);
    for i in 0..4 {
        clusters = clusters.with(&format!("c{i}"), "ACTIVE", true);
    }
    let w = world(clusters, &[("MESHCA_FANOUT_THRESHOLD", "2")]);
    let report = w.app.sweep(soon()).await;
    assert_eq!(
        (
            report.checked,
            report.fanned_out,
            report.skipped,
            report.failed
        ),
        (5, 4, 1, 0),
        "{report:?}"
    );
    let sent = w.fan_out.sent.lock().unwrap().clone();
    let names: Vec<&str> = sent.iter().map(|r| r.cluster.as_str()).collect();
    assert_eq!(names, ["c0", "c1", "c2", "c3"]);
    assert!(
        sent.iter()
            .all(|r| r.region.as_deref() == Some(REGION) && !r.force)
    );
    assert!(
        w.clusters.secret("c0").is_none(),
        "nothing delivered inline"
    );

    // Each request, handled as cluster-events would, converges its cluster.
    for r in sent {
        let outcome = w
            .app
            .handle(
                Request::Reconcile {
                    cluster: r.cluster,
                    region: r.region,
                    force: r.force,
                    account: r.account,
                    sender: None,
                },
                soon(),
            )
            .await
            .outcome;
        assert!(
            matches!(outcome, Outcome::Renewed { generation: 1, .. }),
            "{outcome:?}"
        );
    }
    let unknown = w.app.handle(reconcile("gone"), soon()).await.outcome;
    assert!(
        matches!(&unknown, Outcome::Skipped { reason } if reason == "no such EKS cluster"),
        "{unknown:?}"
    );
}
