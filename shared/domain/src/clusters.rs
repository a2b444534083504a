//! The `Clusters` port: where clusters are found (EKS in production), whether they are ready,
//! and how to reach one for [`Delivery`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::delivery::{Delivery, DeliveryOptions};

/// One cluster as its platform describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    /// The cluster's name.
    pub name: String,
    /// The platform's identifier (an EKS cluster ARN).
    pub id: String,
    /// CREATING, ACTIVE, UPDATING, DELETING, FAILED, PENDING.
    pub status: String,
    /// Its API server's URL, once it has one.
    pub endpoint: Option<String>,
    /// The cluster CA as the platform gives it (EKS: base64 of PEM; none while CREATING).
    pub ca_data: Option<String>,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
    /// How callers are granted access (EKS: API, API_AND_CONFIG_MAP or CONFIG_MAP).
    pub authentication_mode: Option<String>,
}

impl ClusterInfo {
    /// Ready to take a CA.
    pub fn is_active(&self) -> bool {
        self.status == "ACTIVE"
    }
}

/// A cluster as a tag inventory lists it: name and tags, nothing of its state or endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tagged {
    /// The cluster's name.
    pub name: String,
    /// The platform's identifier (an EKS cluster ARN).
    pub id: String,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
}

/// The tag a cluster carries to be managed by meshca (`meshca.io/enabled=true` by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptIn {
    /// The tag's key.
    pub key: String,
    /// The value that opts a cluster in.
    pub value: String,
}

impl OptIn {
    /// The tag key clusters carry when none is configured.
    pub const DEFAULT_KEY: &'static str = "meshca.io/enabled";

    /// Whether a cluster with `tags` is opted in.
    pub fn admits(&self, tags: &BTreeMap<String, String>) -> bool {
        tags.get(&self.key).map(String::as_str) == Some(self.value.as_str())
    }
}

impl Default for OptIn {
    fn default() -> Self {
        OptIn {
            key: Self::DEFAULT_KEY.into(),
            value: "true".into(),
        }
    }
}

impl fmt::Display for OptIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

type Source = Box<dyn std::error::Error + Send + Sync>;

/// Why a cluster could not be listed or described, by what meshca does about it.
#[derive(Debug, thiserror::Error)]
pub enum ClustersError {
    /// The cluster does not exist (any more).
    #[error(transparent)]
    NotFound(Source),
    /// It exists but cannot take a CA now (not ACTIVE, no endpoint yet).
    #[error(transparent)]
    NotReady(Source),
    /// The platform's API or the connection failed.
    #[error(transparent)]
    Unavailable(Source),
}

/// The clusters of one platform region.
#[async_trait]
pub trait Clusters: Send + Sync {
    /// The region these clusters live in, for reports.
    fn region(&self) -> &str;
    /// Every cluster name, whatever its state.
    async fn list(&self) -> Result<Vec<String>, ClustersError>;
    /// One cluster's state, endpoint, CA and tags.
    async fn describe(&self, name: &str) -> Result<ClusterInfo, ClustersError>;
    /// The clusters carrying `opt_in`, listed by tag in a few calls instead of one description
    /// each; `None` where the platform has no such listing (then each cluster is described).
    async fn tagged(&self, opt_in: &OptIn) -> Result<Option<Vec<Tagged>>, ClustersError> {
        let _ = opt_in;
        Ok(None)
    }
    /// A [`Delivery`] into an ACTIVE cluster; nothing is sent to it yet.
    fn connect(
        &self,
        cluster: &ClusterInfo,
        options: DeliveryOptions,
    ) -> Result<Arc<dyn Delivery>, ClustersError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_opt_in_tag_must_match_key_and_value() {
        let opt_in = OptIn::default();
        let tags = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        assert!(opt_in.admits(&tags("meshca.io/enabled", "true")));
        assert!(!opt_in.admits(&tags("meshca.io/enabled", "false")));
        assert!(!opt_in.admits(&tags("team", "true")));
        assert!(!opt_in.admits(&BTreeMap::new()));
        assert_eq!(opt_in.to_string(), "meshca.io/enabled=true");
    }
}
