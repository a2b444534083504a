//! meshca's Kubernetes adapter: [`connect`] reaches a cluster's API (kubeconfig context, or an
//! endpoint, its CA and a bearer-token source), [`KubeDelivery`] writes and reads `cacerts`, and
//! [`secret`] is the one place the Secret is rendered and read; [`readers`] finds who enforces
//! the CRLs.
// Code that can fail at run time says so with an error; an `expect` is allowed where it
// cannot fail, with the reason. Tests unwrap freely.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod connect;
pub mod delivery;
pub mod readers;
pub mod secret;

pub use kube::Client;

pub use connect::{ConnectError, TokenSource, from_context, from_endpoint};
pub use delivery::{ISTIOD_SELECTOR, KubeDelivery, RESTARTED_AT};
