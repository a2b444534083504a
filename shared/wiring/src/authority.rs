//! Who signs: the authority a spec names (Private CA, Vault/OpenBao, the local CA), built
//! once, with its IssueCertificate budget.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_config::SdkConfig;
use meshca_aws::arn::CaArn;
use meshca_aws::{MemberRole, PcaAuthority, SecretsEscrow};
use meshca_core::Authority;
use meshca_core::pace::IssueBudget;
use meshca_local::{LocalCa, LocalRootSpec};
use meshca_vault::{Endpoint, Login, StsTarget, VaultPki};
use zeroize::Zeroizing;

use crate::WiringError;

/// Who signs cluster intermediates.
#[derive(Debug, Clone)]
pub enum AuthoritySpec {
    /// The embedded local CA kept in `dir`, created on first use.
    Local {
        /// Where the root and the issued certificates are kept.
        dir: PathBuf,
    },
    /// AWS Private CA, called in the CA's own region.
    Pca {
        /// The CA.
        ca: CaArn,
        /// `None`: SubordinateCACertificate_PathLen0/V1 in the CA's partition.
        template_arn: Option<String>,
        /// `None`: from the CA's key algorithm.
        signing_algorithm: Option<String>,
        /// IssueCertificate attempts per second, retries included; `None`: unpaced.
        issue_rate: Option<f64>,
        /// A role in the CA's account to call Private CA as (a CA in another account, reached
        /// by assuming a role there instead of an AWS RAM share); `None`: the caller's own.
        assume_role: Option<MemberRole>,
        /// `s3://bucket/key` of the CRLs of CAs above it that publish none to S3 (a root kept
        /// offline), for CRL mode.
        root_crls: Vec<String>,
    },
    /// A Vault / OpenBao PKI mount.
    Vault(VaultSpec),
}

impl AuthoritySpec {
    /// How a root rotation's record names this authority so any entry point can build it again:
    /// `local:<dir>`, the CA's ARN, or `vault:<mount>[/<issuer>]` (address and login are the
    /// caller's own).
    pub fn locator(&self) -> String {
        match self {
            AuthoritySpec::Local { dir } => format!("local:{}", dir.display()),
            AuthoritySpec::Pca { ca, .. } => ca.to_string(),
            AuthoritySpec::Vault(v) => format!(
                "vault:{}{}",
                v.mount,
                v.issuer
                    .as_deref()
                    .map(|i| format!("/{i}"))
                    .unwrap_or_default()
            ),
        }
    }

    /// The authority `locator` names, configured like `like` where the locator says nothing: a
    /// PCA keeps `like`'s issue rate, a Vault mount `like`'s address and login.
    pub fn from_locator(locator: &str, like: &AuthoritySpec) -> Result<AuthoritySpec, WiringError> {
        let fail = |reason: String| WiringError::Locator {
            locator: locator.to_string(),
            reason,
        };
        if locator.starts_with("arn:") {
            let ca = locator.parse::<CaArn>().map_err(|e| fail(e.to_string()))?;
            // The rotation's other CA is reached as the configured one is: same pace, same role,
            // the same offline root's CRLs.
            let (issue_rate, assume_role, root_crls) = match like {
                AuthoritySpec::Pca {
                    issue_rate,
                    assume_role,
                    root_crls,
                    ..
                } => (*issue_rate, assume_role.clone(), root_crls.clone()),
                _ => (None, None, Vec::new()),
            };
            return Ok(AuthoritySpec::Pca {
                ca,
                template_arn: None,
                signing_algorithm: None,
                issue_rate,
                assume_role,
                root_crls,
            });
        }
        if let Some(path) = locator.strip_prefix("vault:") {
            let AuthoritySpec::Vault(base) = like else {
                return Err(fail("a Vault mount is reached with the Vault address and login in force (--vault-addr and a login); give them".into()));
            };
            let (mount, issuer) = match path.split_once('/') {
                Some((m, i)) => (m.to_string(), Some(i.to_string())),
                None => (path.to_string(), None),
            };
            if mount.is_empty() {
                return Err(fail("no mount after vault:".into()));
            }
            return Ok(AuthoritySpec::Vault(VaultSpec {
                mount,
                issuer,
                ..base.clone()
            }));
        }
        let dir = locator.strip_prefix("local:").unwrap_or(locator);
        if dir.contains("://") {
            return Err(fail(
                "not an authority: expected local:<dir> (or a directory), a CA ARN, or vault:<mount>[/<issuer>]".into(),
            ));
        }
        if dir.is_empty() {
            return Err(fail(
                "expected local:<dir>, a CA ARN, or vault:<mount>[/<issuer>]".into(),
            ));
        }
        Ok(AuthoritySpec::Local {
            dir: PathBuf::from(dir),
        })
    }
}

/// Where Vault is, which mount signs, and how meshca logs in.
#[derive(Debug, Clone)]
pub struct VaultSpec {
    /// `https://vault.example:8200`.
    pub addr: String,
    /// PEM of the CA bundle Vault's TLS certificate chains to; `None`: the system's roots.
    pub ca_pem: Option<String>,
    /// The Vault Enterprise namespace (`X-Vault-Namespace`); `None`: the root namespace.
    pub namespace: Option<String>,
    /// The PKI mount, e.g. `pki`.
    pub mount: String,
    /// An issuer in the mount; `None`: its default issuer.
    pub issuer: Option<String>,
    /// How to log in.
    pub login: VaultLogin,
}

/// How to log in to Vault.
#[derive(Clone)]
pub enum VaultLogin {
    /// A token as is (`VAULT_TOKEN`, `--vault-token-file`), renewed while Vault allows it.
    Token(Zeroizing<String>),
    /// AppRole: a role id and a secret id.
    AppRole {
        /// The auth mount (`approle`).
        mount: String,
        /// The role's id: not a secret.
        role_id: String,
        /// Where the secret id comes from.
        secret_id: SecretSource,
    },
    /// The AWS IAM method, signed with the caller's AWS credentials.
    AwsIam {
        /// The auth mount (`aws`).
        mount: String,
        /// The Vault role bound to the caller's IAM role.
        role: String,
        /// The region of the STS endpoint to sign for; `None`: the global endpoint.
        sts_region: Option<String>,
        /// The `X-Vault-AWS-IAM-Server-ID` header the mount requires, if any.
        server_id: Option<String>,
    },
}

impl std::fmt::Debug for VaultLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VaultLogin::Token(_) => f.write_str("Token(<redacted>)"),
            VaultLogin::AppRole {
                mount,
                role_id,
                secret_id,
            } => write!(
                f,
                "AppRole {{ mount: {mount}, role_id: {role_id}, secret_id: {secret_id:?} }}"
            ),
            VaultLogin::AwsIam { mount, role, .. } => {
                write!(f, "AwsIam {{ mount: {mount}, role: {role} }}")
            }
        }
    }
}

/// A secret given as is, or read from Secrets Manager when the authority is built.
#[derive(Clone)]
pub enum SecretSource {
    /// The secret itself, wiped when dropped.
    Value(Zeroizing<String>),
    /// The id or ARN of the Secrets Manager secret that holds it.
    SecretsManager(String),
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::Value(_) => f.write_str("<redacted>"),
            SecretSource::SecretsManager(id) => write!(f, "secretsmanager:{id}"),
        }
    }
}

/// The authority `spec` names. `aws` is the SDK configuration of the caller (any region).
pub async fn authority(
    spec: &AuthoritySpec,
    aws: Option<&SdkConfig>,
) -> Result<Arc<dyn Authority>, WiringError> {
    authority_paced(spec, aws, issue_budget(spec)).await
}

/// The IssueCertificate budget `spec` asks for (a Private CA with an issue rate).
pub fn issue_budget(spec: &AuthoritySpec) -> Option<Arc<IssueBudget>> {
    match spec {
        AuthoritySpec::Pca {
            issue_rate: Some(rate),
            ..
        } => Some(Arc::new(IssueBudget::per_second(*rate))),
        _ => None,
    }
}

/// Creates a local CA in `dir` whose root has a `key_algorithm` key (the default root is EC
/// P-384; a mesh that pins its issuer's parent, like Linkerd, needs EC P-256). An existing CA is
/// opened, not replaced.
pub fn create_local_root(
    dir: &Path,
    key_algorithm: meshca_core::KeyAlgorithm,
) -> Result<(), WiringError> {
    let spec = LocalRootSpec {
        key_algorithm,
        ..LocalRootSpec::default()
    };
    LocalCa::open_or_create(dir, &spec)?;
    Ok(())
}

/// The authority `spec` names, its IssueCertificate calls spaced by `budget` (shared by every
/// Private CA of one deployment: PCA's quota is per account and region, not per CA).
pub async fn authority_paced(
    spec: &AuthoritySpec,
    aws: Option<&SdkConfig>,
    budget: Option<Arc<IssueBudget>>,
) -> Result<Arc<dyn Authority>, WiringError> {
    Ok(match spec {
        AuthoritySpec::Local { dir } => {
            Arc::new(LocalCa::open_or_create(dir, &LocalRootSpec::default())?)
        }
        AuthoritySpec::Pca {
            ca,
            template_arn,
            signing_algorithm,
            assume_role,
            root_crls,
            ..
        } => {
            let aws = aws.ok_or(WiringError::NoAws("AWS Private CA"))?;
            let assumed = match assume_role {
                Some(role) => Some(meshca_aws::member::member_config(aws, role).await),
                None => None,
            };
            let aws = assumed.as_ref().unwrap_or(aws);
            let mut pca = PcaAuthority::from_config(aws, ca, template_arn.clone())
                .with_signing_algorithm(signing_algorithm.clone())
                .with_root_crls(
                    root_crls
                        .iter()
                        .filter_map(|u| meshca_aws::pca_crl::CrlLocation::from_s3_url(u))
                        .collect(),
                );
            if let Some(budget) = budget {
                pca = pca.with_issue_budget(budget);
            }
            Arc::new(pca)
        }
        AuthoritySpec::Vault(v) => Arc::new(vault(v, aws).await?),
    })
}

async fn vault(spec: &VaultSpec, aws: Option<&SdkConfig>) -> Result<VaultPki, WiringError> {
    let endpoint = Endpoint {
        ca_pem: spec.ca_pem.clone(),
        namespace: spec.namespace.clone(),
        ..Endpoint::new(&spec.addr)
    };
    let login = match &spec.login {
        VaultLogin::Token(t) => Login::Token(t.clone()),
        VaultLogin::AppRole {
            mount,
            role_id,
            secret_id,
        } => {
            let secret_id = match secret_id {
                SecretSource::Value(v) => v.clone(),
                SecretSource::SecretsManager(id) => {
                    let aws = aws.ok_or(WiringError::NoAws(
                        "a Vault AppRole secret id in Secrets Manager",
                    ))?;
                    SecretsEscrow::read_string(aws, id)
                        .await
                        .map_err(WiringError::Secret)?
                }
            };
            Login::AppRole {
                mount: mount.clone(),
                role_id: role_id.clone(),
                secret_id,
            }
        }
        VaultLogin::AwsIam {
            mount,
            role,
            sts_region,
            server_id,
        } => {
            let aws = aws.ok_or(WiringError::NoAws("the Vault AWS IAM login"))?;
            let credentials = aws
                .credentials_provider()
                .ok_or(WiringError::NoAws("the Vault AWS IAM login (credentials)"))?;
            let sts = sts_region
                .clone()
                .map_or(StsTarget::Global, StsTarget::Regional);
            Login::AwsIam {
                mount: mount.clone(),
                role: role.clone(),
                sts,
                server_id: server_id.clone(),
                credentials,
            }
        }
    };
    Ok(VaultPki::new(
        endpoint,
        login,
        &spec.mount,
        spec.issuer.clone(),
    )?)
}
