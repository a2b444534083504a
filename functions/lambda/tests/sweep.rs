//! expiry-sweep against the emulated AWS and one test API server per emulated EKS cluster.

use meshca_test_support::aws;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use aws::{AwsEmulator, REGION};
use base64::Engine;
use meshca_core::delivery::Change;
use meshca_core::{Outcome, Step};
use meshca_lambda::event::{self, Request};
use meshca_lambda::sweep::SweepReport;
use meshca_lambda::{App, Config};
use meshca_test_apiserver::store::Resource;
use meshca_test_apiserver::{ApiServer, Settings};
use serde_json::{Value, json};

const TAG: (&str, &str) = ("meshca.io/enabled", "true");

struct Fleet {
    emu: AwsEmulator,
    ca: String,
    servers: BTreeMap<String, ApiServer>,
}

impl Fleet {
    async fn new() -> Fleet {
        let emu = AwsEmulator::start();
        let ca = emu.hierarchy("EC_prime256v1", 2)["issuing"]
            .as_str()
            .unwrap()
            .to_string();
        Fleet {
            emu,
            ca,
            servers: BTreeMap::new(),
        }
    }

    /// An EKS cluster named `name` whose endpoint is a fresh test API server with istiod.
    async fn cluster(&mut self, name: &str, status: &str, tagged: bool) {
        self.cluster_on(name, status, tagged, "docker.io/istio/pilot:1.24.2")
            .await
    }

    /// [`Fleet::cluster`] with istiod running `image`.
    async fn cluster_on(&mut self, name: &str, status: &str, tagged: bool, image: &str) {
        let server = ApiServer::start(Settings::eks_scoped(name, "testing", "testing"))
            .await
            .unwrap();
        server.seed_istio(Some(image));
        let tags = if tagged {
            json!({TAG.0: TAG.1, "team": "platform"})
        } else {
            json!({"team": "platform"})
        };
        self.emu.control(
            "eks/cluster",
            json!({"region": REGION, "name": name, "endpoint": server.url(), "ca_pem": server.ca_pem(), "status": status, "tags": tags}),
        );
        self.servers.insert(name.to_string(), server);
    }

    /// A fleet whose two-level Private CA publishes CRLs to the bucket `meshca-crls`.
    fn publishing_crls() -> Fleet {
        let emu = AwsEmulator::start();
        let h = emu.control(
            "fixtures/hierarchy",
            json!({"key_algorithm": "EC_prime256v1", "levels": 2, "crl_bucket": "meshca-crls"}),
        );
        Fleet {
            ca: h["issuing"].as_str().unwrap().to_string(),
            emu,
            servers: BTreeMap::new(),
        }
    }

    async fn app(&self, env: &[(&str, &str)]) -> App {
        let mut vars: HashMap<String, String> = HashMap::from([
            ("MESHCA_CA_ARN".into(), self.ca.clone()),
            ("MESHCA_REGIONS".into(), REGION.into()),
            ("MESHCA_ISSUE_RATE".into(), "100".into()),
        ]);
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let config = Config::from(&move |k: &str| vars.get(k).cloned()).unwrap();
        App::with_sdk_config(config, &self.emu.sdk_config().await)
            .await
            .unwrap()
    }

    fn secret(&self, cluster: &str) -> Option<Value> {
        self.servers[cluster].get(Resource::Secrets, "istio-system", "cacerts")
    }

    /// The bundle in the cluster's secret passes every rule.
    fn assert_valid(&self, cluster: &str) -> meshca_core::Verified {
        let s = self
            .secret(cluster)
            .unwrap_or_else(|| panic!("{cluster}: no cacerts"));
        let file = |n: &str| {
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(s["data"][n].as_str().unwrap())
                    .unwrap(),
            )
            .unwrap()
        };
        let bundle = meshca_core::Bundle::from_pems(
            &file("ca-cert.pem"),
            &file("ca-key.pem"),
            &file("cert-chain.pem"),
            &file("root-cert.pem"),
        )
        .unwrap();
        meshca_core::validate::validate(
            &bundle,
            &meshca_core::Profile::default(),
            time::OffsetDateTime::now_utc(),
        )
        .unwrap_or_else(|e| panic!("{cluster}: {e}"))
    }
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(600)
}

fn outcomes(report: &SweepReport) -> BTreeMap<String, Outcome> {
    report
        .clusters
        .iter()
        .map(|r| (r.cluster.clone().unwrap(), r.outcome.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sweep_over_200_clusters_in_mixed_states_reports_each_one_right() {
    let mut fleet = Fleet::new().await;
    let names = |kind: &str, n: usize| (0..n).map(|i| format!("{kind}-{i:03}")).collect::<Vec<_>>();
    let (healthy, drifted, due) = (names("healthy", 40), names("drifted", 30), names("due", 40));
    let (fresh, unmanaged, creating, untagged) = (
        names("fresh", 40),
        names("unmanaged", 30),
        names("creating", 20),
        names("untagged", 10),
    );

    // Healthy and drifted clusters get 30-day bundles from a first sweep with the real settings.
    for n in healthy.iter().chain(&drifted) {
        fleet.cluster(n, "ACTIVE", true).await;
    }
    let settings = [
        ("MESHCA_VALIDITY_DAYS", "30"),
        ("MESHCA_RENEW_BEFORE_DAYS", "15"),
    ];
    let first = fleet.app(&settings).await.sweep(soon()).await;
    assert_eq!(
        (first.checked, first.renewed, first.failed),
        (70, 70, 0),
        "{:?}",
        first.failures
    );

    // Due clusters get 10-day bundles (under 15 days left: due for the real settings).
    for n in &due {
        fleet.cluster(n, "ACTIVE", true).await;
    }
    let short = fleet
        .app(&[("MESHCA_VALIDITY_DAYS", "10")])
        .await
        .sweep(soon())
        .await;
    assert_eq!(
        (short.checked, short.renewed, short.unchanged, short.failed),
        (110, 40, 70, 0),
        "{:?}",
        short.failures
    );

    // Drift: someone deleted cacerts from the drifted clusters.
    for n in &drifted {
        assert!(fleet.servers[n].delete(Resource::Secrets, "istio-system", "cacerts"));
    }
    for n in &fresh {
        fleet.cluster(n, "ACTIVE", true).await;
    }
    for n in &unmanaged {
        fleet.cluster(n, "ACTIVE", true).await;
        fleet.servers[n]
            .create(
                Resource::Secrets,
                "istio-system",
                json!({"metadata": {"name": "cacerts"}, "data": {"ca-cert.pem": "aGFuZC1tYWRl"}}),
            )
            .unwrap();
    }
    for n in &creating {
        fleet.cluster(n, "CREATING", true).await;
    }
    for n in &untagged {
        fleet.cluster(n, "ACTIVE", false).await;
    }

    // Every cluster's turn to be read back (drift is repaired in a cluster's turn).
    let before = fleet.emu.issued();
    let report = fleet
        .app(&[settings[0], settings[1], ("MESHCA_VERIFY_EVERY", "1")])
        .await
        .sweep(soon())
        .await;
    assert_eq!(
        report.checked, 200,
        "untagged clusters are not part of the fleet"
    );
    assert_eq!(
        (
            report.unchanged,
            report.delivered,
            report.renewed,
            report.skipped,
            report.failed,
            report.fanned_out
        ),
        (40, 30, 80, 50, 0, 0),
        "{:?}",
        report.failures
    );
    assert_eq!(
        fleet.emu.issued() - before,
        80,
        "a certificate for each fresh and each due cluster, none else"
    );
    assert!(report.errors.is_empty(), "{:?}", report.errors);

    let got = outcomes(&report);
    assert_eq!(got.len(), 200);
    for n in &healthy {
        assert!(
            matches!(got[n], Outcome::Unchanged { generation: 1, .. }),
            "{n}: {:?}",
            got[n]
        );
        fleet.assert_valid(n);
    }
    for n in &drifted {
        assert!(
            matches!(
                got[n],
                Outcome::Delivered {
                    generation: 1,
                    change: Change::Created,
                    ..
                }
            ),
            "{n}: {:?}",
            got[n]
        );
        fleet.assert_valid(n);
    }
    for n in &due {
        assert!(
            matches!(&got[n], Outcome::Renewed { generation: 2, change: Change::Rotated, reason, .. } if reason.to_string().contains("renew")),
            "{n}: {:?}",
            got[n]
        );
        let v = fleet.assert_valid(n);
        assert!(
            v.ca_cert.not_after - time::OffsetDateTime::now_utc() > time::Duration::days(29),
            "{n}: a 30-day bundle now"
        );
    }
    for n in &fresh {
        assert!(
            matches!(&got[n], Outcome::Renewed { generation: 1, change: Change::Created, reason, .. } if reason.to_string().contains("no bundle")),
            "{n}: {:?}",
            got[n]
        );
        fleet.assert_valid(n);
    }
    for n in &unmanaged {
        assert!(
            matches!(&got[n], Outcome::Skipped { reason } if reason.contains("not created by meshca")),
            "{n}: {:?}",
            got[n]
        );
        let s = fleet.secret(n).unwrap();
        assert_eq!(s["data"]["ca-cert.pem"], "aGFuZC1tYWRl", "{n}: left alone");
    }
    for n in &creating {
        assert!(
            matches!(&got[n], Outcome::Skipped { reason } if reason.contains("CREATING")),
            "{n}: {:?}",
            got[n]
        );
        assert!(fleet.secret(n).is_none());
    }
    for n in &untagged {
        assert!(!got.contains_key(n));
        assert!(fleet.secret(n).is_none(), "{n}: not opted in, not touched");
    }
    // The soonest expiry is one of the 30-day bundles issued in the first sweep.
    let soonest = report.soonest_expiry.as_ref().expect("bundles were seen");
    assert!(
        healthy.contains(&soonest.cluster) || drifted.contains(&soonest.cluster),
        "{soonest:?}"
    );

    // The report is what the function returns: it serialises with every count.
    let body = serde_json::to_value(&report).unwrap();
    assert_eq!(body["renewed"], 80);
    assert_eq!(body["clusters"].as_array().unwrap().len(), 200);
    assert!(
        !body.to_string().contains("PRIVATE KEY"),
        "no key material in the report"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_cluster_is_reported_with_its_step_and_reason_and_the_rest_proceed() {
    let mut fleet = Fleet::new().await;
    for n in ["a", "b", "c"] {
        fleet.cluster(n, "ACTIVE", true).await;
    }
    // b's API server refuses every write: delivery fails after issue.
    fleet.servers["b"].inject(meshca_test_apiserver::Fault {
        method: Some(http::Method::POST),
        path_contains: "secrets".into(),
        status: 403,
        times: 100,
        delay: Duration::ZERO,
    });
    let report = fleet.app(&[]).await.sweep(soon()).await;
    assert_eq!((report.renewed, report.failed), (2, 1), "{report:?}");
    assert_eq!(report.failures.len(), 1);
    let f = &report.failures[0];
    assert_eq!(f.cluster.as_deref(), Some("b"));
    assert!(
        matches!(&f.outcome, Outcome::Failed { step: meshca_core::reconcile::Step::Deliver, error } if error.contains("403")),
        "{f:?}"
    );
    fleet.assert_valid("a");
    fleet.assert_valid("c");
}

#[tokio::test(flavor = "multi_thread")]
async fn above_the_threshold_the_sweep_fans_out_reconcile_requests_that_cluster_events_accepts() {
    let mut fleet = Fleet::new().await;
    let names: Vec<String> = (0..8).map(|i| format!("big-{i}")).collect();
    for n in &names {
        fleet.cluster(n, "ACTIVE", true).await;
    }
    fleet.cluster("later", "CREATING", true).await;
    let app = fleet
        .app(&[
            ("MESHCA_FANOUT_THRESHOLD", "5"),
            ("MESHCA_EVENT_BUS", "meshca"),
        ])
        .await;
    // No such bus yet: every cluster is reported failed with EventBridge's reason. Listed by
    // tag, the clusters are handed on undescribed: the one still being created too.
    let report = app.sweep(soon()).await;
    assert_eq!((report.fanned_out, report.failed), (0, 9), "{report:?}");
    assert!(report.failures.iter().all(|f| matches!(&f.outcome, Outcome::Failed { step: Step::FanOut, error } if error.contains("Event bus meshca does not exist"))));

    let events = aws_sdk_eventbridge::Client::new(&fleet.emu.sdk_config().await);
    events
        .create_event_bus()
        .name("meshca")
        .send()
        .await
        .unwrap();
    fleet.emu.control("reset", json!({}));
    let report = app.sweep(soon()).await;
    assert_eq!(
        (
            report.checked,
            report.fanned_out,
            report.skipped,
            report.failed
        ),
        (9, 9, 0, 0),
        "{report:?}"
    );
    assert_eq!(
        fleet.emu.calls("IssueCertificate"),
        0,
        "nothing issued inline"
    );
    assert_eq!(fleet.emu.calls("PutEvents"), 1, "ten entries per call");
    assert_eq!(
        (
            fleet.emu.calls("DescribeCluster"),
            fleet.emu.calls("GetSecretValue")
        ),
        (0, 0),
        "handed on as listed"
    );

    let entries = fleet.emu.control("events/put", json!({}))["entries"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(entries.len(), 9);
    let mut requested = Vec::new();
    for e in &entries {
        assert_eq!(
            (
                e["Source"].as_str(),
                e["DetailType"].as_str(),
                e["EventBusName"].as_str()
            ),
            (
                Some("meshca"),
                Some("meshca Reconcile Requested"),
                Some("meshca")
            )
        );
        // As EventBridge delivers it to cluster-events.
        let delivered = json!({"version": "0", "id": "x", "source": e["Source"], "detail-type": e["DetailType"], "account": "123456789012",
                               "time": "2026-11-23T10:00:00Z", "region": REGION, "resources": [],
                               "detail": serde_json::from_str::<Value>(e["Detail"].as_str().unwrap()).unwrap()});
        let request = event::parse(&delivered).unwrap();
        let Request::Reconcile {
            cluster,
            region,
            force: false,
            ..
        } = &request
        else {
            panic!("{request:?}")
        };
        assert_eq!(region.as_deref(), Some(REGION));
        requested.push(cluster.clone());
        let creating = cluster == "later";
        let outcome = app.handle(request, soon()).await.outcome;
        match creating {
            true => assert!(
                matches!(&outcome, Outcome::Skipped { reason } if reason.starts_with("not active yet")),
                "{outcome:?}"
            ),
            false => assert!(
                matches!(outcome, Outcome::Renewed { generation: 1, .. }),
                "{outcome:?}"
            ),
        }
    }
    requested.sort();
    assert_eq!(
        requested,
        names
            .iter()
            .map(String::as_str)
            .chain(["later"])
            .collect::<Vec<_>>()
    );
    for n in &names {
        fleet.assert_valid(n);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sweep_out_of_time_defers_every_cluster_and_still_reports_the_soonest_expiry() {
    let mut fleet = Fleet::new().await;
    fleet.cluster("c1", "ACTIVE", true).await;
    assert_eq!(fleet.app(&[]).await.sweep(soon()).await.renewed, 1);
    // Due now (380 days before the end of a 365-day bundle): it needs the time a sweep no longer has.
    let app = fleet
        .app(&[
            ("MESHCA_VALIDITY_DAYS", "400"),
            ("MESHCA_RENEW_BEFORE_DAYS", "380"),
        ])
        .await;
    let report = app.sweep(Instant::now() + Duration::from_secs(5)).await;
    assert_eq!((report.checked, report.skipped), (1, 1), "{report:?}");
    assert!(
        matches!(&report.clusters[0].outcome, Outcome::Skipped { reason } if reason.contains("deferred")),
        "{report:?}"
    );
    assert_eq!(
        report.soonest_expiry.as_ref().map(|s| s.cluster.as_str()),
        Some("c1"),
        "known from escrow"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn issue_certificate_throttles_are_counted_in_the_report_and_its_metric() {
    let mut fleet = Fleet::new().await;
    for n in ["t1", "t2", "t3", "t4"] {
        fleet.cluster(n, "ACTIVE", true).await;
    }
    // PCA throttles the first three IssueCertificate calls; the budget retries them in its slots.
    fleet.emu.control("configure", json!({"faults": [{"operation": "IssueCertificate", "fail": 3, "code": "ThrottlingException", "status": 400}]}));
    let app = fleet.app(&[]).await;
    let report = app.sweep(soon()).await;
    assert_eq!(
        (report.renewed, report.failed, report.issue_throttled),
        (4, 0, 3),
        "{report:?}"
    );
    let metrics = meshca_lambda::metrics::sweep_metrics(&report, time::OffsetDateTime::now_utc());
    assert_eq!(metrics["IssueThrottled"], 3);
    // The next sweep starts from its own count.
    assert_eq!(app.sweep(soon()).await.issue_throttled, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_steady_sweep_keeps_healthy_clusters_from_escrow_summaries_with_no_call_about_them() {
    let mut fleet = Fleet::new().await;
    let names: Vec<String> = (0..12).map(|i| format!("steady-{i:02}")).collect();
    for n in &names {
        fleet.cluster(n, "ACTIVE", true).await;
    }
    fleet.cluster("outsider", "ACTIVE", false).await;
    let every = [("MESHCA_VERIFY_EVERY", "1")];
    let first = fleet.app(&every).await.sweep(soon()).await;
    assert_eq!(
        (first.checked, first.renewed, first.failed),
        (12, 12, 0),
        "{:?}",
        first.failures
    );

    // A record kept before summaries existed: steady-00's secret without its summary tags.
    let sm = aws_sdk_secretsmanager::Client::new(&fleet.emu.sdk_config().await);
    sm.untag_resource()
        .secret_id(format!("meshca/{REGION}/steady-00"))
        .tag_keys("meshca:not-after")
        .send()
        .await
        .unwrap();
    // Drift nobody reported: steady-01's secret deleted.
    assert!(fleet.servers["steady-01"].delete(Resource::Secrets, "istio-system", "cacerts"));

    let never = fleet.app(&[("MESHCA_VERIFY_EVERY", "0")]).await;
    let connections = |fleet: &Fleet| -> BTreeMap<String, usize> {
        fleet
            .servers
            .iter()
            .map(|(n, s)| (n.clone(), s.connections()))
            .collect()
    };
    let before = connections(&fleet);
    fleet.emu.control("reset", json!({}));
    let report = never.sweep(soon()).await;
    assert_eq!(
        (
            report.checked,
            report.unchanged,
            report.renewed,
            report.delivered,
            report.failed
        ),
        (12, 12, 0, 0, 0),
        "{report:?}"
    );
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    // One listing of each kind; steady-00 alone was described, read and given its summary.
    let calls = |op: &str| fleet.emu.calls(op);
    assert_eq!(
        (
            calls("GetResources"),
            calls("ListSecrets"),
            calls("ListClusters")
        ),
        (1, 1, 0)
    );
    assert_eq!((calls("DescribeCluster"), calls("TagResource")), (1, 1));
    let after = connections(&fleet);
    for n in &names[1..] {
        assert_eq!(
            after[n], before[n],
            "{n}: no call to a cluster escrow keeps"
        );
    }
    assert!(
        fleet.secret("steady-01").is_none(),
        "not this cluster's turn: the drift waits"
    );
    assert_eq!(
        report.soonest_expiry.as_ref().map(|e| e.region.as_str()),
        Some(REGION),
        "expiry known from the summaries"
    );

    // Next sweep: every record has its summary; nothing is read or described.
    fleet.emu.control("reset", json!({}));
    let report = never.sweep(soon()).await;
    assert_eq!((report.checked, report.unchanged), (12, 12), "{report:?}");
    assert_eq!(
        (
            calls("DescribeCluster"),
            calls("GetSecretValue"),
            calls("TagResource")
        ),
        (0, 0, 0)
    );

    // A sweep that is every cluster's turn reads each back and repairs the drift: a healthy
    // cluster's turn costs one DescribeCluster and one read of its secret, held against the
    // summary; only the drifted one takes the full look (described again, its record read).
    fleet.emu.control("reset", json!({}));
    let before = connections(&fleet);
    let report = fleet.app(&every).await.sweep(soon()).await;
    assert_eq!(
        (report.unchanged, report.delivered, report.failed),
        (11, 1, 0),
        "{report:?}"
    );
    fleet.assert_valid("steady-01");
    assert_eq!(calls("DescribeCluster"), 13);
    let reads = calls("GetSecretValue");
    assert!(
        (1..=6).contains(&reads),
        "the drifted cluster's record alone is read (assessed, then reconciled): {reads}"
    );
    let after = connections(&fleet);
    assert!(
        names.iter().all(|n| after[n] > before[n]),
        "every cluster was read back"
    );

    // Due by the summaries (380 days before the end of 365-day bundles): described, renewed.
    fleet.emu.control("reset", json!({}));
    let due = fleet
        .app(&[
            ("MESHCA_VERIFY_EVERY", "0"),
            ("MESHCA_VALIDITY_DAYS", "400"),
            ("MESHCA_RENEW_BEFORE_DAYS", "380"),
        ])
        .await;
    let report = due.sweep(soon()).await;
    assert_eq!((report.renewed, report.failed), (12, 0), "{report:?}");
    assert_eq!(calls("DescribeCluster"), 12);
    for n in &names {
        fleet.assert_valid(n);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn above_the_threshold_records_older_than_summaries_are_summarised_once_then_kept() {
    let mut fleet = Fleet::new().await;
    let names: Vec<String> = (0..6).map(|i| format!("old-{i}")).collect();
    for n in &names {
        fleet.cluster(n, "ACTIVE", true).await;
    }
    let first = fleet.app(&[]).await.sweep(soon()).await;
    assert_eq!(
        (first.renewed, first.failed),
        (6, 0),
        "{:?}",
        first.failures
    );
    // Records kept before summaries existed: every secret without its summary tags.
    let sm = aws_sdk_secretsmanager::Client::new(&fleet.emu.sdk_config().await);
    for n in &names {
        sm.untag_resource()
            .secret_id(format!("meshca/{REGION}/{n}"))
            .tag_keys("meshca:not-after")
            .send()
            .await
            .unwrap();
    }
    let app = fleet
        .app(&[
            ("MESHCA_FANOUT_THRESHOLD", "3"),
            ("MESHCA_VERIFY_EVERY", "0"),
        ])
        .await;
    fleet.emu.control("reset", json!({}));
    let report = app.sweep(soon()).await;
    assert_eq!((report.fanned_out, report.failed), (6, 0), "{report:?}");
    assert_eq!(
        fleet.emu.calls("TagResource"),
        6,
        "each record escrow keeps is summarised after the hand-on"
    );

    // The next sweep keeps them all by summary: nothing handed on, read or described.
    fleet.emu.control("reset", json!({}));
    let report = app.sweep(soon()).await;
    assert_eq!(
        (report.checked, report.unchanged, report.fanned_out),
        (6, 6, 0),
        "{report:?}"
    );
    let calls = |op: &str| fleet.emu.calls(op);
    assert_eq!(
        (
            calls("PutEvents"),
            calls("GetSecretValue"),
            calls("DescribeCluster")
        ),
        (0, 0, 0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kind_kept_in_a_secret_of_its_own_is_moved_into_its_clusters_secret_by_a_steady_sweep() {
    let mut fleet = Fleet::new().await;
    let names: Vec<String> = (0..3).map(|i| format!("kinds-{i}")).collect();
    for n in &names {
        fleet.cluster(n, "ACTIVE", true).await;
    }
    let kinds = ("MESHCA_KINDS", "istio-cacerts+xcp-edge");
    let first = fleet.app(&[kinds]).await.sweep(soon()).await;
    assert_eq!(
        (first.renewed, first.failed),
        (6, 0),
        "{:?}",
        first.failures
    );
    let sm = aws_sdk_secretsmanager::Client::new(&fleet.emu.sdk_config().await);
    let secrets = |sm: aws_sdk_secretsmanager::Client| async move {
        let listed = sm.list_secrets().send().await.unwrap();
        let mut names: Vec<String> = listed
            .secret_list()
            .iter()
            .filter_map(|s| s.name().map(String::from))
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        secrets(sm.clone()).await.len(),
        3,
        "one secret a cluster, two kinds in each"
    );

    // kinds-0's xcp-edge as an earlier meshca kept it: a secret of its own.
    let shared = format!("meshca/{REGION}/kinds-0");
    let current = sm
        .get_secret_value()
        .secret_id(&shared)
        .version_stage("xcp-edge-current")
        .send()
        .await
        .unwrap();
    let version = current.version_id().unwrap().to_string();
    sm.create_secret()
        .name(format!("{shared}.xcp-edge"))
        .client_request_token(&version)
        .secret_string(current.secret_string().unwrap())
        .send()
        .await
        .unwrap();
    sm.update_secret_version_stage()
        .secret_id(&shared)
        .version_stage("xcp-edge-current")
        .remove_from_version_id(&version)
        .send()
        .await
        .unwrap();

    // A steady sweep keeps every bundle, and moves the record in on the way.
    let app = fleet.app(&[kinds, ("MESHCA_VERIFY_EVERY", "0")]).await;
    fleet.emu.control("reset", json!({}));
    let report = app.sweep(soon()).await;
    assert_eq!(
        (report.unchanged, report.renewed, report.failed),
        (6, 0, 0),
        "{report:?}"
    );
    let calls = |op: &str| fleet.emu.calls(op);
    assert_eq!((calls("IssueCertificate"), calls("CreateSecret")), (0, 0));
    assert_eq!(
        calls("DeleteSecret"),
        1,
        "the old secret is scheduled for deletion"
    );
    assert_eq!(
        secrets(sm.clone()).await.len(),
        3,
        "a deleted secret is not listed"
    );

    // The next sweep keeps all six from their summaries: nothing read.
    fleet.emu.control("reset", json!({}));
    let report = app.sweep(soon()).await;
    assert_eq!((report.unchanged, report.failed), (6, 0), "{report:?}");
    assert_eq!((calls("GetSecretValue"), calls("DescribeCluster")), (0, 0));
}

/// A file of a cluster's cacerts, if it carries it.
fn file_in(fleet: &Fleet, cluster: &str, name: &str) -> Option<String> {
    let s = fleet.secret(cluster)?;
    let b64 = s["data"][name].as_str()?;
    Some(
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
        )
        .unwrap(),
    )
}

/// The fleet's CRLs in a cluster's cacerts, if it carries any.
fn crls_in(fleet: &Fleet, cluster: &str) -> Option<String> {
    file_in(fleet, cluster, "ca-crl.pem")
}

/// A revoke request for `cluster` in meshca's own account, for key compromise.
fn revoke_request(cluster: &str) -> Request {
    Request::Revoke {
        cluster: cluster.into(),
        region: Some(REGION.into()),
        account: None,
        reason: meshca_core::authority::RevocationReason::KeyCompromise,
        sender: None,
    }
}

fn lists(crls: &str, serial: &str) -> bool {
    meshca_core::fleet_crls::FleetCrls::assemble(crls, Vec::new())
        .unwrap()
        .lists(serial)
}

#[tokio::test(flavor = "multi_thread")]
async fn in_crl_mode_the_sweep_delivers_revocations_everywhere_and_a_renewal_waits_for_its_crl() {
    let mut fleet = Fleet::publishing_crls();
    // x and z run Istio 1.28, y 1.24, which ignores ca-crl.pem.
    for (c, image) in [
        ("x", "docker.io/istio/pilot:1.28.1"),
        ("y", "docker.io/istio/pilot:1.24.2"),
        ("z", "docker.io/istio/pilot:1.28.1-distroless"),
    ] {
        fleet.cluster_on(c, "ACTIVE", true, image).await;
    }
    let app = fleet
        .app(&[
            ("MESHCA_CRL_MODE", "true"),
            ("MESHCA_CRL_BUCKETS", "meshca-crls"),
        ])
        .await;
    let now = time::OffsetDateTime::now_utc();

    // The first sweep issues each cluster its CA, then gives every one the fleet's CRLs: the
    // root's and the issuing CA's from S3, and the three intermediates' own.
    let first = app.sweep(soon()).await;
    let crls = first.crls.clone().expect("CRL mode reports its CRLs");
    assert_eq!(
        (crls.crls, crls.written, crls.error.clone()),
        (5, 3, None),
        "{crls:?}"
    );
    for c in ["x", "y", "z"] {
        let held = crls_in(&fleet, c).unwrap_or_else(|| panic!("{c}: no ca-crl.pem"));
        let ca = file_in(&fleet, c, "ca-cert.pem").unwrap();
        meshca_core::crl::signed_by_own(&held, &ca, now).unwrap();
    }
    // Given the CRLs, y is still not protected, and says why.
    assert_eq!(
        crls.not_protected,
        [format!(
            "y in {REGION}: not protected: istiod istiod is Istio 1.24, which ignores ca-crl.pem (read from 1.27)"
        )]
    );
    let steady = app.sweep(soon()).await.crls.unwrap();
    assert_eq!((steady.written, steady.unchanged), (0, 3), "{steady:?}");
    // The CAs publish fresh CRLs (as a Private CA does at half their lifetime): the next sweep
    // carries them to every cluster, well before the old ones lapse.
    // A CRL republished within the same second says the same (its dates are to the second).
    std::thread::sleep(Duration::from_millis(1100));
    fleet.emu.control("crl/publish", json!({}));
    let refreshed = app.sweep(soon()).await.crls.unwrap();
    assert_eq!(refreshed.written, 3, "{refreshed:?}");
    assert!(refreshed.first_lapse >= crls.first_lapse, "{refreshed:?}");

    // A revoke request: x is held, and y and z are given CRLs listing it at once (the emulated
    // CA publishes at once; a real one some minutes later, and the sweep delivers then).
    let x_serial = fleet.assert_valid("x").ca_cert.serial;
    let revoked = app.handle(revoke_request("x"), soon()).await;
    assert!(
        matches!(revoked.outcome, Outcome::Revoked { .. }),
        "{revoked:?}"
    );
    for c in ["y", "z"] {
        assert!(lists(&crls_in(&fleet, c).unwrap(), &x_serial), "{c}");
    }
    let sent = fleet.emu.control("events/put", json!({}))["entries"].clone();
    let notice: Value = sent
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["DetailType"] == "meshca Revocation Completed")
        .map(|e| serde_json::from_str(e["Detail"].as_str().unwrap()).unwrap())
        .expect("the revocation is announced");
    // y's istiod (1.24) ignores the CRLs: given them, it still admits x, and the event says so.
    assert_eq!(
        (&notice["crlMode"], &notice["enforcedByDataPlane"]),
        (&json!(true), &json!(false)),
        "{notice}"
    );
    assert_eq!(
        notice["notProtected"],
        json!([format!(
            "y in {REGION}: not protected: istiod istiod is Istio 1.24, which ignores ca-crl.pem (read from 1.27)"
        )]),
        "{notice}"
    );
    let after = app.sweep(soon()).await.crls.unwrap();
    assert_eq!(
        (after.held, after.unchanged, after.revoked),
        (1, 2, 1),
        "{after:?}"
    );
    assert!(
        !lists(&crls_in(&fleet, "x").unwrap(), &x_serial),
        "x is held: nothing goes there"
    );

    // A renewal of y: its new intermediate's CRL is in no cluster yet, so it waits, and y keeps
    // generation 1 (istiod would have discarded generation 2).
    let y1 = fleet.assert_valid("y").ca_cert.serial;
    let forced = app.reconcile("y", Some(REGION), true, None).await;
    assert!(
        matches!(forced.outcome, Outcome::AwaitingCrls { generation: 2, .. }),
        "{forced:?}"
    );
    assert_eq!(fleet.assert_valid("y").ca_cert.serial, y1);
    // The sweep gives y and z the CRLs with generation 2's, then puts it in force.
    let settled = app.sweep(soon()).await;
    assert_eq!(settled.crls.as_ref().unwrap().written, 2, "{settled:?}");
    assert_eq!(settled.awaiting_crls, 0, "{settled:?}");
    let y_line = settled
        .clusters
        .iter()
        .find(|r| r.cluster.as_deref() == Some("y"))
        .unwrap();
    assert!(
        matches!(y_line.outcome, Outcome::Delivered { generation: 2, .. }),
        "{y_line:?}"
    );
    assert_eq!(settled.delivered, 1, "{settled:?}");
    assert_ne!(fleet.assert_valid("y").ca_cert.serial, y1);
    let y2 = file_in(&fleet, "y", "ca-cert.pem").unwrap();
    meshca_core::crl::signed_by_own(&crls_in(&fleet, "z").unwrap(), &y2, now).unwrap();

    // CRL mode turned off after CRLs were delivered: a renewal could only wait forever, so it
    // fails, saying why, and the alarm sees it.
    let off = fleet.app(&[]).await;
    let stuck = off.reconcile("z", Some(REGION), true, None).await;
    match &stuck.outcome {
        Outcome::Failed {
            step: Step::Deliver,
            error,
        } => {
            assert!(error.contains("MESHCA_CRL_MODE is off"), "{error}")
        }
        other => panic!("{other:?}"),
    }

    // A new cluster: its CreateCluster gives every cluster its intermediate's CRL at once (their
    // proxies would refuse its workloads until the next sweep otherwise), and it the fleet's.
    fleet
        .cluster_on("w", "ACTIVE", true, "docker.io/istio/pilot:1.28.1")
        .await;
    let e = json!({"detail-type": "AWS API Call via CloudTrail", "source": "aws.eks", "region": REGION,
        "detail": {"eventName": "CreateCluster", "awsRegion": REGION,
                   "requestParameters": {"name": "w", "tags": {TAG.0: TAG.1}}}});
    let created = app.handle(event::parse(&e).unwrap(), soon()).await;
    assert!(
        matches!(created.outcome, Outcome::Renewed { .. }),
        "{created:?}"
    );
    let w = file_in(&fleet, "w", "ca-cert.pem").unwrap();
    for c in ["y", "z", "w"] {
        let held = crls_in(&fleet, c).unwrap_or_else(|| panic!("{c}: no ca-crl.pem"));
        meshca_core::crl::signed_by_own(&held, &w, now).unwrap();
    }

    // w is deleted while no DeleteCluster event reaches meshca: its record is named gone, not
    // a failure the CrlFailures alarm would page for every sweep.
    fleet.emu.control(
        "eks/cluster",
        json!({"region": REGION, "name": "w", "delete": true}),
    );
    let crls = app.sweep(soon()).await.crls.unwrap();
    assert_eq!(crls.failures, Vec::<String>::new(), "{crls:?}");
    assert_eq!(crls.gone.len(), 1, "{crls:?}");
    assert!(
        crls.gone[0].starts_with(&format!(
            "w in {REGION}: no such EKS cluster: nothing delivered; its record stays until retired"
        )),
        "{crls:?}"
    );
}

/// A revocation's reach in a fleet of 20 in CRL mode: one revoke request gives the 19 others
/// CRLs listing the revoked intermediate, each with five calls to its API server (read the
/// secret, write it, whose answer is the read-back; then who enforces it: istiod, ztunnel and
/// the injected pods) and none to the revoked one.
/// Prints the time it took (not asserted: timing belongs to bench/run).
#[tokio::test(flavor = "multi_thread")]
async fn one_revocation_reaches_every_other_cluster_of_twenty_with_five_calls_each() {
    let mut fleet = Fleet::publishing_crls();
    let names: Vec<String> = (0..20).map(|i| format!("c{i:02}")).collect();
    for c in &names {
        fleet
            .cluster_on(c, "ACTIVE", true, "docker.io/istio/pilot:1.28.1")
            .await;
    }
    let app = fleet
        .app(&[
            ("MESHCA_CRL_MODE", "true"),
            ("MESHCA_CRL_BUCKETS", "meshca-crls"),
        ])
        .await;
    let first = app.sweep(soon()).await;
    assert_eq!(first.crls.as_ref().unwrap().written, 20, "{first:?}");
    let before: BTreeMap<&String, usize> = names
        .iter()
        .map(|c| (c, fleet.servers[c].seen().len()))
        .collect();
    let revoked_serial = fleet.assert_valid("c00").ca_cert.serial;
    let started = Instant::now();
    let report = app.handle(revoke_request("c00"), soon()).await;
    let took = started.elapsed();
    assert!(
        matches!(report.outcome, Outcome::Revoked { .. }),
        "{report:?}"
    );
    for c in &names[1..] {
        assert!(lists(&crls_in(&fleet, c).unwrap(), &revoked_serial), "{c}");
        let calls: Vec<String> = fleet.servers[c].seen()[before[c]..]
            .iter()
            .map(|s| format!("{} {}", s.method, s.path))
            .collect();
        assert_eq!(
            calls,
            [
                "GET /api/v1/namespaces/istio-system/secrets/cacerts",
                "PUT /api/v1/namespaces/istio-system/secrets/cacerts",
                "GET /apis/apps/v1/namespaces/istio-system/deployments",
                "GET /apis/apps/v1/namespaces/istio-system/daemonsets",
                "GET /api/v1/pods",
            ],
            "{c}"
        );
    }
    assert_eq!(
        fleet.servers["c00"].seen().len(),
        before[&names[0]],
        "nothing goes to the revoked cluster"
    );
    eprintln!(
        "revoke request → 19 other clusters hold the CRL: {} ms; 5 API calls per cluster",
        took.as_millis()
    );

    // A cluster that refuses the write is named, and the others go on; the next sweep finishes
    // it, and every cluster ends with the same CRLs.
    fleet.servers["c05"].inject(meshca_test_apiserver::Fault {
        method: Some(http::Method::PUT),
        path_contains: "secrets/cacerts".into(),
        status: 403,
        times: 100,
        delay: Duration::ZERO,
    });
    // A CRL republished within the same second says the same (its dates are to the second).
    std::thread::sleep(Duration::from_millis(1100));
    fleet.emu.control("crl/publish", json!({}));
    let partial = app.sweep(soon()).await.crls.unwrap();
    assert_eq!(partial.written, 18, "{partial:?}");
    assert!(
        partial.failures.len() == 1 && partial.failures[0].starts_with("c05 in "),
        "{:?}",
        partial.failures
    );
    fleet.servers["c05"].clear_faults();
    let finished = app.sweep(soon()).await.crls.unwrap();
    assert_eq!(
        (finished.written, finished.unchanged),
        (1, 18),
        "{finished:?}"
    );
    let held: std::collections::BTreeSet<String> = names[1..]
        .iter()
        .map(|c| crls_in(&fleet, c).unwrap())
        .collect();
    assert_eq!(held.len(), 1, "every cluster holds the same CRLs");
}
