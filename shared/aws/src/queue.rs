//! SQS as the domain's [`FanOut`]: one message per cluster, ten per SendMessageBatch call, on
//! the work queue. The queue is the event source of renewal-worker with a MaximumConcurrency:
//! Lambda, not meshca, bounds how many workers issue at once, so the fleet as a whole stays
//! within the Private CA quota when each worker takes its share of it.

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use meshca_core::fanout::{FanOut, ReconcileRequest};

use crate::error_parts;

/// SendMessageBatch takes at most ten entries.
const SEND_BATCH: usize = 10;

/// [`FanOut`] over SQS: each request a message on the work queue the renewal worker drains.
pub struct SqsFanOut {
    client: Client,
    queue_url: String,
}

impl SqsFanOut {
    /// Sends to `queue_url` with the client of `config`.
    pub fn new(config: &aws_config::SdkConfig, queue_url: impl Into<String>) -> Self {
        SqsFanOut {
            client: Client::new(config),
            queue_url: queue_url.into(),
        }
    }

    /// One batch: positional answers, from the Successful and Failed lists (by entry id).
    #[allow(
        clippy::expect_used,
        reason = "a request of strings serialises, and the entry's id and body are set"
    )]
    async fn send_batch(&self, batch: &[ReconcileRequest]) -> Vec<Result<(), String>> {
        let entries: Vec<SendMessageBatchRequestEntry> = batch
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let body = serde_json::to_string(r).expect("requests serialise");
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
                    .build()
                    .expect("id and body are set")
            })
            .collect();
        match self
            .client
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(sent) => (0..batch.len())
                .map(|i| {
                    let id = i.to_string();
                    if sent.successful().iter().any(|s| s.id() == id) {
                        return Ok(());
                    }
                    match sent.failed().iter().find(|f| f.id() == id) {
                        Some(f) => Err(format!(
                            "SendMessageBatch refused the request: {} {}",
                            f.code(),
                            f.message().unwrap_or_default()
                        )),
                        None => Err("SendMessageBatch gave no result for this entry".into()),
                    }
                })
                .collect(),
            Err(e) => {
                let (code, message) = error_parts(&e);
                batch
                    .iter()
                    .map(|_| Err(format!("SendMessageBatch failed: {code}: {message}")))
                    .collect()
            }
        }
    }
}

#[async_trait]
impl FanOut for SqsFanOut {
    fn destination(&self) -> &str {
        &self.queue_url
    }

    async fn send(&self, requests: &[ReconcileRequest]) -> Vec<Result<(), String>> {
        let mut results = Vec::with_capacity(requests.len());
        for batch in requests.chunks(SEND_BATCH) {
            results.extend(self.send_batch(batch).await);
        }
        results
    }
}
