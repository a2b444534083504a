//! EKS as the source of clusters: what exists (ListClusters, paginated), whether it is ready
//! (DescribeCluster status), and how to reach it (endpoint, cluster CA, IAM bearer token).

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_eks::Client;
use base64::Engine;
use zeroize::Zeroizing;

use meshca_core::clusters::{ClusterInfo, Clusters, ClustersError, OptIn, Tagged};
use meshca_core::delivery::{Delivery, DeliveryOptions};
use meshca_kube::{KubeDelivery, TokenSource};

use crate::eks_token::{self, EksToken};
use crate::error_parts;

/// Why a cluster could not be found, described or reached.
#[derive(Debug, thiserror::Error)]
pub enum EksError {
    /// DescribeCluster knows no cluster of this name in the region.
    #[error("EKS cluster {0} not found")]
    NotFound(String),
    /// The cluster exists but is creating, updating or failed.
    #[error("EKS cluster {name} is {status}, not ACTIVE; it cannot take a CA yet")]
    NotActive {
        /// The cluster.
        name: String,
        /// Its status as EKS reports it (`CREATING`, `FAILED`, …).
        status: String,
    },
    /// DescribeCluster answered without an endpoint or CA.
    #[error("EKS cluster {name}: {detail}")]
    Incomplete {
        /// The cluster.
        name: String,
        /// What was missing.
        detail: String,
    },
    /// An EKS or tagging call failed: the operation, and AWS's code and message.
    #[error("EKS {operation}: {code}: {message}")]
    Api {
        /// The call (`DescribeCluster`, `ListClusters`, `GetResources`).
        operation: &'static str,
        /// AWS's error code.
        code: String,
        /// AWS's message.
        message: String,
    },
    /// The cluster's API server could not be set up to be reached.
    #[error(transparent)]
    Connect(#[from] meshca_kube::ConnectError),
}

/// What DescribeCluster says about one cluster: the domain's [`ClusterInfo`], `id` its ARN.
pub type EksCluster = ClusterInfo;

/// Kubernetes clients kept per instance: a reconcile of several kinds, or a cluster seen again
/// while the instance lives, reuses its TLS connection and IAM token. Bounded, since each client
/// may hold an idle connection and Lambda allows 1,024 file descriptors.
const CLIENTS_KEPT: usize = 128;

/// The EKS clusters of one region.
pub struct EksClusters {
    client: Client,
    /// The Resource Groups Tagging API: the opted-in clusters with their tags, 100 a call.
    tagging: aws_sdk_resourcegroupstagging::Client,
    region: String,
    credentials: SharedCredentialsProvider,
    /// By cluster name, with the endpoint and CA it was made for (a changed one is replaced).
    clients:
        std::sync::Mutex<std::collections::HashMap<String, (String, String, meshca_kube::Client)>>,
}

impl EksClusters {
    #[allow(
        clippy::expect_used,
        reason = "aws_config's loader always sets a credentials provider; only a hand-built config lacks one"
    )]
    /// Clients in the region of `config`, signing EKS tokens with its credentials.
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        let credentials = config
            .credentials_provider()
            .expect("the default chain always provides credentials");
        EksClusters {
            client: Client::new(config),
            tagging: aws_sdk_resourcegroupstagging::Client::new(config),
            region: config
                .region()
                .map(|r| r.to_string())
                .unwrap_or_else(|| "us-east-1".into()),
            credentials,
            clients: Default::default(),
        }
    }

    /// The region these clients call.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// DescribeCluster: endpoint, CA, status and tags of one cluster, refused unless ACTIVE.
    pub async fn describe(&self, name: &str) -> Result<EksCluster, EksError> {
        let out = self
            .client
            .describe_cluster()
            .name(name)
            .send()
            .await
            .map_err(|e| {
                let (code, message) = error_parts(&e);
                if code == "ResourceNotFoundException" {
                    EksError::NotFound(name.to_string())
                } else {
                    EksError::Api {
                        operation: "DescribeCluster",
                        code,
                        message,
                    }
                }
            })?;
        let c = out.cluster.ok_or_else(|| EksError::Incomplete {
            name: name.into(),
            detail: "DescribeCluster returned no cluster".into(),
        })?;
        Ok(ClusterInfo {
            name: c.name().unwrap_or(name).to_string(),
            id: c.arn().unwrap_or_default().to_string(),
            status: c
                .status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|| "UNKNOWN".into()),
            endpoint: c.endpoint().map(str::to_string),
            ca_data: c
                .certificate_authority()
                .and_then(|ca| ca.data())
                .map(str::to_string),
            tags: c
                .tags()
                .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
            authentication_mode: c
                .access_config()
                .and_then(|a| a.authentication_mode())
                .map(|m| m.as_str().to_string()),
        })
    }

    /// Every cluster name in the region, following pagination.
    pub async fn list(&self) -> Result<Vec<String>, EksError> {
        let mut names = Vec::new();
        let mut pages = self
            .client
            .list_clusters()
            .max_results(100)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                let (code, message) = error_parts(&e);
                EksError::Api {
                    operation: "ListClusters",
                    code,
                    message,
                }
            })?;
            names.extend(page.clusters.unwrap_or_default());
        }
        Ok(names)
    }

    /// The clusters tagged `opt_in`, with all their tags: GetResources (resource type
    /// eks:cluster, the tag as filter), 100 a page. The Tagging API lists every state, CREATING
    /// and DELETING too: a cluster acted on is described first.
    pub async fn tagged(&self, opt_in: &OptIn) -> Result<Vec<Tagged>, EksError> {
        use aws_sdk_resourcegroupstagging::types::TagFilter;
        let filter = TagFilter::builder()
            .key(&opt_in.key)
            .values(&opt_in.value)
            .build();
        let mut pages = self
            .tagging
            .get_resources()
            .resource_type_filters("eks:cluster")
            .tag_filters(filter)
            .resources_per_page(100)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                let (code, message) = error_parts(&e);
                EksError::Api {
                    operation: "GetResources",
                    code,
                    message,
                }
            })?;
            for mapping in page.resource_tag_mapping_list() {
                let Some(arn) = mapping.resource_arn() else {
                    continue;
                };
                let Some((_, name)) = arn.rsplit_once(":cluster/") else {
                    continue;
                };
                let tags = mapping
                    .tags()
                    .iter()
                    .map(|t| (t.key().to_string(), t.value().to_string()))
                    .collect();
                out.push(Tagged {
                    name: name.to_string(),
                    id: arn.to_string(),
                    tags,
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Clusters carrying `key=value` (described one by one; ListClusters has no tag filter).
    pub async fn list_tagged(&self, key: &str, value: &str) -> Result<Vec<EksCluster>, EksError> {
        let opt_in = OptIn {
            key: key.into(),
            value: value.into(),
        };
        let mut out = Vec::new();
        for name in self.list().await? {
            match self.describe(&name).await {
                Ok(c) if opt_in.admits(&c.tags) => out.push(c),
                Ok(_) | Err(EksError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// A Kubernetes client for an ACTIVE cluster: its endpoint, its CA only, an IAM token.
    pub fn client(&self, cluster: &EksCluster) -> Result<meshca_kube::Client, EksError> {
        if !cluster.is_active() {
            return Err(EksError::NotActive {
                name: cluster.name.clone(),
                status: cluster.status.clone(),
            });
        }
        let incomplete = |detail: &str| EksError::Incomplete {
            name: cluster.name.clone(),
            detail: detail.into(),
        };
        let endpoint = cluster
            .endpoint
            .as_deref()
            .ok_or_else(|| incomplete("no endpoint"))?;
        let ca_data = cluster
            .ca_data
            .as_deref()
            .ok_or_else(|| incomplete("no certificate authority"))?;
        let ca = base64::engine::general_purpose::STANDARD
            .decode(ca_data.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| incomplete("certificateAuthority.data is not base64 of PEM"))?;
        let tokens = Arc::new(EksTokens::new(
            &cluster.name,
            &self.region,
            self.credentials.clone(),
        ));
        Ok(meshca_kube::from_endpoint(
            &cluster.name,
            endpoint,
            &ca,
            tokens,
        )?)
    }
}

impl EksClusters {
    /// The client kept for `cluster` while its endpoint and CA are the same, else a new one.
    fn kept_client(&self, cluster: &EksCluster) -> Result<meshca_kube::Client, EksError> {
        let (endpoint, ca) = (
            cluster.endpoint.clone().unwrap_or_default(),
            cluster.ca_data.clone().unwrap_or_default(),
        );
        let mut kept = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((e, c, client)) = kept.get(&cluster.name)
            && (e, c) == (&endpoint, &ca)
        {
            return Ok(client.clone());
        }
        let client = self.client(cluster)?;
        if kept.len() >= CLIENTS_KEPT {
            kept.clear();
        }
        kept.insert(cluster.name.clone(), (endpoint, ca, client.clone()));
        Ok(client)
    }
}

impl From<EksError> for ClustersError {
    fn from(e: EksError) -> Self {
        match e {
            EksError::NotFound(_) => ClustersError::NotFound(Box::new(e)),
            EksError::NotActive { .. } | EksError::Incomplete { .. } => {
                ClustersError::NotReady(Box::new(e))
            }
            EksError::Api { .. } | EksError::Connect(_) => ClustersError::Unavailable(Box::new(e)),
        }
    }
}

/// EKS as the domain's [`Clusters`]: a connection is a [`KubeDelivery`] authenticated with an
/// IAM token for that cluster.
#[async_trait]
impl Clusters for EksClusters {
    fn region(&self) -> &str {
        &self.region
    }

    async fn list(&self) -> Result<Vec<String>, ClustersError> {
        Ok(EksClusters::list(self).await?)
    }

    async fn describe(&self, name: &str) -> Result<ClusterInfo, ClustersError> {
        Ok(EksClusters::describe(self, name).await?)
    }

    async fn tagged(&self, opt_in: &OptIn) -> Result<Option<Vec<Tagged>>, ClustersError> {
        Ok(Some(EksClusters::tagged(self, opt_in).await?))
    }

    fn connect(
        &self,
        cluster: &ClusterInfo,
        options: DeliveryOptions,
    ) -> Result<Arc<dyn Delivery>, ClustersError> {
        let client = self.kept_client(cluster)?;
        Ok(Arc::new(KubeDelivery::new(
            client,
            cluster.endpoint.clone().unwrap_or_default(),
            options,
        )))
    }
}

/// EKS tokens for one cluster, re-signed a minute before EKS would stop honouring them.
pub struct EksTokens {
    cluster: String,
    region: String,
    credentials: SharedCredentialsProvider,
    current: tokio::sync::Mutex<Option<EksToken>>,
}

impl EksTokens {
    /// Tokens for `cluster` in `region`, signed with `credentials`.
    pub fn new(cluster: &str, region: &str, credentials: SharedCredentialsProvider) -> Self {
        EksTokens {
            cluster: cluster.into(),
            region: region.into(),
            credentials,
            current: tokio::sync::Mutex::new(None),
        }
    }
}

#[async_trait]
impl TokenSource for EksTokens {
    async fn bearer(&self) -> Result<Zeroizing<String>, String> {
        self.bearer_at(SystemTime::now()).await
    }
}

impl EksTokens {
    /// The cached token while `now` is before its refresh time, else a freshly signed one.
    async fn bearer_at(&self, now: SystemTime) -> Result<Zeroizing<String>, String> {
        let mut current = self.current.lock().await;
        if let Some(t) = current.as_ref().filter(|t| now < t.refresh_at) {
            return Ok(t.token.clone());
        }
        let creds = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|e| format!("AWS credentials: {e}"))?;
        let fresh = eks_token::token(&self.cluster, &self.region, &creds, now)
            .map_err(|e| e.to_string())?;
        let token = fresh.token.clone();
        *current = Some(fresh);
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::Credentials;
    use std::time::Duration;

    #[tokio::test]
    async fn tokens_are_reused_until_a_minute_before_eks_stops_honouring_them() {
        let creds =
            SharedCredentialsProvider::new(Credentials::new("AKID", "secret", None, None, "test"));
        let tokens = EksTokens::new("c1", "eu-west-1", creds);
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let first = tokens.bearer_at(t0).await.unwrap();
        assert_eq!(
            *tokens
                .bearer_at(t0 + Duration::from_secs(13 * 60))
                .await
                .unwrap(),
            *first
        );
        let later = tokens
            .bearer_at(t0 + Duration::from_secs(14 * 60))
            .await
            .unwrap();
        assert_ne!(
            *later, *first,
            "re-signed at 14 minutes, before the 15-minute limit"
        );
    }
}
