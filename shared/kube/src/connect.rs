//! Connecting to a cluster's API: a kubeconfig context, or an endpoint + cluster CA + a source
//! of bearer tokens (EKS). The cluster CA given is the only trust root; the token is set per
//! request and marked sensitive, so it never reaches a log.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use kube::{Client, Config};
use tower::{BoxError, Layer, Service, ServiceExt, buffer::Buffer};
use zeroize::Zeroizing;

use meshca_core::error_chain as chain;

use crate::secret::SECRET_NAMESPACE;

/// A cluster's API server could not be set up to be reached (nothing was sent to it yet).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The kubeconfig, or the context in it, is missing or unusable.
    #[error("kubeconfig context {context:?}: {detail}")]
    Kubeconfig {
        /// The context asked for (`""`: the current one).
        context: String,
        /// What was wrong.
        detail: String,
    },
    /// An endpoint and CA (from EKS) that do not make a client.
    #[error("cluster {cluster}: {detail}")]
    Endpoint {
        /// The cluster.
        cluster: String,
        /// What was wrong: the URL, or the CA's PEM.
        detail: String,
    },
}

/// A source of bearer tokens that may change over time (EKS tokens live 15 minutes).
#[async_trait]
pub trait TokenSource: Send + Sync + 'static {
    /// The token to send now; an error says why none can be had.
    async fn bearer(&self) -> Result<Zeroizing<String>, String>;
}

/// A client for a kubeconfig context (`None`: the current context) from `path`, or from
/// `$KUBECONFIG` / `~/.kube/config` when no path is given.
pub async fn from_context(
    path: Option<&std::path::Path>,
    context: Option<&str>,
) -> Result<(Client, String), ConnectError> {
    let name = context.unwrap_or("(current)").to_string();
    let fail = |detail: String| ConnectError::Kubeconfig {
        context: name.clone(),
        detail,
    };
    let options = kube::config::KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let mut config = match path {
        Some(p) => {
            let file = kube::config::Kubeconfig::read_from(p).map_err(|e| fail(chain(&e)))?;
            Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|e| fail(chain(&e)))?
        }
        None => Config::from_kubeconfig(&options)
            .await
            .map_err(|e| fail(chain(&e)))?,
    };
    tune(&mut config);
    let endpoint = config.cluster_url.to_string();
    Ok((
        Client::try_from(config).map_err(|e| fail(chain(&e)))?,
        endpoint,
    ))
}

/// A client for `endpoint` that trusts only `ca_pem` and authenticates with `tokens`.
pub fn from_endpoint(
    cluster: &str,
    endpoint: &str,
    ca_pem: &str,
    tokens: Arc<dyn TokenSource>,
) -> Result<Client, ConnectError> {
    let fail = |detail: String| ConnectError::Endpoint {
        cluster: cluster.to_string(),
        detail,
    };
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|e| fail(format!("endpoint {endpoint:?} is not a URL: {e}")))?;
    if uri.scheme_str() != Some("https") {
        return Err(fail(format!("endpoint {endpoint} is not https")));
    }
    let roots = meshca_core::pem::certificates("cluster certificate authority", ca_pem)
        .map_err(|e| fail(e.to_string()))?;
    let mut config = Config::new(uri);
    config.root_cert = Some(roots);
    tune(&mut config);
    let builder = kube::client::ClientBuilder::try_from(config).map_err(|e| fail(chain(&e)))?;
    Ok(builder.with_layer(&BearerLayer(tokens)).build())
}

fn tune(config: &mut Config) {
    config.default_namespace = SECRET_NAMESPACE.to_string();
    config.connect_timeout = Some(Duration::from_secs(10));
    // A cluster that accepts and never answers costs this, not the fleet's time.
    config.read_timeout = Some(Duration::from_secs(10));
    config.write_timeout = Some(Duration::from_secs(10));
}

/// Sets `Authorization: Bearer …` on every request from a [`TokenSource`].
#[derive(Clone)]
struct BearerLayer(Arc<dyn TokenSource>);

impl<S> Layer<S> for BearerLayer
where
    S: Service<http::Request<kube::client::Body>> + Send + 'static,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Into<BoxError> + Send + Sync,
{
    type Service = Bearer<S>;
    fn layer(&self, inner: S) -> Bearer<S> {
        Bearer {
            inner: Buffer::new(inner, 64),
            tokens: self.0.clone(),
        }
    }
}

struct Bearer<S: Service<http::Request<kube::client::Body>>> {
    inner: Buffer<http::Request<kube::client::Body>, S::Future>,
    tokens: Arc<dyn TokenSource>,
}

impl<S> Service<http::Request<kube::client::Body>> for Bearer<S>
where
    S: Service<http::Request<kube::client::Body>> + Send + 'static,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Into<BoxError> + Send + Sync,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: http::Request<kube::client::Body>) -> Self::Future {
        let mut inner = self.inner.clone();
        let tokens = self.tokens.clone();
        Box::pin(async move {
            let token = tokens.bearer().await.map_err(BoxError::from)?;
            let mut value = http::HeaderValue::from_str(&format!("Bearer {}", token.as_str()))?;
            value.set_sensitive(true);
            req.headers_mut().insert(http::header::AUTHORIZATION, value);
            inner.ready().await?.call(req).await
        })
    }
}
