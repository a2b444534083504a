//! What meshca's Lambda functions share. `main` of each function builds an [`App`] once — its
//! ports come from `meshca-wiring` — and hands every event to a thin handler here; all of it
//! runs without Lambda in the tests, over the emulators or over in-memory fakes.
// Code that can fail at run time says so with an error; an `expect` is allowed where it
// cannot fail, with the reason. Tests unwrap freely.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod config;
pub mod crls;
pub mod event;
pub mod failure;
pub mod invocation;
pub mod metrics;
mod revocation;
pub mod rotation;
pub mod sweep;
pub mod work;

use std::time::{Duration, Instant};

use meshca_core::clusters::{ClusterInfo, ClustersError};
use std::collections::BTreeMap;
use std::sync::Arc;

use meshca_core::rotation::RootRotation;
use meshca_core::{
    Account, ClusterName, DeliveryOptions, Kind, KindSpec, Outcome, Place, Reconciler, Settings,
    Step,
};
use meshca_wiring::{Fleet, RegionPorts};
use serde::Serialize;
use tracing::{info, warn};

pub use config::Config;
use event::Request;

/// A member account's clusters are told apart from same-named ones elsewhere by account and
/// region in their generation tokens; home clusters keep the tokens they always had.
fn scope_of(place: &Place) -> Option<String> {
    place
        .account
        .member()
        .map(|a| format!("{a}/{}", place.region))
}

/// Configuration and ports, built once per Lambda instance.
pub struct App {
    /// What the environment said.
    pub config: Config,
    pub(crate) fleet: Fleet,
    /// The root rotation record as last read (see [`rotation::RECORD_TTL`]).
    in_force: tokio::sync::Mutex<Option<rotation::InForce>>,
}

/// The result of one event, as returned to the caller and logged.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The cluster, when the event was about one.
    pub cluster: Option<String>,
    /// The member account of the cluster; absent for meshca's own account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The cluster's region.
    pub region: Option<String>,
    /// The kind this report is about, when it is one other than istio-cacerts (sweep lines).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<Kind>,
    /// The cluster's outcome: its first failure, else its first kind's.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Each kind's outcome, when the cluster has more than Istio's cacerts.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub kinds: BTreeMap<Kind, Outcome>,
}

impl Report {
    /// A report of `outcome` for a cluster of meshca's own account.
    pub fn new(cluster: Option<&str>, region: Option<&str>, outcome: Outcome) -> Self {
        Report {
            cluster: cluster.map(str::to_string),
            account: None,
            region: region.map(str::to_string),
            kind: None,
            outcome,
            kinds: BTreeMap::new(),
        }
    }

    /// A report about one cluster at `place`.
    pub fn at(cluster: &str, place: &Place, outcome: Outcome) -> Self {
        Report {
            account: place.account.member().map(|a| a.to_string()),
            ..Report::new(Some(cluster), Some(&place.region), outcome)
        }
    }

    /// One report for a cluster's kinds: the first failure leads, else the first kind.
    fn of_kinds(cluster: &str, place: &Place, outcomes: Vec<(Kind, Outcome)>) -> Self {
        let lead = outcomes
            .iter()
            .find(|(_, o)| matches!(o, Outcome::Failed { .. }))
            .or(outcomes.first())
            .map(|(_, o)| o.clone());
        let mut report = Report::at(
            cluster,
            place,
            lead.unwrap_or(Outcome::Skipped {
                reason: "no kind".into(),
            }),
        );
        if !(outcomes.len() == 1 && outcomes[0].0 == Kind::IstioCacerts) {
            report.kinds = outcomes.into_iter().collect();
        }
        report
    }
}

impl App {
    /// Builds the ports from the standard AWS configuration chain.
    pub async fn new(config: Config) -> anyhow::Result<Self> {
        Self::with_sdk_config(config, &meshca_wiring::sdk_config(None).await).await
    }

    /// Builds the ports from `home`, the function's own region and credentials (see
    /// [`Fleet::build`]).
    pub async fn with_sdk_config(
        config: Config,
        home: &meshca_wiring::aws_config::SdkConfig,
    ) -> anyhow::Result<Self> {
        let fleet = Fleet::build(&config.fleet_spec(), home).await?;
        Ok(Self::with_fleet(config, fleet))
    }

    /// Over ports built elsewhere (in-memory fakes in tests).
    pub fn with_fleet(config: Config, fleet: Fleet) -> Self {
        App {
            config,
            fleet,
            in_force: tokio::sync::Mutex::new(None),
        }
    }

    /// The managed place of `account` (`None` or meshca's own: home) and `region` (`None`: the
    /// account's first); refused, naming why, when meshca does not manage it.
    pub(crate) fn place(
        &self,
        account: Option<&str>,
        region: Option<&str>,
    ) -> Result<(&Place, &RegionPorts), String> {
        let account = self.account(account)?;
        let region = match (region, &account) {
            (Some(r), _) => r,
            (None, Account::Home) => &self.config.regions[0],
            (None, Account::Member(id)) => self
                .config
                .members
                .iter()
                .find(|m| &m.account == id)
                .and_then(|m| m.regions.first())
                .ok_or_else(|| format!("account {id} is not managed"))?,
        };
        let place = Place {
            account,
            region: region.to_string(),
        };
        self.fleet
            .places
            .get_key_value(&place)
            .ok_or_else(|| match &place.account {
                Account::Home => format!(
                    "region {region} is not managed (MESHCA_REGIONS = {})",
                    self.config.regions.join(",")
                ),
                Account::Member(id) => {
                    format!("region {region} of account {id} is not managed (MESHCA_ACCOUNTS)")
                }
            })
    }

    /// Whose cluster an event is about. Without members every event is meshca's own account's
    /// (its bus takes no other); with members, an account neither home nor listed is refused.
    fn account(&self, account: Option<&str>) -> Result<Account, String> {
        let Some(id) = account else {
            return Ok(Account::Home);
        };
        if self
            .fleet
            .home_account
            .as_ref()
            .is_some_and(|h| h.as_str() == id)
        {
            return Ok(Account::Home);
        }
        if let Some(m) = self
            .config
            .members
            .iter()
            .find(|m| m.account.as_str() == id)
        {
            return Ok(Account::Member(m.account.clone()));
        }
        if self.config.members.is_empty() {
            return Ok(Account::Home);
        }
        Err(format!(
            "account {id} is not managed by meshca (not its own, not in MESHCA_ACCOUNTS): the event is refused"
        ))
    }

    /// A reconcile or revoke request (`what`) must come from meshca's own account (its sweep,
    /// an operator): a member may forward its CloudTrail events but never ask for work.
    fn admits_sender(&self, sender: Option<&str>, what: &str) -> Result<(), String> {
        match (sender, &self.fleet.home_account) {
            (Some(s), Some(home)) if s != home.as_str() => Err(format!(
                "{what} are taken from meshca's own account {home} only; this one came from {s}"
            )),
            _ => Ok(()),
        }
    }

    /// A revoke request's sender: meshca's own account, or the configured security account.
    fn admits_revoker(&self, sender: Option<&str>) -> Result<(), String> {
        match (sender, &self.config.security_account) {
            (Some(s), Some(security)) if s == security.as_str() => Ok(()),
            (sender, Some(security)) => self
                .admits_sender(sender, "revoke requests")
                .map_err(|why| format!("{why} (or the security account {security})")),
            (sender, None) => self.admits_sender(sender, "revoke requests"),
        }
    }

    pub(crate) fn options(&self, settings: &Settings, cluster: &ClusterName) -> DeliveryOptions {
        DeliveryOptions {
            adopt: self.config.adopt,
            restart: self.config.restart,
            profile: settings.delivery_profile(cluster),
            landing: settings.kind.landing(),
            ..DeliveryOptions::default()
        }
    }

    /// Handles one parsed request; `deadline` is when the invocation must have answered.
    pub async fn handle(&self, request: Request, deadline: Instant) -> Report {
        let report = Report::new;
        match request {
            Request::FailedCall {
                event_name,
                error_code,
            } => report(
                None,
                None,
                Outcome::Skipped {
                    reason: format!(
                        "{event_name} failed with {error_code}; nothing was created or deleted"
                    ),
                },
            ),
            Request::Sweep => report(
                None,
                None,
                Outcome::Skipped {
                    reason: "schedule events go to expiry-sweep".into(),
                },
            ),
            Request::Created {
                cluster,
                region,
                tags,
                account,
            } => {
                if let Err(reason) = self.account(account.as_deref()) {
                    return self.refused(&cluster, &region, account, reason);
                }
                if !self.config.opt_in.admits(&tags) {
                    let reason = format!(
                        "not opted in: tag {} absent from CreateCluster",
                        self.config.opt_in
                    );
                    return report(Some(&cluster), Some(&region), Outcome::Skipped { reason });
                }
                let created = self
                    .reconcile_at(
                        &cluster,
                        account.as_deref(),
                        Some(&region),
                        false,
                        Some(deadline),
                    )
                    .await;
                self.new_cluster_crls(created, deadline).await
            }
            Request::Reconcile {
                cluster,
                region,
                force,
                account,
                sender,
            } => {
                if let Err(reason) = self
                    .admits_sender(sender.as_deref(), "reconcile requests")
                    .and(self.account(account.as_deref()).map(|_| ()))
                {
                    return self.refused(
                        &cluster,
                        region.as_deref().unwrap_or_default(),
                        sender.or(account),
                        reason,
                    );
                }
                self.reconcile_at(&cluster, account.as_deref(), region.as_deref(), force, None)
                    .await
            }
            Request::Revoke {
                cluster,
                region,
                account,
                reason,
                sender,
            } => {
                // Only meshca's own account, or the security account, revokes: a member can never
                // cut off a cluster.
                if let Err(why) = self
                    .admits_revoker(sender.as_deref())
                    .and(self.account(account.as_deref()).map(|_| ()))
                {
                    return self.refused(
                        &cluster,
                        region.as_deref().unwrap_or_default(),
                        sender.or(account),
                        why,
                    );
                }
                let asked = revocation::Asked {
                    reason,
                    by: sender.as_deref(),
                };
                self.revoke(&cluster, account.as_deref(), region.as_deref(), asked)
                    .await
            }
            Request::Deleted {
                cluster,
                region,
                account,
            } => {
                if let Err(reason) = self.account(account.as_deref()) {
                    return self.refused(&cluster, &region, account, reason);
                }
                self.cleanup(&cluster, account.as_deref(), &region).await
            }
        }
    }

    /// An event about an account meshca does not manage (or may not take orders from): logged
    /// and answered, never acted on.
    fn refused(
        &self,
        cluster: &str,
        region: &str,
        account: Option<String>,
        reason: String,
    ) -> Report {
        warn!(cluster = %cluster, account = account.as_deref().unwrap_or("-"), outcome = "refused", reason = %reason);
        Report {
            account,
            ..Report::new(Some(cluster), Some(region), Outcome::Skipped { reason })
        }
    }

    /// Reconciles one cluster of meshca's own account (see [`App::reconcile_at`]).
    pub async fn reconcile(
        &self,
        cluster: &str,
        region: Option<&str>,
        force: bool,
        wait_until: Option<Instant>,
    ) -> Report {
        self.reconcile_at(cluster, None, region, force, wait_until)
            .await
    }

    /// Reconciles one cluster of `account` (`None`: meshca's own). With `wait_until`, a cluster
    /// that is not ACTIVE yet is polled until then (EKS sends no "cluster ACTIVE" event);
    /// otherwise it is skipped at once.
    pub async fn reconcile_at(
        &self,
        cluster: &str,
        account: Option<&str>,
        region: Option<&str>,
        force: bool,
        wait_until: Option<Instant>,
    ) -> Report {
        let (place, r) = match self.place(account, region) {
            Ok(p) => p,
            Err(reason) => {
                return Report {
                    account: account.map(str::to_string),
                    ..Report::new(Some(cluster), region, Outcome::Skipped { reason })
                };
            }
        };
        let single = |outcome| Report::at(cluster, place, outcome);
        let name: ClusterName = match cluster.parse() {
            Ok(n) => n,
            Err(e) => {
                return single(Outcome::Skipped {
                    reason: format!("{e}"),
                });
            }
        };
        let described = match self.await_active(r, cluster, wait_until).await {
            Ok(c) => c,
            Err(outcome) => return single(outcome),
        };
        if wait_until.is_none() && !self.config.opt_in.admits(&described.tags) {
            return single(Outcome::Skipped {
                reason: format!("not opted in: tag {} absent", self.config.opt_in),
            });
        }
        let kinds = match self.config.kinds.for_tags(&described.tags) {
            Ok(k) => k,
            Err(reason) => return single(Outcome::Skipped { reason }),
        };
        let main = match self.main_authority().await {
            Ok((main, _)) => main,
            Err(error) => {
                return single(Outcome::Failed {
                    step: Step::Observe,
                    error,
                });
            }
        };
        let mut outcomes = Vec::new();
        for spec in kinds {
            let kind = spec.kind;
            let authority = self.authority_for(&main, kind);
            outcomes.push((
                kind,
                self.apply(
                    authority.as_ref(),
                    &name,
                    (place, r),
                    &described,
                    spec,
                    force,
                )
                .await,
            ));
        }
        Report::of_kinds(cluster, place, outcomes)
    }

    /// The authority that signs `kind`: the XCP CA for TSB's identities when one is configured,
    /// else `main` (the fleet's CA as a running root rotation has it).
    pub(crate) fn authority_for(
        &self,
        main: &Arc<dyn meshca_core::Authority>,
        kind: Kind,
    ) -> Arc<dyn meshca_core::Authority> {
        match &self.fleet.xcp_authority {
            Some(xcp) if kind.profile().signer == meshca_core::kind::XCP_SIGNER => xcp.clone(),
            _ => main.clone(),
        }
    }

    /// The settings of one kind (at home; see [`scope_of`] for members).
    pub(crate) fn settings_for(&self, spec: KindSpec) -> Settings {
        Settings {
            kind: spec,
            ..self.config.settings.clone()
        }
    }

    /// The cluster once it is ACTIVE, polling until `wait_until`; else the outcome that ends here.
    async fn await_active(
        &self,
        r: &RegionPorts,
        cluster: &str,
        wait_until: Option<Instant>,
    ) -> Result<ClusterInfo, Outcome> {
        loop {
            let c = match r.clusters.describe(cluster).await {
                Ok(c) => c,
                Err(ClustersError::NotFound(_)) => {
                    return Err(Outcome::Skipped {
                        reason: "no such EKS cluster".into(),
                    });
                }
                Err(e) => {
                    return Err(Outcome::Failed {
                        step: Step::Observe,
                        error: e.to_string(),
                    });
                }
            };
            if c.is_active() {
                return Ok(c);
            }
            let poll = self.config.active_poll;
            match wait_until {
                // Keep 10 s in hand for the reconcile itself.
                Some(deadline) if Instant::now() + poll + Duration::from_secs(10) < deadline => {
                    tokio::time::sleep(poll).await
                }
                _ => {
                    return Err(Outcome::Skipped {
                        reason: format!("not active yet ({}); the sweep will finish it", c.status),
                    });
                }
            }
        }
    }

    /// Apply (or, in a dry run, plan) one kind of one ACTIVE cluster, and log the outcome.
    pub(crate) async fn apply(
        &self,
        authority: &dyn meshca_core::Authority,
        name: &ClusterName,
        (place, r): (&Place, &RegionPorts),
        cluster: &ClusterInfo,
        spec: KindSpec,
        force: bool,
    ) -> Outcome {
        let settings = Settings {
            scope: scope_of(place),
            ..self.settings_for(spec)
        };
        let delivery = match r.clusters.connect(cluster, self.options(&settings, name)) {
            Ok(d) => d,
            Err(e) => {
                return Outcome::Failed {
                    step: Step::Deliver,
                    error: e.to_string(),
                };
            }
        };
        let reconciler = Reconciler {
            authority,
            escrow: r.escrow.as_ref(),
            settings: &settings,
        };
        let outcome = if self.config.dry_run {
            reconciler.plan(name, delivery.as_ref(), force).await
        } else {
            reconciler.apply(name, delivery.as_ref(), force).await
        };
        let outcome = self.awaiting_needs_crl_mode(outcome);
        let kind = settings.kind.kind;
        match &outcome {
            Outcome::Failed { step, error } => {
                warn!(cluster = %name, kind = %kind, step = %step, outcome = "failed", error = %error)
            }
            other => info!(cluster = %name, kind = %kind, outcome = other.label()),
        }
        outcome
    }

    /// A generation waits for the fleet's CRLs only where a sweep delivers them: with CRL mode
    /// off (turned off after CRLs were delivered: it is one-way), it would wait forever, so it
    /// is a failure to alarm on, saying so.
    fn awaiting_needs_crl_mode(&self, outcome: Outcome) -> Outcome {
        match outcome {
            Outcome::AwaitingCrls { reason, .. } if !self.config.crl_mode => Outcome::Failed {
                step: Step::Deliver,
                error: format!(
                    "{reason}; MESHCA_CRL_MODE is off, so no sweep delivers them: turn it back on (CRL mode is one-way once CRLs were delivered)"
                ),
            },
            other => other,
        }
    }

    /// A deleted cluster: every kind it held is revoked and retired (its tags are gone with it,
    /// so every kind is looked for in escrow).
    async fn cleanup(&self, cluster: &str, account: Option<&str>, region: &str) -> Report {
        let plan = || "revoke the cluster's intermediates and retire its escrow".to_string();
        let at = match self.at_place(cluster, account, Some(region), plan).await {
            Ok(at) => at,
            Err(report) => return report,
        };
        let mut outcomes = Vec::new();
        for kind in Kind::ALL {
            let (settings, authority) = self.kind_at(&at, kind);
            let outcome = Reconciler {
                authority: authority.as_ref(),
                escrow: at.ports.escrow.as_ref(),
                settings: &settings,
            }
            .cleanup(&at.name)
            .await;
            // Kinds the cluster never had leave no trace in the report.
            if kind == Kind::IstioCacerts || !outcome.found_nothing() {
                outcomes.push((kind, outcome));
            }
        }
        Report::of_kinds(cluster, at.place, outcomes)
    }

    /// Sweeps every managed region (see [`sweep::Sweep`]) at the phase of a running root
    /// rotation, then lets the rotation advance if every cluster confirmed it.
    pub async fn sweep(&self, deadline: Instant) -> sweep::SweepReport {
        let (main, rotation) = match self.main_authority().await {
            Ok(m) => m,
            // Never sweep past the record: the wrong root bundle would split the mesh.
            Err(e) => {
                return sweep::SweepReport {
                    errors: vec![e],
                    ..Default::default()
                };
            }
        };
        let rotating = rotation.as_ref().is_some_and(RootRotation::is_active);
        let mut report = sweep::Sweep::new(self, main.as_ref(), rotating)
            .run(deadline)
            .await;
        if self.config.crl_mode && !self.config.dry_run {
            let crls = self
                .publish_crls(main.as_ref(), &report.inventory, deadline)
                .await;
            let behind = crls.behind.clone();
            report.crls = Some(crls);
            self.put_in_force(&mut report, &behind, deadline).await;
        }
        if rotating && !self.config.dry_run {
            match self.gate_rotation(&report.inventory).await {
                Ok(r) => report.rotation = r,
                Err(e) => report.errors.push(e),
            }
        }
        report
    }
}
