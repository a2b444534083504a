//! Vault's HTTP API as meshca uses it: JSON in and out, `X-Vault-Token` and `X-Vault-Namespace`
//! headers, and Vault's `{"errors": [...]}` bodies turned into typed errors that carry Vault's own
//! words. TLS is rustls on aws-lc-rs, trusting the configured CA bundle (`VAULT_CACERT`) or the
//! system's roots.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use meshca_core::error_chain as chain;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::Value;
use zeroize::Zeroizing;

/// Where Vault is and how to reach it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `https://vault.example:8200` (`VAULT_ADDR`).
    pub addr: String,
    /// PEM of the CA(s) that signed Vault's certificate (`VAULT_CACERT`); `None`: system roots.
    pub ca_pem: Option<String>,
    /// Vault Enterprise / OpenBao namespace (`VAULT_NAMESPACE`).
    pub namespace: Option<String>,
    /// How long one request may take.
    pub timeout: Duration,
}

impl Endpoint {
    /// Vault at `addr`, trusting the system's roots, no namespace, the default timeout.
    pub fn new(addr: impl Into<String>) -> Self {
        Endpoint {
            addr: addr.into().trim_end_matches('/').to_string(),
            ca_pem: None,
            namespace: None,
            timeout: Duration::from_secs(30),
        }
    }
}

/// A Vault call that failed, by what an operator does about it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum VaultError {
    /// No HTTP answer: DNS, TCP, TLS or a timeout.
    #[error("Vault at {addr} is unreachable: {detail}")]
    Unreachable {
        /// Vault's address.
        addr: String,
        /// What failed.
        detail: String,
    },
    /// 503: Vault is sealed.
    #[error("Vault is sealed (503 on {path}); unseal it first")]
    Sealed {
        /// The path asked for.
        path: String,
    },
    /// 403: the token's policy does not allow the path (after one fresh login).
    #[error("Vault refused {path} (403): {message}")]
    Forbidden {
        /// The path asked for.
        path: String,
        /// Vault's errors.
        message: String,
    },
    /// 404: no mount, role or issuer at the path.
    #[error("Vault has nothing at {path} (404): {message}")]
    NotFound {
        /// The path asked for.
        path: String,
        /// Vault's errors.
        message: String,
    },
    /// Another 4xx: the request itself was refused (a CSR or a parameter).
    #[error("Vault rejected {path} ({status}): {message}")]
    Rejected {
        /// The path asked for.
        path: String,
        /// The HTTP status.
        status: u16,
        /// Vault's errors.
        message: String,
    },
    /// A 5xx other than sealed: worth retrying later.
    #[error("Vault answered {path} with {status}: {message}")]
    Server {
        /// The path asked for.
        path: String,
        /// The HTTP status.
        status: u16,
        /// Vault's errors.
        message: String,
    },
    /// A 2xx whose body is not the JSON expected.
    #[error("Vault's answer to {path} is not what meshca expects: {detail}")]
    Unexpected {
        /// The path asked for.
        path: String,
        /// What was wrong with it.
        detail: String,
    },
    /// The client could not be built (the CA bundle, TLS settings).
    #[error("Vault client: {0}")]
    Config(String),
}

/// One Vault server's HTTP client; cheap to clone.
#[derive(Clone)]
pub struct VaultHttp {
    endpoint: Endpoint,
    http: HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl VaultHttp {
    /// A client for `endpoint`, trusting its CA bundle (or the system's roots) over aws-lc-rs.
    pub fn new(endpoint: Endpoint) -> Result<Self, VaultError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| VaultError::Config(e.to_string()))?;
        let tls = match &endpoint.ca_pem {
            Some(pem) => {
                let mut roots = rustls::RootCertStore::empty();
                for der in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                    let der = der.map_err(|e| {
                        VaultError::Config(format!("the Vault CA bundle is not PEM: {e}"))
                    })?;
                    roots
                        .add(der)
                        .map_err(|e| VaultError::Config(format!("the Vault CA bundle: {e}")))?;
                }
                if roots.is_empty() {
                    return Err(VaultError::Config(
                        "the Vault CA bundle holds no certificate".into(),
                    ));
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            None => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
                builder.with_root_certificates(roots).with_no_client_auth()
            }
        };
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let http = HyperClient::builder(TokioExecutor::new()).build(https);
        Ok(VaultHttp { endpoint, http })
    }

    /// Vault's address, for messages.
    pub fn addr(&self) -> &str {
        &self.endpoint.addr
    }

    /// Sends `method /v1/<path>` with `body` (JSON) and `token`; the response's JSON, `Null` for
    /// an empty body (204).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        token: Option<&Zeroizing<String>>,
    ) -> Result<Value, VaultError> {
        let uri = format!("{}/v1/{}", self.endpoint.addr, path.trim_start_matches('/'));
        let mut request = Request::builder()
            .method(method)
            .uri(&uri)
            .header("accept", "application/json");
        if let Some(ns) = &self.endpoint.namespace {
            request = request.header("X-Vault-Namespace", ns);
        }
        if let Some(token) = token {
            let mut value = HeaderValue::from_str(token)
                .map_err(|_| VaultError::Config("the Vault token is not a header value".into()))?;
            value.set_sensitive(true);
            request = request.header("X-Vault-Token", value);
        }
        let payload = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let request = request
            .body(Full::new(payload))
            .map_err(|e| VaultError::Config(e.to_string()))?;
        let unreachable = |detail: String| VaultError::Unreachable {
            addr: self.endpoint.addr.clone(),
            detail,
        };
        let response = tokio::time::timeout(self.endpoint.timeout, self.http.request(request))
            .await
            .map_err(|_| {
                unreachable(format!(
                    "no answer within {} s",
                    self.endpoint.timeout.as_secs()
                ))
            })?
            .map_err(|e| unreachable(chain(&e)))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .to_bytes();
        let json: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        if status.is_success() {
            return Ok(json);
        }
        Err(error_of(path, status, &json))
    }
}

/// Vault's `errors` array as one message; the typed error by status.
fn error_of(path: &str, status: StatusCode, json: &Value) -> VaultError {
    let message = json["errors"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("; ")
        })
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("no message")
                .to_string()
        });
    let path = path.to_string();
    match status.as_u16() {
        503 if message.contains("sealed") || message == "Service Unavailable" => {
            VaultError::Sealed { path }
        }
        403 => VaultError::Forbidden { path, message },
        404 => VaultError::NotFound { path, message },
        code @ 400..=499 => VaultError::Rejected {
            path,
            status: code,
            message,
        },
        code => VaultError::Server {
            path,
            status: code,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn vault_errors_keep_vault_s_words() {
        let e = error_of(
            "pki/root/sign-intermediate",
            StatusCode::FORBIDDEN,
            &json!({"errors": ["permission denied"]}),
        );
        assert_eq!(
            e.to_string(),
            "Vault refused pki/root/sign-intermediate (403): permission denied"
        );
        let e = error_of(
            "sys/health",
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"errors": ["Vault is sealed"]}),
        );
        assert!(matches!(e, VaultError::Sealed { .. }), "{e}");
        let e = error_of(
            "nope/issuer/default",
            StatusCode::NOT_FOUND,
            &json!({"errors": ["no handler for route"]}),
        );
        assert!(
            matches!(e, VaultError::NotFound { .. })
                && e.to_string().contains("no handler for route"),
            "{e}"
        );
        let e = error_of("x", StatusCode::BAD_REQUEST, &json!({"errors": ["a", "b"]}));
        assert_eq!(e.to_string(), "Vault rejected x (400): a; b");
    }
}
