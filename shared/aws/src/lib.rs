//! meshca's AWS adapters: Private CA as the [`meshca_core::Authority`], Secrets Manager as the
//! [`meshca_core::Escrow`], EKS as the [`meshca_core::Clusters`] (reached with IAM tokens, written
//! to through `meshca-kube`), EventBridge as the [`meshca_core::FanOut`].
//!
//! Clients come from the standard credential chain; `AWS_ENDPOINT_URL` (or a per-service
//! `AWS_ENDPOINT_URL_<SERVICE>`) is honoured by the SDK's config loader, which is how the tests
//! point them at the emulator.
// Code that can fail at run time says so with an error; an `expect` is allowed where it
// cannot fail, with the reason. Tests unwrap freely.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod arn;
pub mod eks;
pub mod eks_token;
pub mod events;
pub mod member;
pub mod pca;
pub mod pca_audit;
pub mod pca_crl;
pub mod queue;
pub mod rotation;
pub mod secrets;

pub use arn::{Arn, CaArn};
pub use eks::EksClusters;
pub use events::{EventBridgeFanOut, EventBridgeNotices};
pub use member::MemberRole;
pub use pca::PcaAuthority;
pub use queue::SqsFanOut;
pub use rotation::SecretsRotationStore;
pub use secrets::SecretsEscrow;

/// Shared SDK configuration: region from the argument or the environment/profile chain.
pub async fn sdk_config(region: Option<String>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(r) = region {
        loader = loader.region(aws_config::Region::new(r));
    }
    loader.load().await
}

/// Code and message of any SDK error, for logs and typed errors (never a payload).
pub fn error_parts<E, R>(
    err: &aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> (String, String)
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_smithy_runtime_api::client::result::SdkError;
    match err {
        SdkError::ServiceError(s) => {
            let e = s.err();
            (
                e.code().unwrap_or("Unknown").to_string(),
                e.message().unwrap_or_default().to_string(),
            )
        }
        SdkError::TimeoutError(_) => ("Timeout".into(), "request timed out".into()),
        SdkError::DispatchFailure(d) => (
            "DispatchFailure".into(),
            format!("{:?}", d.as_connector_error()),
        ),
        other => (
            "Unknown".into(),
            aws_smithy_types::error::display::DisplayErrorContext(other).to_string(),
        ),
    }
}
