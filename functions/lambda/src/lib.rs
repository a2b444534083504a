//! What meshca's Lambda functions share. `main` of each function builds an [`App`] once and
//! hands every event to a thin handler here; all of it runs without Lambda in the tests.

pub mod config;
pub mod event;
pub mod invocation;
pub mod metrics;
pub mod sweep;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use meshca::aws::eks::{EksCluster, EksClusters, EksError};
use meshca::Authority;
use meshca::aws::{PcaAuthority, SecretsEscrow};
use meshca::converge::ClusterOutcome;
use meshca::k8s::{DeliveryOptions, KubeDelivery};
use meshca::reconcile::Step;
use meshca::{ClusterName, Reconcile};
use serde::Serialize;
use tracing::{info, warn};

pub use config::Config;
use event::Request;

/// One region's clients.
struct Region {
    eks: EksClusters,
    escrow: SecretsEscrow,
}

/// Clients built once per Lambda instance.
pub struct App {
    pub config: Config,
    authority: PcaAuthority,
    regions: BTreeMap<String, Region>,
    /// The function's own region: where fan-out events go.
    events: aws_sdk_eventbridge::Client,
}

/// The result of one event, as returned to the caller and logged.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub cluster: Option<String>,
    pub region: Option<String>,
    #[serde(flatten)]
    pub outcome: ClusterOutcome,
}

impl App {
    /// Builds the clients from the standard AWS configuration chain.
    pub async fn new(config: Config) -> anyhow::Result<Self> {
        Self::with_sdk_config(config, &meshca::aws::sdk_config(None).await)
    }

    /// Builds the clients from `home` (the function's own region and credentials): PCA in the
    /// CA's region, EKS and Secrets Manager in each managed region, EventBridge at home.
    pub fn with_sdk_config(config: Config, home: &aws_config::SdkConfig) -> anyhow::Result<Self> {
        let in_region = |r: &str| home.to_builder().region(aws_config::Region::new(r.to_string())).build();
        let pca = in_region(config.ca_region());
        let budget = std::sync::Arc::new(meshca::pace::IssueBudget::per_second(config.issue_rate));
        let authority = PcaAuthority::new(aws_sdk_acmpca::Client::new(&pca), config.ca_arn.clone(), config.template_arn.clone())?
            .with_issue_budget(budget);
        let mut regions = BTreeMap::new();
        for r in &config.regions {
            let sdk = in_region(r);
            let prefix = config.secret_prefix.clone().unwrap_or_else(|| SecretsEscrow::default_prefix(r));
            let escrow = SecretsEscrow::new(aws_sdk_secretsmanager::Client::new(&sdk), prefix)
                .with_kms_key(config.kms_key_for(r))
                .with_recovery_window(config.recovery_window_days);
            regions.insert(r.clone(), Region { eks: EksClusters::new(&sdk), escrow });
        }
        Ok(App { config, authority, regions, events: aws_sdk_eventbridge::Client::new(home) })
    }

    fn opted_in(&self, tags: &BTreeMap<String, String>) -> bool {
        tags.get(&self.config.tag_key).map(String::as_str) == Some(self.config.tag_value.as_str())
    }

    fn region(&self, region: Option<&str>) -> Result<(&str, &Region), String> {
        let name = region.unwrap_or(&self.config.regions[0]);
        self.regions
            .get_key_value(name)
            .map(|(k, v)| (k.as_str(), v))
            .ok_or_else(|| format!("region {name} is not managed (MESHCA_REGIONS = {})", self.config.regions.join(",")))
    }

    fn options(&self) -> DeliveryOptions {
        DeliveryOptions {
            adopt: self.config.adopt,
            restart: self.config.restart,
            profile: self.config.settings.profile.clone(),
            ..DeliveryOptions::default()
        }
    }

    /// Handles one parsed request; `deadline` is when the invocation must have answered.
    pub async fn handle(&self, request: Request, deadline: Instant) -> Report {
        let report = |cluster: Option<&str>, region: Option<&str>, outcome| Report {
            cluster: cluster.map(str::to_string),
            region: region.map(str::to_string),
            outcome,
        };
        match request {
            Request::FailedCall { event_name, error_code } => report(
                None,
                None,
                ClusterOutcome::Skipped { reason: format!("{event_name} failed with {error_code}; nothing was created or deleted") },
            ),
            Request::Sweep => report(None, None, ClusterOutcome::Skipped { reason: "schedule events go to expiry-sweep".into() }),
            Request::Created { cluster, region, tags } => {
                if !self.opted_in(&tags) {
                    let reason = format!("not opted in: tag {}={} absent from CreateCluster", self.config.tag_key, self.config.tag_value);
                    return report(Some(&cluster), Some(&region), ClusterOutcome::Skipped { reason });
                }
                let outcome = self.reconcile(&cluster, Some(&region), false, Some(deadline)).await;
                report(Some(&cluster), Some(&region), outcome)
            }
            Request::Reconcile { cluster, region, force } => {
                let outcome = self.reconcile(&cluster, region.as_deref(), force, None).await;
                report(Some(&cluster), region.as_deref().or(Some(&self.config.regions[0])), outcome)
            }
            Request::Deleted { cluster, region } => {
                let outcome = self.decommission(&cluster, &region).await;
                report(Some(&cluster), Some(&region), outcome)
            }
        }
    }

    /// Reconciles one cluster. With `wait_until`, a cluster that is not ACTIVE yet is polled
    /// until then (EKS sends no "cluster ACTIVE" event); otherwise it is skipped at once.
    pub async fn reconcile(&self, cluster: &str, region: Option<&str>, force: bool, wait_until: Option<Instant>) -> ClusterOutcome {
        let name: ClusterName = match cluster.parse() {
            Ok(n) => n,
            Err(e) => return ClusterOutcome::Skipped { reason: format!("{e}") },
        };
        let (_, r) = match self.region(region) {
            Ok(r) => r,
            Err(reason) => return ClusterOutcome::Skipped { reason },
        };
        let described = loop {
            let c = match r.eks.describe(cluster).await {
                Ok(c) => c,
                Err(EksError::NotFound(_)) => return ClusterOutcome::Skipped { reason: "no such EKS cluster".into() },
                Err(e) => return ClusterOutcome::Failed { step: Step::Observe, error: e.to_string() },
            };
            if c.is_active() {
                break c;
            }
            let poll = self.config.active_poll;
            match wait_until {
                // Keep 10 s in hand for the reconcile itself.
                Some(deadline) if Instant::now() + poll + Duration::from_secs(10) < deadline => tokio::time::sleep(poll).await,
                _ => {
                    return ClusterOutcome::Skipped {
                        reason: format!("not active yet ({}); the sweep will finish it", c.status),
                    };
                }
            }
        };
        if wait_until.is_none() && !self.opted_in(&described.tags) {
            return ClusterOutcome::Skipped {
                reason: format!("not opted in: tag {}={} absent", self.config.tag_key, self.config.tag_value),
            };
        }
        self.converge(&self.authority, &name, r, &described, force).await
    }

    async fn converge(&self, authority: &dyn Authority, name: &ClusterName, r: &Region, cluster: &EksCluster, force: bool) -> ClusterOutcome {
        let client = match r.eks.connect(cluster) {
            Ok(c) => c,
            Err(e) => return ClusterOutcome::Failed { step: Step::Deliver, error: e.to_string() },
        };
        let delivery = KubeDelivery::new(client, cluster.endpoint.clone().unwrap_or_default(), self.options());
        let reconcile = Reconcile { authority, escrow: &r.escrow, settings: &self.config.settings };
        let outcome = if self.config.dry_run {
            reconcile.plan(name, &delivery, force).await
        } else {
            reconcile.converge(name, &delivery, force).await
        };
        match &outcome {
            ClusterOutcome::Failed { step, error } => warn!(cluster = %name, step = %step, outcome = "failed", error = %error),
            other => info!(cluster = %name, outcome = other.label()),
        }
        outcome
    }

    async fn decommission(&self, cluster: &str, region: &str) -> ClusterOutcome {
        let name: ClusterName = match cluster.parse() {
            Ok(n) => n,
            Err(e) => return ClusterOutcome::Skipped { reason: format!("{e}") },
        };
        let (_, r) = match self.region(Some(region)) {
            Ok(r) => r,
            Err(reason) => return ClusterOutcome::Skipped { reason },
        };
        if self.config.dry_run {
            return ClusterOutcome::Planned { plan: "revoke the cluster's intermediates and retire its escrow".into() };
        }
        let reconcile = Reconcile { authority: &self.authority, escrow: &r.escrow, settings: &self.config.settings };
        reconcile.decommission(&name).await
    }
}
