//! meshca's Kubernetes adapter: [`connect`] reaches a cluster's API (kubeconfig context, or an
//! endpoint, its CA and a bearer-token source), [`KubeDelivery`] writes and reads `cacerts`, and
//! [`secret`] is the one place the Secret is rendered and read.

pub mod connect;
pub mod delivery;
pub mod secret;

pub use kube::Client;

pub use connect::{ConnectError, TokenSource, from_context, from_endpoint};
pub use delivery::{ISTIOD_SELECTOR, KubeDelivery, RESTARTED_AT};
