//! meshca: every EKS cluster its own Istio intermediate CA, signed by AWS Private CA.
//!
//! The domain — keys, CSRs, bundles and their validation, renewal policy, the reconcile
//! pipeline — knows no AWS or Kubernetes type. Adapters plug into its ports: [`Authority`]
//! (who signs), [`Escrow`] (where bundles are kept).

pub mod authority;
pub mod aws;
pub mod bundle;
pub mod cert;
pub mod cluster;
pub mod converge;
pub mod csr;
pub mod delivery;
pub mod escrow;
pub mod k8s;
pub mod key;
pub mod local_ca;
pub mod pace;
pub mod pem;
pub mod reconcile;
pub mod renewal;
pub mod retry;
pub mod validate;

pub use authority::{Authority, AuthorityError, AuthorityInfo, CertificateId, Validity};
pub use bundle::{Bundle, BundleMeta};
pub use cluster::ClusterName;
pub use escrow::{Escrow, EscrowError};
pub use key::{KeyAlgorithm, PrivateKey};
pub use local_ca::{LocalCa, LocalRootSpec};
pub use reconcile::{Action, Outcome, Reconcile, ReconcileError, Settings};
pub use renewal::{RenewReason, RenewalPolicy};
pub use validate::{InvalidBundle, Profile, Verified};
