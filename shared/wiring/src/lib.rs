//! Configuration in, ports out: the one place meshca's adapters are chosen and built, for the
//! `meshca` command and every Lambda function alike.
//!
//! Entry points describe what they want ([`AuthoritySpec`], [`EscrowSpec`], [`FleetSpec`]) and
//! get the domain's ports back as `Arc<dyn …>`, so handlers hold no adapter type and can be
//! driven by in-memory fakes in tests as well as by the emulators. A new authority is an
//! adapter crate plus one arm in [`authority`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_config::SdkConfig;
pub use meshca_aws::MemberRole;
use meshca_aws::{
    EksClusters, EventBridgeFanOut, PcaAuthority, SecretsEscrow, SecretsRotationStore, SqsFanOut,
};
use meshca_core::kind::{Landing, Layout};
use meshca_core::pace::{DescribedFor, IssueBudget};
use meshca_core::rotation::{RootRotation, RotationStore};
use meshca_core::{AccountId, Place};
use meshca_core::{
    Authority, Bundle, BundleMeta, Clusters, Delivery, DeliveryOptions, Escrow, FanOut,
};
use meshca_kube::KubeDelivery;
use meshca_local::{LocalCa, LocalEscrow, LocalRootSpec, LocalRotationStore};
use meshca_vault::{Endpoint, Login, StsTarget, VaultPki};
use zeroize::Zeroizing;

mod files_delivery;
pub use files_delivery::FilesDelivery;

pub use aws_config;
pub use meshca_aws::arn::{Arn, ArnError, CaArn};
pub use meshca_aws::events::RECONCILE_REQUESTED;
pub use meshca_aws::sdk_config;

/// Who signs cluster intermediates.
#[derive(Debug, Clone)]
pub enum AuthoritySpec {
    /// The embedded local CA kept in `dir`, created on first use.
    Local { dir: PathBuf },
    /// AWS Private CA, called in the CA's own region.
    Pca {
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
            // The rotation's other CA is reached as the configured one is: same pace, same role.
            let (issue_rate, assume_role) = match like {
                AuthoritySpec::Pca {
                    issue_rate,
                    assume_role,
                    ..
                } => (*issue_rate, assume_role.clone()),
                _ => (None, None),
            };
            return Ok(AuthoritySpec::Pca {
                ca,
                template_arn: None,
                signing_algorithm: None,
                issue_rate,
                assume_role,
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
    pub namespace: Option<String>,
    /// The PKI mount, e.g. `pki`.
    pub mount: String,
    /// An issuer in the mount; `None`: its default issuer.
    pub issuer: Option<String>,
    pub login: VaultLogin,
}

/// How to log in to Vault.
#[derive(Clone)]
pub enum VaultLogin {
    Token(Zeroizing<String>),
    AppRole {
        mount: String,
        role_id: String,
        secret_id: SecretSource,
    },
    /// The AWS IAM method, signed with the caller's AWS credentials.
    AwsIam {
        mount: String,
        role: String,
        sts_region: Option<String>,
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
    Value(Zeroizing<String>),
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

/// Where bundles are escrowed.
#[derive(Debug, Clone)]
pub enum EscrowSpec {
    /// A directory on this machine.
    Local { dir: PathBuf },
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

#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    #[error("{0} needs AWS configuration, and none was loaded")]
    NoAws(&'static str),
    #[error("{0}")]
    Authority(#[from] meshca_core::AuthorityError),
    #[error("kubeconfig: {0}")]
    Connect(#[from] meshca_kube::ConnectError),
    #[error("{0}")]
    Eks(#[from] meshca_aws::eks::EksError),
    #[error("{0}")]
    Manifest(#[from] meshca_kube::secret::ManifestError),
    #[error("{0}")]
    Files(#[from] meshca_local::files::FilesError),
    #[error("{0}")]
    Vault(#[from] meshca_vault::VaultError),
    #[error("{0}")]
    Secret(String),
    #[error("meshca's own account: {0}")]
    Identity(String),
    #[error("authority {locator:?}: {reason}")]
    Locator { locator: String, reason: String },
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

/// `home` with its region set to `region`.
pub fn in_region(home: &SdkConfig, region: &str) -> SdkConfig {
    home.to_builder()
        .region(aws_config::Region::new(region.to_string()))
        .build()
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
            ..
        } => {
            let aws = aws.ok_or(WiringError::NoAws("AWS Private CA"))?;
            let assumed = match assume_role {
                Some(role) => Some(meshca_aws::member::member_config(aws, role).await),
                None => None,
            };
            let aws = assumed.as_ref().unwrap_or(aws);
            let mut pca = PcaAuthority::from_config(aws, ca, template_arn.clone())
                .with_signing_algorithm(signing_algorithm.clone());
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

/// The EKS clusters of `region`.
pub fn clusters(aws: &SdkConfig, region: &str) -> Arc<dyn Clusters> {
    Arc::new(EksClusters::new(&in_region(aws, region)))
}

/// Reconcile requests as SQS messages on the work queue if there is one, else as EventBridge
/// events on `bus`.
pub fn fan_out(aws: &SdkConfig, bus: &str, work_queue: Option<&str>) -> Arc<dyn FanOut> {
    match work_queue {
        Some(url) => Arc::new(SqsFanOut::new(aws, url)),
        None => Arc::new(EventBridgeFanOut::new(aws, bus)),
    }
}

/// Delivery into the cluster of a kubeconfig context (`None`: the current one) in `path`
/// (`None`: `$KUBECONFIG`, then `~/.kube/config`).
pub async fn kubeconfig_delivery(
    path: Option<&Path>,
    context: Option<&str>,
    options: DeliveryOptions,
) -> Result<Arc<dyn Delivery>, WiringError> {
    let (client, endpoint) = meshca_kube::from_context(path, context).await?;
    Ok(Arc::new(KubeDelivery::new(client, endpoint, options)))
}

/// Delivery into the EKS cluster `name`, found by DescribeCluster in the region of `aws`.
pub async fn eks_delivery(
    aws: &SdkConfig,
    name: &str,
    options: DeliveryOptions,
) -> Result<Arc<dyn Delivery>, WiringError> {
    let eks = EksClusters::new(aws);
    let cluster = eks.describe(name).await?;
    let client = eks.client(&cluster)?;
    Ok(Arc::new(KubeDelivery::new(
        client,
        cluster.endpoint.clone().unwrap_or_default(),
        options,
    )))
}

/// Writes the bundle as files into `dir`: the four PEM files and the manifest of the Secret at
/// `landing`.
/// In the TLS layout the files are the secret's own keys (`tls.crt`, `tls.key`, `ca.crt`) and the
/// manifest is `<secret name>.yaml`.
pub fn write_files(
    dir: &Path,
    bundle: &Bundle,
    meta: &BundleMeta,
    landing: &Landing,
) -> Result<(), WiringError> {
    let manifest = meshca_kube::secret::manifest(bundle, meta, landing);
    if landing.layout == Layout::IstioCacerts {
        return Ok(meshca_local::files::write_dir(
            dir,
            bundle,
            Some(&manifest),
        )?);
    }
    let data = meshca_kube::secret::data_of(bundle, landing.layout);
    let manifest_name = manifest_file(landing);
    let mut entries: Vec<(&str, &str, bool)> = data
        .iter()
        .map(|(n, t)| (*n, t.as_str(), *n == meshca_kube::secret::TLS_KEY))
        .collect();
    if let Some(anchors) = &landing.anchors {
        entries.push((anchors.key, &bundle.root_cert, false));
    }
    entries.push((&manifest_name, &manifest, true));
    Ok(meshca_local::files::write_all_or_nothing(dir, &entries)?)
}

/// The manifest's file name beside the files: `cacerts.yaml`, or `<secret name>.yaml`.
pub fn manifest_file(landing: &Landing) -> String {
    match landing.layout {
        Layout::IstioCacerts => meshca_local::files::MANIFEST.to_string(),
        Layout::Tls => format!("{}.yaml", landing.name),
    }
}

/// Reads a bundle from a directory of PEM files or a Secret manifest, with the manifest's
/// meshca record (none for a directory).
pub fn read_bundle(path: &Path) -> Result<(Bundle, Option<BundleMeta>), WiringError> {
    use meshca_kube::secret::{CA_CRT, TLS_CRT, TLS_KEY};
    if path.is_dir() && path.join(TLS_CRT).exists() {
        let read = |name: &str| {
            std::fs::read_to_string(path.join(name))
                .map(zeroize::Zeroizing::new)
                .map_err(|source| meshca_local::files::FilesError::Read {
                    path: path.join(name),
                    source,
                })
        };
        let (chain, key, root) = (read(TLS_CRT)?, read(TLS_KEY)?, read(CA_CRT)?);
        let bundle = meshca_kube::secret::from_tls_keys(&chain, &key, &root)
            .map_err(meshca_local::files::FilesError::Pem)?;
        return Ok((bundle, None));
    }
    if path.is_dir() {
        return Ok((meshca_local::files::read_dir(path)?, None));
    }
    let (bundle, annotations) = meshca_kube::secret::read_manifest(path)?;
    Ok((bundle, meshca_kube::secret::meta_from(&annotations)))
}

/// How long a function instance keeps its CA's description (state, certificate, chain): a
/// changed root or a disabled CA is seen within this time.
pub const CA_DESCRIPTION_TTL: std::time::Duration = std::time::Duration::from_secs(300);

/// What a fleet deployment (the Lambda functions) is made of.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    pub authority: AuthoritySpec,
    /// The CA of TSB's XCP identities, when it is not `authority`.
    pub xcp_authority: Option<AuthoritySpec>,
    pub escrow: EscrowSpec,
    /// Regions of meshca's own account whose clusters are managed; each gets its own EKS and
    /// escrow clients.
    pub regions: Vec<String>,
    /// Member accounts whose clusters are managed too, each through a role assumed there.
    pub members: Vec<MemberSpec>,
    /// The event bus fan-out requests go to, in the home region.
    pub event_bus: String,
    /// The work queue fan-out requests go to instead (renewal-worker consumes it).
    pub work_queue: Option<String>,
}

/// A member account: the role meshca assumes there and the regions of its clusters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSpec {
    pub account: AccountId,
    pub role: MemberRole,
    pub regions: Vec<String>,
}

/// One managed place's ports: its clusters (EKS with the place's credentials) and their escrow
/// (at home, always).
#[derive(Clone)]
pub struct RegionPorts {
    pub clusters: Arc<dyn Clusters>,
    pub escrow: Arc<dyn Escrow>,
}

/// Every port a fleet deployment uses, built once per Lambda instance.
#[derive(Clone)]
pub struct Fleet {
    pub authority: Arc<dyn Authority>,
    /// Signs xcp-central, mpc and xcp-edge when set; else `authority` does.
    pub xcp_authority: Option<Arc<dyn Authority>>,
    /// The IssueCertificate budget every Private CA of this deployment shares, if paced.
    pub issue_budget: Option<Arc<IssueBudget>>,
    /// Every managed region of every managed account.
    pub places: BTreeMap<Place, RegionPorts>,
    /// meshca's own account, when it has members (an event's `account` is compared with it).
    pub home_account: Option<AccountId>,
    pub fan_out: Arc<dyn FanOut>,
    /// The fleet's root rotation record (beside the first region's escrow), when it is kept.
    pub rotation: Option<Arc<dyn RotationStore>>,
    /// What `authority` was built from, and the AWS configuration to build the other side of a
    /// rotation with: see [`Fleet::rotation_authorities`].
    pub authority_spec: Option<AuthoritySpec>,
    pub home: Option<SdkConfig>,
}

impl Fleet {
    /// Builds the ports from `home` (the function's own region and credentials): the authority
    /// in the CA's region, EKS and escrow in each managed region, fan-out at home.
    pub async fn build(spec: &FleetSpec, home: &SdkConfig) -> Result<Self, WiringError> {
        let mut places = BTreeMap::new();
        for r in &spec.regions {
            let escrow = escrow(&spec.escrow, Some(home), Some(r))?;
            places.insert(
                Place::home(r),
                RegionPorts {
                    clusters: clusters(home, r),
                    escrow,
                },
            );
        }
        for m in &spec.members {
            let assumed = meshca_aws::member::member_config(home, &m.role).await;
            for r in &m.regions {
                let escrow = escrow_at(&spec.escrow, Some(home), Some(r), Some(&m.account))?;
                places.insert(
                    Place::member(m.account.clone(), r),
                    RegionPorts {
                        clusters: clusters(&assumed, r),
                        escrow,
                    },
                );
            }
        }
        let home_account = match spec.members.is_empty() {
            true => None,
            false => Some(home_account(home).await?),
        };
        // One budget for every Private CA of the deployment: the quota is the account's.
        let issue_budget = issue_budget(&spec.authority)
            .or_else(|| spec.xcp_authority.as_ref().and_then(issue_budget));
        let xcp_authority = match &spec.xcp_authority {
            Some(s) => Some(Arc::new(DescribedFor::new(
                authority_paced(s, Some(home), issue_budget.clone()).await?,
                CA_DESCRIPTION_TTL,
            )) as Arc<dyn Authority>),
            None => None,
        };
        let rotation = Some(rotation_store(
            &spec.escrow,
            Some(home),
            spec.regions.first().map(String::as_str),
        )?);
        let main = authority_paced(&spec.authority, Some(home), issue_budget.clone()).await?;
        Ok(Fleet {
            // An instance answers many events: the CA is described once per CA_DESCRIPTION_TTL.
            authority: Arc::new(DescribedFor::new(main, CA_DESCRIPTION_TTL)),
            issue_budget,
            xcp_authority,
            places,
            home_account,
            fan_out: fan_out(home, &spec.event_bus, spec.work_queue.as_deref()),
            rotation,
            authority_spec: Some(spec.authority.clone()),
            home: Some(home.clone()),
        })
    }

    /// Both sides of `rotation`, by authority id: the configured authority where a side's
    /// locator names it, else one built from the locator (configured like the authority in force).
    pub async fn rotation_authorities(
        &self,
        rotation: &RootRotation,
    ) -> Result<Vec<(String, Arc<dyn Authority>)>, WiringError> {
        let mut out = Vec::new();
        for anchor in [&rotation.from, &rotation.to] {
            let built = match &self.authority_spec {
                Some(spec) if spec.locator() == anchor.locator => self.authority.clone(),
                Some(spec) => {
                    authority_paced(
                        &AuthoritySpec::from_locator(&anchor.locator, spec)?,
                        self.home.as_ref(),
                        self.issue_budget.clone(),
                    )
                    .await?
                }
                None => continue,
            };
            out.push((anchor.authority_id.clone(), built));
        }
        Ok(out)
    }
}

/// meshca's own account, from STS: a member's event must never pass for a home one.
async fn home_account(home: &SdkConfig) -> Result<AccountId, WiringError> {
    let id = meshca_aws::member::caller_account(home)
        .await
        .map_err(WiringError::Identity)?;
    id.parse()
        .map_err(|e: meshca_core::place::BadAccountId| WiringError::Identity(e.to_string()))
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
