//! Configuration from environment variables, checked at start-up: a bad value stops the
//! function before it takes any event, with a message naming the variable.

mod accounts;
mod kinds;
mod signer;

use std::time::Duration;

use meshca_core::delivery::RestartPolicy;
use meshca_core::{KeyAlgorithm, OptIn, Profile, RenewalPolicy, Settings, Validity};
use meshca_wiring::{AuthoritySpec, EscrowSpec, FleetSpec, MemberSpec};

pub use kinds::Kinds;
pub use signer::vault;

/// A setting the functions cannot start with: the variable, and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {var}: {problem}")]
pub struct ConfigError {
    /// The environment variable.
    pub var: &'static str,
    /// What is wrong with its value, and what would be right.
    pub problem: String,
}

/// Everything the functions are told by their environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// Who signs: MESHCA_AUTHORITY `pca` (default: MESHCA_CA_ARN, required, and
    /// MESHCA_TEMPLATE_ARN) or `vault` (MESHCA_VAULT_*; see [`vault`]).
    pub authority: AuthoritySpec,
    /// MESHCA_XCP_CA_ARN: the Private CA of TSB's XCP identities (xcp-central, mpc, xcp-edge),
    /// when not MESHCA_CA_ARN's (they often come from another CA than mesh intermediates).
    pub xcp_authority: Option<AuthoritySpec>,
    /// MESHCA_REGIONS: comma-separated regions whose clusters are managed; default AWS_REGION.
    pub regions: Vec<String>,
    /// MESHCA_ACCOUNTS: member accounts whose clusters are managed too; see `accounts::members`.
    pub members: Vec<MemberSpec>,
    /// MESHCA_SECURITY_ACCOUNT: an account whose revoke requests are honoured besides meshca's
    /// own (a security team's). Never a member: a member can never revoke.
    pub security_account: Option<meshca_core::AccountId>,
    /// MESHCA_TAG_KEY / MESHCA_TAG_VALUE: the opt-in tag (default meshca.io/enabled=true).
    pub opt_in: OptIn,
    /// MESHCA_KEY_ALGORITHM, MESHCA_VALIDITY_DAYS, MESHCA_RENEW_BEFORE_DAYS.
    pub settings: Settings,
    /// MESHCA_SECRET_PREFIX: default `meshca/<region>`.
    pub secret_prefix: Option<String>,
    /// MESHCA_KMS_KEY_ID: key for the escrow secrets.
    pub kms_key_id: Option<String>,
    /// MESHCA_RECOVERY_WINDOW_DAYS: how long a deleted cluster's escrow can be restored (7–30).
    pub recovery_window_days: i64,
    /// MESHCA_RESTART_ISTIOD: auto | always | never.
    pub restart: RestartPolicy,
    /// MESHCA_ADOPT: take over a cacerts meshca did not create.
    pub adopt: bool,
    /// MESHCA_DRY_RUN: decide and report, change nothing.
    pub dry_run: bool,
    /// MESHCA_CRL_MODE: after each sweep, write the fleet's CRLs into every istio-layout
    /// cluster's cacerts (`crls`). One-way once delivered: istiod keeps a CRL it has seen.
    pub crl_mode: bool,
    /// MESHCA_CRL_BUCKETS: the S3 buckets the Private CAs publish their CRLs to (their
    /// `CrlConfiguration`), comma-separated: the deployment lets the role read their objects
    /// and nothing else of S3. Required in CRL mode with a Private CA.
    pub crl_buckets: Vec<String>,
    /// MESHCA_ACTIVE_POLL_SECONDS: how often CreateCluster polls DescribeCluster for ACTIVE.
    pub active_poll: Duration,
    /// MESHCA_ISSUE_RATE: IssueCertificate attempts per second one function instance may make,
    /// retries included (default 20, below PCA's default quota of 25 so others keep some room).
    pub issue_rate: f64,
    /// MESHCA_SWEEP_CONCURRENCY: clusters a sweep works on at once (default 32).
    pub sweep_concurrency: usize,
    /// MESHCA_FANOUT_THRESHOLD: above this many opted-in clusters the sweep sends one
    /// `meshca Reconcile Requested` event per cluster instead of reconciling inline (default 1000).
    pub fanout_threshold: usize,
    /// MESHCA_EVENT_BUS: the bus for those events (default `default`).
    pub event_bus: String,
    /// MESHCA_WORK_QUEUE_URL: fan out as messages on this SQS queue instead, for renewal-worker
    /// (whose MESHCA_WORKER_CONCURRENCY, the queue's MaximumConcurrency, divides
    /// MESHCA_ISSUE_RATE: each worker takes its share of the deployment's rate).
    pub work_queue: Option<String>,
    /// MESHCA_VERIFY_EVERY: a healthy cluster's secrets are read back (and repaired if drifted)
    /// in one sweep out of this many (default 24: daily at the hourly schedule; 1: every sweep;
    /// 0: never, leaving drift to cluster events and renewals).
    /// In the others escrow's summary alone keeps it: no DescribeCluster, no record read, no
    /// call to the cluster. Its turn comes from a hash of its place and name.
    pub verify_every: u32,
    /// MESHCA_SWEEP_MINUTES: the sweep's schedule (default 60), which numbers the sweeps so
    /// every cluster's turn comes once in MESHCA_VERIFY_EVERY of them.
    pub sweep_period: Duration,
    /// Which kinds of certificate each cluster gets; see [`Kinds`].
    pub kinds: Kinds,
}

fn get(env: &dyn Fn(&str) -> Option<String>, var: &'static str) -> Option<String> {
    env(var)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn parse<T: std::str::FromStr>(
    env: &dyn Fn(&str) -> Option<String>,
    var: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match get(env, var) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|e: T::Err| ConfigError {
            var,
            problem: format!("{v:?}: {e}"),
        }),
    }
}

/// CRL mode and the buckets its Private CA CRLs are read from: a Private CA fleet in CRL mode
/// names them, since the role may read those alone.
fn crls(
    env: &dyn Fn(&str) -> Option<String>,
    authority: &AuthoritySpec,
) -> Result<(bool, Vec<String>), ConfigError> {
    let on = flag(env, "MESHCA_CRL_MODE")?;
    let buckets: Vec<String> = get(env, "MESHCA_CRL_BUCKETS")
        .map(|list| {
            list.split(',')
                .map(|b| b.trim().to_string())
                .filter(|b| !b.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if on && buckets.is_empty() && matches!(authority, AuthoritySpec::Pca { .. }) {
        return Err(ConfigError {
            var: "MESHCA_CRL_BUCKETS",
            problem: "CRL mode with a Private CA reads its CRLs from S3: name the buckets of the CAs' CrlConfiguration (the role may read those only)".into(),
        });
    }
    if let AuthoritySpec::Pca { root_crls, .. } = authority
        && let Some(outside) = root_crls.iter().find(|u| {
            meshca_wiring::CrlLocation::from_s3_url(u)
                .is_none_or(|at| !buckets.contains(&at.bucket))
        })
    {
        return Err(ConfigError {
            var: "MESHCA_ROOT_CRLS",
            problem: format!(
                "{outside} is not in a bucket of MESHCA_CRL_BUCKETS: the role may read only those"
            ),
        });
    }
    Ok((on, buckets))
}

fn flag(env: &dyn Fn(&str) -> Option<String>, var: &'static str) -> Result<bool, ConfigError> {
    match get(env, var).as_deref() {
        None | Some("false") | Some("0") | Some("no") => Ok(false),
        Some("true") | Some("1") | Some("yes") => Ok(true),
        Some(other) => Err(ConfigError {
            var,
            problem: format!("{other:?} is not true or false"),
        }),
    }
}

impl Config {
    /// The configuration in this process's environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from(&|k: &str| std::env::var(k).ok())
    }

    /// Reads the configuration through `env` (tests pass a map).
    pub fn from(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let issue_rate: f64 = parse(env, "MESHCA_ISSUE_RATE", 20.0)?;
        if !(issue_rate > 0.0 && issue_rate <= 1000.0) {
            return Err(ConfigError {
                var: "MESHCA_ISSUE_RATE",
                problem: format!("{issue_rate} is outside (0, 1000] calls per second"),
            });
        }
        // A worker is one of at most N consumers of the work queue: its share of the rate.
        let workers: u32 = parse(env, "MESHCA_WORKER_CONCURRENCY", 1)?;
        if !(1..=1000).contains(&workers) {
            return Err(ConfigError {
                var: "MESHCA_WORKER_CONCURRENCY",
                problem: format!("{workers} is outside 1..=1000 (the queue's MaximumConcurrency)"),
            });
        }
        let issue_rate = issue_rate / f64::from(workers);
        let authority = signer::authority(env, issue_rate)?;
        let xcp_authority = signer::xcp_authority(env, issue_rate)?;
        let regions: Vec<String> =
            match get(env, "MESHCA_REGIONS").or_else(|| get(env, "AWS_REGION")) {
                Some(list) => list
                    .split(',')
                    .map(|r| r.trim().to_string())
                    .filter(|r| !r.is_empty())
                    .collect(),
                None => vec![],
            };
        if regions.is_empty() {
            return Err(ConfigError {
                var: "MESHCA_REGIONS",
                problem: "no region: set MESHCA_REGIONS (or AWS_REGION)".into(),
            });
        }
        if let Some(bad) = regions.iter().find(|r| !accounts::is_region(r)) {
            return Err(ConfigError {
                var: "MESHCA_REGIONS",
                problem: format!("{bad:?} is not a region name"),
            });
        }
        let (crl_mode, crl_buckets) = crls(env, &authority)?;
        let members = accounts::members(env, &regions)?;
        let security_account = accounts::security(env, &members)?;
        let key_algorithm: KeyAlgorithm = parse(env, "MESHCA_KEY_ALGORITHM", KeyAlgorithm::EcP256)?;
        let validity_days: u32 = parse(env, "MESHCA_VALIDITY_DAYS", 365)?;
        if validity_days == 0 {
            return Err(ConfigError {
                var: "MESHCA_VALIDITY_DAYS",
                problem: "must be at least 1".into(),
            });
        }
        let renew_before = match get(env, "MESHCA_RENEW_BEFORE_DAYS") {
            None => None,
            Some(_) => {
                let d: u32 = parse(env, "MESHCA_RENEW_BEFORE_DAYS", 0)?;
                if d >= validity_days {
                    return Err(ConfigError {
                        var: "MESHCA_RENEW_BEFORE_DAYS",
                        problem: format!(
                            "{d} is not below MESHCA_VALIDITY_DAYS ({validity_days}): every run would renew"
                        ),
                    });
                }
                Some(time::Duration::days(d.into()))
            }
        };
        let renewal = RenewalPolicy { renew_before };
        if let Err(why) = renewal.check(
            time::Duration::days(validity_days.into()),
            Profile::default().min_remaining,
        ) {
            let var = if renew_before.is_some() {
                "MESHCA_RENEW_BEFORE_DAYS"
            } else {
                "MESHCA_VALIDITY_DAYS"
            };
            return Err(ConfigError {
                var,
                problem: why.to_string(),
            });
        }
        let recovery_window_days: i64 = parse(env, "MESHCA_RECOVERY_WINDOW_DAYS", 30)?;
        if !(7..=30).contains(&recovery_window_days) {
            return Err(ConfigError {
                var: "MESHCA_RECOVERY_WINDOW_DAYS",
                problem: format!("{recovery_window_days} is outside 7..=30"),
            });
        }
        let restart: RestartPolicy =
            get(env, "MESHCA_RESTART_ISTIOD").map_or(Ok(RestartPolicy::Auto), |v| {
                v.parse().map_err(|problem| ConfigError {
                    var: "MESHCA_RESTART_ISTIOD",
                    problem,
                })
            })?;
        let poll_seconds: u64 = parse(env, "MESHCA_ACTIVE_POLL_SECONDS", 15)?;
        let sweep_concurrency: usize = parse(env, "MESHCA_SWEEP_CONCURRENCY", 32)?;
        if !(1..=512).contains(&sweep_concurrency) {
            return Err(ConfigError {
                var: "MESHCA_SWEEP_CONCURRENCY",
                problem: format!("{sweep_concurrency} is outside 1..=512"),
            });
        }
        let verify_every: u32 = parse(env, "MESHCA_VERIFY_EVERY", 24)?;
        if verify_every > 10_000 {
            return Err(ConfigError {
                var: "MESHCA_VERIFY_EVERY",
                problem: format!("{verify_every} is over 10000 sweeps (0: never)"),
            });
        }
        let sweep_minutes: u64 = parse(env, "MESHCA_SWEEP_MINUTES", 60)?;
        if !(1..=7 * 24 * 60).contains(&sweep_minutes) {
            return Err(ConfigError {
                var: "MESHCA_SWEEP_MINUTES",
                problem: format!("{sweep_minutes} is outside 1..=10080 minutes"),
            });
        }
        Ok(Config {
            authority,
            xcp_authority,
            regions,
            members,
            security_account,
            opt_in: OptIn {
                key: get(env, "MESHCA_TAG_KEY").unwrap_or_else(|| OptIn::DEFAULT_KEY.into()),
                value: get(env, "MESHCA_TAG_VALUE").unwrap_or_else(|| "true".into()),
            },
            settings: Settings {
                key_algorithm,
                validity: Validity::Days(validity_days),
                profile: Profile {
                    key_algorithm: Some(key_algorithm),
                    ..Profile::default()
                },
                renewal,
                // The configuration is the fleet's statement of terms: a change applies at
                // each cluster's next renewal, and is reported and kept in its record.
                standing: meshca_core::reconcile::Standing::Configured,
                ..Settings::default()
            },
            secret_prefix: get(env, "MESHCA_SECRET_PREFIX"),
            kms_key_id: get(env, "MESHCA_KMS_KEY_ID"),
            recovery_window_days,
            restart,
            adopt: flag(env, "MESHCA_ADOPT")?,
            dry_run: flag(env, "MESHCA_DRY_RUN")?,
            crl_mode,
            crl_buckets,
            active_poll: Duration::from_secs(poll_seconds.max(1)),
            issue_rate,
            sweep_concurrency,
            fanout_threshold: parse(env, "MESHCA_FANOUT_THRESHOLD", 1000)?,
            event_bus: get(env, "MESHCA_EVENT_BUS").unwrap_or_else(|| "default".into()),
            work_queue: get(env, "MESHCA_WORK_QUEUE_URL"),
            verify_every,
            sweep_period: Duration::from_secs(sweep_minutes * 60),
            kinds: kinds::kinds(env)?,
        })
    }

    /// The ports this configuration asks for (see `meshca_wiring::Fleet`).
    pub fn fleet_spec(&self) -> FleetSpec {
        FleetSpec {
            authority: self.authority.clone(),
            xcp_authority: self.xcp_authority.clone(),
            escrow: EscrowSpec::SecretsManager {
                prefix: self.secret_prefix.clone(),
                kms_key_id: self.kms_key_id.clone(),
                recovery_window_days: Some(self.recovery_window_days),
            },
            regions: self.regions.clone(),
            members: self.members.clone(),
            event_bus: self.event_bus.clone(),
            work_queue: self.work_queue.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshca_wiring::{MemberRole, SecretSource, VaultLogin};
    use std::collections::HashMap;

    fn with(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from(&move |k: &str| map.get(k).cloned())
    }

    const ARN: &str = "arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/abc";

    #[test]
    fn defaults() {
        let c = with(&[("MESHCA_CA_ARN", ARN), ("AWS_REGION", "eu-west-1")]).unwrap();
        assert_eq!(c.regions, ["eu-west-1"]);
        assert_eq!(c.opt_in, OptIn::default());
        assert_eq!(c.settings.validity, Validity::Days(365));
        assert_eq!(c.recovery_window_days, 30);
        assert_eq!(c.restart, RestartPolicy::Auto);
        assert!(!c.adopt && !c.dry_run && !c.crl_mode);
        assert_eq!(
            (
                c.issue_rate,
                c.sweep_concurrency,
                c.fanout_threshold,
                c.event_bus.as_str()
            ),
            (20.0, 32, 1000, "default")
        );
        assert_eq!(
            (c.verify_every, c.sweep_period, c.work_queue.as_deref()),
            (24, Duration::from_secs(3600), None)
        );
        // A worker of four takes a quarter of the rate, in the authority's budget too.
        let w = with(&[
            ("MESHCA_CA_ARN", ARN),
            ("AWS_REGION", "eu-west-1"),
            ("MESHCA_ISSUE_RATE", "24"),
            ("MESHCA_WORKER_CONCURRENCY", "4"),
        ])
        .unwrap();
        assert_eq!(w.issue_rate, 6.0);
        assert!(
            matches!(&w.authority, AuthoritySpec::Pca { issue_rate: Some(r), .. } if *r == 6.0)
        );
        assert!(
            matches!(&c.authority, AuthoritySpec::Pca { ca, issue_rate: Some(r), .. } if ca.region() == "eu-west-1" && *r == 20.0)
        );
    }

    #[test]
    fn crl_mode_with_a_private_ca_names_the_buckets_its_crls_are_read_from() {
        let c = with(&[
            ("MESHCA_CA_ARN", ARN),
            ("MESHCA_REGIONS", "eu-west-1"),
            ("MESHCA_CRL_MODE", "true"),
            ("MESHCA_CRL_BUCKETS", "meshca-crls, root-crls"),
            ("MESHCA_ROOT_CRLS", "s3://root-crls/offline/root.crl"),
        ])
        .unwrap();
        assert!(c.crl_mode);
        assert_eq!(c.crl_buckets, ["meshca-crls", "root-crls"]);
        assert!(
            matches!(&c.authority, AuthoritySpec::Pca { root_crls, .. } if root_crls == &["s3://root-crls/offline/root.crl"])
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        let bad = |pairs: &[(&str, &str)], var: &str| {
            let e = with(pairs).unwrap_err();
            assert_eq!(e.var, var, "{e}");
            assert!(
                e.to_string().starts_with(&format!("configuration: {var}:")),
                "{e}"
            );
        };
        bad(&[], "MESHCA_CA_ARN");
        bad(&[("MESHCA_CA_ARN", "arn:aws:s3:::bucket")], "MESHCA_CA_ARN");
        bad(&[("MESHCA_CA_ARN", ARN)], "MESHCA_REGIONS");
        bad(
            &[
                ("MESHCA_CA_ARN", ARN),
                ("MESHCA_REGIONS", "eu-west-1,EU WEST"),
            ],
            "MESHCA_REGIONS",
        );
        let base = [
            ("MESHCA_CA_ARN", ARN),
            ("MESHCA_REGIONS", "eu-west-1, us-east-1"),
        ];
        let plus = |extra: (&'static str, &'static str)| -> Vec<(&str, &str)> {
            base.iter().copied().chain([extra]).collect()
        };
        bad(
            &plus(("MESHCA_KEY_ALGORITHM", "dsa")),
            "MESHCA_KEY_ALGORITHM",
        );
        bad(&plus(("MESHCA_VALIDITY_DAYS", "0")), "MESHCA_VALIDITY_DAYS");
        bad(&plus(("MESHCA_VALIDITY_DAYS", "1")), "MESHCA_VALIDITY_DAYS");
        bad(&plus(("MESHCA_VALIDITY_DAYS", "2")), "MESHCA_VALIDITY_DAYS");
        bad(
            &plus((
                "MESHCA_TSB_CENTRAL_ADDRESSES",
                "https://central.example:8443/",
            )),
            "MESHCA_TSB_CENTRAL_ADDRESSES",
        );
        bad(
            &plus(("MESHCA_VALIDITY_DAYS", "a year")),
            "MESHCA_VALIDITY_DAYS",
        );
        bad(
            &plus(("MESHCA_RENEW_BEFORE_DAYS", "400")),
            "MESHCA_RENEW_BEFORE_DAYS",
        );
        bad(
            &plus(("MESHCA_RECOVERY_WINDOW_DAYS", "3")),
            "MESHCA_RECOVERY_WINDOW_DAYS",
        );
        bad(
            &plus(("MESHCA_RESTART_ISTIOD", "sometimes")),
            "MESHCA_RESTART_ISTIOD",
        );
        bad(&plus(("MESHCA_ADOPT", "maybe")), "MESHCA_ADOPT");
        bad(&plus(("MESHCA_CRL_MODE", "on")), "MESHCA_CRL_MODE");
        bad(&plus(("MESHCA_CRL_MODE", "true")), "MESHCA_CRL_BUCKETS");
        bad(
            &plus(("MESHCA_ROOT_CRLS", "https://crl.example/root.crl")),
            "MESHCA_ROOT_CRLS",
        );
        bad(
            &plus(("MESHCA_ROOT_CRLS", "s3://other/root.crl")),
            "MESHCA_ROOT_CRLS",
        );
        bad(&plus(("MESHCA_ISSUE_RATE", "0")), "MESHCA_ISSUE_RATE");
        bad(
            &plus(("MESHCA_VERIFY_EVERY", "10001")),
            "MESHCA_VERIFY_EVERY",
        );
        bad(
            &plus(("MESHCA_WORKER_CONCURRENCY", "0")),
            "MESHCA_WORKER_CONCURRENCY",
        );
        bad(
            &plus(("MESHCA_VERIFY_EVERY", "daily")),
            "MESHCA_VERIFY_EVERY",
        );
        bad(&plus(("MESHCA_SWEEP_MINUTES", "0")), "MESHCA_SWEEP_MINUTES");
        bad(&plus(("MESHCA_ISSUE_RATE", "NaN")), "MESHCA_ISSUE_RATE");
        bad(
            &plus(("MESHCA_SWEEP_CONCURRENCY", "0")),
            "MESHCA_SWEEP_CONCURRENCY",
        );
        bad(
            &plus(("MESHCA_FANOUT_THRESHOLD", "-1")),
            "MESHCA_FANOUT_THRESHOLD",
        );
        assert_eq!(with(&base).unwrap().regions, ["eu-west-1", "us-east-1"]);
        let vault = [
            ("MESHCA_AUTHORITY", "vault"),
            ("MESHCA_REGIONS", "eu-west-1"),
        ];
        let with_vault = |extra: &[(&'static str, &'static str)]| -> Vec<(&str, &str)> {
            vault.iter().chain(extra).copied().collect()
        };
        bad(&plus(("MESHCA_AUTHORITY", "hsm")), "MESHCA_AUTHORITY");
        bad(&with_vault(&[]), "MESHCA_VAULT_ADDR");
        bad(
            &with_vault(&[("MESHCA_VAULT_ADDR", "vault:8200")]),
            "MESHCA_VAULT_ADDR",
        );
        bad(
            &with_vault(&[("MESHCA_VAULT_ADDR", "https://v:8200")]),
            "MESHCA_VAULT_ROLE_ID",
        );
        bad(
            &with_vault(&[
                ("MESHCA_VAULT_ADDR", "https://v:8200"),
                ("MESHCA_VAULT_ROLE_ID", "r"),
            ]),
            "MESHCA_VAULT_SECRET_ID_ARN",
        );
        bad(
            &with_vault(&[
                ("MESHCA_VAULT_ADDR", "https://v:8200"),
                ("MESHCA_VAULT_AUTH", "ldap"),
            ]),
            "MESHCA_VAULT_AUTH",
        );
        bad(
            &with_vault(&[
                ("MESHCA_VAULT_ADDR", "https://v:8200"),
                ("MESHCA_VAULT_AUTH", "aws-iam"),
            ]),
            "MESHCA_VAULT_AWS_ROLE",
        );
    }

    #[test]
    fn a_security_account_is_an_account_id_and_never_a_member() {
        let base = [
            ("MESHCA_CA_ARN", ARN),
            ("MESHCA_REGIONS", "eu-west-1"),
            ("MESHCA_ACCOUNTS", r#"[{"account": "222233334444"}]"#),
        ];
        let with_security = |id: &'static str| {
            let vars: Vec<(&str, &str)> = base
                .iter()
                .copied()
                .chain([("MESHCA_SECURITY_ACCOUNT", id)])
                .collect();
            with(&vars)
        };
        let c = with_security("777788889999").unwrap();
        assert_eq!(c.security_account.unwrap().as_str(), "777788889999");
        assert!(with(&base).unwrap().security_account.is_none());
        for (id, problem) in [
            ("security", "is not an AWS account id"),
            ("222233334444", "a member can never revoke"),
        ] {
            let e = with_security(id).unwrap_err();
            assert_eq!(e.var, "MESHCA_SECURITY_ACCOUNT");
            assert!(e.problem.contains(problem), "{id}: {}", e.problem);
        }
    }

    #[test]
    fn member_accounts_default_their_role_and_regions_and_refuse_what_would_cross_accounts() {
        let base = [
            ("MESHCA_CA_ARN", ARN),
            ("MESHCA_REGIONS", "eu-west-1,us-east-1"),
        ];
        let accounts = |json: &'static str| -> Vec<(&str, &str)> {
            base.iter()
                .copied()
                .chain([("MESHCA_ACCOUNTS", json)])
                .collect()
        };
        let c = with(&accounts(r#"[{"account": "222233334444"}, {"account": "333344445555", "role": "arn:aws:iam::333344445555:role/x", "externalId": "e", "regions": ["ap-south-1"]}]"#)).unwrap();
        assert_eq!(c.members.len(), 2);
        assert_eq!(
            c.members[0].role,
            MemberRole {
                role_arn: "arn:aws:iam::222233334444:role/meshca-member".into(),
                external_id: None
            }
        );
        assert_eq!(c.members[0].regions, ["eu-west-1", "us-east-1"]);
        assert_eq!(
            (
                c.members[1].role.external_id.as_deref(),
                c.members[1].regions.as_slice()
            ),
            (Some("e"), ["ap-south-1".to_string()].as_slice())
        );
        assert!(with(&base).unwrap().members.is_empty());
        for (json, says) in [
            ("222233334444", "not a JSON list"),
            (r#"[{"account": "2222"}]"#, "not an AWS account id"),
            (
                r#"[{"account": "222233334444"}, {"account": "222233334444"}]"#,
                "listed twice",
            ),
            (
                r#"[{"account": "222233334444", "role": "arn:aws:iam::333344445555:role/x"}]"#,
                "not an IAM role of that account",
            ),
            (
                r#"[{"account": "222233334444", "role": "arn:aws:iam::222233334444:user/x"}]"#,
                "not an IAM role of that account",
            ),
            (
                r#"[{"account": "222233334444", "regions": ["EU"]}]"#,
                "not a region name",
            ),
            (
                r#"[{"account": "222233334444", "region": ["eu-west-1"]}]"#,
                "unknown field",
            ),
        ] {
            let e = with(&accounts(json)).unwrap_err();
            assert_eq!(e.var, "MESHCA_ACCOUNTS");
            assert!(e.to_string().contains(says), "{json}: {e}");
        }
    }

    #[test]
    fn vault_needs_no_ca_arn_and_defaults_its_mount() {
        let c = with(&[
            ("MESHCA_AUTHORITY", "vault"),
            ("MESHCA_REGIONS", "eu-west-1"),
            ("MESHCA_VAULT_ADDR", "https://vault.example:8200"),
            ("MESHCA_VAULT_ROLE_ID", "role"),
            (
                "MESHCA_VAULT_SECRET_ID_ARN",
                "arn:aws:secretsmanager:eu-west-1:1:secret:meshca/vault-secret-id",
            ),
        ])
        .unwrap();
        let AuthoritySpec::Vault(v) = &c.authority else {
            panic!("{:?}", c.authority)
        };
        assert_eq!((v.mount.as_str(), v.issuer.as_deref()), ("pki", None));
        assert!(
            matches!(&v.login, VaultLogin::AppRole { mount, role_id, secret_id: SecretSource::SecretsManager(arn) }
            if mount == "approle" && role_id == "role" && arn.ends_with("meshca/vault-secret-id"))
        );
    }
}
