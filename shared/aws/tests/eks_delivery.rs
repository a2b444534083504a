//! End to end through emulated AWS: clusters found by ListClusters/DescribeCluster, a bundle
//! issued by the emulated PCA and escrowed in Secrets Manager, delivered with an EKS IAM token
//! into the test API server that DescribeCluster points at.

use std::time::Duration;

use base64::Engine;
use meshca_aws::eks::{EksClusters, EksError};
use meshca_aws::{PcaAuthority, SecretsEscrow};
use meshca_core::DeliveryOptions;
use meshca_core::delivery::{Change, Delivery, DeliveryError};
use meshca_core::retry::Backoff;
use meshca_core::{ClusterName, Reconciler, Settings, Validity};
use meshca_kube::KubeDelivery;
use meshca_test_apiserver::store::Resource;
use meshca_test_apiserver::{ApiServer, Settings as ServerSettings};
use meshca_test_support::aws::{AwsEmulator, REGION};
use serde_json::json;

async fn cluster_server(name: &str) -> ApiServer {
    // Tokens are signed with the emulator's credentials; the server checks the signature with them.
    let server = ApiServer::start(ServerSettings::eks_scoped(name, "testing", "testing"))
        .await
        .unwrap();
    server.seed_istio(Some("docker.io/istio/pilot:1.24.2"));
    server
}

#[tokio::test(flavor = "multi_thread")]
async fn issue_through_pca_and_deliver_into_the_cluster_describe_cluster_names() {
    let emu = AwsEmulator::start();
    let config = emu.sdk_config().await;
    let ca = emu.hierarchy("EC_prime256v1", 2)["issuing"]
        .as_str()
        .unwrap()
        .to_string();

    let c1 = cluster_server("c1").await;
    let c2 = cluster_server("c2").await;
    emu.control("eks/cluster", json!({"region": REGION, "name": "c1", "endpoint": c1.url(), "ca_pem": c1.ca_pem(),
                                      "tags": {"meshca.io/enabled": "true"}, "authentication_mode": "API"}));
    emu.control(
        "eks/cluster",
        json!({"region": REGION, "name": "c2", "endpoint": c2.url(), "ca_pem": c2.ca_pem(),
                                      "tags": {"meshca.io/enabled": "true"}}),
    );
    emu.control(
        "eks/cluster",
        json!({"region": REGION, "name": "untagged", "endpoint": c1.url(), "ca_pem": c1.ca_pem()}),
    );
    emu.control(
        "eks/cluster",
        json!({"region": REGION, "name": "young", "status": "CREATING",
                                      "tags": {"meshca.io/enabled": "true"}}),
    );

    let eks = EksClusters::new(&config);
    let mut names = eks.list().await.unwrap();
    names.sort();
    assert_eq!(names, ["c1", "c2", "untagged", "young"]);
    let tagged: Vec<String> = eks
        .list_tagged("meshca.io/enabled", "true")
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(tagged, ["c1", "c2", "young"]);

    let authority =
        PcaAuthority::new(aws_sdk_acmpca::Client::new(&config), ca.as_str(), None).unwrap();
    let escrow = SecretsEscrow::new(
        aws_sdk_secretsmanager::Client::new(&config),
        SecretsEscrow::default_prefix(REGION),
    );
    let settings = Settings {
        validity: Validity::Days(30),
        ..Settings::default()
    };
    for (name, server) in [("c1", &c1), ("c2", &c2)] {
        let cluster = eks.describe(name).await.unwrap();
        assert_eq!(cluster.endpoint.as_deref(), Some(server.url().as_str()));
        let delivery = KubeDelivery::new(
            eks.client(&cluster).unwrap(),
            server.url(),
            DeliveryOptions::default(),
        );
        let c: ClusterName = name.parse().unwrap();
        let outcome = Reconciler {
            authority: &authority,
            escrow: &escrow,
            settings: &settings,
        }
        .ensure_bundle(&c, false)
        .await
        .unwrap();
        let delivered = delivery
            .deliver(&outcome.bundle, &outcome.meta)
            .await
            .unwrap();
        assert_eq!(delivered.change, Change::Created);
        assert!(delivered.istiod[0].1.restart);

        let secret = server
            .get(Resource::Secrets, "istio-system", "cacerts")
            .unwrap();
        let pem = base64::engine::general_purpose::STANDARD
            .decode(secret["data"]["ca-cert.pem"].as_str().unwrap())
            .unwrap();
        assert_eq!(pem, outcome.bundle.ca_cert.as_bytes());
        assert!(
            secret["metadata"]["annotations"]["meshca.io/certificate-arn"]
                .as_str()
                .unwrap()
                .starts_with(&ca)
        );
        // Every request came with an EKS token the server verified for this very cluster.
        let seen = server.seen();
        assert!(seen.iter().all(|s| s.caller == "eks:testing"), "{seen:?}");
    }
    assert_eq!(
        c1.get(Resource::Secrets, "istio-system", "cacerts")
            .unwrap()["metadata"]["annotations"]["meshca.io/generation"],
        "1"
    );
    assert_eq!(emu.calls("IssueCertificate"), 2);

    // A cluster that is still being created is not connected to, and says why.
    let young = eks.describe("young").await.unwrap();
    let err = eks.client(&young).err().expect("CREATING is refused");
    assert!(matches!(err, EksError::NotActive { .. }), "{err}");
    assert!(err.to_string().contains("CREATING"), "{err}");
    let err = eks.describe("nope").await.unwrap_err();
    assert!(matches!(err, EksError::NotFound(_)), "{err}");
    for status in ["FAILED", "DELETING"] {
        emu.control(
            "eks/cluster",
            json!({"region": REGION, "name": "young", "status": status}),
        );
        let err = eks
            .client(&eks.describe("young").await.unwrap())
            .err()
            .unwrap();
        assert!(err.to_string().contains(status), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_connection_authenticates_with_a_token_signed_for_its_cluster() {
    let emu = AwsEmulator::start();
    let config = emu.sdk_config().await;
    let server = cluster_server("c1").await;
    emu.control("eks/cluster", json!({"region": REGION, "name": "c1", "endpoint": server.url(), "ca_pem": server.ca_pem()}));
    let eks = EksClusters::new(&config);
    let cluster = eks.describe("c1").await.unwrap();
    let quick = DeliveryOptions {
        backoff: Backoff {
            first: Duration::from_millis(5),
            max: Duration::from_millis(10),
            deadline: Duration::from_millis(100),
        },
        ..DeliveryOptions::default()
    };
    for _ in 0..2 {
        let d = KubeDelivery::new(eks.client(&cluster).unwrap(), server.url(), quick.clone());
        d.observe().await.unwrap();
        d.observe().await.unwrap();
    }
    let seen = server.seen();
    assert_eq!(seen.len(), 4);
    assert!(
        seen.iter()
            .all(|s| s.caller == "eks:testing" && s.status == 404),
        "{seen:?}"
    );

    // The same endpoint under another cluster's name: the token does not verify there.
    emu.control("eks/cluster", json!({"region": REGION, "name": "c9", "endpoint": server.url(), "ca_pem": server.ca_pem()}));
    let c9 = eks.describe("c9").await.unwrap();
    let err = KubeDelivery::new(eks.client(&c9).unwrap(), server.url(), quick)
        .observe()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
}

// Moved from meshca-kube's delivery tests: what an EKS IAM token (signed by `EksTokens`) can
// and cannot do against the test API server, which checks it the way EKS does.

fn token_server_settings() -> ServerSettings {
    ServerSettings {
        cluster: "c1".into(),
        aws_keys: std::collections::BTreeMap::from([(
            "AKIDTEST".to_string(),
            "test-secret".to_string(),
        )]),
        ..Default::default()
    }
}

fn eks_delivery(server: &ApiServer, cluster: &str, secret: &str) -> KubeDelivery {
    use aws_credential_types::Credentials;
    use aws_credential_types::provider::SharedCredentialsProvider;
    let creds = SharedCredentialsProvider::new(Credentials::new(
        "AKIDTEST",
        secret.to_string(),
        None,
        None,
        "test",
    ));
    let tokens = std::sync::Arc::new(meshca_aws::eks::EksTokens::new(cluster, "eu-west-1", creds));
    let client =
        meshca_kube::from_endpoint(cluster, &server.url(), server.ca_pem(), tokens).unwrap();
    let quick = Backoff {
        first: Duration::from_millis(5),
        max: Duration::from_millis(20),
        deadline: Duration::from_millis(800),
    };
    KubeDelivery::new(
        client,
        server.url(),
        DeliveryOptions {
            backoff: quick,
            ..DeliveryOptions::default()
        },
    )
}

/// A bundle from the local CA, generation 1.
async fn local_bundle() -> (tempfile::TempDir, meshca_core::Secured) {
    let dir = tempfile::tempdir().unwrap();
    let ca = meshca_local::LocalCa::open_or_create(
        &dir.path().join("ca"),
        &meshca_local::LocalRootSpec::default(),
    )
    .unwrap();
    let escrow = meshca_local::LocalEscrow::new(dir.path().join("escrow"));
    let s = Settings::default();
    let c: ClusterName = "c1".parse().unwrap();
    let secured = Reconciler {
        authority: &ca,
        escrow: &escrow,
        settings: &s,
    }
    .ensure_bundle(&c, false)
    .await
    .unwrap();
    (dir, secured)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_namespace_scoped_access_entry_needs_the_namespace_to_exist() {
    let (_dir, g1) = local_bundle().await;
    // An EKS access entry scoped to istio-system cannot create it.
    let scoped = ServerSettings {
        eks_namespaces: Some(std::collections::BTreeSet::from([
            "istio-system".to_string()
        ])),
        ..token_server_settings()
    };
    let server = ApiServer::start(scoped).await.unwrap();
    let err = eks_delivery(&server, "c1", "test-secret")
        .deliver(&g1.bundle, &g1.meta)
        .await
        .unwrap_err();
    assert!(matches!(err, DeliveryError::NamespaceMissing(_)), "{err}");
    assert!(
        err.to_string()
            .contains("kubectl create namespace istio-system"),
        "{err}"
    );

    // Once it exists, the same scoped grant is enough.
    server.seed_istio(Some("docker.io/istio/pilot:1.24.2"));
    let out = eks_delivery(&server, "c1", "test-secret")
        .deliver(&g1.bundle, &g1.meta)
        .await
        .unwrap();
    assert_eq!(out.change, Change::Created);
    assert!(
        server
            .seen()
            .iter()
            .any(|s| s.caller == "eks:AKIDTEST" && s.status == 201)
    );
    assert!(
        server
            .seen()
            .iter()
            .any(|s| s.status == 403 && s.path == "/api/v1/namespaces/istio-system"),
        "probed, forbidden, carried on"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_with_a_wrong_key_or_for_another_cluster_are_refused() {
    let server = ApiServer::start(token_server_settings()).await.unwrap();
    server.seed_istio(None);

    let err = eks_delivery(&server, "c1", "wrong-secret")
        .observe()
        .await
        .unwrap_err();
    assert!(matches!(err, DeliveryError::Unauthorized(_)), "{err}");
    assert!(
        err.to_string().contains("signature does not match"),
        "{err}"
    );

    let err = eks_delivery(&server, "another-cluster", "test-secret")
        .observe()
        .await
        .unwrap_err();
    assert!(
        matches!(err, DeliveryError::Unauthorized(_)),
        "a token for another cluster: {err}"
    );

    let out = eks_delivery(&server, "c1", "test-secret").observe().await;
    assert!(
        out.is_ok(),
        "the right key for the right cluster is let in: {out:?}"
    );
}
