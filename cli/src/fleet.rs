//! `meshca fleet`: every cluster escrow knows, across member accounts and regions, read from
//! escrow alone — no cluster, EKS or CA call — so it is cheap enough to run from anywhere.

use anyhow::{Context, Result};
use clap::Args;
use meshca_core::escrow::{EscrowKey, Escrowed};
use meshca_core::{AccountId, Place};
use meshca_wiring::EscrowSpec;
use serde::Serialize;
use time::OffsetDateTime;

use crate::OutputArgs;
use crate::ports::EscrowArgs;

const AFTER_HELP: &str = "\
Examples:
  meshca fleet                                        # the local escrow under .meshca/escrow
  meshca fleet --escrow secrets-manager --regions eu-west-1,us-east-1 \\
      --account 222233334444 --account 333344445555    # meshca's account and two members
  meshca fleet --escrow secrets-manager --region eu-west-1 --json | jq '.[] | select(.days_left < 30)'

STATE is `current` (the bundle in service), `renewing` (a newer generation is being issued) or
`in-flight` (a first generation not finished yet). ROOT is the first 16 hex digits of the
SHA-256 of root-cert.pem: clusters that trust each other show the same one. TERMS are what the
bundle was issued with (key algorithm, validity, renewal): reruns, renewals and rotations keep
them; --json adds the subject, names and the history of every change.

CRL says whether a cluster is revocation-ready (meshca crl): `ready (Nd)` when its ca-crl.pem
under --out-dir holds a CRL of its own intermediate and none has lapsed (N: days until the
first lapses); `off` when CRL mode is off; `missing` or `stale` when the file is not there or
would be refused; `n/a` for kinds whose readers take no CRL (the kubernetes.io/tls layout);
`unknown` for Secrets Manager escrow unless the clusters are read.

With --eks (each istio cluster as the EKS cluster of its name in its record's region, as the
caller) or --kubeconfig (contexts named after the clusters), the column judges the ca-crl.pem in
each cluster's istio-system/cacerts instead of the files, `unreachable` when the cluster could
not be read, and says `, not protected` when something there ignores the CRLs (istiod before
1.27, ztunnel before 1.29, pods injected without the CRL volume): --json has why, and what
meshca's role could not look at.

Exit status: 0 listed (an empty escrow too); 1 the escrow could not be read; 2 a usage error.";

/// List every managed cluster from escrow: kind, generation, days left, root fingerprint.
#[derive(Debug, Args)]
#[command(after_help = AFTER_HELP)]
pub struct FleetArgs {
    #[command(flatten)]
    escrow: EscrowArgs,

    /// Regions whose escrow to read (comma-separated; Secrets Manager escrow). Default: --region,
    /// else AWS_REGION / the profile's.
    #[arg(
        long,
        value_name = "REGIONS",
        value_delimiter = ',',
        help_heading = "Escrow"
    )]
    regions: Vec<String>,

    /// The AWS region, when --regions is not given.
    #[arg(long, value_name = "REGION", help_heading = "Escrow")]
    region: Option<String>,

    /// A member account whose records to read too (repeatable): its records are
    /// meshca/<account>/<region>/<cluster> in meshca's own account.
    #[arg(long = "account", value_name = "ACCOUNT_ID", help_heading = "Escrow")]
    accounts: Vec<String>,

    /// Directory the bundles were written under, one folder per cluster: the CRL column reads
    /// each cluster's ca-crl.pem there.
    #[arg(long, value_name = "DIR", default_value = "out")]
    out_dir: std::path::PathBuf,

    /// Judge the CRL column from each istio cluster itself, reached as the EKS cluster of its
    /// name in its record's region (as the caller's IAM identity).
    #[arg(long, conflicts_with = "kubeconfig", help_heading = "Clusters")]
    eks: bool,

    /// Judge the CRL column from each istio cluster itself, through this kubeconfig's context
    /// of the cluster's name.
    #[arg(long, value_name = "FILE", help_heading = "Clusters")]
    kubeconfig: Option<std::path::PathBuf>,

    #[command(flatten)]
    output: OutputArgs,
}

/// One escrowed certificate.
#[derive(Debug, Serialize)]
struct Row {
    #[serde(skip_serializing_if = "Option::is_none")]
    account: Option<String>,
    region: Option<String>,
    cluster: String,
    kind: String,
    state: &'static str,
    generation: Option<u64>,
    #[serde(with = "time::serde::rfc3339::option")]
    not_after: Option<OffsetDateTime>,
    days_left: Option<i64>,
    root_sha256: Option<String>,
    authority: Option<String>,
    /// The terms the bundle in service was issued with (absent in records older than them).
    #[serde(skip_serializing_if = "Option::is_none")]
    terms: Option<meshca_core::Terms>,
    /// Every change of terms, oldest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    history: Vec<meshca_core::TermsChange>,
    /// When and why its certificate was revoked, and whether the record is held.
    #[serde(skip_serializing_if = "Option::is_none")]
    revoked: Option<meshca_core::escrow::Revoked>,
    /// Whether the data plane can refuse what is revoked (see the CRL column).
    crl: CrlState,
    /// Read from the cluster: who enforces its CRLs, and what could not be looked at.
    #[serde(skip_serializing_if = "Option::is_none")]
    enforcement: Option<Enforced>,
}

/// A cluster's enforcement of its CRLs, as read from it.
#[derive(Debug, Serialize)]
struct Enforced {
    /// Nothing found that ignores them.
    protected: bool,
    /// For people: what enforces them, the gaps, what was not checked.
    said: String,
}

/// A cluster's revocation readiness, as its files show it.
#[derive(Debug, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
enum CrlState {
    /// Its ca-crl.pem holds its own CRL and none has lapsed.
    Ready {
        /// Days until the first CRL in it lapses (re-publish before).
        days_left: Option<i64>,
    },
    /// CRL mode is off for the fleet.
    Off,
    /// No ca-crl.pem where the bundle was written.
    Missing,
    /// A ca-crl.pem the data plane would refuse, and why.
    Stale {
        /// Why.
        why: String,
    },
    /// Its reader takes no CRL (the kubernetes.io/tls layout).
    NotApplicable,
    /// Not known from here (Secrets Manager escrow, the clusters not read).
    Unknown,
    /// The cluster could not be read, and why.
    Unreachable {
        /// Why.
        why: String,
    },
}

impl CrlState {
    fn column(&self) -> String {
        match self {
            CrlState::Ready { days_left: Some(d) } => format!("ready ({d}d)"),
            CrlState::Ready { days_left: None } => "ready".into(),
            CrlState::Off => "off".into(),
            CrlState::Missing => "missing".into(),
            CrlState::Stale { .. } => "stale".into(),
            CrlState::NotApplicable => "n/a".into(),
            CrlState::Unknown => "unknown".into(),
            CrlState::Unreachable { .. } => "unreachable".into(),
        }
    }

    /// What `held` (a cluster's `ca-crl.pem`, if it has one) says for `current`.
    fn of_text(
        held: Option<&str>,
        current: &meshca_core::escrow::Current,
        now: OffsetDateTime,
    ) -> Self {
        let Some(text) = held else {
            return CrlState::Missing;
        };
        match meshca_core::fleet_crls::FleetCrls::held(text, &current.bundle.ca_cert, now) {
            Ok(held) => CrlState::Ready {
                days_left: held.first_lapse().map(|t| (t - now).whole_days()),
            },
            Err(e) => CrlState::Stale { why: e.to_string() },
        }
    }

    /// What `out/<cluster>/ca-crl.pem` says for `current`, in CRL mode.
    fn of_files(
        out: &std::path::Path,
        current: &meshca_core::escrow::Current,
        now: OffsetDateTime,
    ) -> Self {
        let text = std::fs::read_to_string(out.join(meshca_core::bundle::CA_CRL)).ok();
        Self::of_text(text.as_deref(), current, now)
    }
}

pub async fn run(args: FleetArgs) -> Result<std::process::ExitCode> {
    let accounts: Vec<AccountId> = args
        .accounts
        .iter()
        .map(|a| a.parse())
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("--account {e}"))?;
    let (spec, aws, regions) = escrow_spec(&args).await?;
    let mut places: Vec<Place> = regions.iter().map(Place::home).collect();
    places.extend(
        accounts
            .iter()
            .flat_map(|a| regions.iter().map(|r| Place::member(a.clone(), r))),
    );
    let now = OffsetDateTime::now_utc();
    let crl_mode = match &spec {
        EscrowSpec::Local { dir } => Some(crate::crl::enabled_in(dir)),
        EscrowSpec::SecretsManager { .. } => None,
    };
    let mut rows = Vec::new();
    for place in &places {
        let escrow = meshca_wiring::escrow_at(
            &spec,
            aws.as_ref(),
            aws.as_ref().map(|_| place.region.as_str()),
            place.account.member(),
        )?;
        let keys = escrow
            .keys()
            .await
            .with_context(|| format!("listing the escrow of {place}"))?;
        for key in keys {
            let escrowed = escrow
                .load(&key)
                .await
                .with_context(|| format!("reading {key} in {place}"))?;
            let mut row = row(place, aws.is_some(), &key, &escrowed, now);
            row.crl = crl_state(crl_mode, &args.out_dir, &key, &escrowed, now);
            if let (Some(current), true) = (&escrowed.current, reads_clusters(&args, &key)) {
                (row.crl, row.enforcement) =
                    from_cluster(&args, aws.as_ref(), place, current, now).await;
            }
            rows.push(row);
        }
    }
    if args.output.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print_table(&rows);
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// The escrow the flags name, the AWS configuration it needs, and the regions to read.
async fn escrow_spec(
    args: &FleetArgs,
) -> Result<(
    EscrowSpec,
    Option<meshca_wiring::aws_config::SdkConfig>,
    Vec<String>,
)> {
    let e = &args.escrow;
    if e.escrow != "secrets-manager" {
        let dir = e
            .escrow_dir
            .clone()
            .unwrap_or_else(|| crate::default_state_dir().join("escrow"));
        return Ok((EscrowSpec::Local { dir }, None, vec![String::new()]));
    }
    let aws = meshca_wiring::sdk_config(
        args.region
            .clone()
            .or_else(|| args.regions.first().cloned()),
    )
    .await;
    let regions = match (&args.regions[..], aws.region()) {
        ([], Some(r)) => vec![r.to_string()],
        ([], None) => anyhow::bail!(
            "--escrow secrets-manager needs a region: pass --regions or --region, or set AWS_REGION"
        ),
        (list, _) => list.to_vec(),
    };
    let spec = EscrowSpec::SecretsManager {
        prefix: e.secret_prefix.clone(),
        kms_key_id: None,
        recovery_window_days: None,
    };
    Ok((spec, Some(aws), regions))
}

/// Whether the CRL column of `key` is read from its cluster: asked for, and an istio layout.
fn reads_clusters(args: &FleetArgs, key: &EscrowKey) -> bool {
    (args.eks || args.kubeconfig.is_some())
        && key.kind.profile().layout == meshca_core::kind::Layout::IstioCacerts
}

/// The CRL column of `current`'s cluster read from it, and who enforces its CRLs there.
async fn from_cluster(
    args: &FleetArgs,
    aws: Option<&meshca_wiring::aws_config::SdkConfig>,
    place: &Place,
    current: &meshca_core::escrow::Current,
    now: OffsetDateTime,
) -> (CrlState, Option<Enforced>) {
    let delivery = match connect(args, aws, place, current).await {
        Ok(d) => d,
        Err(e) => {
            return (
                CrlState::Unreachable {
                    why: format!("{e:#}"),
                },
                None,
            );
        }
    };
    let state = match delivery.observe_crls().await {
        Ok(held) => CrlState::of_text(held.as_deref(), current, now),
        Err(e) => return (CrlState::Unreachable { why: e.to_string() }, None),
    };
    let enforced = match delivery.crl_readers().await {
        Ok(Some(readers)) => {
            let judged = meshca_core::enforcement::judge(&readers);
            Some(Enforced {
                protected: judged.not_protected().is_none(),
                said: judged.to_string(),
            })
        }
        Ok(None) => None,
        Err(e) => Some(Enforced {
            protected: false,
            said: format!("not read: {e}"),
        }),
    };
    (state, enforced)
}

/// The way into `current`'s cluster the flags name: EKS in the record's region, or a context.
async fn connect(
    args: &FleetArgs,
    aws: Option<&meshca_wiring::aws_config::SdkConfig>,
    place: &Place,
    current: &meshca_core::escrow::Current,
) -> Result<std::sync::Arc<dyn meshca_core::Delivery>> {
    let name = current.cluster.as_str();
    let options = meshca_core::DeliveryOptions::default();
    if let Some(path) = &args.kubeconfig {
        return meshca_wiring::kubeconfig_delivery(Some(path), Some(name), options)
            .await
            .with_context(|| format!("context {name} in {}", path.display()));
    }
    if place.account.member().is_some() {
        anyhow::bail!(
            "a member account's cluster: the functions read it (their sweep report, crls)"
        );
    }
    let regional = match aws {
        Some(aws) if !place.region.is_empty() => aws
            .to_builder()
            .region(meshca_wiring::aws_config::Region::new(place.region.clone()))
            .build(),
        _ => meshca_wiring::sdk_config(None).await,
    };
    meshca_wiring::eks_delivery(&regional, name, options)
        .await
        .with_context(|| format!("EKS cluster {name}"))
}

/// The CRL column of one record: `crl_mode` is `None` where it cannot be known from here.
fn crl_state(
    crl_mode: Option<bool>,
    out_root: &std::path::Path,
    key: &EscrowKey,
    e: &Escrowed,
    now: OffsetDateTime,
) -> CrlState {
    if key.kind.profile().layout != meshca_core::kind::Layout::IstioCacerts {
        return CrlState::NotApplicable;
    }
    match (crl_mode, &e.current) {
        (None, _) => CrlState::Unknown,
        (Some(false), _) => CrlState::Off,
        (Some(true), None) => CrlState::Missing,
        (Some(true), Some(c)) => CrlState::of_files(&out_root.join(key.cluster.as_str()), c, now),
    }
}

fn row(place: &Place, regional: bool, key: &EscrowKey, e: &Escrowed, now: OffsetDateTime) -> Row {
    let current = e.current.as_ref();
    let revoked = current.and_then(|c| c.revoked.as_ref());
    let state = match (current, &e.pending, revoked) {
        (Some(_), _, Some(r)) if r.held => "held",
        (Some(_), _, Some(_)) => "revoked",
        (Some(_), Some(_), None) => "renewing",
        (Some(_), None, None) => "current",
        (None, _, _) => "in-flight",
    };
    Row {
        account: place.account.member().map(|a| a.to_string()),
        region: regional.then(|| place.region.clone()),
        cluster: key.cluster.to_string(),
        kind: key.kind.to_string(),
        state,
        generation: current
            .map(|c| c.meta.generation)
            .or(e.pending.as_ref().map(|p| p.generation)),
        not_after: current.map(|c| c.meta.not_after),
        days_left: current.map(|c| (c.meta.not_after - now).whole_days()),
        root_sha256: current.map(|c| {
            c.meta
                .root_fingerprint_sha256
                .chars()
                .filter(|c| c.is_ascii_hexdigit())
                .take(16)
                .collect()
        }),
        authority: current.map(|c| c.authority_id.clone()),
        terms: current.and_then(|c| c.terms.clone()),
        history: current.map(|c| c.history.clone()).unwrap_or_default(),
        revoked: revoked.cloned(),
        crl: CrlState::Unknown,
        enforcement: None,
    }
}

fn print_table(rows: &[Row]) {
    if rows.is_empty() {
        println!("no escrowed cluster");
        return;
    }
    let dash = || "-".to_string();
    println!(
        "{:<13} {:<15} {:<28} {:<16} {:<10} {:>4} {:>9}  {:<16}  {:<12}  TERMS",
        "ACCOUNT", "REGION", "CLUSTER", "KIND", "STATE", "GEN", "DAYS LEFT", "ROOT", "CRL"
    );
    for r in rows {
        println!(
            "{:<13} {:<15} {:<28} {:<16} {:<10} {:>4} {:>9}  {:<16}  {:<12}  {}",
            r.account.clone().unwrap_or_else(|| "(home)".into()),
            r.region.clone().unwrap_or_else(dash),
            r.cluster,
            r.kind,
            r.state,
            r.generation.map_or_else(dash, |g| g.to_string()),
            r.days_left.map_or_else(dash, |d| d.to_string()),
            r.root_sha256.clone().unwrap_or_else(dash),
            r.crl.column(),
            r.terms.as_ref().map_or_else(dash, |t| t.summary()),
        );
    }
    println!(
        "{} certificate{}",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    );
    // Read from the clusters: what the CRL column cannot say in a word.
    for r in rows {
        if let CrlState::Unreachable { why } = &r.crl {
            println!("{}: unreachable: {why}", r.cluster);
        }
        if let Some(e) = r.enforcement.as_ref().filter(|e| !e.protected) {
            println!("{}: {}", r.cluster, e.said);
        }
    }
}
