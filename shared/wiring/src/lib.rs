//! Configuration in, ports out: the one place meshca's adapters are chosen and built, for the
//! `meshca` command and every Lambda function alike.
//!
//! Entry points describe what they want ([`AuthoritySpec`], [`EscrowSpec`], [`FleetSpec`]) and
//! get the domain's ports back as `Arc<dyn …>`, so handlers hold no adapter type and can be
//! driven by in-memory fakes in tests as well as by the emulators. A new authority is an
//! adapter crate plus one arm in [`authority`].
// Code that can fail at run time says so with an error; an `expect` is allowed where it
// cannot fail, with the reason. Tests unwrap freely.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub use meshca_aws::MemberRole;

mod authority;
mod delivery;
mod escrow;
mod files_delivery;
mod fleet;
pub use files_delivery::FilesDelivery;

pub use aws_config;
pub use meshca_aws::arn::{Arn, ArnError, CaArn};
pub use meshca_aws::events::RECONCILE_REQUESTED;
pub use meshca_aws::pca_crl::CrlLocation;
pub use meshca_aws::sdk_config;

pub use authority::{
    AuthoritySpec, SecretSource, VaultLogin, VaultSpec, authority, authority_paced,
    create_local_root, issue_budget,
};
pub use delivery::{
    eks_delivery, kubeconfig_delivery, manifest_file, read_bundle, write_crl_files, write_files,
    write_note,
};
pub use escrow::{
    EscrowSpec, escrow, escrow_at, escrow_prefix, escrowed_clusters, kms_key_for, rotation_store,
};
pub use fleet::{
    CA_DESCRIPTION_TTL, Fleet, FleetSpec, MemberSpec, RegionPorts, clusters, fan_out, in_region,
};

/// A port that could not be built from its spec.
#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    /// An AWS adapter was asked for without AWS configuration.
    #[error("{0} needs AWS configuration, and none was loaded")]
    NoAws(&'static str),
    /// The authority could not be opened or described.
    #[error(transparent)]
    Authority(#[from] meshca_core::AuthorityError),
    /// A cluster's API server could not be set up.
    #[error(transparent)]
    Connect(#[from] meshca_kube::ConnectError),
    /// An EKS cluster could not be described.
    #[error(transparent)]
    Eks(#[from] meshca_aws::eks::EksError),
    /// A Secret manifest could not be read.
    #[error(transparent)]
    Manifest(#[from] meshca_kube::secret::ManifestError),
    /// A bundle directory could not be read or written.
    #[error(transparent)]
    Files(#[from] meshca_local::files::FilesError),
    /// Vault could not be set up.
    #[error(transparent)]
    Vault(#[from] meshca_vault::VaultError),
    /// A credential (a Vault secret id in Secrets Manager) could not be read.
    #[error("{0}")]
    Secret(String),
    /// STS could not tell meshca's own account.
    #[error("meshca's own account: {0}")]
    Identity(String),
    /// An authority locator from a rotation record (`local:<dir>`, a CA ARN,
    /// `vault:<mount>[/<issuer>]`) that cannot be built again.
    #[error("authority {locator:?}: {reason}")]
    Locator {
        /// The locator given.
        locator: String,
        /// What is wrong with it.
        reason: String,
    },
}
