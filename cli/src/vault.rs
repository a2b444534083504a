//! `meshca issue --vault-addr …`: a Vault / OpenBao PKI mount as the authority, with the flags
//! and environment variables of the Vault CLI where it has them.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use meshca_wiring::{SecretSource, VaultLogin, VaultSpec};
use zeroize::Zeroizing;

#[derive(Debug, Args)]
pub struct VaultArgs {
    /// Issue from this Vault / OpenBao server instead of the local CA (https://vault.example:8200).
    #[arg(
        long,
        value_name = "URL",
        env = "VAULT_ADDR",
        help_heading = "Vault / OpenBao"
    )]
    pub vault_addr: Option<String>,

    /// The PKI mount that signs cluster intermediates.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "pki",
        requires = "vault_addr",
        help_heading = "Vault / OpenBao"
    )]
    pub vault_mount: String,

    /// An issuer of the mount (default: its default issuer).
    #[arg(
        long,
        value_name = "REF",
        requires = "vault_addr",
        help_heading = "Vault / OpenBao"
    )]
    pub vault_issuer: Option<String>,

    /// CA bundle (PEM) Vault's TLS certificate chains to (default: the system's roots).
    #[arg(
        long,
        value_name = "FILE",
        env = "VAULT_CACERT",
        requires = "vault_addr",
        help_heading = "Vault / OpenBao"
    )]
    pub vault_cacert: Option<PathBuf>,

    /// Vault Enterprise / OpenBao namespace.
    #[arg(
        long,
        value_name = "NS",
        env = "VAULT_NAMESPACE",
        requires = "vault_addr",
        help_heading = "Vault / OpenBao"
    )]
    pub vault_namespace: Option<String>,

    /// Read the token from this file (else VAULT_TOKEN; else an AppRole or AWS IAM login).
    #[arg(long, value_name = "FILE", requires = "vault_addr", conflicts_with_all = ["vault_role_id", "vault_aws_role"], help_heading = "Vault / OpenBao")]
    pub vault_token_file: Option<PathBuf>,

    /// Log in with AppRole: the role id (the secret id from --vault-secret-id-file).
    #[arg(long, value_name = "ID", requires_all = ["vault_addr", "vault_secret_id_file"], conflicts_with = "vault_aws_role", help_heading = "Vault / OpenBao")]
    pub vault_role_id: Option<String>,

    /// The AppRole secret id, in a file (never on the command line).
    #[arg(
        long,
        value_name = "FILE",
        requires = "vault_role_id",
        help_heading = "Vault / OpenBao"
    )]
    pub vault_secret_id_file: Option<PathBuf>,

    /// Log in with the AWS IAM method as this Vault role, signed with the current AWS identity.
    #[arg(
        long,
        value_name = "ROLE",
        requires = "vault_addr",
        help_heading = "Vault / OpenBao"
    )]
    pub vault_aws_role: Option<String>,

    /// Sign the IAM login for this region's STS endpoint (default: the global endpoint); Vault's
    /// `sts_endpoint` must match.
    #[arg(
        long,
        value_name = "REGION",
        requires = "vault_aws_role",
        help_heading = "Vault / OpenBao"
    )]
    pub vault_aws_sts_region: Option<String>,

    /// The X-Vault-AWS-IAM-Server-ID header value, if Vault's AWS method requires one.
    #[arg(
        long,
        value_name = "ID",
        requires = "vault_aws_role",
        help_heading = "Vault / OpenBao"
    )]
    pub vault_aws_server_id: Option<String>,

    /// Mount of the login method (default: approle, or aws).
    #[arg(
        long,
        value_name = "PATH",
        requires = "vault_addr",
        help_heading = "Vault / OpenBao"
    )]
    pub vault_auth_mount: Option<String>,
}

impl VaultArgs {
    /// The Vault authority asked for, `None` without --vault-addr. Secrets are read from files or
    /// VAULT_TOKEN, never from the command line.
    pub fn spec(&self) -> Result<Option<VaultSpec>> {
        let Some(addr) = &self.vault_addr else {
            return Ok(None);
        };
        if !addr.starts_with("https://") && !addr.starts_with("http://") {
            bail!("--vault-addr {addr:?} is not an http(s) URL");
        }
        let read = |what: &str, path: &PathBuf| -> Result<Zeroizing<String>> {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {what} from {}", path.display()))?;
            Ok(Zeroizing::new(text.trim().to_string()))
        };
        let mount = |default: &str| {
            self.vault_auth_mount
                .clone()
                .unwrap_or_else(|| default.into())
        };
        let login = if let Some(role) = &self.vault_aws_role {
            VaultLogin::AwsIam {
                mount: mount("aws"),
                role: role.clone(),
                sts_region: self.vault_aws_sts_region.clone(),
                server_id: self.vault_aws_server_id.clone(),
            }
        } else if let (Some(role_id), Some(file)) =
            (&self.vault_role_id, &self.vault_secret_id_file)
        {
            VaultLogin::AppRole {
                mount: mount("approle"),
                role_id: role_id.clone(),
                secret_id: SecretSource::Value(read("the AppRole secret id", file)?),
            }
        } else if let Some(file) = &self.vault_token_file {
            VaultLogin::Token(read("the Vault token", file)?)
        } else {
            let token = std::env::var("VAULT_TOKEN")
                .ok()
                .filter(|t| !t.trim().is_empty());
            let token = token.context("--vault-addr needs a login: VAULT_TOKEN, --vault-token-file, --vault-role-id with --vault-secret-id-file, or --vault-aws-role")?;
            VaultLogin::Token(Zeroizing::new(token.trim().to_string()))
        };
        let ca_pem = match &self.vault_cacert {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading --vault-cacert {}", path.display()))?,
            ),
            None => None,
        };
        Ok(Some(VaultSpec {
            addr: addr.clone(),
            ca_pem,
            namespace: self.vault_namespace.clone(),
            mount: self.vault_mount.clone(),
            issuer: self.vault_issuer.clone(),
            login,
        }))
    }
}
