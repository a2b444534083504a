//! The work queue's consumer (renewal-worker): an SQS batch of reconcile requests the sweep
//! fanned out, each reconciled under this worker's share of the issuance budget.
//!
//! Lambda deletes the messages of a batch that succeeded; the ones named in
//! `batchItemFailures` come back after the visibility timeout and, after the queue's
//! maxReceiveCount, go to its dead-letter queue — so a failure is retried, then kept, never lost.

use std::time::Instant;

use futures::StreamExt;
use meshca_core::{Outcome, ReconcileRequest};
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::event::Request;
use crate::{App, Report};

/// The SQS event Lambda sends (the fields meshca reads).
#[derive(Debug, Clone, Deserialize)]
pub struct WorkBatch {
    /// The messages of the batch.
    #[serde(rename = "Records")]
    pub records: Vec<WorkMessage>,
}

/// One message of the work queue: a reconcile request as JSON.
#[derive(Debug, Clone, Deserialize)]
pub struct WorkMessage {
    /// SQS's id for it, named in the answer when it failed.
    #[serde(rename = "messageId")]
    pub message_id: String,
    /// The request.
    pub body: String,
}

/// The partial-batch answer (the mapping has `ReportBatchItemFailures`).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct BatchResponse {
    /// The messages to deliver again.
    #[serde(rename = "batchItemFailures")]
    pub failures: Vec<ItemFailure>,
}

/// One message that failed: SQS makes it visible again, and dead-letters it in the end.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ItemFailure {
    /// The message's id.
    #[serde(rename = "itemIdentifier")]
    pub item_identifier: String,
}

/// What a batch came to: the answer for Lambda, and each message's report.
#[derive(Debug, Clone)]
pub struct Worked {
    /// What Lambda is told.
    pub response: BatchResponse,
    /// Each message's id and report.
    pub reports: Vec<(String, Report)>,
}

impl App {
    /// Reconciles every request of `batch`, as many at once as MESHCA_SWEEP_CONCURRENCY allows;
    /// a message that is no request, or whose reconcile failed, is answered as a failure.
    pub async fn work(&self, batch: WorkBatch, deadline: Instant) -> Worked {
        let reports: Vec<(String, Report)> = futures::stream::iter(batch.records)
            .map(|m| async move {
                let report = match serde_json::from_str::<ReconcileRequest>(&m.body) {
                    Ok(r) => {
                        let request = Request::Reconcile {
                            cluster: r.cluster,
                            region: r.region,
                            force: r.force,
                            account: r.account,
                            sender: None,
                        };
                        self.handle(request, deadline).await
                    }
                    Err(e) => {
                        warn!(message_id = %m.message_id, error = %e, "not a reconcile request");
                        Report::new(
                            None,
                            None,
                            Outcome::Failed {
                                step: meshca_core::Step::Observe,
                                error: format!(
                                    "message {} is not a reconcile request: {e}",
                                    m.message_id
                                ),
                            },
                        )
                    }
                };
                (m.message_id, report)
            })
            .buffer_unordered(self.config.sweep_concurrency)
            .collect()
            .await;
        let failures = reports
            .iter()
            .filter(|(_, r)| matches!(r.outcome, Outcome::Failed { .. }))
            .map(|(id, _)| ItemFailure {
                item_identifier: id.clone(),
            })
            .collect();
        Worked {
            response: BatchResponse { failures },
            reports,
        }
    }
}
