//! The AWS IAM login request meshca builds for Vault, checked byte for byte against botocore —
//! the signer hvac and Vault's own CLI helper build on — for the same credentials and instant.
//! (OpenBao ships its AWS auth method as an external plugin, so no server here can judge it.)

use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use aws_credential_types::Credentials;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use meshca_vault::StsTarget;
use meshca_vault::auth::iam_login_body;

/// botocore's SigV4 headers for the same request at 2026-11-25T03:04:05Z, as JSON.
fn botocore(
    url: &str,
    region: &str,
    server_id: Option<&str>,
    session_token: Option<&str>,
) -> serde_json::Value {
    let script = r#"
import datetime, json, sys
import botocore.auth as ba
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
FIXED = datetime.datetime(2026, 11, 25, 3, 4, 5)
ba.get_current_datetime = lambda remove_tzinfo=True: FIXED
url, region, server_id, token = sys.argv[1], sys.argv[2], sys.argv[3] or None, sys.argv[4] or None
headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
if server_id:
    headers["X-Vault-AWS-IAM-Server-ID"] = server_id
req = AWSRequest(method="POST", url=url, data="Action=GetCallerIdentity&Version=2011-06-15", headers=headers)
ba.SigV4Auth(Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token), "sts", region).add_auth(req)
print(json.dumps(dict(req.headers.items())))
"#;
    let out = Command::new(meshca_test_support::aws::python())
        .args([
            "-c",
            script,
            url,
            region,
            server_id.unwrap_or(""),
            session_token.unwrap_or(""),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn ours(
    sts: &StsTarget,
    server_id: Option<&str>,
    session_token: Option<&str>,
) -> (serde_json::Value, serde_json::Value) {
    let creds = Credentials::new(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        session_token.map(str::to_string),
        None,
        "test",
    );
    let at = UNIX_EPOCH + Duration::from_secs(1_795_575_845); // 2026-11-25T03:04:05Z
    let body = iam_login_body("meshca", sts, server_id, &creds, at).unwrap();
    let headers: serde_json::Value = serde_json::from_slice(
        &B64.decode(body["iam_request_headers"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    (body, headers)
}

#[test]
fn the_signed_get_caller_identity_matches_botocore_byte_for_byte() {
    for (sts, url, region, server_id, token) in [
        (
            StsTarget::Global,
            "https://sts.amazonaws.com/",
            "us-east-1",
            Some("vault.example.com"),
            None,
        ),
        (
            StsTarget::Regional("eu-west-1".into()),
            "https://sts.eu-west-1.amazonaws.com/",
            "eu-west-1",
            None,
            Some("FwoGZXIvYXdzEXAMPLE"),
        ),
    ] {
        let (body, headers) = ours(&sts, server_id, token);
        let theirs = botocore(url, region, server_id, token);
        for name in ["Authorization", "X-Amz-Date", "Content-Type"] {
            let lower = name.to_ascii_lowercase();
            let mine = headers
                .as_object()
                .unwrap()
                .iter()
                .find(|(k, _)| k.to_ascii_lowercase() == lower)
                .map(|(_, v)| v[0].clone());
            assert_eq!(mine.as_ref(), Some(&theirs[name]), "{name} for {url}");
        }
        if let Some(t) = token {
            let mine = headers
                .as_object()
                .unwrap()
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("x-amz-security-token"))
                .map(|(_, v)| v[0].clone());
            assert_eq!(mine, Some(serde_json::json!(t)));
            assert_eq!(theirs["X-Amz-Security-Token"], t);
        }
        assert_eq!(body["iam_http_request_method"], "POST");
        assert_eq!(
            B64.decode(body["iam_request_url"].as_str().unwrap())
                .unwrap(),
            url.as_bytes()
        );
        assert_eq!(
            B64.decode(body["iam_request_body"].as_str().unwrap())
                .unwrap(),
            b"Action=GetCallerIdentity&Version=2011-06-15"
        );
        assert_eq!(body["role"], "meshca");
    }
}

/// The authorities page (docs/authorities.md) shows the policy the suite tests with, verbatim.
#[test]
fn the_docs_show_the_policy_the_tests_use() {
    let readme = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/authorities.md"
    ))
    .unwrap();
    let policy = include_str!("../meshca-policy.hcl");
    assert!(
        readme.contains(&format!("```hcl\n{policy}```")),
        "docs/authorities.md's Vault policy differs from shared/vault/meshca-policy.hcl"
    );
}
