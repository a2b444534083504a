//! Checks an EKS bearer token the way the EKS authenticator does before it asks STS.
//!
//! A token is `k8s-aws-v1.` + base64url (no padding) of a presigned STS `GetCallerIdentity`
//! URL. The authenticator accepts only a fixed set of query parameters, insists that
//! `x-k8s-aws-id` is a signed header (so the token names one cluster), and honours a token for
//! 15 minutes from `X-Amz-Date`. Where real EKS would then call STS, this server recomputes the
//! SigV4 signature itself when it knows the secret key, with `x-k8s-aws-id` set to *its own*
//! cluster name — so a token signed for another cluster fails exactly as it would in EKS.

use std::collections::BTreeMap;

use aws_lc_rs::{digest, hmac};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use time::{Duration, OffsetDateTime, PrimitiveDateTime, macros::format_description};

/// What an EKS bearer token starts with.
pub const PREFIX: &str = "k8s-aws-v1.";
const ALLOWED: [&str; 9] = [
    "action",
    "version",
    "x-amz-algorithm",
    "x-amz-credential",
    "x-amz-date",
    "x-amz-expires",
    "x-amz-security-token",
    "x-amz-signature",
    "x-amz-signedheaders",
];
const LIFETIME: Duration = Duration::minutes(15);
const SKEW: Duration = Duration::minutes(5);

/// What the server knows to check a token against.
#[derive(Clone, Debug, Default)]
pub struct Expectation {
    /// The cluster name this server plays (the value of `x-k8s-aws-id` it signs with).
    pub cluster: String,
    /// Access key id → secret access key. Empty: the signature itself is not checked.
    pub keys: BTreeMap<String, String>,
}

/// Returns the access key id the token was signed with, or why it is refused.
pub fn verify(token: &str, expect: &Expectation, now: OffsetDateTime) -> Result<String, String> {
    let body = token
        .strip_prefix(PREFIX)
        .ok_or("token does not start with k8s-aws-v1.")?;
    if body.contains('=') {
        return Err("token is padded base64; EKS tokens are base64url without padding".into());
    }
    let url = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|e| format!("token is not base64url: {e}"))?;
    let url = String::from_utf8(url).map_err(|_| "token does not decode to text")?;
    let rest = url
        .strip_prefix("https://")
        .ok_or("presigned URL is not https")?;
    let (host, rest) = rest.split_once('/').ok_or("presigned URL has no path")?;
    if !(host == "sts.amazonaws.com"
        || (host.starts_with("sts.") && host.ends_with(".amazonaws.com")))
    {
        return Err(format!("presigned URL host {host} is not STS"));
    }
    let query = rest
        .strip_prefix('?')
        .ok_or("presigned URL path is not /")?;
    let mut params: BTreeMap<String, String> = BTreeMap::new();
    for pair in query.split('&') {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("malformed query parameter {pair:?}"))?;
        let k = percent_decode(k)?;
        if !ALLOWED.contains(&k.to_ascii_lowercase().as_str()) {
            return Err(format!("query parameter {k} is not allowed"));
        }
        if params.insert(k.clone(), percent_decode(v)?).is_some() {
            return Err(format!("query parameter {k} appears twice"));
        }
    }
    let get = |k: &str| {
        params
            .get(k)
            .map(String::as_str)
            .ok_or_else(|| format!("{k} missing"))
    };
    if get("Action")? != "GetCallerIdentity" {
        return Err("Action is not GetCallerIdentity".into());
    }
    if get("Version")? != "2011-06-15" {
        return Err("Version is not 2011-06-15".into());
    }
    if get("X-Amz-Algorithm")? != "AWS4-HMAC-SHA256" {
        return Err("X-Amz-Algorithm is not AWS4-HMAC-SHA256".into());
    }
    let signed_headers = get("X-Amz-SignedHeaders")?;
    let names: Vec<&str> = signed_headers.split(';').collect();
    if !names.contains(&"x-k8s-aws-id") {
        return Err("x-k8s-aws-id is not a signed header".into());
    }
    if !names.contains(&"host") {
        return Err("host is not a signed header".into());
    }
    let expires: i64 = get("X-Amz-Expires")?
        .parse()
        .map_err(|_| "X-Amz-Expires is not a number")?;
    if !(1..=900).contains(&expires) {
        return Err(format!("X-Amz-Expires {expires} is outside 1..=900"));
    }
    let date = get("X-Amz-Date")?;
    let signed_at = PrimitiveDateTime::parse(
        date,
        format_description!("[year][month][day]T[hour][minute][second]Z"),
    )
    .map_err(|_| format!("X-Amz-Date {date} is malformed"))?
    .assume_utc();
    if now > signed_at + LIFETIME {
        return Err(format!(
            "token expired: signed at {date}, EKS honours it for 15 minutes"
        ));
    }
    if signed_at > now + SKEW {
        return Err(format!("token signed in the future ({date})"));
    }
    let credential = get("X-Amz-Credential")?;
    let (key_id, scope) = credential
        .split_once('/')
        .ok_or("X-Amz-Credential has no scope")?;
    let scope_parts: Vec<&str> = scope.split('/').collect();
    if scope_parts.len() != 4 || scope_parts[2] != "sts" || scope_parts[3] != "aws4_request" {
        return Err(format!("credential scope {scope} is not an STS scope"));
    }
    if expect.keys.is_empty() {
        return Ok(key_id.to_string());
    }
    let secret = expect
        .keys
        .get(key_id)
        .ok_or_else(|| format!("unknown access key {key_id}"))?;
    let expected = signature(
        host,
        &params,
        &names,
        &expect.cluster,
        secret,
        date,
        scope,
        &scope_parts,
    );
    if expected != get("X-Amz-Signature")? {
        return Err(format!(
            "signature does not match (token not signed for cluster {})",
            expect.cluster
        ));
    }
    Ok(key_id.to_string())
}

/// SigV4 of the presigned GET, as STS would compute it with the header the authenticator adds.
#[allow(clippy::too_many_arguments)]
fn signature(
    host: &str,
    params: &BTreeMap<String, String>,
    signed: &[&str],
    cluster: &str,
    secret: &str,
    date: &str,
    scope: &str,
    scope_parts: &[&str],
) -> String {
    let query: Vec<String> = params
        .iter()
        .filter(|(k, _)| k.as_str() != "X-Amz-Signature")
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect();
    let mut headers = String::new();
    for name in signed {
        let value = match *name {
            "host" => host,
            "x-k8s-aws-id" => cluster,
            _ => "",
        };
        headers.push_str(&format!("{name}:{value}\n"));
    }
    let empty = hex::encode(digest::digest(&digest::SHA256, b""));
    let canonical = format!(
        "GET\n/\n{}\n{headers}\n{}\n{empty}",
        query.join("&"),
        signed.join(";")
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        hex::encode(digest::digest(&digest::SHA256, canonical.as_bytes()))
    );
    let mac = |key: &[u8], data: &str| {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
    };
    let k = mac(format!("AWS4{secret}").as_bytes(), scope_parts[0]);
    let k = mac(k.as_ref(), scope_parts[1]);
    let k = mac(k.as_ref(), scope_parts[2]);
    let k = mac(k.as_ref(), scope_parts[3]);
    hex::encode(mac(k.as_ref(), &to_sign))
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hexpair = s.get(i + 1..i + 3).ok_or("truncated %-escape")?;
            out.push(u8::from_str_radix(hexpair, 16).map_err(|_| "bad %-escape")?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "query is not UTF-8".into())
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::Credentials;
    use std::time::{Duration as StdDuration, SystemTime};

    const NOW: u64 = 1_800_000_000;

    fn token_for(cluster: &str, secret: &str) -> String {
        let creds = Credentials::new("AKIDTEST", secret, Some("session".into()), None, "test");
        let at = SystemTime::UNIX_EPOCH + StdDuration::from_secs(NOW);
        meshca_aws::eks_token::token(cluster, "eu-west-1", &creds, at)
            .unwrap()
            .token
            .to_string()
    }

    fn expect() -> Expectation {
        Expectation {
            cluster: "c1".into(),
            keys: BTreeMap::from([("AKIDTEST".into(), "s3cret".into())]),
        }
    }

    fn at(secs_after: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(NOW as i64 + secs_after).unwrap()
    }

    /// Re-encodes a token after `edit` changed its URL.
    fn edited(token: &str, edit: impl Fn(String) -> String) -> String {
        let url = String::from_utf8(
            URL_SAFE_NO_PAD
                .decode(token.strip_prefix(PREFIX).unwrap())
                .unwrap(),
        )
        .unwrap();
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(edit(url)))
    }

    #[test]
    fn a_token_signed_by_meshca_for_this_cluster_passes() {
        assert_eq!(
            verify(&token_for("c1", "s3cret"), &expect(), at(10)),
            Ok("AKIDTEST".into())
        );
        assert!(
            verify(&token_for("c1", "s3cret"), &expect(), at(14 * 60)).is_ok(),
            "still good at 14 minutes"
        );
    }

    #[test]
    fn every_part_is_checked() {
        let good = token_for("c1", "s3cret");
        let refused = |t: &str, why: &str| {
            let e = verify(t, &expect(), at(10)).unwrap_err();
            assert!(e.contains(why), "{e} (wanted {why})");
        };
        refused(&token_for("c2", "s3cret"), "signature does not match");
        refused(&token_for("c1", "other"), "signature does not match");
        refused(&good.replacen(PREFIX, "k8s-aws-v2.", 1), "does not start");
        refused(&format!("{good}=="), "padded");
        refused(
            &edited(&good, |u| u.replace("https://", "http://")),
            "not https",
        );
        refused(
            &edited(&good, |u| {
                u.replace("sts.eu-west-1.amazonaws.com", "evil.example.com")
            }),
            "not STS",
        );
        refused(
            &edited(&good, |u| format!("{u}&X-Amz-Foo=1")),
            "not allowed",
        );
        refused(
            &edited(&good, |u| u.replace("GetCallerIdentity", "AssumeRole")),
            "Action",
        );
        refused(
            &edited(&good, |u| u.replace("x-k8s-aws-id", "x-other")),
            "x-k8s-aws-id is not a signed header",
        );
        refused(
            &edited(&good, |u| {
                u.replace("X-Amz-Expires=60", "X-Amz-Expires=3600")
            }),
            "outside",
        );
        refused(
            &edited(&good, |u| u.replace("AKIDTEST", "AKIDOTHER")),
            "unknown access key",
        );
        let e = verify(&good, &expect(), at(16 * 60)).unwrap_err();
        assert!(e.contains("expired"), "{e}");
        let e = verify(&good, &expect(), at(-10 * 60)).unwrap_err();
        assert!(e.contains("future"), "{e}");
    }

    #[test]
    fn without_keys_only_the_structure_is_checked() {
        let open = Expectation {
            cluster: "c1".into(),
            keys: BTreeMap::new(),
        };
        assert!(verify(&token_for("c2", "anything"), &open, at(10)).is_ok());
    }
}
