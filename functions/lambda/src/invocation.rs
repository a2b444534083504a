//! What both function binaries do around an invocation: JSON logs, and the deadline Lambda
//! gives as wall-clock milliseconds turned into an `Instant` the handlers can plan with.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// JSON log lines (one object per event, fields flattened), level from RUST_LOG (default info).
/// No timestamps: CloudWatch Logs stamps every line.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_current_span(false)
        .without_time()
        .init();
}

/// The invocation deadline (ms since the epoch) as an `Instant`.
pub fn deadline_of(deadline_ms: u64) -> Instant {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}
