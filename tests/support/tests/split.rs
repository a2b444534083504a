//! The split emulator: each busy service answered by its own process, reached through the
//! SDK's per-service endpoints, its control API routed and its counts summed.

use meshca_test_support::aws::{AwsEmulator, control_port};
use serde_json::json;

fn calls_at(port: u16, operation: &str) -> u64 {
    control_port(port, "stats", json!({}))["calls"][operation]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn each_busy_service_is_answered_by_a_process_of_its_own() {
    let emu = AwsEmulator::start_split();
    let sdk = emu.sdk_config().await;
    aws_sdk_sqs::Client::new(&sdk)
        .create_queue()
        .queue_name("work")
        .send()
        .await
        .unwrap();
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    secrets
        .create_secret()
        .name("a")
        .secret_string("x")
        .send()
        .await
        .unwrap();
    secrets
        .create_secret()
        .name("b")
        .secret_string("y")
        .send()
        .await
        .unwrap();

    let (sqs, sm) = (emu.port_of("SQS"), emu.port_of("Secrets Manager"));
    assert!(
        sqs != sm && sqs != emu.port && sm != emu.port,
        "three processes"
    );
    assert_eq!(
        (calls_at(sqs, "CreateQueue"), calls_at(sm, "CreateSecret")),
        (1, 2)
    );
    assert_eq!(
        (
            calls_at(emu.port, "CreateQueue"),
            calls_at(emu.port, "CreateSecret"),
            calls_at(sqs, "CreateSecret")
        ),
        (0, 0, 0)
    );
    assert_eq!(
        (emu.calls("CreateQueue"), emu.calls("CreateSecret")),
        (1, 2),
        "stats are summed over the processes"
    );

    // A fixture about the CA lands where PCA is answered, and a child process finds it there.
    let ca = emu.hierarchy("EC_prime256v1", 2)["issuing"]
        .as_str()
        .unwrap()
        .to_string();
    let env = emu.child_env();
    let pca_url = env
        .iter()
        .find(|(k, _)| k == "AWS_ENDPOINT_URL_ACM_PCA")
        .map(|(_, v)| v.clone());
    assert_eq!(
        pca_url,
        Some(format!("http://127.0.0.1:{}", emu.port_of("ACM PCA")))
    );
    let describe = |sdk: aws_config::SdkConfig| {
        let ca = ca.clone();
        async move {
            aws_sdk_acmpca::Client::new(&sdk)
                .describe_certificate_authority()
                .certificate_authority_arn(ca)
                .send()
                .await
        }
    };
    assert!(
        describe(sdk.clone()).await.is_ok(),
        "the CA is found where the SDK sends PCA calls"
    );
    let main_only = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(meshca_test_support::aws::REGION))
        .credentials_provider(aws_credential_types::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .endpoint_url(&emu.endpoint)
        .load()
        .await;
    assert!(describe(main_only).await.is_err(), "and only there");

    emu.control("reset", json!({}));
    assert_eq!(
        (calls_at(sqs, "CreateQueue"), calls_at(sm, "CreateSecret")),
        (0, 0),
        "reset reaches every process"
    );
}
