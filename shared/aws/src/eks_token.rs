//! The bearer token EKS accepts from an IAM principal, made without a kubeconfig or CLI.
//!
//! It is `k8s-aws-v1.` + base64url (no padding) of an STS `GetCallerIdentity` URL presigned
//! with SigV4, with the header `x-k8s-aws-id: <cluster>` among the signed headers so the token
//! is good for that cluster only. The presigned URL lives 60 s for STS, but EKS accepts the
//! token for 15 minutes from its signing time; callers refresh it before then.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// What an EKS bearer token starts with: a version, then the presigned URL in base64url.
pub const TOKEN_PREFIX: &str = "k8s-aws-v1.";
/// The signed header that binds a token to one cluster.
pub const CLUSTER_HEADER: &str = "x-k8s-aws-id";
/// How long EKS honours a token after it was signed.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// X-Amz-Expires of the presigned URL, as aws-iam-authenticator sets it.
pub const PRESIGN_EXPIRES: Duration = Duration::from_secs(60);

/// A token could not be signed (no credentials, or the signer refused them).
#[derive(Debug, thiserror::Error)]
#[error("cannot sign the EKS token for {cluster}: {detail}")]
pub struct TokenError {
    /// The cluster the token was for.
    pub cluster: String,
    /// Why it could not be signed.
    pub detail: String,
}

/// A token and when it should be replaced (a minute before EKS stops accepting it).
#[derive(Clone)]
pub struct EksToken {
    /// The bearer token, wiped when dropped.
    pub token: zeroize::Zeroizing<String>,
    /// When to sign the next one.
    pub refresh_at: SystemTime,
}

impl std::fmt::Debug for EksToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EksToken")
            .field("refresh_at", &self.refresh_at)
            .finish_non_exhaustive()
    }
}

/// Signs a token for `cluster` with `credentials` against STS in `region`.
pub fn token(
    cluster: &str,
    region: &str,
    credentials: &Credentials,
    now: SystemTime,
) -> Result<EksToken, TokenError> {
    let fail = |detail: String| TokenError {
        cluster: cluster.to_string(),
        detail,
    };
    let url =
        format!("https://sts.{region}.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15");
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(PRESIGN_EXPIRES);
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| fail(e.to_string()))?
        .into();
    let headers = [(CLUSTER_HEADER, cluster)];
    let request = SignableRequest::new("GET", &url, headers.into_iter(), SignableBody::Bytes(&[]))
        .map_err(|e| fail(e.to_string()))?;
    let (instructions, _signature) = sign(request, &params)
        .map_err(|e| fail(e.to_string()))?
        .into_parts();
    let mut signed = url;
    for (name, value) in instructions.params() {
        signed.push('&');
        signed.push_str(name);
        signed.push('=');
        signed.push_str(&percent_encode(value));
    }
    Ok(EksToken {
        token: zeroize::Zeroizing::new(format!(
            "{TOKEN_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(signed.as_bytes())
        )),
        refresh_at: now + TOKEN_LIFETIME - Duration::from_secs(60),
    })
}

/// RFC 3986 unreserved characters stay, everything else is %XX (what SigV4 canonicalises to).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn decode(token: &str) -> String {
        let body = token.strip_prefix(TOKEN_PREFIX).expect("prefix");
        assert!(
            !body.contains('=') && !body.contains('+') && !body.contains('/'),
            "base64url without padding"
        );
        String::from_utf8(URL_SAFE_NO_PAD.decode(body).unwrap()).unwrap()
    }

    fn query(url: &str) -> BTreeMap<String, String> {
        url.split_once('?')
            .unwrap()
            .1
            .split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    #[test]
    fn every_part_of_the_token() {
        let creds = Credentials::new(
            "AKIDEXAMPLE",
            "secret",
            Some("session-token".into()),
            None,
            "test",
        );
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let t = token("prod-eu-1", "eu-west-1", &creds, now).unwrap();
        assert!(t.token.starts_with(TOKEN_PREFIX));
        let url = decode(&t.token);
        assert!(
            url.starts_with("https://sts.eu-west-1.amazonaws.com/?"),
            "{url}"
        );
        let q = query(&url);
        assert_eq!(q["Action"], "GetCallerIdentity");
        assert_eq!(q["Version"], "2011-06-15");
        assert_eq!(q["X-Amz-Algorithm"], "AWS4-HMAC-SHA256");
        assert_eq!(q["X-Amz-Expires"], "60");
        assert_eq!(q["X-Amz-Date"], "20270115T080000Z");
        assert!(
            q["X-Amz-Credential"]
                .starts_with("AKIDEXAMPLE%2F20270115%2Feu-west-1%2Fsts%2Faws4_request"),
            "{}",
            q["X-Amz-Credential"]
        );
        assert_eq!(q["X-Amz-SignedHeaders"], "host%3Bx-k8s-aws-id");
        assert_eq!(q["X-Amz-Security-Token"], "session-token");
        assert_eq!(q["X-Amz-Signature"].len(), 64);
        let allowed = [
            "Action",
            "Version",
            "X-Amz-Algorithm",
            "X-Amz-Credential",
            "X-Amz-Date",
            "X-Amz-Expires",
            "X-Amz-SignedHeaders",
            "X-Amz-Signature",
            "X-Amz-Security-Token",
        ];
        assert!(q.keys().all(|k| allowed.contains(&k.as_str())), "{q:?}");
        assert_eq!(t.refresh_at, now + Duration::from_secs(14 * 60));
    }

    #[test]
    fn the_signature_binds_the_cluster() {
        let creds = Credentials::new("AKID", "secret", None, None, "test");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let a = query(&decode(
            &token("a", "eu-west-1", &creds, now).unwrap().token,
        ));
        let b = query(&decode(
            &token("b", "eu-west-1", &creds, now).unwrap().token,
        ));
        assert_ne!(a["X-Amz-Signature"], b["X-Amz-Signature"]);
        assert!(!a.contains_key("X-Amz-Security-Token"));
        let dbg = format!("{:?}", token("a", "eu-west-1", &creds, now).unwrap());
        assert!(
            !dbg.contains(TOKEN_PREFIX),
            "Debug must not print the token"
        );
    }
}
