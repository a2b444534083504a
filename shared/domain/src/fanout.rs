//! The `FanOut` port: a fleet too large for one invocation is handed on as one reconcile
//! request per cluster (EventBridge in production), each answered by a separate run.

use async_trait::async_trait;

/// Reconcile one cluster now: the `meshca Reconcile Requested` detail, and a direct invoke.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReconcileRequest {
    /// The cluster to reconcile.
    pub cluster: String,
    /// Its region (`None`: the receiver's own).
    pub region: Option<String>,
    /// The member account the cluster is in; `None`: meshca's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Renew even if the bundle is not due.
    pub force: bool,
}

/// Where a sweep hands clusters it will not reconcile itself: EventBridge or a work queue.
#[async_trait]
pub trait FanOut: Send + Sync {
    /// Where requests go, for reports (an event bus name).
    fn destination(&self) -> &str;
    /// Sends every request; the answer is positional: `Err` names why that one was not accepted.
    async fn send(&self, requests: &[ReconcileRequest]) -> Vec<Result<(), String>>;
}
