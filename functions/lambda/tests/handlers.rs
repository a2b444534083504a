//! Every sample event in events/ through the handler, against the emulated AWS and the test
//! Kubernetes API server that emulated DescribeCluster points at.

use meshca_test_support::aws;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws::{AwsEmulator, REGION};
use meshca_core::Outcome;
use meshca_core::delivery::Change;
use meshca_lambda::event::{self, EventError, Request};
use meshca_lambda::{App, Config};
use meshca_test_apiserver::store::Resource;
use meshca_test_apiserver::{ApiServer, Settings};
use serde_json::{Value, json};

fn sample(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../events")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

struct World {
    emu: AwsEmulator,
    /// The issuing CA's ARN.
    ca: String,
    server: ApiServer,
    app: App,
}

async fn world(extra: &[(&str, &str)]) -> World {
    world_named("c1", extra).await
}

/// The emulated AWS with a two-level CA, and EKS cluster `name` (opted in, istiod 1.24) whose API
/// server is a test server checking the EKS token for that name.
async fn world_named(name: &str, extra: &[(&str, &str)]) -> World {
    let emu = AwsEmulator::start();
    let ca = emu.hierarchy("EC_prime256v1", 2)["issuing"]
        .as_str()
        .unwrap()
        .to_string();
    let server = ApiServer::start(Settings::eks_scoped(name, "testing", "testing"))
        .await
        .unwrap();
    server.seed_istio(Some("docker.io/istio/pilot:1.24.2"));
    emu.control(
        "eks/cluster",
        json!({"region": REGION, "name": name, "endpoint": server.url(), "ca_pem": server.ca_pem(),
                                      "tags": {"meshca.io/enabled": "true"}}),
    );
    let mut env: HashMap<String, String> = HashMap::from([
        ("MESHCA_CA_ARN".to_string(), ca.clone()),
        ("MESHCA_REGIONS".to_string(), REGION.to_string()),
        ("MESHCA_VALIDITY_DAYS".to_string(), "30".to_string()),
        ("MESHCA_ACTIVE_POLL_SECONDS".to_string(), "1".to_string()),
    ]);
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let config = Config::from(&move |k: &str| env.get(k).cloned()).unwrap();
    let sdk = emu.sdk_config().await;
    let app = App::with_sdk_config(config, &sdk).await.unwrap();
    World {
        emu,
        ca,
        server,
        app,
    }
}

/// An app configured by exactly `pairs`, on the emulated AWS.
async fn app_with(emu: &AwsEmulator, pairs: &[(&str, &str)]) -> App {
    let env: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let config = Config::from(&move |k: &str| env.get(k).cloned()).unwrap();
    App::with_sdk_config(config, &emu.sdk_config().await)
        .await
        .unwrap()
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

impl World {
    async fn run(&self, file: &str) -> Outcome {
        let request = event::parse(&sample(file)).unwrap();
        self.app.handle(request, soon()).await.outcome
    }
    fn generation(&self) -> Option<String> {
        let s = self
            .server
            .get(Resource::Secrets, "istio-system", "cacerts")?;
        s["metadata"]["annotations"]["meshca.io/generation"]
            .as_str()
            .map(str::to_string)
    }
}

/// The account of the sample events.
const HOME: &str = "123456789012";

#[test]
fn every_sample_parses_to_what_it_means() {
    let created = Request::Created {
        cluster: "c1".into(),
        region: "eu-west-1".into(),
        tags: BTreeMap::from([
            ("meshca.io/enabled".into(), "true".into()),
            ("team".into(), "platform".into()),
        ]),
        account: Some(HOME.into()),
    };
    assert_eq!(
        event::parse(&sample("eks-create-cluster.json")),
        Ok(created.clone())
    );
    assert_eq!(
        event::parse(&sample("eks-create-cluster-clustername.json")),
        Ok(created)
    );
    assert!(matches!(
        event::parse(&sample("eks-create-cluster-failed.json")),
        Ok(Request::FailedCall { .. })
    ));
    assert_eq!(
        event::parse(&sample("eks-delete-cluster.json")),
        Ok(Request::Deleted {
            cluster: "c1".into(),
            region: "eu-west-1".into(),
            account: Some(HOME.into())
        })
    );
    assert_eq!(event::parse(&sample("schedule.json")), Ok(Request::Sweep));
    let reconcile = Request::Reconcile {
        cluster: "c1".into(),
        region: Some("eu-west-1".into()),
        force: false,
        account: None,
        sender: None,
    };
    let from_home = Request::Reconcile {
        cluster: "c1".into(),
        region: Some("eu-west-1".into()),
        force: false,
        account: None,
        sender: Some(HOME.into()),
    };
    assert_eq!(
        event::parse(&sample("reconcile-request.json")),
        Ok(from_home)
    );
    assert_eq!(event::parse(&sample("direct-invoke.json")), Ok(reconcile));
}

#[test]
fn malformed_events_are_refused_with_a_reason() {
    let refused = |v: Value, why: &str| match event::parse(&v) {
        Err(EventError(msg)) => assert!(msg.contains(why), "{msg} (wanted {why})"),
        Ok(r) => panic!("accepted {r:?}"),
    };
    refused(json!([1, 2]), "not a JSON object");
    refused(json!({}), "neither an EventBridge event");
    refused(
        json!({"detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2"}),
        "expected",
    );
    refused(
        json!({"detail-type": "AWS API Call via CloudTrail", "source": "aws.s3", "detail": {}}),
        "not aws.eks",
    );
    refused(
        json!({"detail-type": "AWS API Call via CloudTrail", "source": "aws.eks", "detail": {"eventName": "UpdateClusterVersion", "awsRegion": "eu-west-1", "requestParameters": {"name": "c1"}}}),
        "eventName UpdateClusterVersion",
    );
    refused(
        json!({"detail-type": "AWS API Call via CloudTrail", "source": "aws.eks", "detail": {"eventName": "CreateCluster", "awsRegion": "eu-west-1"}}),
        "no cluster name",
    );
    refused(
        json!({"detail-type": "meshca Reconcile Requested", "detail": {"cluster": 7}}),
        "detail.cluster",
    );
    refused(
        json!({"cluster": "c1", "force": "yes"}),
        "force is not a boolean",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn create_reconcile_and_delete_through_the_handler() {
    let w = world(&[]).await;
    let outcome = w.run("eks-create-cluster.json").await;
    assert!(
        matches!(
            &outcome,
            Outcome::Renewed {
                generation: 1,
                change: Change::Created,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(w.generation().as_deref(), Some("1"));

    // The other request shape and a reconcile request: nothing more to do.
    let outcome = w.run("eks-create-cluster-clustername.json").await;
    assert!(
        matches!(outcome, Outcome::Unchanged { generation: 1, .. }),
        "{outcome:?}"
    );
    let outcome = w.run("reconcile-request.json").await;
    assert!(matches!(outcome, Outcome::Unchanged { .. }), "{outcome:?}");
    assert_eq!(w.emu.calls("IssueCertificate"), 1);

    // A direct invoke with force renews.
    let forced =
        event::parse(&json!({"cluster": "c1", "region": "eu-west-1", "force": true})).unwrap();
    let outcome = w.app.handle(forced, soon()).await.outcome;
    assert!(
        matches!(
            &outcome,
            Outcome::Renewed {
                generation: 2,
                change: Change::Rotated,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(w.generation().as_deref(), Some("2"));

    let outcome = w.run("eks-create-cluster-failed.json").await;
    assert!(
        matches!(&outcome, Outcome::Skipped { reason } if reason.contains("ResourceInUseException")),
        "{outcome:?}"
    );
    let outcome = w.run("schedule.json").await;
    assert!(matches!(outcome, Outcome::Skipped { .. }), "{outcome:?}");

    let outcome = w.run("eks-delete-cluster.json").await;
    match &outcome {
        Outcome::Revoked { certificates } => assert_eq!(
            certificates.len(),
            2,
            "the current intermediate, and generation 1 it replaced (still valid: the ledger keeps it)"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(w.emu.calls("RevokeCertificate"), 2);
    assert_eq!(w.emu.calls("DeleteSecret"), 1);
    let outcome = w.run("eks-delete-cluster.json").await;
    assert!(
        matches!(&outcome, Outcome::Skipped { reason } if reason.contains("already")),
        "a redelivered event is harmless: {outcome:?}"
    );
    assert_eq!(w.emu.calls("RevokeCertificate"), 2, "nothing revoked again");
}

/// A configured CA whose root differs from the fleet's, outside a rotation (a changed
/// MESHCA_CA_ARN): every cluster is left as it is and reported failed, with the reason, in the
/// sweep's report and its ClustersFailed metric (which the alarm watches); nothing is issued.
#[tokio::test(flavor = "multi_thread")]
async fn a_ca_of_another_root_outside_a_rotation_changes_no_cluster_and_is_reported() {
    let w = world(&[]).await;
    assert!(matches!(
        w.run("eks-create-cluster.json").await,
        Outcome::Renewed { generation: 1, .. }
    ));
    let before = w
        .server
        .get(Resource::Secrets, "istio-system", "cacerts")
        .unwrap();
    let other = w.emu.hierarchy("EC_prime256v1", 1)["issuing"]
        .as_str()
        .unwrap()
        .to_string();
    let moved = app_with(
        &w.emu,
        &[
            ("MESHCA_CA_ARN", &other),
            ("MESHCA_REGIONS", REGION),
            ("MESHCA_VALIDITY_DAYS", "30"),
            ("MESHCA_VERIFY_EVERY", "1"),
        ],
    )
    .await;
    let issued = w.emu.calls("IssueCertificate");
    let sweep = moved.sweep(soon()).await;
    assert_eq!(
        (sweep.checked, sweep.failed, sweep.renewed),
        (1, 1, 0),
        "{sweep:?}"
    );
    let failure = serde_json::to_string(&sweep.failures[0]).unwrap();
    assert!(
        failure.contains("shares no root") && failure.contains("\"step\":\"decide\""),
        "{failure}"
    );
    let metrics = meshca_lambda::metrics::sweep_metrics(&sweep, time::OffsetDateTime::now_utc());
    assert_eq!(metrics["ClustersFailed"], 1, "{metrics}");
    assert_eq!(
        w.emu.calls("IssueCertificate"),
        issued,
        "nothing issued from the other root"
    );
    let after = w
        .server
        .get(Resource::Secrets, "istio-system", "cacerts")
        .unwrap();
    assert_eq!(
        after["data"], before["data"],
        "the cluster keeps its bundle"
    );
    // And the event path says the same.
    let outcome = moved
        .handle(
            event::parse(&json!({"cluster": "c1", "region": REGION, "force": true})).unwrap(),
            soon(),
        )
        .await
        .outcome;
    assert!(
        matches!(&outcome, Outcome::Failed { error, .. } if error.contains("shares no root")),
        "{outcome:?}"
    );
}

/// Finding 8 of the guard rails: a record restored after its cluster was deleted (meshca's own
/// advice for re-creating a name within the recovery window) never puts the revoked
/// intermediate back in force: the re-created cluster gets a fresh generation.
#[tokio::test(flavor = "multi_thread")]
async fn a_restored_record_never_puts_a_revoked_intermediate_back() {
    let w = world(&[]).await;
    assert!(matches!(
        w.run("eks-create-cluster.json").await,
        Outcome::Renewed { generation: 1, .. }
    ));
    let revoked = w
        .server
        .get(Resource::Secrets, "istio-system", "cacerts")
        .unwrap()["data"]["ca-cert.pem"]
        .clone();
    assert!(matches!(
        w.run("eks-delete-cluster.json").await,
        Outcome::Revoked { .. }
    ));
    // Re-created within the recovery window: refused, saying how to reuse the name.
    let outcome = w.run("eks-create-cluster.json").await;
    assert!(
        matches!(&outcome, Outcome::Failed { error, .. }
            if error.contains("aws secretsmanager restore-secret --secret-id meshca/eu-west-1/c1")),
        "{outcome:?}"
    );
    let sm = aws_sdk_secretsmanager::Client::new(&w.emu.sdk_config().await);
    sm.restore_secret()
        .secret_id("meshca/eu-west-1/c1")
        .send()
        .await
        .unwrap();
    let outcome = w.run("eks-create-cluster.json").await;
    assert!(
        matches!(
            &outcome,
            Outcome::Renewed {
                generation: 2,
                reason: meshca_core::RenewReason::Revoked,
                ..
            }
        ),
        "{outcome:?}"
    );
    let now_in_force = w
        .server
        .get(Resource::Secrets, "istio-system", "cacerts")
        .unwrap()["data"]["ca-cert.pem"]
        .clone();
    assert_ne!(now_in_force, revoked);
    // The sweep agrees: the restored record is healthy now, nothing more is issued.
    let issued = w.emu.calls("IssueCertificate");
    let sweep = w.app.sweep(soon()).await;
    assert_eq!((sweep.failed, sweep.renewed), (0, 0), "{sweep:?}");
    assert_eq!(w.emu.calls("IssueCertificate"), issued);
}

/// A key algorithm or validity changed in the functions' configuration applies at each
/// cluster's next renewal, not at once (a healthy bundle is kept), and the renewal reports the
/// change, which the record keeps in its history.
#[tokio::test(flavor = "multi_thread")]
async fn a_changed_configuration_applies_at_the_next_renewal_and_is_reported() {
    let w = world(&[]).await;
    assert!(matches!(
        w.run("eks-create-cluster.json").await,
        Outcome::Renewed { generation: 1, .. }
    ));
    let changed = app_with(
        &w.emu,
        &[
            ("MESHCA_CA_ARN", &w.ca),
            ("MESHCA_REGIONS", REGION),
            ("MESHCA_VALIDITY_DAYS", "60"),
            ("MESHCA_KEY_ALGORITHM", "rsa-2048"),
            ("MESHCA_VERIFY_EVERY", "1"),
        ],
    )
    .await;
    let issued = w.emu.calls("IssueCertificate");
    let sweep = changed.sweep(soon()).await;
    assert_eq!(
        (sweep.checked, sweep.failed, sweep.renewed),
        (1, 0, 0),
        "{sweep:?}"
    );
    assert_eq!(w.emu.calls("IssueCertificate"), issued, "kept until due");
    let outcome = changed
        .handle(
            event::parse(&json!({"cluster": "c1", "region": REGION, "force": true})).unwrap(),
            soon(),
        )
        .await
        .outcome;
    let Outcome::Renewed { changed, .. } = &outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(
        changed,
        &vec![
            "key algorithm: ec-p256 → rsa-2048".to_string(),
            "validity: 30 days → 60 days".to_string()
        ]
    );
    let reported = serde_json::to_value(&outcome).unwrap();
    assert_eq!(reported["changed"][0], "key algorithm: ec-p256 → rsa-2048");
    assert_eq!(w.generation().as_deref(), Some("2"));
}

/// EKS allows upper case and `_` (and 100 characters): such a cluster is created, swept and
/// deleted like any other, under its own name; its CN is derived to fit.
#[tokio::test(flavor = "multi_thread")]
async fn an_eks_name_with_capitals_and_underscores_is_served_end_to_end() {
    let name = "Prod_EU_1";
    let w = world_named(name, &[]).await;
    let renamed = |file: &str| {
        let text = serde_json::to_string(&sample(file))
            .unwrap()
            .replace("\"c1\"", &format!("\"{name}\""));
        event::parse(&serde_json::from_str(&text).unwrap()).unwrap()
    };
    let created = w
        .app
        .handle(renamed("eks-create-cluster.json"), soon())
        .await;
    assert_eq!(created.cluster.as_deref(), Some(name));
    assert!(
        matches!(
            created.outcome,
            Outcome::Renewed {
                generation: 1,
                change: Change::Created,
                ..
            }
        ),
        "{created:?}"
    );
    let secret = w
        .server
        .get(Resource::Secrets, "istio-system", "cacerts")
        .expect("cacerts delivered");
    assert_eq!(
        secret["metadata"]["annotations"]["meshca.io/generation"],
        "1"
    );
    use base64::Engine;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(secret["data"]["ca-cert.pem"].as_str().unwrap())
        .unwrap();
    let der = meshca_core::pem::certificates("ca-cert.pem", std::str::from_utf8(&pem).unwrap())
        .unwrap()
        .remove(0);
    let cert = meshca_core::cert::Certificate::from_der("ca-cert.pem", der).unwrap();
    assert!(
        cert.subject.contains("Prod_EU_1 istio intermediate CA"),
        "{}",
        cert.subject
    );
    let sweep = w.app.sweep(soon()).await;
    assert_eq!(
        (sweep.checked, sweep.unchanged, sweep.failed, sweep.skipped),
        (1, 1, 0, 0),
        "{sweep:?}"
    );
    let deleted = w
        .app
        .handle(renamed("eks-delete-cluster.json"), soon())
        .await;
    assert!(
        matches!(deleted.outcome, Outcome::Revoked { .. }),
        "{deleted:?}"
    );
    assert_eq!(w.emu.calls("RevokeCertificate"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn clusters_not_opted_in_or_not_active_are_skipped_with_reasons() {
    let w = world(&[("MESHCA_TAG_KEY", "mesh"), ("MESHCA_TAG_VALUE", "istio")]).await;
    let outcome = w.run("eks-create-cluster.json").await;
    assert!(
        matches!(&outcome, Outcome::Skipped { reason } if reason.contains("not opted in")),
        "{outcome:?}"
    );
    let outcome = w.run("direct-invoke.json").await;
    assert!(
        matches!(&outcome, Outcome::Skipped { reason } if reason.contains("mesh=istio")),
        "{outcome:?}"
    );

    let w = world(&[]).await;
    w.emu.control(
        "eks/cluster",
        json!({"region": REGION, "name": "c1", "status": "CREATING"}),
    );
    let request = event::parse(&sample("eks-create-cluster.json")).unwrap();
    let started = Instant::now();
    let outcome = w
        .app
        .handle(request, Instant::now() + Duration::from_secs(12))
        .await
        .outcome;
    assert!(
        matches!(&outcome, Outcome::Skipped { reason } if reason.contains("the sweep will finish it")),
        "{outcome:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "gave up within the invocation's time"
    );
    assert_eq!(w.emu.calls("IssueCertificate"), 0);
    let outcome = w
        .app
        .handle(event::parse(&json!({"cluster": "nope"})).unwrap(), soon())
        .await
        .outcome;
    assert!(
        matches!(&outcome, Outcome::Skipped { reason } if reason.contains("no such EKS cluster")),
        "{outcome:?}"
    );
    let outcome = w
        .app
        .handle(
            event::parse(&json!({"cluster": "c1", "region": "ap-south-1"})).unwrap(),
            soon(),
        )
        .await
        .outcome;
    assert!(
        matches!(&outcome, Outcome::Skipped { reason } if reason.contains("not managed")),
        "{outcome:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_that_becomes_active_while_create_waits_gets_its_ca() {
    let w = world(&[]).await;
    w.emu.control(
        "eks/cluster",
        json!({"region": REGION, "name": "c1", "status": "CREATING"}),
    );
    let flip = {
        let port = w.emu.port;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            aws::control_port(
                port,
                "eks/cluster",
                json!({"region": REGION, "name": "c1", "status": "ACTIVE"}),
            );
        })
    };
    let outcome = w.run("eks-create-cluster.json").await;
    flip.await.unwrap();
    assert!(
        matches!(
            &outcome,
            Outcome::Renewed {
                change: Change::Created,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert!(w.emu.calls("GET /clusters/c1") >= 2, "polled until ACTIVE");
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_decides_and_changes_nothing() {
    let w = world(&[("MESHCA_DRY_RUN", "true")]).await;
    let outcome = w.run("direct-invoke.json").await;
    assert!(
        matches!(&outcome, Outcome::Planned { plan } if plan.starts_with("renew (no bundle escrowed)")),
        "{outcome:?}"
    );
    assert_eq!(w.emu.calls("IssueCertificate"), 0);
    assert!(w.generation().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn with_vault_as_the_authority_create_and_delete_issue_and_revoke_through_openbao() {
    use meshca_test_support::vault::Bao;
    let bao = Bao::start();
    bao.two_level_pki();
    let (role_id, secret_id) = bao.approle(
        include_str!("../../../shared/vault/meshca-policy.hcl"),
        "20m",
    );

    // The AppRole secret id lives in Secrets Manager, where the function reads it at start.
    let emu = AwsEmulator::start();
    let sdk = emu.sdk_config().await;
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let arn = sm
        .create_secret()
        .name("meshca/vault-secret-id")
        .secret_string(&secret_id)
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let server = ApiServer::start(Settings::eks_scoped("c1", "testing", "testing"))
        .await
        .unwrap();
    server.seed_istio(Some("docker.io/istio/pilot:1.24.2"));
    emu.control(
        "eks/cluster",
        json!({"region": REGION, "name": "c1", "endpoint": server.url(), "ca_pem": server.ca_pem(),
                                      "tags": {"meshca.io/enabled": "true"}}),
    );
    let env: HashMap<String, String> = HashMap::from([
        ("MESHCA_AUTHORITY".to_string(), "vault".to_string()),
        ("MESHCA_VAULT_ADDR".to_string(), bao.addr.clone()),
        ("MESHCA_VAULT_CACERT".to_string(), bao.ca_pem.clone()),
        ("MESHCA_VAULT_ROLE_ID".to_string(), role_id),
        ("MESHCA_VAULT_SECRET_ID_ARN".to_string(), arn),
        ("MESHCA_REGIONS".to_string(), REGION.to_string()),
        ("MESHCA_VALIDITY_DAYS".to_string(), "30".to_string()),
    ]);
    let config = Config::from(&move |k: &str| env.get(k).cloned()).unwrap();
    let app = App::with_sdk_config(config, &sdk).await.unwrap();

    let outcome = app
        .handle(
            event::parse(&sample("eks-create-cluster.json")).unwrap(),
            soon(),
        )
        .await
        .outcome;
    assert!(
        matches!(
            &outcome,
            Outcome::Renewed {
                generation: 1,
                change: Change::Created,
                ..
            }
        ),
        "{outcome:?}"
    );
    let secret = server
        .get(Resource::Secrets, "istio-system", "cacerts")
        .unwrap();
    let serial = secret["metadata"]["annotations"]["meshca.io/certificate-arn"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        bao.serials("pki").contains(&serial),
        "the intermediate in the cluster is the one OpenBao signed ({serial})"
    );
    assert_eq!(emu.calls("IssueCertificate"), 0, "no Private CA involved");

    let outcome = app
        .handle(
            event::parse(&sample("eks-delete-cluster.json")).unwrap(),
            soon(),
        )
        .await
        .outcome;
    assert!(
        matches!(&outcome, Outcome::Revoked { certificates } if certificates == std::slice::from_ref(&serial)),
        "{outcome:?}"
    );
    let revoked = bao.json(&["read", &format!("pki/cert/{serial}")]);
    assert!(
        revoked["data"]["revocation_time"].as_i64().unwrap_or(0) > 0,
        "{revoked}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kinds_come_from_cluster_tags_and_a_deleted_cluster_loses_every_one() {
    let emu = AwsEmulator::start();
    let ca = emu.hierarchy("EC_prime256v1", 2)["issuing"]
        .as_str()
        .unwrap()
        .to_string();
    // A control plane: Istio's cacerts and its XCP edge identity, under its TSB name.
    let edge = ApiServer::start(Settings::eks_scoped("c1", "testing", "testing"))
        .await
        .unwrap();
    edge.seed_istio(Some("docker.io/istio/pilot:1.24.2"));
    emu.control("eks/cluster", json!({"region": REGION, "name": "c1", "endpoint": edge.url(), "ca_pem": edge.ca_pem(),
        "tags": {"meshca.io/enabled": "true", "meshca.io/kinds": "istio-cacerts xcp-edge", "meshca.io/tsb-name": "prod-east"}}));
    // The management plane: its role tag adds xcp-central and mpc (cluster-wide access: it may create `tsb`).
    let mgmt_settings = Settings {
        cluster: "mgmt".into(),
        aws_keys: BTreeMap::from([("testing".to_string(), "testing".to_string())]),
        ..Default::default()
    };
    let mgmt = ApiServer::start(mgmt_settings).await.unwrap();
    emu.control("eks/cluster", json!({"region": REGION, "name": "mgmt", "endpoint": mgmt.url(), "ca_pem": mgmt.ca_pem(),
        "tags": {"meshca.io/enabled": "true", "meshca.io/kinds": "xcp-central+cert-manager-ca", "meshca.io/tsb-role": "management-plane"}}));
    let env: HashMap<String, String> = HashMap::from([
        ("MESHCA_CA_ARN".to_string(), ca),
        ("MESHCA_REGIONS".to_string(), REGION.to_string()),
        ("MESHCA_VALIDITY_DAYS".to_string(), "30".to_string()),
        (
            "MESHCA_TSB_CENTRAL_ADDRESSES".to_string(),
            "central.tsb.example 10.0.0.7".to_string(),
        ),
    ]);
    let config = Config::from(&move |k: &str| env.get(k).cloned()).unwrap();
    let app = App::with_sdk_config(config, &emu.sdk_config().await)
        .await
        .unwrap();

    let report = app
        .handle(
            event::parse(&sample("eks-create-cluster.json")).unwrap(),
            soon(),
        )
        .await;
    let kinds: Vec<String> = report.kinds.keys().map(ToString::to_string).collect();
    assert_eq!(kinds, ["istio-cacerts", "xcp-edge"], "{report:?}");
    assert!(
        report.kinds.values().all(|o| matches!(
            o,
            Outcome::Renewed {
                generation: 1,
                change: Change::Created,
                ..
            }
        )),
        "{report:?}"
    );
    assert!(
        edge.get(Resource::Secrets, "istio-system", "cacerts")
            .is_some()
    );
    let edge_secret = edge
        .get(Resource::Secrets, "istio-system", "xcp-edge-cert")
        .expect("xcp-edge-cert delivered");
    assert_eq!(edge_secret["type"], "kubernetes.io/tls");

    let report = app
        .handle(
            Request::Reconcile {
                cluster: "mgmt".into(),
                region: None,
                force: false,
                account: None,
                sender: None,
            },
            soon(),
        )
        .await;
    let kinds: Vec<String> = report.kinds.keys().map(ToString::to_string).collect();
    assert_eq!(
        kinds,
        ["cert-manager-ca", "xcp-central", "mpc"],
        "{report:?}"
    );
    assert!(
        mgmt.get(Resource::Secrets, "tsb", "xcp-central-cert")
            .is_some()
            && mgmt.get(Resource::Secrets, "tsb", "mpc-certs").is_some()
    );
    assert_eq!(
        mgmt.get(Resource::Secrets, "cert-manager", "istio-ca")
            .expect("istio-csr's CA delivered")["type"],
        "kubernetes.io/tls"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["kinds"]["xcp-central"]["outcome"], "renewed", "{json}");

    // The sweep sees each kind on its own: all healthy now.
    let sweep = app.sweep(soon()).await;
    assert_eq!(
        (sweep.checked, sweep.unchanged, sweep.failed),
        (2, 5, 0),
        "{sweep:?}"
    );

    let revokes = emu.calls("RevokeCertificate");
    let report = app
        .handle(
            event::parse(&sample("eks-delete-cluster.json")).unwrap(),
            soon(),
        )
        .await;
    let kinds: Vec<String> = report.kinds.keys().map(ToString::to_string).collect();
    assert_eq!(kinds, ["istio-cacerts", "xcp-edge"], "{report:?}");
    assert!(
        report
            .kinds
            .values()
            .all(|o| matches!(o, Outcome::Revoked { certificates } if certificates.len() == 1)),
        "{report:?}"
    );
    assert_eq!(
        emu.calls("RevokeCertificate") - revokes,
        2,
        "both of c1's certificates revoked"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_reuses_its_connection_to_a_cluster_across_reconciles() {
    let w = world(&[]).await;
    let direct = |force: bool| Request::Reconcile {
        cluster: "c1".into(),
        region: None,
        force,
        account: None,
        sender: None,
    };
    assert_eq!(
        w.app.handle(direct(false), soon()).await.outcome.label(),
        "renewed"
    );
    let after_first = w.server.connections();
    for _ in 0..3 {
        assert_eq!(
            w.app.handle(direct(false), soon()).await.outcome.label(),
            "unchanged"
        );
    }
    assert_eq!(
        w.app.handle(direct(true), soon()).await.outcome.label(),
        "renewed"
    );
    assert_eq!(
        w.server.connections(),
        after_first,
        "four more reconciles, no new TLS connection"
    );
    assert!(after_first >= 1);
}

/// An emulated two-level EC P-256 Private CA (the issuing CA's ARN) and EKS cluster `c1` with
/// `tags`, reaching a real API server with cluster-wide access.
async fn p256_cluster(tags: Value) -> (AwsEmulator, String, ApiServer) {
    let emu = AwsEmulator::start();
    let ca = emu.hierarchy("EC_prime256v1", 2)["issuing"]
        .as_str()
        .unwrap()
        .to_string();
    let server = ApiServer::start(Settings {
        cluster: "c1".into(),
        aws_keys: BTreeMap::from([("testing".to_string(), "testing".to_string())]),
        ..Default::default()
    })
    .await
    .unwrap();
    emu.control(
        "eks/cluster",
        json!({"region": REGION, "name": "c1", "endpoint": server.url(), "ca_pem": server.ca_pem(),
        "tags": tags}),
    );
    (emu, ca, server)
}

/// The catalogue through the functions: a cluster whose kinds tag names every row gets each
/// row's secret at its landing, and DeleteCluster revokes every one — a row the functions'
/// config, delivery or cleanup leaves out fails here, named.
#[tokio::test(flavor = "multi_thread")]
async fn every_catalogue_row_named_by_a_tag_lands_and_is_revoked_on_delete() {
    use meshca_core::kind::CATALOGUE;
    let every: Vec<&str> = CATALOGUE.iter().map(|p| p.name).collect();
    let (emu, ca, server) = p256_cluster(
        json!({"meshca.io/enabled": "true", "meshca.io/kinds": every.join(" "), "meshca.io/tsb-name": "c1-in-tsb"}),
    )
    .await;
    let app = app_with(
        &emu,
        &[
            ("MESHCA_CA_ARN", &ca),
            ("MESHCA_REGIONS", REGION),
            ("MESHCA_VALIDITY_DAYS", "30"),
            ("MESHCA_TSB_CENTRAL_ADDRESSES", "central.tsb.example"),
        ],
    )
    .await;
    let report = app
        .handle(
            event::parse(&sample("eks-create-cluster.json")).unwrap(),
            soon(),
        )
        .await;
    let tags = BTreeMap::from([
        ("meshca.io/kinds".to_string(), every.join(" ")),
        ("meshca.io/tsb-name".to_string(), "c1-in-tsb".to_string()),
    ]);
    let specs = app.config.kinds.for_tags(&tags).unwrap();
    for p in &CATALOGUE {
        assert!(
            matches!(
                report.kinds.get(&p.kind),
                Some(Outcome::Renewed { generation: 1, .. })
            ),
            "{}: {report:?}",
            p.name
        );
        let landing = specs
            .iter()
            .find(|s| s.kind == p.kind)
            .expect("every row configured")
            .landing();
        assert!(
            server
                .get(Resource::Secrets, &landing.namespace, &landing.name)
                .is_some(),
            "{}: no secret at {}/{}",
            p.name,
            landing.namespace,
            landing.name
        );
        if let Some(anchors) = landing.anchors {
            assert!(
                server
                    .get(Resource::ConfigMaps, &landing.namespace, anchors.name)
                    .is_some(),
                "{}: no anchors",
                p.name
            );
        }
    }
    let report = app
        .handle(
            event::parse(&sample("eks-delete-cluster.json")).unwrap(),
            soon(),
        )
        .await;
    for p in &CATALOGUE {
        assert!(
            matches!(report.kinds.get(&p.kind), Some(Outcome::Revoked { certificates }) if certificates.len() == 1),
            "{}: {report:?}",
            p.name
        );
    }
    assert_eq!(emu.calls("RevokeCertificate") as usize, CATALOGUE.len());
}

/// The Linkerd row through the functions: a cluster whose kinds tag names linkerd-issuer gets
/// the issuer secret and the trust-anchor ConfigMap from a P-256 Private CA, and DeleteCluster
/// revokes the issuer like every kind.
#[tokio::test(flavor = "multi_thread")]
async fn a_linkerd_issuer_named_by_a_tag_lands_with_its_anchors_and_is_revoked_on_delete() {
    use base64::Engine;
    let (emu, ca, server) =
        p256_cluster(json!({"meshca.io/enabled": "true", "meshca.io/kinds": "linkerd-issuer"}))
            .await;
    let app = app_with(
        &emu,
        &[
            ("MESHCA_CA_ARN", &ca),
            ("MESHCA_REGIONS", REGION),
            ("MESHCA_VALIDITY_DAYS", "30"),
        ],
    )
    .await;
    let report = app
        .handle(
            event::parse(&sample("eks-create-cluster.json")).unwrap(),
            soon(),
        )
        .await;
    let kinds: Vec<String> = report.kinds.keys().map(ToString::to_string).collect();
    assert_eq!(kinds, ["linkerd-issuer"], "{report:?}");
    let secret = server
        .get(Resource::Secrets, "linkerd", "linkerd-identity-issuer")
        .expect("the issuer secret delivered");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    let ca_crt = base64::engine::general_purpose::STANDARD
        .decode(secret["data"]["ca.crt"].as_str().unwrap())
        .unwrap();
    let anchors = server
        .get(
            Resource::ConfigMaps,
            "linkerd",
            "linkerd-identity-trust-roots",
        )
        .expect("the anchors delivered");
    assert_eq!(
        anchors["data"]["ca-bundle.crt"]
            .as_str()
            .unwrap()
            .as_bytes(),
        &ca_crt[..]
    );
    assert_eq!(
        anchors["metadata"]["annotations"]["meshca.io/kind"],
        "linkerd-issuer"
    );
    let report = app
        .handle(
            event::parse(&sample("eks-delete-cluster.json")).unwrap(),
            soon(),
        )
        .await;
    assert!(
        matches!(report.kinds.get(&meshca_core::Kind::LinkerdIssuer), Some(Outcome::Revoked { certificates }) if certificates.len() == 1),
        "{report:?}"
    );
    assert_eq!(emu.calls("RevokeCertificate"), 1);
}
