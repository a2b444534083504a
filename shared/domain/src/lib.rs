//! meshca's domain: every EKS cluster its own Istio intermediate CA, signed by one root.
//!
//! This crate holds the rules — keys, CSRs, bundles and their validation, renewal, generation
//! tokens — the ports adapters plug into ([`Authority`] signs, [`Escrow`] keeps bundles,
//! [`Clusters`] finds clusters, [`Delivery`] writes into one, [`FanOut`] hands work on), and the
//! [`Reconciler`] that drives one cluster through them. It knows no AWS, Kubernetes, HTTP or
//! Lambda type: its dependency tree holds none of those crates, and a test checks that it stays
//! so. Adapters live in their own crates (`meshca-aws`, `meshca-kube`, `meshca-local`).
// Code that can fail at run time says so with an error; an `expect` is allowed where it
// cannot fail, with the reason. Tests unwrap freely.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod authority;
pub mod bundle;
pub mod cert;
pub mod cluster;
pub mod clusters;
pub mod crl;
pub mod csr;
pub mod delivery;
pub mod enforcement;
pub mod escrow;
pub mod fanout;
pub mod fleet_crls;
pub mod istio;
pub mod key;
pub mod kind;
pub mod ledger;
pub mod notice;
pub mod pace;
pub mod pem;
pub mod place;
pub mod reconcile;
pub mod renewal;
pub mod retry;
pub mod revocation;
pub mod rollout;
pub mod rotation;
pub mod settings;
pub mod terms;
pub mod timestamp;
pub mod validate;

pub use authority::{Authority, AuthorityError, AuthorityInfo, CertificateId, Validity};
pub use bundle::{Bundle, BundleMeta};
pub use cluster::ClusterName;
pub use clusters::{ClusterInfo, Clusters, ClustersError, OptIn};
pub use delivery::{Delivery, DeliveryOptions};
pub use escrow::{Escrow, EscrowError};
pub use fanout::{FanOut, ReconcileRequest};
pub use key::{KeyAlgorithm, PrivateKey};
pub use kind::{Identity, Kind, KindSpec, Template};
pub use place::{Account, AccountId, Place};
pub use reconcile::{Obtained, Outcome, ReconcileError, Reconciler, Secured, Settings, Step};
pub use renewal::{RenewReason, RenewalPolicy, Verdict};
pub use terms::{Terms, TermsChange};
pub use validate::{InvalidBundle, Profile, Shape, Verified};

/// An error and its sources on one line, each cause once: how adapters report a failure whose
/// reason (a TLS or connection cause, say) sits deep in the source chain.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !s.contains(&next) {
            s.push_str(": ");
            s.push_str(&next);
        }
        source = e.source();
    }
    s
}
