//! What meshca announces for people and their tools to act on: a revocation done, with who
//! asked, when, why and what happened, for a SIEM, a pager or a ticket to pick up.

use async_trait::async_trait;

/// The `detail-type` of the notice that a revocation is done.
pub const REVOCATION_COMPLETED: &str = "meshca Revocation Completed";

/// Where notices go: the deployment's event bus.
#[async_trait]
pub trait Notices: Send + Sync {
    /// Sends one notice of `detail_type` with `detail`; why it was not accepted otherwise.
    async fn announce(&self, detail_type: &str, detail: &serde_json::Value) -> Result<(), String>;
}
