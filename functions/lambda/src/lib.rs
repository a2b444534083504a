//! What meshca's Lambda functions share. `main` of each function builds an [`App`] once — its
//! ports come from `meshca-wiring` — and hands every event to a thin handler here; all of it
//! runs without Lambda in the tests, over the emulators or over in-memory fakes.

pub mod config;
pub mod event;
pub mod invocation;
pub mod metrics;
pub mod sweep;

use std::time::{Duration, Instant};

use meshca_core::clusters::{ClusterInfo, ClustersError};
use meshca_core::{ClusterName, DeliveryOptions, Outcome, Reconciler, Step};
use meshca_wiring::{Fleet, RegionPorts};
use serde::Serialize;
use tracing::{info, warn};

pub use config::Config;
use event::Request;

/// Configuration and ports, built once per Lambda instance.
pub struct App {
    pub config: Config,
    pub(crate) fleet: Fleet,
}

/// The result of one event, as returned to the caller and logged.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub cluster: Option<String>,
    pub region: Option<String>,
    #[serde(flatten)]
    pub outcome: Outcome,
}

impl App {
    /// Builds the ports from the standard AWS configuration chain.
    pub async fn new(config: Config) -> anyhow::Result<Self> {
        Self::with_sdk_config(config, &meshca_wiring::sdk_config(None).await).await
    }

    /// Builds the ports from `home`, the function's own region and credentials (see
    /// [`Fleet::build`]).
    pub async fn with_sdk_config(config: Config, home: &meshca_wiring::aws_config::SdkConfig) -> anyhow::Result<Self> {
        let fleet = Fleet::build(&config.fleet_spec(), home).await?;
        Ok(Self::with_fleet(config, fleet))
    }

    /// Over ports built elsewhere (in-memory fakes in tests).
    pub fn with_fleet(config: Config, fleet: Fleet) -> Self {
        App { config, fleet }
    }

    fn region(&self, region: Option<&str>) -> Result<(&str, &RegionPorts), String> {
        let name = region.unwrap_or(&self.config.regions[0]);
        self.fleet
            .regions
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

    pub(crate) fn reconciler<'a>(&'a self, authority: &'a dyn meshca_core::Authority, r: &'a RegionPorts) -> Reconciler<'a> {
        Reconciler { authority, escrow: r.escrow.as_ref(), settings: &self.config.settings }
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
                Outcome::Skipped { reason: format!("{event_name} failed with {error_code}; nothing was created or deleted") },
            ),
            Request::Sweep => report(None, None, Outcome::Skipped { reason: "schedule events go to expiry-sweep".into() }),
            Request::Created { cluster, region, tags } => {
                if !self.config.opt_in.admits(&tags) {
                    let reason = format!("not opted in: tag {} absent from CreateCluster", self.config.opt_in);
                    return report(Some(&cluster), Some(&region), Outcome::Skipped { reason });
                }
                let outcome = self.reconcile(&cluster, Some(&region), false, Some(deadline)).await;
                report(Some(&cluster), Some(&region), outcome)
            }
            Request::Reconcile { cluster, region, force } => {
                let outcome = self.reconcile(&cluster, region.as_deref(), force, None).await;
                report(Some(&cluster), region.as_deref().or(Some(&self.config.regions[0])), outcome)
            }
            Request::Deleted { cluster, region } => {
                let outcome = self.cleanup(&cluster, &region).await;
                report(Some(&cluster), Some(&region), outcome)
            }
        }
    }

    /// Reconciles one cluster. With `wait_until`, a cluster that is not ACTIVE yet is polled
    /// until then (EKS sends no "cluster ACTIVE" event); otherwise it is skipped at once.
    pub async fn reconcile(&self, cluster: &str, region: Option<&str>, force: bool, wait_until: Option<Instant>) -> Outcome {
        let name: ClusterName = match cluster.parse() {
            Ok(n) => n,
            Err(e) => return Outcome::Skipped { reason: format!("{e}") },
        };
        let (_, r) = match self.region(region) {
            Ok(r) => r,
            Err(reason) => return Outcome::Skipped { reason },
        };
        let described = match self.await_active(r, cluster, wait_until).await {
            Ok(c) => c,
            Err(outcome) => return outcome,
        };
        if wait_until.is_none() && !self.config.opt_in.admits(&described.tags) {
            return Outcome::Skipped { reason: format!("not opted in: tag {} absent", self.config.opt_in) };
        }
        self.apply(self.fleet.authority.as_ref(), &name, r, &described, force).await
    }

    /// The cluster once it is ACTIVE, polling until `wait_until`; else the outcome that ends here.
    async fn await_active(&self, r: &RegionPorts, cluster: &str, wait_until: Option<Instant>) -> Result<ClusterInfo, Outcome> {
        loop {
            let c = match r.clusters.describe(cluster).await {
                Ok(c) => c,
                Err(ClustersError::NotFound(_)) => return Err(Outcome::Skipped { reason: "no such EKS cluster".into() }),
                Err(e) => return Err(Outcome::Failed { step: Step::Observe, error: e.to_string() }),
            };
            if c.is_active() {
                return Ok(c);
            }
            let poll = self.config.active_poll;
            match wait_until {
                // Keep 10 s in hand for the reconcile itself.
                Some(deadline) if Instant::now() + poll + Duration::from_secs(10) < deadline => tokio::time::sleep(poll).await,
                _ => return Err(Outcome::Skipped { reason: format!("not active yet ({}); the sweep will finish it", c.status) }),
            }
        }
    }

    /// Apply (or, in a dry run, plan) one ACTIVE cluster, and log the outcome.
    pub(crate) async fn apply(&self, authority: &dyn meshca_core::Authority, name: &ClusterName, r: &RegionPorts, cluster: &ClusterInfo, force: bool) -> Outcome {
        let delivery = match r.clusters.connect(cluster, self.options()) {
            Ok(d) => d,
            Err(e) => return Outcome::Failed { step: Step::Deliver, error: e.to_string() },
        };
        let reconciler = self.reconciler(authority, r);
        let outcome = if self.config.dry_run {
            reconciler.plan(name, delivery.as_ref(), force).await
        } else {
            reconciler.apply(name, delivery.as_ref(), force).await
        };
        match &outcome {
            Outcome::Failed { step, error } => warn!(cluster = %name, step = %step, outcome = "failed", error = %error),
            other => info!(cluster = %name, outcome = other.label()),
        }
        outcome
    }

    async fn cleanup(&self, cluster: &str, region: &str) -> Outcome {
        let name: ClusterName = match cluster.parse() {
            Ok(n) => n,
            Err(e) => return Outcome::Skipped { reason: format!("{e}") },
        };
        let (_, r) = match self.region(Some(region)) {
            Ok(r) => r,
            Err(reason) => return Outcome::Skipped { reason },
        };
        if self.config.dry_run {
            return Outcome::Planned { plan: "revoke the cluster's intermediates and retire its escrow".into() };
        }
        self.reconciler(self.fleet.authority.as_ref(), r).cleanup(&name).await
    }

    /// Sweeps every managed region; see [`sweep::Sweep`].
    pub async fn sweep(&self, deadline: Instant) -> sweep::SweepReport {
        sweep::Sweep::new(self).run(deadline).await
    }
}
