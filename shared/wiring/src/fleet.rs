//! A fleet deployment's ports: every managed place (meshca's regions and its member accounts'),
//! each with its EKS, escrow and fan-out clients, built once per function instance.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_config::SdkConfig;
use meshca_aws::{EksClusters, EventBridgeFanOut, MemberRole, SqsFanOut};
use meshca_core::notice::Notices;
use meshca_core::pace::{DescribedFor, IssueBudget};
use meshca_core::rotation::{RootRotation, RotationStore};
use meshca_core::{AccountId, Place};
use meshca_core::{Authority, Clusters, Escrow, FanOut};

use crate::{
    AuthoritySpec, EscrowSpec, WiringError, authority_paced, escrow, escrow_at, issue_budget,
    rotation_store,
};

/// `home` with its region set to `region`.
pub fn in_region(home: &SdkConfig, region: &str) -> SdkConfig {
    home.to_builder()
        .region(aws_config::Region::new(region.to_string()))
        .build()
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

/// How long a function instance keeps its CA's description (state, certificate, chain): a
/// changed root or a disabled CA is seen within this time.
pub const CA_DESCRIPTION_TTL: std::time::Duration = std::time::Duration::from_secs(300);

/// What a fleet deployment (the Lambda functions) is made of.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    /// Who signs the clusters' CAs.
    pub authority: AuthoritySpec,
    /// The CA of TSB's XCP identities, when it is not `authority`.
    pub xcp_authority: Option<AuthoritySpec>,
    /// Where bundles are escrowed.
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
    /// The member account.
    pub account: AccountId,
    /// The role meshca assumes there.
    pub role: MemberRole,
    /// The regions of its clusters.
    pub regions: Vec<String>,
}

/// One managed place's ports: its clusters (EKS with the place's credentials) and their escrow
/// (at home, always).
#[derive(Clone)]
pub struct RegionPorts {
    /// The place's clusters.
    pub clusters: Arc<dyn Clusters>,
    /// Their escrow records.
    pub escrow: Arc<dyn Escrow>,
}

/// Every port a fleet deployment uses, built once per Lambda instance.
#[derive(Clone)]
pub struct Fleet {
    /// Signs every kind but TSB's XCP identities when `xcp_authority` is set.
    pub authority: Arc<dyn Authority>,
    /// Signs xcp-central, mpc and xcp-edge when set; else `authority` does.
    pub xcp_authority: Option<Arc<dyn Authority>>,
    /// The IssueCertificate budget every Private CA of this deployment shares, if paced.
    pub issue_budget: Option<Arc<IssueBudget>>,
    /// Every managed region of every managed account.
    pub places: BTreeMap<Place, RegionPorts>,
    /// meshca's own account, when it has members (an event's `account` is compared with it).
    pub home_account: Option<AccountId>,
    /// Where reconcile requests for other clusters go (the bus or the work queue).
    pub fan_out: Arc<dyn FanOut>,
    /// Where notices go (the bus); `None`: nowhere.
    pub notices: Option<Arc<dyn Notices>>,
    /// The fleet's root rotation record (beside the first region's escrow), when it is kept.
    pub rotation: Option<Arc<dyn RotationStore>>,
    /// What `authority` was built from, and the AWS configuration to build the other side of a
    /// rotation with: see [`Fleet::rotation_authorities`].
    pub authority_spec: Option<AuthoritySpec>,
    /// The function's own AWS configuration, when it has one.
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
            notices: Some(Arc::new(meshca_aws::EventBridgeNotices::new(
                home,
                &spec.event_bus,
            ))),
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
