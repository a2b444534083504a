//! A cluster's kinds share one Secrets Manager secret, each under labels of its own, against
//! the emulator: issued and renewed side by side, retired one at a time, and moved in from the
//! secret each kind once had, with the move stopped at every call and run again.

use meshca_aws::PcaAuthority;
use meshca_aws::SecretsEscrow;
use meshca_core::escrow::{Escrow, EscrowKey, GenerationToken};
use meshca_core::kind::{Kind, KindSpec};
use meshca_core::retry::Backoff;
use meshca_core::{ClusterName, Outcome, Reconciler, Settings, Validity};
use meshca_test_support::aws::{AwsEmulator, REGION};
use serde_json::json;
use std::time::Duration;

struct Aws {
    emu: AwsEmulator,
    sm: aws_sdk_secretsmanager::Client,
    authority: PcaAuthority,
}

async fn aws() -> Aws {
    let emu = AwsEmulator::start();
    let config = emu.sdk_config().await;
    let h = emu.hierarchy("EC_prime256v1", 2);
    let backoff = Backoff {
        first: Duration::from_millis(20),
        max: Duration::from_millis(200),
        deadline: Duration::from_secs(20),
    };
    let authority = PcaAuthority::new(
        aws_sdk_acmpca::Client::new(&config),
        h["issuing"].as_str().unwrap(),
        None,
    )
    .unwrap()
    .with_backoff(backoff);
    Aws {
        sm: aws_sdk_secretsmanager::Client::new(&config),
        authority,
        emu,
    }
}

impl Aws {
    /// A new escrow, as a new Lambda invocation has: it knows nothing of earlier ones.
    fn escrow(&self) -> SecretsEscrow {
        SecretsEscrow::new(self.sm.clone(), SecretsEscrow::default_prefix(REGION))
            .with_recovery_window(7)
    }

    async fn ensure(
        &self,
        escrow: &SecretsEscrow,
        c: &ClusterName,
        kind: Kind,
        force: bool,
    ) -> u64 {
        let s = settings(kind);
        let secured = Reconciler {
            authority: &self.authority,
            escrow,
            settings: &s,
        }
        .ensure_bundle(c, force)
        .await
        .unwrap_or_else(|e| panic!("{kind}: {e}"));
        secured.meta.generation
    }

    async fn cleanup(&self, c: &ClusterName, kind: Kind) -> Outcome {
        let s = settings(kind);
        Reconciler {
            authority: &self.authority,
            escrow: &self.escrow(),
            settings: &s,
        }
        .cleanup(c)
        .await
    }

    async fn names(&self) -> Vec<String> {
        let listed = self.sm.list_secrets().send().await.unwrap();
        let mut names: Vec<String> = listed
            .secret_list()
            .iter()
            .filter_map(|s| s.name().map(String::from))
            .collect();
        names.sort();
        names
    }

    async fn describe(
        &self,
        name: &str,
    ) -> aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput {
        let d = self.sm.describe_secret().secret_id(name).send().await;
        d.unwrap()
    }

    async fn labels(&self, name: &str) -> Vec<String> {
        let d = self.describe(name).await;
        let mut labels: Vec<String> = d
            .version_ids_to_stages()
            .unwrap()
            .values()
            .flatten()
            .cloned()
            .collect();
        labels.sort();
        labels
    }

    async fn scheduled_for_deletion(&self, name: &str) -> bool {
        self.describe(name).await.deleted_date().is_some()
    }
}

fn settings(kind: Kind) -> Settings {
    Settings {
        validity: Validity::Days(30),
        kind: KindSpec::new(kind),
        ..Settings::default()
    }
}

fn cluster(s: &str) -> ClusterName {
    s.parse().unwrap()
}

const THREE: [Kind; 3] = [Kind::IstioCacerts, Kind::CertManagerCa, Kind::XcpEdge];

#[tokio::test]
async fn three_kinds_of_a_cluster_share_one_secret_and_renew_apart() {
    let a = aws().await;
    let c = cluster("c1");
    let escrow = a.escrow();
    for kind in THREE {
        assert_eq!(a.ensure(&escrow, &c, kind, false).await, 1);
    }
    assert_eq!(a.emu.calls("CreateSecret"), 1, "one secret for three kinds");
    assert_eq!(a.names().await, ["meshca/eu-west-1/c1"]);

    // One kind renews; the others' records and labels do not move.
    assert_eq!(a.ensure(&a.escrow(), &c, Kind::XcpEdge, true).await, 2);
    let summaries = a.escrow().summaries().await.unwrap();
    let generations: Vec<(String, u64, bool)> = summaries
        .iter()
        .map(|(k, s)| {
            let s = s.as_ref().unwrap_or_else(|| panic!("{k} has no summary"));
            (k.to_string(), s.generation, s.pending)
        })
        .collect();
    assert_eq!(
        generations,
        [
            ("c1".to_string(), 1, false),
            ("c1.cert-manager-ca".to_string(), 1, false),
            ("c1.xcp-edge".to_string(), 2, false),
        ]
    );
    for kind in THREE {
        let loaded = a
            .escrow()
            .load(&EscrowKey::new(c.clone(), kind))
            .await
            .unwrap();
        let current = loaded.current.unwrap();
        assert_eq!((current.kind, loaded.pending.is_none()), (kind, true));
    }
    let labels = a.labels("meshca/eu-west-1/c1").await;
    assert!(
        labels.contains(&"AWSCURRENT".into())
            && labels.contains(&"cert-manager-ca-current".into())
            && labels.contains(&"xcp-edge-current".into())
            && !labels
                .iter()
                .any(|l| l.ends_with("pending") || l == "AWSPENDING"),
        "{labels:?}"
    );

    // A new run keeps all three from their summaries: nothing issued.
    let issued = a.emu.issued();
    for kind in THREE {
        a.ensure(&a.escrow(), &c, kind, false).await;
    }
    assert_eq!(a.emu.issued(), issued);
}

#[tokio::test]
async fn a_kind_retires_beside_the_others_comes_back_fresh_and_the_last_takes_the_secret() {
    let a = aws().await;
    let c = cluster("c2");
    let name = "meshca/eu-west-1/c2";
    for kind in [Kind::IstioCacerts, Kind::XcpEdge] {
        a.ensure(&a.escrow(), &c, kind, false).await;
    }
    assert!(matches!(
        a.cleanup(&c, Kind::IstioCacerts).await,
        Outcome::Revoked { .. }
    ));
    assert!(
        !a.scheduled_for_deletion(name).await,
        "xcp-edge still lives in it"
    );
    let keys: Vec<String> = a
        .escrow()
        .keys()
        .await
        .unwrap()
        .iter()
        .map(|k| k.to_string())
        .collect();
    assert_eq!(keys, ["c2.xcp-edge"], "the retired kind is not listed");
    let issued = a.emu.issued();
    a.ensure(&a.escrow(), &c, Kind::XcpEdge, false).await;
    assert_eq!(a.emu.issued(), issued, "xcp-edge is kept as it was");

    // The cluster comes back: its revoked record is never put back, a new generation is issued.
    assert_eq!(
        a.ensure(&a.escrow(), &c, Kind::IstioCacerts, false).await,
        2
    );
    assert_eq!(a.emu.issued(), issued + 1);
    assert_eq!(a.escrow().keys().await.unwrap().len(), 2, "listed again");

    for kind in [Kind::XcpEdge, Kind::IstioCacerts] {
        assert!(
            matches!(a.cleanup(&c, kind).await, Outcome::Revoked { .. }),
            "{kind}"
        );
    }
    assert!(
        a.scheduled_for_deletion(name).await,
        "the last kind takes the secret"
    );
    assert!(a.escrow().keys().await.unwrap().is_empty());
}

/// A cluster whose cert-manager-ca kind lives apart, as before kinds shared a secret: its
/// current record (generation 1, issued) and a pending one (generation 2, claimed only) in
/// `<prefix>/<cluster>.cert-manager-ca` under AWSCURRENT and AWSPENDING, and no cluster secret.
async fn kept_apart(a: &Aws, c: &ClusterName) -> (String, GenerationToken) {
    let shared = format!("meshca/eu-west-1/{c}");
    let apart = format!("{shared}.cert-manager-ca");
    a.ensure(&a.escrow(), c, Kind::CertManagerCa, false).await;
    let current =
        a.sm.get_secret_value()
            .secret_id(&shared)
            .version_stage("cert-manager-ca-current")
            .send()
            .await
            .unwrap();
    a.sm.delete_secret()
        .secret_id(&shared)
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap();
    a.sm.create_secret()
        .name(&apart)
        .client_request_token(current.version_id().unwrap())
        .secret_string(current.secret_string().unwrap())
        .send()
        .await
        .unwrap();
    let s = settings(Kind::CertManagerCa);
    let mut pending = meshca_test_support::pending::first_pending(&a.authority, c, &s).await;
    let key = EscrowKey::new(c.clone(), Kind::CertManagerCa);
    pending.kind = Kind::CertManagerCa;
    pending.generation = 2;
    pending.token = GenerationToken::derive(&pending.authority_id, &key, 2);
    let mut record = serde_json::to_value(&pending).unwrap();
    record["state"] = json!("pending");
    a.sm.put_secret_value()
        .secret_id(&apart)
        .client_request_token(pending.token.as_str())
        .secret_string(record.to_string())
        .version_stages("AWSPENDING")
        .send()
        .await
        .unwrap();
    (apart, pending.token)
}

/// Everything the kind had is in the cluster's secret, summarised; the old secret is scheduled
/// for deletion; and the pending generation resumes from the copy with one issuance.
async fn moved_in(a: &Aws, c: &ClusterName, apart: &str, token: &GenerationToken) {
    let key = EscrowKey::new(c.clone(), Kind::CertManagerCa);
    assert!(a.scheduled_for_deletion(apart).await, "{apart} not retired");
    let summaries = a.escrow().summaries().await.unwrap();
    let summary = summaries[&key]
        .as_ref()
        .expect("summarised in the cluster's secret");
    assert_eq!((summary.generation, summary.pending), (1, true));
    let loaded = a.escrow().load(&key).await.unwrap();
    assert_eq!(loaded.current.map(|c| c.meta.generation), Some(1));
    assert_eq!(loaded.pending.map(|p| p.token), Some(token.clone()));
    // Renewed: generation 2 is the pending one, resumed with its key and token.
    let issued = a.emu.issued();
    assert_eq!(a.ensure(&a.escrow(), c, Kind::CertManagerCa, true).await, 2);
    assert_eq!(a.emu.issued(), issued + 1);
    let loaded = a.escrow().load(&key).await.unwrap();
    assert_eq!(loaded.current.map(|c| c.token), Some(token.clone()));
}

#[tokio::test]
async fn a_kind_kept_apart_moves_in_on_its_next_write() {
    let a = aws().await;
    let c = cluster("apart");
    let (apart, token) = kept_apart(&a, &c).await;
    // No listing first: the load finds it apart, and the resumed generation's first write
    // moves it in.
    let issued = a.emu.issued();
    assert_eq!(
        a.ensure(&a.escrow(), &c, Kind::CertManagerCa, true).await,
        2
    );
    assert_eq!(a.emu.issued(), issued + 1);
    assert!(a.scheduled_for_deletion(&apart).await);
    let loaded = a
        .escrow()
        .load(&EscrowKey::new(c.clone(), Kind::CertManagerCa))
        .await
        .unwrap();
    assert_eq!(
        loaded.current.map(|c| (c.meta.generation, c.token)),
        Some((2, token))
    );
    assert_eq!(a.names().await, ["meshca/eu-west-1/apart"]);
}

#[tokio::test]
async fn moving_a_kind_in_survives_a_stop_at_every_call() {
    let a = aws().await;
    let mut crashes = 0;
    for k in 0.. {
        let c = cluster(&format!("old{k}"));
        let key = EscrowKey::new(c.clone(), Kind::CertManagerCa);
        let (apart, token) = kept_apart(&a, &c).await;
        let escrow = a.escrow();
        let summaries = escrow.summaries().await.unwrap();
        assert_eq!(
            summaries.get(&key),
            Some(&None),
            "listed apart, unsummarised"
        );
        // The k+1st call of the move fails for good, as a Lambda timeout ends a run.
        let fault = |fail: u32| json!({"faults": [{"operation": "*", "skip": k, "fail": fail, "code": "AccessDeniedException", "status": 400}]});
        a.emu.control("configure", fault(1));
        let first = escrow.summarise(&key).await;
        a.emu.control("configure", fault(0));
        if first.is_err() {
            crashes += 1;
            let again = a.escrow();
            again.summaries().await.unwrap();
            again
                .summarise(&key)
                .await
                .unwrap_or_else(|e| panic!("rerun after call {k}: {e}"));
        }
        moved_in(&a, &c, &apart, &token).await;
        if first.is_ok() {
            break;
        }
    }
    eprintln!("stopped at each of {crashes} calls");
    assert!(crashes >= 6, "stopped at {crashes} calls");
}
