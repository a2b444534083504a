//! expiry-sweep: on a schedule (or any invoke with `{}`), renews what is due across every
//! managed region and repairs drifted `cacerts`; see `meshca_lambda::sweep`.
//!
//! Returns the report and logs it as one JSON line, with one EMF line per cluster and one for
//! the fleet. Failed clusters do not fail the invocation (a retry would redo the whole fleet):
//! they are in the report and in the `ClustersFailed` metric the alarm watches. When no
//! region can be listed at all, the invocation fails.
// Code that can fail at run time says so with an error; an `expect` is allowed where it
// cannot fail, with the reason. Tests unwrap freely.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

use lambda_runtime::{Error, LambdaEvent, service_fn};
use meshca_lambda::event::{self, Request};
use meshca_lambda::failure::FunctionError;
use meshca_lambda::{App, invocation, metrics};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let app = invocation::start().await?;
    let app = &app;
    lambda_runtime::run(service_fn(move |e: LambdaEvent<Value>| handle(app, e))).await
}

async fn handle(app: &App, e: LambdaEvent<Value>) -> Result<Value, FunctionError> {
    let empty = e.payload.as_object().is_some_and(|o| o.is_empty());
    if !empty && event::parse(&e.payload) != Ok(Request::Sweep) {
        let err = "expiry-sweep takes the schedule event (detail-type \"Scheduled Event\") or {}; send cluster events to cluster-events";
        tracing::warn!(request_id = %e.context.request_id, error = err, "rejected");
        return Err(FunctionError::BadEvent(err.into()));
    }
    let deadline = invocation::deadline_of(e.context.deadline);
    let remaining_ms = deadline
        .saturating_duration_since(std::time::Instant::now())
        .as_millis() as u64;
    tracing::info!(request_id = %e.context.request_id, remaining_ms, "sweep started");
    let report = app.sweep(deadline).await;
    let now = time::OffsetDateTime::now_utc();
    for doc in report
        .clusters
        .iter()
        .filter_map(|c| metrics::cluster_metrics(c, now))
    {
        metrics::emit(&doc);
    }
    metrics::emit(&metrics::sweep_metrics(&report, now));
    tracing::info!(
        request_id = %e.context.request_id,
        checked = report.checked,
        unchanged = report.unchanged,
        delivered = report.delivered,
        renewed = report.renewed,
        skipped = report.skipped,
        failed = report.failed,
        fanned_out = report.fanned_out,
        soonest_expiry = ?report.soonest_expiry,
        "sweep done"
    );
    if !report.errors.is_empty() && report.checked == 0 {
        return Err(FunctionError::NothingListed(report.errors.join("; ")));
    }
    Ok(serde_json::to_value(&report)?)
}
