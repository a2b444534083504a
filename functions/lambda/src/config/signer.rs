//! Who signs: AWS Private CA (with an optional role in the CA's account) or Vault / OpenBao.

use meshca_wiring::{
    ArnError, AuthoritySpec, CaArn, MemberRole, SecretSource, VaultLogin, VaultSpec,
};

use super::accounts::role_account;
use super::{ConfigError, get};

/// MESHCA_AUTHORITY: `pca` (default) or `vault`.
pub(super) fn authority(
    env: &dyn Fn(&str) -> Option<String>,
    issue_rate: f64,
) -> Result<AuthoritySpec, ConfigError> {
    match get(env, "MESHCA_AUTHORITY").as_deref().unwrap_or("pca") {
        "pca" => {
            let ca_arn = get(env, "MESHCA_CA_ARN").ok_or(ConfigError {
                var: "MESHCA_CA_ARN",
                problem: "is required".into(),
            })?;
            let ca: CaArn = ca_arn.parse().map_err(|e: ArnError| ConfigError {
                var: "MESHCA_CA_ARN",
                problem: e.to_string(),
            })?;
            let assume_role = ca_role(env)?;
            if let Some(role) = &assume_role
                && role_account(&role.role_arn).as_deref() != Some(ca.account())
            {
                return Err(ConfigError {
                    var: "MESHCA_CA_ROLE_ARN",
                    problem: format!(
                        "{} is not a role of the CA's account {}",
                        role.role_arn,
                        ca.account()
                    ),
                });
            }
            Ok(AuthoritySpec::Pca {
                ca,
                template_arn: get(env, "MESHCA_TEMPLATE_ARN"),
                signing_algorithm: None,
                issue_rate: Some(issue_rate),
                assume_role,
                root_crls: root_crls(env)?,
            })
        }
        "vault" => Ok(AuthoritySpec::Vault(vault(env)?)),
        other => Err(ConfigError {
            var: "MESHCA_AUTHORITY",
            problem: format!("{other:?} is not pca or vault"),
        }),
    }
}

/// MESHCA_XCP_CA_ARN: a Private CA of its own for TSB's XCP identities (the `xcp` signer).
pub(super) fn xcp_authority(
    env: &dyn Fn(&str) -> Option<String>,
    issue_rate: f64,
) -> Result<Option<AuthoritySpec>, ConfigError> {
    let Some(arn) = get(env, "MESHCA_XCP_CA_ARN") else {
        return Ok(None);
    };
    let ca: CaArn = arn.parse().map_err(|e: ArnError| ConfigError {
        var: "MESHCA_XCP_CA_ARN",
        problem: e.to_string(),
    })?;
    Ok(Some(AuthoritySpec::Pca {
        ca,
        template_arn: None,
        signing_algorithm: None,
        issue_rate: Some(issue_rate),
        assume_role: ca_role(env)?,
        // TSB's identities are in the kubernetes.io/tls layout: no CRL mode for them.
        root_crls: Vec::new(),
    }))
}

/// MESHCA_ROOT_CRLS: `s3://bucket/key` of each CRL a CA above the Private CA publishes none of
/// to S3 (a root kept offline), comma-separated.
pub(super) fn root_crls(env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<String>, ConfigError> {
    let Some(list) = get(env, "MESHCA_ROOT_CRLS") else {
        return Ok(Vec::new());
    };
    list.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| match meshca_wiring::CrlLocation::from_s3_url(u) {
            Some(_) => Ok(u.to_string()),
            None => Err(ConfigError {
                var: "MESHCA_ROOT_CRLS",
                problem: format!("{u:?} is not s3://BUCKET/KEY"),
            }),
        })
        .collect()
}

/// MESHCA_CA_ROLE_ARN (and MESHCA_CA_EXTERNAL_ID): a role in the CA's account that meshca
/// assumes to call Private CA, for a CA in another account not shared through AWS RAM.
pub(super) fn ca_role(
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<MemberRole>, ConfigError> {
    let Some(role_arn) = get(env, "MESHCA_CA_ROLE_ARN") else {
        return Ok(None);
    };
    if role_account(&role_arn).is_none() {
        return Err(ConfigError {
            var: "MESHCA_CA_ROLE_ARN",
            problem: format!("{role_arn:?} is not an IAM role ARN"),
        });
    }
    Ok(Some(MemberRole {
        role_arn,
        external_id: get(env, "MESHCA_CA_EXTERNAL_ID"),
    }))
}

/// Vault / OpenBao: MESHCA_VAULT_ADDR (required), MESHCA_VAULT_MOUNT (default `pki`),
/// MESHCA_VAULT_ISSUER, MESHCA_VAULT_NAMESPACE, MESHCA_VAULT_CACERT (PEM of the CA Vault's TLS
/// certificate chains to), and the login MESHCA_VAULT_AUTH: `approle` (MESHCA_VAULT_ROLE_ID and
/// MESHCA_VAULT_SECRET_ID_ARN, the Secrets Manager secret holding the secret id) or `aws-iam`
/// (MESHCA_VAULT_AWS_ROLE, optional MESHCA_VAULT_AWS_STS_REGION and MESHCA_VAULT_AWS_SERVER_ID);
/// MESHCA_VAULT_AUTH_MOUNT overrides the method's mount (`approle`, `aws`).
pub fn vault(env: &dyn Fn(&str) -> Option<String>) -> Result<VaultSpec, ConfigError> {
    let required = |var: &'static str| {
        get(env, var).ok_or(ConfigError {
            var,
            problem: "is required with MESHCA_AUTHORITY=vault".into(),
        })
    };
    let addr = required("MESHCA_VAULT_ADDR")?;
    if !addr.starts_with("https://") && !addr.starts_with("http://") {
        return Err(ConfigError {
            var: "MESHCA_VAULT_ADDR",
            problem: format!("{addr:?} is not an http(s) URL"),
        });
    }
    let auth_mount =
        |default: &str| get(env, "MESHCA_VAULT_AUTH_MOUNT").unwrap_or_else(|| default.into());
    let login = match get(env, "MESHCA_VAULT_AUTH")
        .as_deref()
        .unwrap_or("approle")
    {
        "approle" => VaultLogin::AppRole {
            mount: auth_mount("approle"),
            role_id: required("MESHCA_VAULT_ROLE_ID")?,
            secret_id: SecretSource::SecretsManager(required("MESHCA_VAULT_SECRET_ID_ARN")?),
        },
        "aws-iam" => VaultLogin::AwsIam {
            mount: auth_mount("aws"),
            role: required("MESHCA_VAULT_AWS_ROLE")?,
            sts_region: get(env, "MESHCA_VAULT_AWS_STS_REGION"),
            server_id: get(env, "MESHCA_VAULT_AWS_SERVER_ID"),
        },
        other => {
            return Err(ConfigError {
                var: "MESHCA_VAULT_AUTH",
                problem: format!("{other:?} is not approle or aws-iam"),
            });
        }
    };
    Ok(VaultSpec {
        addr,
        ca_pem: get(env, "MESHCA_VAULT_CACERT"),
        namespace: get(env, "MESHCA_VAULT_NAMESPACE"),
        mount: get(env, "MESHCA_VAULT_MOUNT").unwrap_or_else(|| "pki".into()),
        issuer: get(env, "MESHCA_VAULT_ISSUER"),
        login,
    })
}
