//! An SQS event source mapping, as Lambda runs one: batches of up to ten messages received from
//! a queue (a real SQS API: the emulator's) and handed to function instances through their
//! Runtime API, at most one batch per instance — so the instances given are the mapping's
//! MaximumConcurrency. Messages a batch answered as done are deleted; those it names in
//! `batchItemFailures`, or all of a batch whose invocation failed, come back after the
//! visibility timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message};
use serde_json::{Value, json};

use crate::runtime::RuntimeStub;

/// What a drained queue took.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drained {
    /// Messages deleted (done).
    pub deleted: usize,
    /// Batches handed to the worker.
    pub batches: usize,
    /// Messages a worker answered as failed (each received again later).
    pub failed: usize,
}

/// What Lambda's SQS event source mapping does, for tests: receives batches and hands them to a worker.
pub struct QueueMapping {
    client: Client,
    queue_url: String,
    queue_arn: String,
}

impl QueueMapping {
    /// A mapping of the queue at `queue_url`.
    pub async fn new(config: &aws_config::SdkConfig, queue_url: &str) -> Self {
        let client = Client::new(config);
        let attrs = client
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("the queue exists");
        let queue_arn = attrs
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
            .cloned()
            .unwrap_or_default();
        QueueMapping {
            client,
            queue_url: queue_url.into(),
            queue_arn,
        }
    }

    /// Feeds `workers` until `expected` messages were deleted and the queue gave nothing more,
    /// or `timeout` passed. SQS delivers at least once: a message may come twice (and be
    /// reconciled twice, idempotently), so `deleted` can exceed the messages sent.
    pub async fn drain(
        &self,
        workers: Vec<RuntimeStub>,
        expected: usize,
        timeout: Duration,
    ) -> Drained {
        let (deleted, batches, failed) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let until = Instant::now() + timeout;
        let mut tasks = Vec::new();
        for mut worker in workers {
            let (client, url, arn) = (
                self.client.clone(),
                self.queue_url.clone(),
                self.queue_arn.clone(),
            );
            let (deleted, batches, failed) = (deleted.clone(), batches.clone(), failed.clone());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < until {
                    let received = client
                        .receive_message()
                        .queue_url(&url)
                        .max_number_of_messages(10)
                        .wait_time_seconds(1)
                        .send()
                        .await;
                    let messages = received
                        .map(|r| r.messages.unwrap_or_default())
                        .unwrap_or_default();
                    if messages.is_empty() {
                        if deleted.load(Ordering::SeqCst) >= expected {
                            break;
                        }
                        continue;
                    }
                    batches.fetch_add(1, Ordering::SeqCst);
                    let (ok, body) = worker.invoke(&sqs_event(&messages, &arn).to_string()).await;
                    let refused: Vec<String> = if ok {
                        failures(&body)
                    } else {
                        messages
                            .iter()
                            .filter_map(|m| m.message_id.clone())
                            .collect()
                    };
                    failed.fetch_add(refused.len(), Ordering::SeqCst);
                    let done: Vec<&Message> = messages
                        .iter()
                        .filter(|m| !refused.iter().any(|r| Some(r.as_str()) == m.message_id()))
                        .collect();
                    if done.is_empty() {
                        continue;
                    }
                    let entries = done
                        .iter()
                        .enumerate()
                        .map(|(i, m)| {
                            DeleteMessageBatchRequestEntry::builder()
                                .id(i.to_string())
                                .receipt_handle(m.receipt_handle().unwrap_or_default())
                                .build()
                                .unwrap()
                        })
                        .collect();
                    let out = client
                        .delete_message_batch()
                        .queue_url(&url)
                        .set_entries(Some(entries))
                        .send()
                        .await
                        .expect("delete");
                    deleted.fetch_add(out.successful().len(), Ordering::SeqCst);
                }
            }));
        }
        for t in tasks {
            t.await.expect("a mapping task panicked");
        }
        Drained {
            deleted: deleted.load(Ordering::SeqCst),
            batches: batches.load(Ordering::SeqCst),
            failed: failed.load(Ordering::SeqCst),
        }
    }
}

/// The SQS event Lambda builds from received messages.
fn sqs_event(messages: &[Message], queue_arn: &str) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            json!({
                "messageId": m.message_id(), "receiptHandle": m.receipt_handle(), "body": m.body(),
                "attributes": {}, "messageAttributes": {}, "md5OfBody": m.md5_of_body(),
                "eventSource": "aws:sqs", "eventSourceARN": queue_arn, "awsRegion": crate::REGION,
            })
        })
        .collect();
    json!({"Records": records})
}

/// The message ids a partial-batch answer names as failed.
fn failures(body: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    v["batchItemFailures"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The most attempts in any one-second window [t, t + 1) of `times` (seconds): what a
/// per-second quota sees.
pub fn busiest_second(times: &[f64]) -> usize {
    let mut t = times.to_vec();
    t.sort_by(f64::total_cmp);
    let (mut best, mut start) = (0, 0);
    for end in 0..t.len() {
        while t[end] - t[start] >= 1.0 {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}
