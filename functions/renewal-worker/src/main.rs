//! renewal-worker: the consumer of the sweep's work queue. SQS is its event source with a
//! MaximumConcurrency N, and MESHCA_WORKER_CONCURRENCY=N gives each instance 1/N of
//! MESHCA_ISSUE_RATE: Lambda bounds the instances, so N workers together stay within the
//! Private CA quota however large the fleet. See `meshca_lambda::work`.
//!
//! Answers with the partial-batch response: the messages whose reconcile failed come back and,
//! after the queue's maxReceiveCount, rest in its dead-letter queue.
// Code that can fail at run time says so with an error; an `expect` is allowed where it
// cannot fail, with the reason. Tests unwrap freely.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

use lambda_runtime::{Error, LambdaEvent, service_fn};
use meshca_lambda::failure::FunctionError;
use meshca_lambda::work::WorkBatch;
use meshca_lambda::{App, invocation, metrics};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let app = invocation::start().await?;
    let app = &app;
    lambda_runtime::run(service_fn(move |e: LambdaEvent<Value>| handle(app, e))).await
}

async fn handle(app: &App, e: LambdaEvent<Value>) -> Result<Value, FunctionError> {
    let batch: WorkBatch = match serde_json::from_value(e.payload) {
        Ok(b) => b,
        Err(err) => {
            let err = format!(
                "renewal-worker takes SQS batches of reconcile requests (the work queue): {err}"
            );
            tracing::warn!(request_id = %e.context.request_id, error = %err, "rejected");
            return Err(FunctionError::BadEvent(err));
        }
    };
    let deadline = invocation::deadline_of(e.context.deadline);
    let worked = app.work(batch, deadline).await;
    let now = time::OffsetDateTime::now_utc();
    for (message_id, report) in &worked.reports {
        if let Some(doc) = metrics::cluster_metrics(report, now) {
            metrics::emit(&doc);
        }
        tracing::info!(request_id = %e.context.request_id, message_id = %message_id, report = %serde_json::to_value(report)?, "done");
    }
    Ok(serde_json::to_value(&worked.response)?)
}
