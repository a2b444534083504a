//! EventBridge as the domain's [`FanOut`]: one `meshca Reconcile Requested` event per cluster,
//! ten per PutEvents call, on the configured bus; cluster-events answers each. And as its
//! [`Notices`]: a `meshca Revocation Completed` event on the same bus.

use async_trait::async_trait;
use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use meshca_core::fanout::{FanOut, ReconcileRequest};
use meshca_core::notice::Notices;

use crate::error_parts;

/// The detail-type of a reconcile request, as cluster-events' rule matches it.
pub const RECONCILE_REQUESTED: &str = "meshca Reconcile Requested";
/// The source of the events meshca sends.
pub const SOURCE: &str = "meshca";
/// PutEvents takes at most ten entries.
const PUT_EVENTS_BATCH: usize = 10;

/// [`FanOut`] over EventBridge: each request a `meshca Reconcile Requested` event on the bus, which the cluster-events rule delivers.
pub struct EventBridgeFanOut {
    client: Client,
    bus: String,
}

impl EventBridgeFanOut {
    /// Puts events on `bus` (a name or ARN) with the client of `config`.
    pub fn new(config: &aws_config::SdkConfig, bus: impl Into<String>) -> Self {
        EventBridgeFanOut {
            client: Client::new(config),
            bus: bus.into(),
        }
    }

    fn entry(&self, request: &ReconcileRequest) -> PutEventsRequestEntry {
        let mut detail = serde_json::json!({"cluster": request.cluster, "region": request.region, "force": request.force});
        if let Some(account) = &request.account {
            detail["account"] = account.clone().into();
        }
        PutEventsRequestEntry::builder()
            .source(SOURCE)
            .detail_type(RECONCILE_REQUESTED)
            .detail(detail.to_string())
            .event_bus_name(&self.bus)
            .build()
    }
}

#[async_trait]
impl FanOut for EventBridgeFanOut {
    fn destination(&self) -> &str {
        &self.bus
    }

    async fn send(&self, requests: &[ReconcileRequest]) -> Vec<Result<(), String>> {
        let mut results = Vec::with_capacity(requests.len());
        for batch in requests.chunks(PUT_EVENTS_BATCH) {
            let answered = results.len() + batch.len();
            let entries = batch.iter().map(|r| self.entry(r)).collect();
            match self
                .client
                .put_events()
                .set_entries(Some(entries))
                .send()
                .await
            {
                // Results are positional; an entry with an error code was not accepted.
                Ok(sent) => results.extend(sent.entries().iter().take(batch.len()).map(|e| {
                    match e.error_code() {
                        None => Ok(()),
                        Some(code) => Err(format!(
                            "PutEvents refused the request: {code} {}",
                            e.error_message().unwrap_or_default()
                        )),
                    }
                })),
                Err(e) => {
                    let (code, message) = error_parts(&e);
                    results.extend(
                        batch
                            .iter()
                            .map(|_| Err(format!("PutEvents failed: {code}: {message}"))),
                    );
                }
            }
            // An answer with fewer entries than sent leaves the rest unconfirmed.
            while results.len() < answered {
                results.push(Err("PutEvents gave no result for this entry".into()));
            }
        }
        results
    }
}

/// [`Notices`] over EventBridge: each notice one event from `meshca` on the bus.
pub struct EventBridgeNotices {
    client: Client,
    bus: String,
}

impl EventBridgeNotices {
    /// Puts notices on `bus` (a name or ARN) with the client of `config`.
    pub fn new(config: &aws_config::SdkConfig, bus: impl Into<String>) -> Self {
        EventBridgeNotices {
            client: Client::new(config),
            bus: bus.into(),
        }
    }
}

#[async_trait]
impl Notices for EventBridgeNotices {
    async fn announce(&self, detail_type: &str, detail: &serde_json::Value) -> Result<(), String> {
        let entry = PutEventsRequestEntry::builder()
            .source(SOURCE)
            .detail_type(detail_type)
            .detail(detail.to_string())
            .event_bus_name(&self.bus)
            .build();
        let out = self
            .client
            .put_events()
            .entries(entry)
            .send()
            .await
            .map_err(|e| {
                let (code, message) = error_parts(&e);
                format!("PutEvents failed: {code}: {message}")
            })?;
        match out.entries().first().and_then(|e| e.error_code()) {
            Some(code) => Err(format!("PutEvents refused the notice: {code}")),
            None => Ok(()),
        }
    }
}
