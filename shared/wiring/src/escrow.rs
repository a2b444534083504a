//! Where bundles are kept: the escrow a spec names (a local directory, or Secrets Manager in
//! each cluster's region), its names per account and region, and the rotation record beside it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_config::SdkConfig;
use meshca_aws::arn::Arn;
use meshca_aws::{SecretsEscrow, SecretsRotationStore};
use meshca_core::AccountId;
use meshca_core::Escrow;
use meshca_core::rotation::RotationStore;
use meshca_local::{LocalEscrow, LocalRotationStore};

use crate::{WiringError, in_region};

/// Where bundles are escrowed.
#[derive(Debug, Clone)]
pub enum EscrowSpec {
    /// A directory on this machine.
    Local {
        /// The escrow directory (the CLI's default: `escrow/` in its state directory).
        dir: PathBuf,
    },
    /// One Secrets Manager secret per cluster, `<prefix>/<cluster>`, in the cluster's region.
    SecretsManager {
        /// `None`: `meshca/<region>`.
        prefix: Option<String>,
        /// A key id or alias is used as given in every region; a key ARN only in its own region.
        kms_key_id: Option<String>,
        /// `None`: Secrets Manager's default (30 days).
        recovery_window_days: Option<i64>,
    },
}

/// Where the fleet's root rotation record is kept, beside `escrow`: `rotation.json` in a local
/// escrow directory, or the secret `<prefix>/_rotation` (default `meshca/<region>/_rotation`)
/// in `region`, the fleet's first region.
pub fn rotation_store(
    escrow: &EscrowSpec,
    aws: Option<&SdkConfig>,
    region: Option<&str>,
) -> Result<Arc<dyn RotationStore>, WiringError> {
    Ok(match escrow {
        EscrowSpec::Local { dir } => Arc::new(LocalRotationStore::new(dir)),
        EscrowSpec::SecretsManager {
            prefix, kms_key_id, ..
        } => {
            let aws = aws.ok_or(WiringError::NoAws("the Secrets Manager rotation record"))?;
            let region = region
                .or(aws.region().map(|r| r.as_ref()))
                .ok_or(WiringError::NoAws("the rotation record (a region)"))?;
            let prefix = prefix
                .clone()
                .unwrap_or_else(|| SecretsEscrow::default_prefix(region));
            let name = meshca_aws::rotation::record_name(&prefix);
            Arc::new(SecretsRotationStore::from_config(
                &in_region(aws, region),
                name,
                kms_key_for(kms_key_id.as_deref(), region),
            ))
        }
    })
}

/// The clusters with an Istio intermediate in the local escrow at `dir`.
pub fn escrowed_clusters(dir: &Path) -> std::io::Result<Vec<meshca_core::ClusterName>> {
    LocalEscrow::new(dir).clusters()
}

/// The escrow `spec` names, for clusters of `region` in meshca's own account.
pub fn escrow(
    spec: &EscrowSpec,
    aws: Option<&SdkConfig>,
    region: Option<&str>,
) -> Result<Arc<dyn Escrow>, WiringError> {
    escrow_at(spec, aws, region, None)
}

/// The Secrets Manager name prefix of a place's records: `meshca/<region>` (or the configured
/// prefix) at home, as before accounts existed, so their records keep working without a
/// re-issue; `meshca/<account>/<region>` (or `<prefix>/<account>/<region>`) for a member.
pub fn escrow_prefix(prefix: Option<&str>, account: Option<&AccountId>, region: &str) -> String {
    match (prefix, account) {
        (Some(p), None) => p.to_string(),
        (None, None) => SecretsEscrow::default_prefix(region),
        (p, Some(account)) => format!("{}/{account}/{region}", p.unwrap_or("meshca")),
    }
}

/// The escrow of clusters in `region` of `account` (`None`: meshca's own). It is always kept in
/// meshca's own account (`aws`), in the cluster's region.
pub fn escrow_at(
    spec: &EscrowSpec,
    aws: Option<&SdkConfig>,
    region: Option<&str>,
    account: Option<&AccountId>,
) -> Result<Arc<dyn Escrow>, WiringError> {
    Ok(match spec {
        EscrowSpec::Local { dir } => Arc::new(LocalEscrow::new(match account {
            Some(a) => dir.join(a.as_str()),
            None => dir.clone(),
        })),
        EscrowSpec::SecretsManager {
            prefix,
            kms_key_id,
            recovery_window_days,
        } => {
            let aws = aws.ok_or(WiringError::NoAws("Secrets Manager escrow"))?;
            let region = region
                .or(aws.region().map(|r| r.as_ref()))
                .ok_or(WiringError::NoAws("Secrets Manager escrow (a region)"))?;
            let prefix = escrow_prefix(prefix.as_deref(), account, region);
            let mut escrow = SecretsEscrow::from_config(&in_region(aws, region), prefix)
                .with_kms_key(kms_key_for(kms_key_id.as_deref(), region));
            if let Some(days) = recovery_window_days {
                escrow = escrow.with_recovery_window(*days);
            }
            Arc::new(escrow)
        }
    })
}

/// The escrow key for secrets in `region`. A KMS key lives in one region and Secrets Manager
/// only uses keys of its own region: a key ARN applies to its region, whose other regions fall
/// back to the AWS-managed key; a key id or alias is taken as given everywhere.
pub fn kms_key_for(key: Option<&str>, region: &str) -> Option<String> {
    let key = key?;
    match key.parse::<Arn>() {
        Ok(arn) if arn.region != region => None,
        _ => Some(key.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_records_keep_their_names_and_members_are_keyed_by_account() {
        let member: AccountId = "222233334444".parse().unwrap();
        assert_eq!(escrow_prefix(None, None, "eu-west-1"), "meshca/eu-west-1");
        assert_eq!(
            escrow_prefix(Some("mesh/prod"), None, "eu-west-1"),
            "mesh/prod"
        );
        assert_eq!(
            escrow_prefix(None, Some(&member), "eu-west-1"),
            "meshca/222233334444/eu-west-1"
        );
        assert_eq!(
            escrow_prefix(Some("mesh/prod"), Some(&member), "eu-west-1"),
            "mesh/prod/222233334444/eu-west-1"
        );
    }

    #[test]
    fn a_kms_key_arn_serves_its_own_region_only() {
        let key = "arn:aws:kms:eu-west-1:111122223333:key/1234";
        assert_eq!(kms_key_for(Some(key), "eu-west-1").as_deref(), Some(key));
        assert_eq!(kms_key_for(Some(key), "us-east-1"), None);
        assert_eq!(
            kms_key_for(Some("alias/meshca"), "us-east-1").as_deref(),
            Some("alias/meshca")
        );
        assert_eq!(kms_key_for(None, "us-east-1"), None);
    }
}
