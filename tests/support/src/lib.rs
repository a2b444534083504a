//! What meshca's tests and benchmark share: the emulated AWS (moto with the project's PCA,
//! EKS and EventBridge additions) as a child process, and pending-generation helpers.

pub mod aws;
pub mod pending;

pub use aws::{AwsEmulator, REGION};
