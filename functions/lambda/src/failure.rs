//! What a function answers when an event fails. Lambda shows the answer's `errorType` beside the
//! message (in the console, in `cargo lambda invoke`, in dead-letter attributes); the runtime's
//! fallback would name a boxed trait object there, so every failure is one of these, named
//! `meshca.<Variant>`.

use lambda_runtime::Diagnostic;
use meshca_core::Step;

/// Why an invocation failed, by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum FunctionError {
    /// The event is not one this function takes (or is malformed): retrying will not help.
    #[error("{0}")]
    BadEvent(String),
    /// A cluster's reconcile failed at `step`: EventBridge retries, then dead-letters it.
    #[error("{step}: {error}")]
    ReconcileFailed {
        /// Where the pipeline stopped.
        step: Step,
        /// Why.
        error: String,
    },
    /// The sweep could list no region at all.
    #[error("no region could be listed: {0}")]
    NothingListed(String),
    /// The report could not be written as JSON.
    #[error("the report could not be serialised: {0}")]
    Report(#[from] serde_json::Error),
}

impl FunctionError {
    /// The `errorType` Lambda records.
    pub fn error_type(&self) -> &'static str {
        match self {
            FunctionError::BadEvent(_) => "meshca.BadEvent",
            FunctionError::ReconcileFailed { .. } => "meshca.ReconcileFailed",
            FunctionError::NothingListed(_) => "meshca.NothingListed",
            FunctionError::Report(_) => "meshca.Report",
        }
    }
}

impl From<FunctionError> for Diagnostic {
    fn from(e: FunctionError) -> Diagnostic {
        Diagnostic {
            error_type: e.error_type().into(),
            error_message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_type_names_meshca_and_the_message_says_it_once() {
        let d: Diagnostic = FunctionError::ReconcileFailed {
            step: Step::Issue,
            error: "CA is DISABLED".into(),
        }
        .into();
        assert_eq!(d.error_type, "meshca.ReconcileFailed");
        assert_eq!(d.error_message, "issue: CA is DISABLED");
        let d: Diagnostic = FunctionError::BadEvent("not an EKS event".into()).into();
        assert_eq!(
            (d.error_type.as_ref(), d.error_message.as_ref()),
            ("meshca.BadEvent", "not an EKS event")
        );
    }
}
