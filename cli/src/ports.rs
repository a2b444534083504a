//! The flags that choose the authority and the escrow, shared by every command that issues,
//! and the ports they build, seen through a root rotation when one has its say.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use meshca_core::rollout;
use meshca_core::rotation::{RootRotation, RotationStore};
use meshca_core::{Authority, Escrow};
use meshca_wiring::aws_config::SdkConfig;
use meshca_wiring::{AuthoritySpec, CaArn, EscrowSpec};

use crate::vault::VaultArgs;

#[derive(Debug, Args)]
pub struct AuthorityArgs {
    /// The local CA's directory (created on first use; root-key.pem is 0600).
    #[arg(long, value_name = "DIR", env = "MESHCA_CA_DIR")]
    pub ca_dir: Option<PathBuf>,

    /// Key algorithm of a local root this command creates (ec-p384 by default; ec-p256 for a
    /// fleet with linkerd-issuer, whose issuer Linkerd wants signed by a P-256 CA). A CA that
    /// exists keeps its key.
    #[arg(long, value_name = "ALG")]
    pub root_key_algorithm: Option<String>,

    /// Issue from this AWS Private CA instead of the local CA
    /// (arn:aws:acm-pca:<region>:<account>:certificate-authority/<id>). Uses the standard AWS
    /// credential chain; AWS_ENDPOINT_URL is honoured.
    #[arg(
        long,
        value_name = "ARN",
        env = "MESHCA_CA_ARN",
        conflicts_with = "vault_addr",
        help_heading = "AWS Private CA"
    )]
    pub ca_arn: Option<String>,

    /// AWS region (default: the region of --ca-arn, else AWS_REGION / the profile).
    #[arg(long, value_name = "REGION", help_heading = "AWS Private CA")]
    pub region: Option<String>,

    /// Call Private CA as this role of the CA's account (a CA in another account that is not
    /// shared with yours through AWS RAM): assumed with your credentials.
    #[arg(
        long,
        value_name = "ARN",
        requires = "ca_arn",
        help_heading = "AWS Private CA"
    )]
    pub ca_role_arn: Option<String>,

    /// CRL mode: where the CRL of a CA above the Private CA that publishes none to S3 (a root
    /// kept offline) was put, as s3://BUCKET/KEY; repeatable. Its lapse shows in `meshca fleet`.
    #[arg(
        long,
        value_name = "S3_URL",
        requires = "ca_arn",
        env = "MESHCA_ROOT_CRLS",
        value_delimiter = ',',
        value_parser = s3_url,
        help_heading = "AWS Private CA"
    )]
    pub root_crl: Vec<String>,

    /// The external id the --ca-role-arn role's trust policy requires, if any.
    #[arg(
        long,
        value_name = "ID",
        requires = "ca_role_arn",
        help_heading = "AWS Private CA"
    )]
    pub ca_external_id: Option<String>,

    /// PCA template (default: SubordinateCACertificate_PathLen0/V1 in the CA's partition).
    #[arg(long, value_name = "ARN", help_heading = "AWS Private CA")]
    pub template_arn: Option<String>,

    /// Signing algorithm (default: from the CA's key: RSA → SHA256WITHRSA, EC P-256 →
    /// SHA256WITHECDSA, EC P-384 → SHA384WITHECDSA).
    #[arg(long, value_name = "ALG", help_heading = "AWS Private CA")]
    pub signing_algorithm: Option<String>,

    #[command(flatten)]
    pub vault: VaultArgs,
}

#[derive(Debug, Args)]
pub struct EscrowArgs {
    /// Where bundles are escrowed between runs (holds keys; 0700), with --escrow local.
    #[arg(long, value_name = "DIR", env = "MESHCA_ESCROW_DIR")]
    pub escrow_dir: Option<PathBuf>,

    /// Where the escrow record lives: `local` (--escrow-dir) or `secrets-manager`.
    #[arg(long, value_name = "KIND", default_value = "local", value_parser = ["local", "secrets-manager"], help_heading = "Escrow")]
    pub escrow: String,

    /// Secrets Manager name prefix; the secret is <PREFIX>/<cluster> (default meshca/<region>).
    #[arg(long, value_name = "PREFIX", help_heading = "Escrow")]
    pub secret_prefix: Option<String>,

    /// KMS key that encrypts the escrow secret (default: the account's aws/secretsmanager key).
    #[arg(long, value_name = "KEY", help_heading = "Escrow")]
    pub kms_key_id: Option<String>,
}

impl AuthorityArgs {
    /// The key algorithm asked for a local root this command creates, if any.
    pub fn root_key(&self) -> Result<Option<meshca_core::KeyAlgorithm>> {
        self.root_key_algorithm
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--root-key-algorithm {e}"))
    }

    /// The key the local root this command would create gets.
    pub fn new_root_key(&self) -> Result<meshca_core::KeyAlgorithm> {
        Ok(self
            .root_key()?
            .unwrap_or(meshca_core::KeyAlgorithm::EcP384))
    }

    /// The local CA's directory when the flags name the local CA and it has no root yet (the
    /// first issue would create one there).
    pub fn missing_local_root(&self) -> Option<PathBuf> {
        if self.ca_arn.is_some() || self.vault.vault_addr.is_some() {
            return None;
        }
        let dir = self
            .ca_dir
            .clone()
            .unwrap_or_else(|| crate::default_state_dir().join("ca"));
        (!dir.join("root-cert.pem").exists()).then_some(dir)
    }
}

/// What the flags name, built (AWS configuration loaded only when one needs it).
pub struct Ports {
    pub spec: AuthoritySpec,
    pub authority: Arc<dyn Authority>,
    pub escrow_spec: EscrowSpec,
    pub escrow: Arc<dyn Escrow>,
    /// The AWS region in use, if AWS is.
    pub region: Option<String>,
    pub aws: Option<SdkConfig>,
    /// Whether the authority was named (--ca-dir, --ca-arn, --vault-addr) rather than defaulted.
    pub named: bool,
}

/// An `s3://BUCKET/KEY` location.
fn s3_url(text: &str) -> Result<String, String> {
    meshca_wiring::CrlLocation::from_s3_url(text)
        .map(|_| text.to_string())
        .ok_or_else(|| format!("{text:?} is not s3://BUCKET/KEY"))
}

impl Ports {
    pub async fn build(a: &AuthorityArgs, e: &EscrowArgs) -> Result<Ports> {
        let state = crate::default_state_dir();
        let ca = a
            .ca_arn
            .as_deref()
            .map(str::parse::<CaArn>)
            .transpose()
            .map_err(|err| anyhow::anyhow!("--ca-arn {err}"))?;
        let wants_aws =
            ca.is_some() || e.escrow == "secrets-manager" || a.vault.vault_aws_role.is_some();
        let region = a
            .region
            .clone()
            .or_else(|| ca.as_ref().map(|c| c.region().to_string()));
        let aws = if wants_aws {
            Some(meshca_wiring::sdk_config(region).await)
        } else {
            None
        };
        let region = aws.as_ref().and_then(|c| c.region()).map(|r| r.to_string());
        let spec = match (a.vault.spec()?, ca) {
            (Some(vault), _) => AuthoritySpec::Vault(vault),
            (None, Some(ca)) => AuthoritySpec::Pca {
                ca,
                template_arn: a.template_arn.clone(),
                signing_algorithm: a.signing_algorithm.clone(),
                issue_rate: None,
                assume_role: a
                    .ca_role_arn
                    .clone()
                    .map(|role_arn| meshca_wiring::MemberRole {
                        role_arn,
                        external_id: a.ca_external_id.clone(),
                    }),
                root_crls: a.root_crl.clone(),
            },
            (None, None) => AuthoritySpec::Local {
                dir: a.ca_dir.clone().unwrap_or_else(|| state.join("ca")),
            },
        };
        let new_root = match &spec {
            AuthoritySpec::Local { dir } if !dir.join("root-cert.pem").exists() => {
                Some(dir.clone())
            }
            _ => None,
        };
        if let (Some(dir), Some(alg)) = (&new_root, a.root_key()?) {
            meshca_wiring::create_local_root(dir, alg)?;
        }
        let authority = meshca_wiring::authority(&spec, aws.as_ref()).await?;
        if let Some(dir) = new_root {
            eprintln!(
                "meshca: created a new local root CA in {} (root-key.pem is its private key: keep it as you would any CA key)",
                dir.display()
            );
        }
        let escrow_spec = match e.escrow.as_str() {
            "secrets-manager" => {
                region.as_ref().context(
                    "--escrow secrets-manager needs a region: pass --region or set AWS_REGION",
                )?;
                EscrowSpec::SecretsManager {
                    prefix: e.secret_prefix.clone(),
                    kms_key_id: e.kms_key_id.clone(),
                    recovery_window_days: None,
                }
            }
            _ => EscrowSpec::Local {
                dir: e.escrow_dir.clone().unwrap_or_else(|| state.join("escrow")),
            },
        };
        let escrow = meshca_wiring::escrow(&escrow_spec, aws.as_ref(), region.as_deref())?;
        let named = a.ca_dir.is_some()
            || a.ca_arn.is_some()
            || !matches!(spec, AuthoritySpec::Local { .. });
        Ok(Ports {
            spec,
            authority,
            escrow_spec,
            escrow,
            region,
            aws,
            named,
        })
    }

    /// Where the fleet's root rotation record is kept: beside the escrow.
    pub fn rotation_store(&self) -> Result<Arc<dyn RotationStore>> {
        meshca_wiring::rotation_store(&self.escrow_spec, self.aws.as_ref(), self.region.as_deref())
            .map_err(Into::into)
    }

    /// The configured authority and the other side of `rotation`, by authority id.
    pub async fn authorities(
        &self,
        rotation: &RootRotation,
    ) -> Result<Vec<(String, Arc<dyn Authority>)>> {
        let own = self.authority.describe().await?.id;
        let mut out = vec![(own, self.authority.clone())];
        for anchor in [&rotation.from, &rotation.to] {
            if out.iter().any(|(id, _)| *id == anchor.authority_id) {
                continue;
            }
            let spec = AuthoritySpec::from_locator(&anchor.locator, &self.spec)?;
            let built = meshca_wiring::authority(&spec, self.aws.as_ref()).await?;
            let id = built
                .describe()
                .await
                .with_context(|| format!("the rotation's authority {}", anchor.locator))?
                .id;
            if id != anchor.authority_id {
                bail!(
                    "{} now names {id}, not {} as when the rotation started",
                    anchor.locator,
                    anchor.authority_id
                );
            }
            out.push((id, built));
        }
        Ok(out)
    }

    /// The authority a reconcile must use now: the configured one, or, while a root rotation
    /// runs, its phase's issuer and trust bundle. After a finished rotation the configured
    /// authority must be its target.
    pub async fn in_force(&self) -> Result<Arc<dyn Authority>> {
        let Some(rotation) = self.rotation_store()?.load().await? else {
            return Ok(self.authority.clone());
        };
        if rotation.is_active() {
            let authorities = self.authorities(&rotation).await?;
            return Ok(Arc::new(rollout::in_force(&rotation, &authorities)?));
        }
        self.after_rotation(&rotation).await
    }

    /// After a finished rotation the fleet's authority is the rotation's target: a defaulted
    /// authority that is the retired one gives way to it (said on stderr); the retired one named
    /// on purpose is refused.
    pub async fn after_rotation(&self, rotation: &RootRotation) -> Result<Arc<dyn Authority>> {
        let own = self.authority.describe().await?.id;
        let target = rotation.target();
        if own == target.authority_id || own != rotation.retiring().authority_id {
            return Ok(self.authority.clone());
        }
        let when = rotation
            .history
            .last()
            .map(|t| meshca_core::timestamp::rfc3339(t.at))
            .unwrap_or_default();
        if self.named {
            bail!(
                "this fleet's root was rotated away from {own} ({when}); issue from the new authority: {}",
                flag_for(&target.locator)
            );
        }
        eprintln!(
            "meshca: using {} ({}), the fleet's authority since its root rotation of {when}",
            target.locator,
            flag_for(&target.locator)
        );
        let authorities = self.authorities(rotation).await?;
        let (_, to) = authorities
            .into_iter()
            .find(|(id, _)| *id == target.authority_id)
            .context("the rotation's target")?;
        Ok(to)
    }
}

/// The flag that names the authority behind `locator`, for messages.
pub fn flag_for(locator: &str) -> String {
    if locator.starts_with("arn:") {
        format!("--ca-arn {locator}")
    } else if let Some(mount) = locator.strip_prefix("vault:") {
        let (mount, issuer) = mount
            .split_once('/')
            .map_or((mount, None), |(m, i)| (m, Some(i)));
        issuer.map_or_else(
            || format!("--vault-mount {mount}"),
            |i| format!("--vault-mount {mount} --vault-issuer {i}"),
        )
    } else {
        format!(
            "--ca-dir {}",
            locator.strip_prefix("local:").unwrap_or(locator)
        )
    }
}
