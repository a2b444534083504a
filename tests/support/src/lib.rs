//! What meshca's tests and benchmark share: the emulated AWS (moto with the project's PCA,
//! EKS and EventBridge additions) and a real OpenBao dev server as child processes, and
//! pending-generation helpers.

pub mod aws;
pub mod envoy;
pub mod kube;
pub mod openssl;
pub mod pending;
pub mod queue;
pub mod runtime;
pub mod vault;

pub use aws::{AwsEmulator, REGION};
