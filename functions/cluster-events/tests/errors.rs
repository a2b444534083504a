//! What the cluster-events binary answers the Lambda Runtime API for an event it does not take: an error
//! whose type names meshca and whose message says why, once.

use meshca_test_support::runtime::RuntimeStub;

#[tokio::test]
async fn an_event_it_does_not_take_is_answered_as_meshca_bad_event() {
    let env = [
        (
            "MESHCA_CA_ARN",
            "arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/abc",
        ),
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
        ("RUST_LOG", "off"),
    ];
    let (mut stub, _function) = RuntimeStub::spawn(env!("CARGO_BIN_EXE_cluster-events"), &env)
        .await
        .unwrap();
    let (ok, body) = stub
        .invoke(r#"{"detail-type": "Something Else", "source": "aws.s3", "detail": {}}"#)
        .await;
    assert!(!ok, "answered as a success: {body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["errorType"], "meshca.BadEvent", "{body}");
    let message = answer["errorMessage"].as_str().unwrap();
    assert!(message.contains("Something Else"), "{message}");
    assert_eq!(
        message.matches("Something Else").count(),
        1,
        "the cause is said once: {message}"
    );
}
