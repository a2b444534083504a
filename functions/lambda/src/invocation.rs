//! What both function binaries do around an invocation: JSON logs, and the deadline Lambda
//! gives as wall-clock milliseconds turned into an `Instant` the handlers can plan with.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// JSON log lines (one object per event, fields flattened), level from RUST_LOG (default info).
/// No timestamps: CloudWatch Logs stamps every line.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_current_span(false)
        .without_time()
        .init();
}

/// What both `main`s do before taking events: JSON logs, the configuration (a bad value stops
/// the function here, naming the variable), the clients.
pub async fn start() -> anyhow::Result<crate::App> {
    init_logging();
    let config = crate::Config::from_env()?;
    crate::App::new(config).await
}

/// Lambda's longest timeout, assumed when the deadline given makes no sense.
pub const LONGEST: Duration = Duration::from_secs(900);

/// The invocation deadline (ms since the epoch) as an `Instant`.
///
/// Lambda's deadline is always ahead when an invocation starts. One already past is not a real
/// deadline — `cargo lambda watch` sends a constant 600000, ten minutes after 1970 — and
/// taking it literally would make every handler give up at once, so it is read as "not known"
/// and Lambda's longest timeout is assumed.
pub fn deadline_of(deadline_ms: u64) -> Instant {
    deadline_at(deadline_ms, SystemTime::now())
}

fn deadline_at(deadline_ms: u64, now: SystemTime) -> Instant {
    let now_ms = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    if deadline_ms <= now_ms {
        tracing::warn!(
            deadline_ms,
            "the invocation deadline is already past; assuming Lambda's longest timeout (900 s)"
        );
        return Instant::now() + LONGEST;
    }
    Instant::now() + Duration::from_millis(deadline_ms - now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_deadline_is_kept_and_a_past_one_means_the_longest_timeout() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let now_ms = 1_800_000_000_000;
        let left = |d: Instant| d.saturating_duration_since(Instant::now()).as_secs_f64();
        assert!((left(deadline_at(now_ms + 30_000, now)) - 30.0).abs() < 1.0);
        assert!(
            (left(deadline_at(600_000, now)) - 900.0).abs() < 1.0,
            "cargo lambda watch's constant"
        );
        assert!((left(deadline_at(now_ms, now)) - 900.0).abs() < 1.0);
    }
}
