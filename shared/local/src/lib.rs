//! meshca's embedded adapters, for a laptop or a CI job with no AWS account: the local file CA
//! ([`LocalCa`], an [`meshca_core::Authority`]), escrow in a directory ([`LocalEscrow`]), and
//! bundles written to and read from files ([`files`]), and a root rotation's record
//! ([`LocalRotationStore`]).
// Code that can fail at run time says so with an error; an `expect` is allowed where it
// cannot fail, with the reason. Tests unwrap freely.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod ca;
pub mod escrow;
pub mod files;
pub mod rotation;

pub use ca::{LocalCa, LocalRootSpec};
pub use escrow::LocalEscrow;
pub use rotation::LocalRotationStore;
