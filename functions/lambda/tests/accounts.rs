//! An organisation's fleet: clusters in meshca's own account and in member accounts, two regions
//! each, reached through roles assumed there. The emulated AWS keys accounts by the credentials
//! AssumeRole returns, and each cluster's API server admits only EKS tokens signed by a session
//! of the role its access entry names (checked with the secret STS holds for that key).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use meshca_lambda::event::{self, Request};
use meshca_lambda::{App, Config};
use meshca_test_apiserver::store::Resource;
use meshca_test_apiserver::{ApiServer, Settings, StsIdentities};
use meshca_test_support::aws::{AwsEmulator, REGION};
use serde_json::{Value, json};

const HOME: &str = "123456789012";
const M1: &str = "222233334444";
const M2: &str = "333344445555";
/// Listed, but its role cannot be assumed (never created in the member).
const BROKEN: &str = "444455556666";
/// The security team's account: it may revoke, nothing else.
const SECURITY: &str = "777788889999";
const REGION_2: &str = "us-east-1";

fn role(account: &str) -> String {
    format!("arn:aws:iam::{account}:role/meshca-member")
}

struct Org {
    emu: AwsEmulator,
    /// (account, region, cluster) → its API server.
    servers: BTreeMap<(String, String, String), ApiServer>,
}

impl Org {
    async fn new() -> Org {
        let emu = AwsEmulator::start();
        emu.control(
            "iam/role",
            json!({"arn": role(M1), "trusts": HOME, "external_id": "m1-secret"}),
        );
        emu.control("iam/role", json!({"arn": role(M2), "trusts": HOME}));
        Org {
            emu,
            servers: BTreeMap::new(),
        }
    }

    /// A cluster in `account` whose access entry names `entry` (the member role by default).
    async fn cluster(&mut self, account: &str, region: &str, name: &str, entry: Option<String>) {
        let settings = if account == HOME {
            Settings::eks_scoped(name, "testing", "testing")
        } else {
            let emulator = format!("127.0.0.1:{}", self.emu.port).parse().unwrap();
            Settings {
                cluster: name.into(),
                eks_namespaces: Some(["istio-system".to_string()].into()),
                sts: Some(StsIdentities {
                    emulator,
                    role_arn: entry.unwrap_or_else(|| role(account)),
                }),
                ..Default::default()
            }
        };
        let server = ApiServer::start(settings).await.unwrap();
        server.seed_istio(Some("docker.io/istio/pilot:1.24.2"));
        self.emu.control(
            "eks/cluster",
            json!({"account": account, "region": region, "name": name, "endpoint": server.url(),
            "ca_pem": server.ca_pem(), "tags": {"meshca.io/enabled": "true"}}),
        );
        self.servers
            .insert((account.into(), region.into(), name.into()), server);
    }

    async fn app(&self) -> App {
        let ca = self.emu.hierarchy("EC_prime256v1", 2)["issuing"]
            .as_str()
            .unwrap()
            .to_string();
        let accounts = json!([
            {"account": M1, "externalId": "m1-secret", "regions": [REGION, REGION_2]},
            {"account": M2, "regions": [REGION, REGION_2]},
            {"account": BROKEN, "regions": [REGION]},
        ]);
        let env: HashMap<String, String> = HashMap::from([
            ("MESHCA_CA_ARN".to_string(), ca),
            ("MESHCA_REGIONS".to_string(), format!("{REGION},{REGION_2}")),
            ("MESHCA_ACCOUNTS".to_string(), accounts.to_string()),
            ("MESHCA_SECURITY_ACCOUNT".to_string(), SECURITY.to_string()),
            ("MESHCA_VALIDITY_DAYS".to_string(), "30".to_string()),
        ]);
        let config = Config::from(&move |k: &str| env.get(k).cloned()).unwrap();
        App::with_sdk_config(config, &self.emu.sdk_config().await)
            .await
            .unwrap()
    }

    fn server(&self, account: &str, region: &str, name: &str) -> &ApiServer {
        &self.servers[&(account.to_string(), region.to_string(), name.to_string())]
    }

    /// Who wrote the cluster's cacerts: the callers the server saw create or replace it.
    fn writers(&self, account: &str, region: &str, name: &str) -> Vec<String> {
        let seen = self.server(account, region, name).seen();
        let writes = seen
            .iter()
            .filter(|s| s.path.ends_with("/secrets") || s.path.ends_with("/secrets/cacerts"));
        let mut callers: Vec<String> = writes
            .filter(|s| s.method != "GET")
            .map(|s| s.caller.clone())
            .collect();
        callers.dedup();
        callers
    }

    async fn escrowed(&self) -> Vec<String> {
        let mut names = Vec::new();
        for region in [REGION, REGION_2] {
            let sdk = meshca_wiring::in_region(&self.emu.sdk_config().await, region);
            let sm = aws_sdk_secretsmanager::Client::new(&sdk);
            let listed = sm.list_secrets().max_results(100).send().await.unwrap();
            names.extend(
                listed
                    .secret_list()
                    .iter()
                    .filter_map(|s| s.name().map(str::to_string)),
            );
        }
        names.sort();
        names
    }
}

fn created(account: &str, region: &str, name: &str) -> Request {
    let e = json!({"detail-type": "AWS API Call via CloudTrail", "source": "aws.eks", "account": account, "region": region,
        "detail": {"eventName": "CreateCluster", "awsRegion": region,
                   "requestParameters": {"name": name, "tags": {"meshca.io/enabled": "true"}}}});
    event::parse(&e).unwrap()
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_create_event_from_each_member_delivers_with_that_members_role_and_escrows_at_home() {
    let mut org = Org::new().await;
    org.cluster(M1, REGION, "payments", None).await;
    org.cluster(M2, REGION_2, "payments", None).await;
    let app = org.app().await;
    let before = org.emu.issued();
    for (account, region) in [(M1, REGION), (M2, REGION_2)] {
        let report = app
            .handle(created(account, region, "payments"), soon())
            .await;
        assert_eq!(report.outcome.label(), "renewed", "{account}: {report:?}");
        assert_eq!(report.account.as_deref(), Some(account));
        let secret = org
            .server(account, region, "payments")
            .get(Resource::Secrets, "istio-system", "cacerts")
            .unwrap();
        assert_eq!(
            secret["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "meshca"
        );
        let session = format!("eks:arn:aws:sts::{account}:assumed-role/meshca-member/meshca");
        assert_eq!(
            org.writers(account, region, "payments"),
            [session],
            "written with {account}'s role, nothing else"
        );
    }
    // Two clusters of one name in two accounts: two records, keyed by account and region.
    let escrowed = org.escrowed().await;
    assert!(
        escrowed.contains(&format!("meshca/{M1}/{REGION}/payments")),
        "{escrowed:?}"
    );
    assert!(
        escrowed.contains(&format!("meshca/{M2}/{REGION_2}/payments")),
        "{escrowed:?}"
    );
    assert_eq!(
        org.emu.issued() - before,
        2,
        "one intermediate per cluster, though both are called payments"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn events_from_accounts_not_listed_and_reconcile_requests_from_members_are_refused() {
    let mut org = Org::new().await;
    org.cluster(M1, REGION, "payments", None).await;
    let app = org.app().await;
    let before = org.emu.issued();
    let report = app
        .handle(created("555566667777", REGION, "payments"), soon())
        .await;
    let meshca_core::Outcome::Skipped { reason } = &report.outcome else {
        panic!("{report:?}")
    };
    assert!(
        reason.contains("account 555566667777 is not managed"),
        "{reason}"
    );
    // A member may forward its CloudTrail events, never ask for work: not even in its own account.
    let forged: Value = json!({"detail-type": "meshca Reconcile Requested", "source": "meshca", "account": M1,
        "detail": {"cluster": "payments", "region": REGION, "account": M1, "force": true}});
    let report = app.handle(event::parse(&forged).unwrap(), soon()).await;
    let meshca_core::Outcome::Skipped { reason } = &report.outcome else {
        panic!("{report:?}")
    };
    assert!(
        reason.contains("from meshca's own account 123456789012 only"),
        "{reason}"
    );
    assert_eq!(org.emu.issued(), before, "nothing issued");
    assert!(
        org.server(M1, REGION, "payments")
            .get(Resource::Secrets, "istio-system", "cacerts")
            .is_none()
    );
    // The same request from meshca's own account is honoured.
    let ours = json!({"detail-type": "meshca Reconcile Requested", "source": "meshca", "account": HOME,
        "detail": {"cluster": "payments", "region": REGION, "account": M1}});
    assert_eq!(
        app.handle(event::parse(&ours).unwrap(), soon())
            .await
            .outcome
            .label(),
        "renewed"
    );

    // A member can never revoke, not even its own cluster; meshca's own account can, and the
    // cluster is then held: a reconcile request issues nothing for it.
    let revoke = |sender: &str| {
        json!({"detail-type": "meshca Revoke Requested", "source": "security", "account": sender,
            "detail": {"cluster": "payments", "region": REGION, "account": M1, "reason": "key-compromise"}})
    };
    let report = app.handle(event::parse(&revoke(M1)).unwrap(), soon()).await;
    let meshca_core::Outcome::Skipped { reason } = &report.outcome else {
        panic!("{report:?}")
    };
    assert!(
        reason.contains("revoke requests are taken from meshca's own account 123456789012 only"),
        "{reason}"
    );
    assert_eq!(org.emu.calls("RevokeCertificate"), 0);
    let report = app
        .handle(event::parse(&revoke(HOME)).unwrap(), soon())
        .await;
    assert!(
        matches!(&report.outcome, meshca_core::Outcome::Revoked { certificates } if certificates.len() == 1),
        "{report:?}"
    );
    assert_eq!(org.emu.calls("RevokeCertificate"), 1);
    let issued = org.emu.issued();
    let held = app.handle(event::parse(&ours).unwrap(), soon()).await;
    let meshca_core::Outcome::Skipped { reason } = &held.outcome else {
        panic!("{held:?}")
    };
    assert!(reason.contains("held"), "{reason}");
    assert_eq!(
        org.emu.issued(),
        issued,
        "nothing issued for a held cluster"
    );
    // Again: nothing changes, nothing is revoked twice.
    let again = app
        .handle(event::parse(&revoke(HOME)).unwrap(), soon())
        .await;
    assert_eq!(again.outcome.label(), "skipped", "{again:?}");
    assert_eq!(org.emu.calls("RevokeCertificate"), 1);
}

/// The security account (MESHCA_SECURITY_ACCOUNT) revokes as meshca's own does, and may do
/// nothing else; a member still cannot revoke, and is told who may.
#[tokio::test(flavor = "multi_thread")]
async fn the_security_account_may_revoke_and_ask_for_nothing_else() {
    let mut org = Org::new().await;
    org.cluster(M2, REGION, "ledger", None).await;
    let app = org.app().await;
    let created = app.handle(created(M2, REGION, "ledger"), soon()).await;
    assert_eq!(created.outcome.label(), "renewed", "{created:?}");
    let request = |kind: &str, sender: &str| {
        json!({"detail-type": kind, "source": "meshca", "account": sender,
            "detail": {"cluster": "ledger", "region": REGION, "account": M2, "reason": "key-compromise", "force": true}})
    };
    let asked = app
        .handle(
            event::parse(&request("meshca Reconcile Requested", SECURITY)).unwrap(),
            soon(),
        )
        .await;
    let meshca_core::Outcome::Skipped { reason } = &asked.outcome else {
        panic!("{asked:?}")
    };
    assert!(
        reason.contains("from meshca's own account 123456789012 only"),
        "{reason}"
    );
    let by_member = app
        .handle(
            event::parse(&request("meshca Revoke Requested", M1)).unwrap(),
            soon(),
        )
        .await;
    let meshca_core::Outcome::Skipped { reason } = &by_member.outcome else {
        panic!("{by_member:?}")
    };
    assert!(
        reason.contains("(or the security account 777788889999)"),
        "{reason}"
    );
    assert_eq!(org.emu.calls("RevokeCertificate"), 0);
    let revoked = app
        .handle(
            event::parse(&request("meshca Revoke Requested", SECURITY)).unwrap(),
            soon(),
        )
        .await;
    assert!(
        matches!(&revoked.outcome, meshca_core::Outcome::Revoked { certificates } if certificates.len() == 1),
        "{revoked:?}"
    );
    assert_eq!(org.emu.calls("RevokeCertificate"), 1);
    // Announced on the bus, once, with who asked and why; the member's refused request is not.
    let sent = org.emu.control("events/put", json!({}))["entries"].clone();
    let notices: Vec<serde_json::Value> = sent
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["DetailType"] == "meshca Revocation Completed")
        .map(|e| serde_json::from_str(e["Detail"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(notices.len(), 1, "{sent}");
    let n = &notices[0];
    assert_eq!(n["cluster"], "ledger", "{n}");
    assert_eq!(n["account"], M2, "{n}");
    assert_eq!(n["reason"], "key-compromise", "{n}");
    assert_eq!(
        n["requestedBy"],
        format!("account {SECURITY} (meshca Revoke Requested)"),
        "{n}"
    );
    assert_eq!(n["result"]["outcome"], "revoked", "{n}");
    assert_eq!(n["enforcedByDataPlane"], false, "{n}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_whose_access_entry_names_another_role_refuses_the_token() {
    let mut org = Org::new().await;
    org.cluster(
        M1,
        REGION,
        "payments",
        Some("arn:aws:iam::222233334444:role/someone-else".into()),
    )
    .await;
    let app = org.app().await;
    let report = app.handle(created(M1, REGION, "payments"), soon()).await;
    let meshca_core::Outcome::Failed { error, .. } = &report.outcome else {
        panic!("{report:?}")
    };
    assert!(
        error.contains("assumed-role/meshca-member/meshca has no access entry"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sweep_covers_every_account_and_region_and_a_role_that_cannot_be_assumed_fails_alone() {
    let mut org = Org::new().await;
    for (account, region, name) in [
        (HOME, REGION, "core"),
        (M1, REGION, "payments"),
        (M1, REGION_2, "ledger"),
        (M2, REGION, "payments"),
        (M2, REGION_2, "search"),
    ] {
        org.cluster(account, region, name, None).await;
    }
    let app = org.app().await;
    let report = app.sweep(soon()).await;
    assert_eq!(
        (report.checked, report.renewed, report.failed),
        (5, 5, 0),
        "{report:#?}"
    );
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert!(
        report.errors[0].starts_with(&format!("{BROKEN}/{REGION}: "))
            && report.errors[0].contains("AssumeRole"),
        "{:?}",
        report.errors
    );
    let places: Vec<(Option<&str>, Option<&str>, Option<&str>)> = report
        .clusters
        .iter()
        .map(|r| {
            (
                r.account.as_deref(),
                r.region.as_deref(),
                r.cluster.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        places,
        [
            (None, Some(REGION), Some("core")),
            (Some(M1), Some(REGION), Some("payments")),
            (Some(M1), Some(REGION_2), Some("ledger")),
            (Some(M2), Some(REGION), Some("payments")),
            (Some(M2), Some(REGION_2), Some("search")),
        ]
    );
    assert!(
        org.escrowed()
            .await
            .contains(&format!("meshca/{REGION}/core")),
        "home records keep their names"
    );
    // The next sweep finds every bundle healthy: nothing issued, the broken member still named.
    let issued = org.emu.issued();
    let again = app.sweep(soon()).await;
    assert_eq!(
        (again.unchanged, again.errors.len(), org.emu.issued()),
        (5, 1, issued)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ca_in_a_security_account_is_reached_through_a_role_there() {
    const SECURITY: &str = "999988887777";
    let mut org = Org::new().await;
    org.cluster(HOME, REGION, "core", None).await;
    let ca = org.emu.control(
        "fixtures/hierarchy",
        json!({"account": SECURITY, "levels": 2}),
    )["issuing"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ca.contains(&format!(":{SECURITY}:")), "{ca}");
    let issuer = format!("arn:aws:iam::{SECURITY}:role/meshca-issuer");
    org.emu.control(
        "iam/role",
        json!({"arn": issuer, "trusts": HOME, "external_id": "pca"}),
    );
    let app = |role: Option<&str>| {
        let mut env: HashMap<String, String> = HashMap::from([
            ("MESHCA_CA_ARN".to_string(), ca.clone()),
            ("MESHCA_REGIONS".to_string(), REGION.to_string()),
            ("MESHCA_VALIDITY_DAYS".to_string(), "30".to_string()),
        ]);
        if let Some(r) = role {
            env.insert("MESHCA_CA_ROLE_ARN".into(), r.into());
            env.insert("MESHCA_CA_EXTERNAL_ID".into(), "pca".into());
        }
        let sdk = org.emu.sdk_config();
        async move {
            App::with_sdk_config(
                Config::from(&move |k: &str| env.get(k).cloned()).unwrap(),
                &sdk.await,
            )
            .await
            .unwrap()
        }
    };
    // Without the role the CA is not in meshca's account: a clear failure, nothing issued.
    let report = app(None)
        .await
        .handle(created(HOME, REGION, "core"), soon())
        .await;
    let meshca_core::Outcome::Failed { error, .. } = &report.outcome else {
        panic!("{report:?}")
    };
    assert!(error.contains("not found"), "{error}");
    let report = app(Some(&issuer))
        .await
        .handle(created(HOME, REGION, "core"), soon())
        .await;
    assert_eq!(report.outcome.label(), "renewed", "{report:?}");
    let secret = org
        .server(HOME, REGION, "core")
        .get(Resource::Secrets, "istio-system", "cacerts")
        .unwrap();
    assert!(
        secret["metadata"]["annotations"]["meshca.io/certificate-arn"]
            .as_str()
            .unwrap()
            .starts_with(&ca)
    );
    // A role of another account than the CA's is refused at start, naming the variable.
    let env: HashMap<String, String> = HashMap::from([
        ("MESHCA_CA_ARN".to_string(), ca.clone()),
        ("MESHCA_REGIONS".to_string(), REGION.to_string()),
        (
            "MESHCA_CA_ROLE_ARN".to_string(),
            format!("arn:aws:iam::{M1}:role/meshca-issuer"),
        ),
    ]);
    let e = Config::from(&move |k: &str| env.get(k).cloned()).unwrap_err();
    assert_eq!(e.var, "MESHCA_CA_ROLE_ARN");
}
