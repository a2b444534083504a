//! How meshca gets a Vault token, and keeps one: a token given as is (renewed while Vault allows
//! it), AppRole, or the AWS IAM method (a SigV4-signed STS GetCallerIdentity, which Vault
//! forwards to STS to learn who is calling). Login tokens are re-obtained when two thirds of
//! their lease have passed, so a long sweep never runs into an expired token.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use http::Method;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::client::{VaultError, VaultHttp};

/// How to log in.
#[derive(Clone)]
pub enum Login {
    /// A token as given (`VAULT_TOKEN`, a token file).
    Token(Zeroizing<String>),
    /// `auth/<mount>/login` with a role id and secret id.
    AppRole {
        /// The AppRole auth mount (`approle`).
        mount: String,
        /// The role's id: not a secret.
        role_id: String,
        /// The secret id, wiped when dropped.
        secret_id: Zeroizing<String>,
    },
    /// `auth/<mount>/login` with a signed STS GetCallerIdentity for `role`.
    AwsIam {
        /// The AWS auth mount (`aws`).
        mount: String,
        /// The Vault role bound to the function's IAM role.
        role: String,
        /// Which STS endpoint the signed request names (Vault calls it to check the signature).
        sts: StsTarget,
        /// The `X-Vault-AWS-IAM-Server-ID` header the mount requires, if it requires one.
        server_id: Option<String>,
        /// The credentials that sign the request.
        credentials: SharedCredentialsProvider,
    },
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Login::Token(_) => f.write_str("Token(<redacted>)"),
            Login::AppRole { mount, role_id, .. } => {
                write!(f, "AppRole {{ mount: {mount}, role_id: {role_id} }}")
            }
            Login::AwsIam { mount, role, .. } => {
                write!(f, "AwsIam {{ mount: {mount}, role: {role} }}")
            }
        }
    }
}

/// The STS endpoint the login request is signed for; Vault's `sts_endpoint`/`sts_region` must agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StsTarget {
    /// `https://sts.amazonaws.com/`, signed for us-east-1 (Vault's default).
    Global,
    /// `https://sts.<region>.amazonaws.com/`, signed for that region.
    Regional(String),
}

impl StsTarget {
    fn url_and_region(&self) -> (String, &str) {
        match self {
            StsTarget::Global => ("https://sts.amazonaws.com/".into(), "us-east-1"),
            StsTarget::Regional(r) => (format!("https://sts.{r}.amazonaws.com/"), r),
        }
    }
}

/// The token in hand and when to look at it again.
struct Held {
    token: Zeroizing<String>,
    /// `None`: it does not expire (a root or periodic-less token with ttl 0).
    refresh_at: Option<Instant>,
    renewable: bool,
}

/// A logged-in session, shared by every call of one authority.
pub struct Session {
    http: VaultHttp,
    login: Login,
    held: tokio::sync::Mutex<Option<Held>>,
}

impl Session {
    /// A session that logs in with `login` when it first needs a token.
    pub fn new(http: VaultHttp, login: Login) -> Self {
        Session {
            http,
            login,
            held: tokio::sync::Mutex::new(None),
        }
    }

    /// A token valid now: the one held, renewed or re-obtained when two thirds of its life are gone.
    pub async fn token(&self) -> Result<Zeroizing<String>, VaultError> {
        let mut held = self.held.lock().await;
        if let Some(h) = held.as_ref()
            && h.refresh_at.is_none_or(|t| Instant::now() < t)
        {
            return Ok(h.token.clone());
        }
        let fresh = match (held.take(), &self.login) {
            (Some(h), Login::Token(_)) if h.renewable => self.renew(h.token).await?,
            (Some(h), Login::Token(_)) => Held {
                refresh_at: None,
                ..h
            },
            (None, Login::Token(t)) => self.look_up(t.clone()).await?,
            (_, login) => self.log_in(login).await?,
        };
        let token = fresh.token.clone();
        *held = Some(fresh);
        Ok(token)
    }

    /// After a 403 on a token that may have expired under us: the next call logs in again.
    pub async fn forget(&self) {
        if !matches!(self.login, Login::Token(_)) {
            *self.held.lock().await = None;
        }
    }

    async fn look_up(&self, token: Zeroizing<String>) -> Result<Held, VaultError> {
        let data = self
            .http
            .call(Method::GET, "auth/token/lookup-self", None, Some(&token))
            .await?;
        let ttl = data["data"]["ttl"].as_u64().unwrap_or(0);
        let renewable = data["data"]["renewable"].as_bool().unwrap_or(false);
        Ok(Held {
            token,
            refresh_at: refresh_after(ttl),
            renewable,
        })
    }

    async fn renew(&self, token: Zeroizing<String>) -> Result<Held, VaultError> {
        let data = self
            .http
            .call(
                Method::POST,
                "auth/token/renew-self",
                Some(&json!({})),
                Some(&token),
            )
            .await?;
        Ok(held_from(&data, token))
    }

    async fn log_in(&self, login: &Login) -> Result<Held, VaultError> {
        let (mount, body) = match login {
            Login::Token(_) => unreachable!("tokens are looked up, not logged in"),
            Login::AppRole {
                mount,
                role_id,
                secret_id,
            } => (
                mount,
                json!({"role_id": role_id, "secret_id": secret_id.as_str()}),
            ),
            Login::AwsIam {
                mount,
                role,
                sts,
                server_id,
                credentials,
            } => {
                let creds = credentials.provide_credentials().await.map_err(|e| {
                    VaultError::Config(format!("AWS credentials for the Vault IAM login: {e}"))
                })?;
                (
                    mount,
                    iam_login_body(role, sts, server_id.as_deref(), &creds, SystemTime::now())?,
                )
            }
        };
        let path = format!("auth/{}/login", mount.trim_matches('/'));
        let data = self
            .http
            .call(Method::POST, &path, Some(&body), None)
            .await?;
        let token = data["auth"]["client_token"]
            .as_str()
            .map(|t| Zeroizing::new(t.to_string()))
            .ok_or_else(|| VaultError::Unexpected {
                path: path.clone(),
                detail: "no auth.client_token".into(),
            })?;
        Ok(held_from(&data, token))
    }
}

fn held_from(data: &Value, token: Zeroizing<String>) -> Held {
    let lease = data["auth"]["lease_duration"].as_u64().unwrap_or(0);
    let renewable = data["auth"]["renewable"].as_bool().unwrap_or(false);
    Held {
        token,
        refresh_at: refresh_after(lease),
        renewable,
    }
}

/// Two thirds into a lease of `seconds`; `None` for a token that does not expire.
fn refresh_after(seconds: u64) -> Option<Instant> {
    (seconds > 0).then(|| Instant::now() + Duration::from_secs(seconds * 2 / 3))
}

/// The body of `POST auth/<mount>/login` for the AWS IAM method: a GetCallerIdentity request
/// signed with `credentials` at `now`, its parts base64-encoded as Vault wants them.
#[allow(
    clippy::expect_used,
    reason = "a map of header strings always serialises"
)]
pub fn iam_login_body(
    role: &str,
    sts: &StsTarget,
    server_id: Option<&str>,
    credentials: &Credentials,
    now: SystemTime,
) -> Result<Value, VaultError> {
    let (url, region) = sts.url_and_region();
    let body = "Action=GetCallerIdentity&Version=2011-06-15";
    let host = url
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_string();
    let mut headers: Vec<(String, String)> = vec![
        (
            "Content-Type".into(),
            "application/x-www-form-urlencoded; charset=utf-8".into(),
        ),
        ("Host".into(), host),
    ];
    if let Some(id) = server_id {
        headers.push(("X-Vault-AWS-IAM-Server-ID".into(), id.to_string()));
    }
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(now)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| VaultError::Config(format!("signing the IAM login: {e}")))?
        .into();
    let signable = SignableRequest::new(
        "POST",
        &url,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(body.as_bytes()),
    )
    .map_err(|e| VaultError::Config(format!("signing the IAM login: {e}")))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| VaultError::Config(format!("signing the IAM login: {e}")))?
        .into_parts();
    for (name, value) in instructions.headers() {
        headers.push((name.to_string(), value.to_string()));
    }
    let header_map: BTreeMap<String, Vec<String>> =
        headers.into_iter().map(|(k, v)| (k, vec![v])).collect();
    Ok(json!({
        "role": role,
        "iam_http_request_method": "POST",
        "iam_request_url": B64.encode(url.as_bytes()),
        "iam_request_body": B64.encode(body.as_bytes()),
        "iam_request_headers": B64.encode(serde_json::to_vec(&header_map).expect("strings serialise")),
    }))
}
