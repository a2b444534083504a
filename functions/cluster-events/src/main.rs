//! cluster-events: EventBridge (CloudTrail CreateCluster/DeleteCluster, `meshca Reconcile
//! Requested`) and direct invokes `{"cluster": …, "region": …, "force": false}`.
//!
//! Clients are built once per instance; the handler parses, delegates to `meshca_lambda`, logs
//! one JSON line and one EMF line, and returns the report. A failed reconcile is returned as an
//! error so EventBridge retries it and, in the end, dead-letters it.
// Code that can fail at run time says so with an error; an `expect` is allowed where it
// cannot fail, with the reason. Tests unwrap freely.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

// Only with the `mimalloc` feature, which bench/run measures beside the system allocator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use meshca_lambda::failure::FunctionError;
use meshca_lambda::{App, event, invocation, metrics};
use serde_json::Value;

// One event at a time: a single-threaded runtime spares the cross-thread wake-ups of the
// default one (about 1.5 ms of CPU per reconcile in bench/run). The sweep and the worker keep
// the multi-threaded runtime: they reconcile many clusters at once, and an RSA key generated
// on the only thread would stall every other cluster's calls and bunch the issue budget.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let app = invocation::start().await?;
    let app = &app;
    lambda_runtime::run(service_fn(move |e: LambdaEvent<Value>| handle(app, e))).await
}

async fn handle(app: &App, e: LambdaEvent<Value>) -> Result<Value, FunctionError> {
    let request = match event::parse(&e.payload) {
        Ok(r) => r,
        Err(err) => {
            tracing::warn!(request_id = %e.context.request_id, error = %err, "rejected");
            return Err(FunctionError::BadEvent(err.to_string()));
        }
    };
    let deadline = invocation::deadline_of(e.context.deadline);
    let report = app.handle(request, deadline).await;
    if let Some(doc) = metrics::cluster_metrics(&report, time::OffsetDateTime::now_utc()) {
        metrics::emit(&doc);
    }
    let body = serde_json::to_value(&report)?;
    tracing::info!(request_id = %e.context.request_id, report = %body, "done");
    match &report.outcome {
        meshca_core::Outcome::Failed { step, error } => Err(FunctionError::ReconcileFailed {
            step: *step,
            error: error.clone(),
        }),
        _ => Ok(body),
    }
}
