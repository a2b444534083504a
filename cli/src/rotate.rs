//! `meshca rotate-root`: replace the fleet's root in three gated phases, never breaking trust
//! between two clusters.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use meshca_core::escrow::EscrowKey;
use meshca_core::kind::Layout;
use meshca_core::rollout::{self, Member, Rollout, RolloutReport};
use meshca_core::rotation::{Anchor, Phase, RotationStore};
use meshca_core::timestamp::rfc3339;
use meshca_core::{ClusterName, Delivery, KindSpec, Settings};
use meshca_wiring::{AuthoritySpec, FilesDelivery};
use time::{Duration, OffsetDateTime};

use crate::OutputArgs;
use crate::ports::{AuthorityArgs, EscrowArgs, Ports};
use crate::target::DeliveryArgs;

#[derive(Debug, Args)]
#[command(
    about = "Replace the fleet's root CA in gated phases, with trust between all clusters throughout",
    long_about = "\
Replace the fleet's root CA in gated phases, with trust between all clusters throughout.

  1. trust-both  every cluster's root-cert.pem becomes the old root followed by the new one
                 (the old bytes first, so istiod's multi-root mode accepts it); intermediates stay.
  2. switch      every cluster gets a new intermediate from the new authority.
  3. drop-old    root-cert.pem becomes the new root alone.

`start` begins phase 1 and carries it out. `advance` finishes the current phase (reconciling
any cluster that is behind), and moves to the next one only when every cluster confirmed the
phase (read back from the cluster) and the soak time has passed since: workloads must hold the
new trust before anything relies on it. An unreachable cluster blocks; `--force` overrides the
gates and the record says which. `abort` (before drop-old) turns the rotation round: the old
authority issues again under both roots, then its root alone remains.

While a rotation runs, `meshca issue` issues at the current phase, so new clusters join where
the fleet stands. istiod is restarted only where Istio needs it: a changed root bundle restarts
istiod unless it runs Istio 1.20+ with ISTIO_MULTIROOT_MESH=true; a new intermediate under the
same root bytes restarts only Istio < 1.19.

The fleet is every cluster escrowed here (or the --cluster names), each reached through the
kubeconfig context of the same name (--kubeconfig), or as files under --out-dir.

In CRL mode (`meshca crl enable`) a step that issues intermediates first writes their CRLs, and
both roots', into every cluster (on files: every ca-crl.pem anew; deploy those first), then the
new bundles: a proxy refuses a chain whose CA has no CRL.",
    after_help = "\
Examples:
  meshca rotate-root start --to local:.meshca/ca-2026 --soak 0    # a rehearsal on files
  meshca rotate-root status
  meshca rotate-root advance                 # after the soak (default 26 h)
  meshca rotate-root start --to arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/NEW \\
      --ca-arn arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/OLD --kubeconfig fleet.yaml
  meshca rotate-root abort

Exit status: 0 done as asked (or, with --dry-run, shown); 1 an error, including a phase that may
not advance yet (what blocks it is named); 2 a usage error."
)]
pub struct RotateArgs {
    #[command(subcommand)]
    command: RotateCommand,
}

#[derive(Debug, Subcommand)]
enum RotateCommand {
    /// Start a rotation to a new authority and carry out phase 1 (trust both roots).
    #[command(after_help = "\
Examples:
  meshca rotate-root start --to local:.meshca/ca-2026 --create --dry-run
  meshca rotate-root start --to local:.meshca/ca-2026 --create --soak 0

Exit status: 0 started (or shown, with --dry-run); 1 an error, such as a rotation already under
way; 2 a usage error.")]
    Start(StartArgs),
    /// Each cluster's standing in the current phase, and what blocks the next one. Reads only.
    #[command(after_help = "\
Examples:
  meshca rotate-root status
  meshca rotate-root status --json | jq .blockers

Exit status: 0 shown; 1 an error (no rotation under way); 2 a usage error.")]
    Status(FleetArgs),
    /// Finish the current phase, then move to the next if every cluster confirmed it and the soak passed.
    #[command(after_help = "\
Examples:
  meshca rotate-root advance --dry-run
  meshca rotate-root advance
  meshca rotate-root advance --force      # past the soak or an unconfirmed cluster, recorded

Exit status: 0 advanced (or shown, with --dry-run); 1 an error, including a phase that may not
advance yet (what blocks it is named); 2 a usage error.")]
    Advance(AdvanceArgs),
    /// Turn the rotation round, back to the old root alone (before drop-old only).
    #[command(after_help = "\
Examples:
  meshca rotate-root abort

Exit status: 0 turned round; 1 an error (from drop-old on there is no old root to go back to);
2 a usage error.")]
    Abort(FleetArgs),
}

#[derive(Debug, Args)]
struct StartArgs {
    /// The new authority: local:<dir> (or a directory), a PCA ARN, or vault:<mount>[/<issuer>]
    /// (on the Vault server of --vault-addr, with the same login).
    #[arg(long, value_name = "AUTHORITY")]
    to: String,

    /// Time every cluster must have held a phase before the next may start: 26h (Istio's 24 h
    /// workload certificates plus margin), or e.g. 90m, 2d, 0.
    #[arg(long, value_name = "DURATION", default_value = "26h", value_parser = parse_duration)]
    soak: Duration,

    /// With --to local:<dir>: create a new root CA there if the directory holds none. Without
    /// it, --to must name a CA that exists (a mistyped path never becomes a new root).
    #[arg(long)]
    create: bool,

    /// Say what starting would create and change, and do none of it.
    #[arg(long)]
    dry_run: bool,

    #[command(flatten)]
    fleet: FleetArgs,
}

#[derive(Debug, Args)]
struct AdvanceArgs {
    /// Advance although clusters are unconfirmed or the soak has not passed; the rotation
    /// record keeps what was overridden.
    #[arg(long)]
    force: bool,

    /// Show where the fleet stands and what advancing would do, and change nothing.
    #[arg(long)]
    dry_run: bool,

    #[command(flatten)]
    fleet: FleetArgs,
}

#[derive(Debug, Args)]
struct FleetArgs {
    /// A cluster to rotate (repeatable; default: every cluster escrowed here).
    #[arg(
        long = "cluster",
        short = 'c',
        value_name = "NAME",
        help_heading = "Fleet"
    )]
    clusters: Vec<String>,

    /// Kubeconfig whose contexts are named after the clusters; without it, each cluster's bundle
    /// is the files under --out-dir.
    #[arg(long, value_name = "FILE", help_heading = "Fleet")]
    kubeconfig: Option<PathBuf>,

    /// Reach each cluster as the EKS cluster of its name in --region, as the caller's IAM
    /// identity (it needs an access entry in each).
    #[arg(long, conflicts_with = "kubeconfig", help_heading = "Fleet")]
    eks: bool,

    /// Directory of the clusters' files, one folder per cluster (as `meshca issue` writes).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "out",
        help_heading = "Fleet"
    )]
    out_dir: PathBuf,

    #[command(flatten)]
    authority: AuthorityArgs,

    #[command(flatten)]
    escrow: EscrowArgs,

    #[command(flatten)]
    delivery: DeliveryArgs,

    #[command(flatten)]
    output: OutputArgs,
}

pub async fn run(args: RotateArgs) -> Result<ExitCode> {
    match &args.command {
        RotateCommand::Start(a) if a.dry_run => return plan_start(a).await,
        RotateCommand::Advance(a) if a.dry_run => return plan_advance(a).await,
        _ => {}
    }
    let (fleet, session, report) = match &args.command {
        RotateCommand::Start(a) => {
            let (s, report) = start(a).await?;
            (&a.fleet, s, report)
        }
        RotateCommand::Status(f) => {
            let s = Session::new(f).await?;
            let report = s.rollout().status(&s.members).await?;
            (f, s, report)
        }
        RotateCommand::Advance(a) => {
            let s = Session::new(&a.fleet).await?;
            let report = s.rollout().advance(&s.members, a.force).await?;
            (&a.fleet, s, report)
        }
        RotateCommand::Abort(f) => {
            let s = Session::new(f).await?;
            let report = s.rollout().abort(&s.members).await?;
            (f, s, report)
        }
    };
    show(fleet, &report)?;
    if !matches!(args.command, RotateCommand::Status(_)) {
        session.publish_crl_files(fleet).await?;
    }
    Ok(ExitCode::SUCCESS)
}

/// What `start` would do: the authority it would create, each cluster's change; nothing done.
async fn plan_start(a: &StartArgs) -> Result<ExitCode> {
    if let Some(dir) = a.fleet.authority.missing_local_root() {
        bail!(
            "{} holds no root CA: there is nothing to rotate from",
            dir.display()
        );
    }
    let ports = Ports::build(&a.fleet.authority, &a.fleet.escrow).await?;
    if let Some(r) = ports.rotation_store()?.load().await?
        && r.is_active()
    {
        bail!(
            "a root rotation is already under way (phase {}): see meshca rotate-root status",
            rollout::phase_label(&r)
        );
    }
    let to_spec = AuthoritySpec::from_locator(&a.to, &ports.spec)?;
    match &to_spec {
        AuthoritySpec::Local { dir } if !dir.join("root-cert.pem").exists() => {
            if !a.create {
                bail!(
                    "--to {}: {} holds no CA (no root-cert.pem); check the path, or give --create to make a new root there",
                    a.to,
                    dir.display()
                );
            }
            println!("would create a new root CA in {}", dir.display());
        }
        _ => {
            meshca_wiring::authority(&to_spec, ports.aws.as_ref())
                .await?
                .describe()
                .await
                .with_context(|| format!("--to {}", a.to))?;
        }
    }
    let from = ports.in_force().await?.describe().await?.id;
    let members = Session::members(&a.fleet, &ports).await?;
    println!(
        "would start a root rotation from {from} to {}: phase trust-both",
        a.to
    );
    for m in &members {
        let profile = m.kind.kind.profile();
        let trust = match profile.layout {
            Layout::IstioCacerts => "root-cert.pem".to_string(),
            Layout::Tls => match profile.anchors {
                Some(a) => format!("ca.crt and the {} ConfigMap", a.name),
                None => "ca.crt".to_string(),
            },
        };
        println!(
            "  {}: {trust} would become the old root followed by the new one; its certificate stays (none issued)",
            m.kind.escrow_key(&m.cluster)
        );
    }
    println!(
        "then, once every cluster confirmed it and the soak ({}) has passed: meshca rotate-root advance",
        human(a.soak)
    );
    eprintln!("meshca: dry run: nothing was created, issued, written or delivered");
    Ok(ExitCode::SUCCESS)
}

/// Where the rotation stands (as `status` shows it) and what `advance` would do next.
async fn plan_advance(a: &AdvanceArgs) -> Result<ExitCode> {
    let s = Session::new(&a.fleet).await?;
    let report = s.rollout().status(&s.members).await?;
    show(&a.fleet, &report)?;
    let r = &report.rotation;
    let next = match r.phase {
        Phase::TrustBoth => {
            "switch: every cluster would get a new intermediate from the new authority"
        }
        Phase::Switch if r.aborted => "drop-old: root-cert.pem would become the old root alone",
        Phase::Switch => "drop-old: root-cert.pem would become the new root alone",
        Phase::DropOld => "done: the rotation would be finished",
        Phase::Done => bail!("the rotation is done: there is nothing to advance"),
    };
    if report.blockers.is_empty() || a.force {
        println!(
            "would finish {} and move to {next}",
            rollout::phase_label(r)
        );
    } else {
        println!(
            "would not advance (without --force): {}",
            report.blockers.join("; ")
        );
    }
    eprintln!("meshca: dry run: nothing was issued, written or delivered");
    Ok(ExitCode::SUCCESS)
}

async fn start(a: &StartArgs) -> Result<(Session, RolloutReport)> {
    let ports = Ports::build(&a.fleet.authority, &a.fleet.escrow).await?;
    let to_spec = AuthoritySpec::from_locator(&a.to, &ports.spec)?;
    let created = match &to_spec {
        AuthoritySpec::Local { dir } if !dir.join("root-cert.pem").exists() => {
            if !a.create {
                bail!(
                    "--to {}: {} holds no CA (no root-cert.pem); check the path, or give --create to make a new root there",
                    a.to,
                    dir.display()
                );
            }
            Some(dir.clone())
        }
        _ => None,
    };
    if let (Some(dir), Some(alg)) = (&created, a.fleet.authority.root_key()?) {
        meshca_wiring::create_local_root(dir, alg)?;
    }
    let to = meshca_wiring::authority(&to_spec, ports.aws.as_ref())
        .await
        .with_context(|| format!("--to {}", a.to))?;
    // After a finished rotation the fleet stands on its target: start from there.
    let (from_authority, from_spec) = match ports.rotation_store()?.load().await? {
        Some(done) if !done.is_active() => {
            let a = ports
                .after_rotation(&done)
                .await
                .context("the authority to rotate from")?;
            let spec = if Arc::ptr_eq(&a, &ports.authority) {
                ports.spec.clone()
            } else {
                AuthoritySpec::from_locator(&done.target().locator, &ports.spec)?
            };
            (a, spec)
        }
        _ => (ports.authority.clone(), ports.spec.clone()),
    };
    let from = anchor(from_authority.as_ref(), &from_spec)
        .await
        .context("the authority in force")?;
    let to_anchor = anchor(to.as_ref(), &to_spec)
        .await
        .with_context(|| format!("--to {}", a.to))?;
    if let Some(dir) = created {
        eprintln!(
            "meshca: created a new root CA in {} (root-key.pem is its private key: keep it as you would any CA key)",
            dir.display()
        );
    }
    let authorities = vec![
        (from.authority_id.clone(), from_authority),
        (to_anchor.authority_id.clone(), to),
    ];
    let members = Session::members(&a.fleet, &ports).await?;
    let ctx = Session {
        store: ports.rotation_store()?,
        crl_api: Session::crl_api(&a.fleet, &ports),
        ports,
        authorities,
        settings: Settings::default(),
        members,
    };
    let report = ctx
        .rollout()
        .start(from, to_anchor, a.soak, &ctx.members)
        .await?;
    Ok((ctx, report))
}

async fn anchor(authority: &dyn meshca_core::Authority, spec: &AuthoritySpec) -> Result<Anchor> {
    let info = authority.describe().await?;
    Ok(Anchor {
        authority_id: info.id,
        locator: spec.locator(),
        root_bundle: info.root_bundle,
    })
}

/// The ports and both authorities of the rotation on record, and the members it moves.
struct Session {
    ports: Ports,
    store: Arc<dyn RotationStore>,
    authorities: Vec<(String, Arc<dyn meshca_core::Authority>)>,
    settings: Settings,
    members: Vec<Member>,
    /// CRL mode, members reached through their APIs: a new generation waits for its CRL there.
    crl_api: bool,
}

impl Session {
    async fn new(f: &FleetArgs) -> Result<Session> {
        let ports = Ports::build(&f.authority, &f.escrow).await?;
        let store = ports.rotation_store()?;
        let rotation = store
            .load()
            .await?
            .context("no root rotation has been started here (meshca rotate-root start --to …)")?;
        let authorities = ports.authorities(&rotation).await?;
        let members = Self::members(f, &ports).await?;
        Ok(Session {
            crl_api: Self::crl_api(f, &ports),
            ports,
            store,
            authorities,
            settings: Settings::default(),
            members,
        })
    }

    fn rollout(&self) -> Rollout<'_> {
        Rollout {
            store: self.store.as_ref(),
            escrow: self.ports.escrow.as_ref(),
            settings: &self.settings,
            authorities: self.authorities.clone(),
            crls: self
                .crl_api
                .then_some(&self.ports as &dyn meshca_core::rollout::CrlPass),
        }
    }

    fn crl_api(f: &FleetArgs, ports: &Ports) -> bool {
        (f.kubeconfig.is_some() || f.eks) && crate::crl::enabled(ports)
    }

    /// CRL mode on files: every cluster's `ca-crl.pem` and `cacerts.yaml` again, with the CRLs
    /// of the generations this step issued (and of both roots, mid-rotation).
    async fn publish_crl_files(&self, f: &FleetArgs) -> Result<()> {
        if f.kubeconfig.is_some() || f.eks || !crate::crl::enabled(&self.ports) {
            return Ok(());
        }
        for line in crate::crl::publish(&self.ports, &f.out_dir, &Default::default()).await? {
            println!("crls      {line}");
        }
        Ok(())
    }

    /// Every kind of the clusters named, or of every cluster escrowed here, each with its way
    /// in: a rotation moves each kind a cluster has, not its Istio intermediate alone.
    async fn members(f: &FleetArgs, ports: &Ports) -> Result<Vec<Member>> {
        let eks_config = match (f.eks, &ports.aws) {
            (true, Some(aws)) => Some(aws.clone()),
            (true, None) => Some(meshca_wiring::sdk_config(f.authority.region.clone()).await),
            (false, _) => None,
        };
        let aws = eks_config.as_ref();
        if f.clusters.is_empty() && f.escrow.escrow != "local" {
            // The fleet in AWS is the sweep's to walk: the record alone is written or read here.
            eprintln!(
                "no --cluster given: the record alone is handled here; the expiry sweep carries out each phase and opens the gates"
            );
            return Ok(Vec::new());
        }
        let keys = Self::keys(f, ports).await?;
        if keys.is_empty() {
            bail!("no clusters to rotate: nothing is escrowed here yet and no --cluster was given");
        }
        let clusters: std::collections::BTreeSet<&ClusterName> =
            keys.iter().map(|k| &k.cluster).collect();
        if clusters.len() > 1 && (f.kubeconfig.is_some() || aws.is_some()) {
            eprintln!(
                "meshca: reaching {} clusters, {} at a time",
                clusters.len(),
                rollout::CONCURRENCY
            );
        }
        // One way in per member, found concurrently; a member with none is a row of the report
        // (unconfirmed, with the reason), never the end of the command.
        let way = |key: EscrowKey| async move {
            let kind = Self::recorded_kind(ports, &key).await;
            let cluster = key.cluster.clone();
            let settings = Settings {
                kind: kind.clone(),
                ..Settings::default()
            };
            let options = f.delivery.options_for(&settings, &cluster);
            let found: Result<Arc<dyn Delivery>> = match (&f.kubeconfig, aws) {
                (Some(path), _) => {
                    meshca_wiring::kubeconfig_delivery(Some(path), Some(cluster.as_str()), options)
                        .await
                        .with_context(|| format!("context {cluster} in {}", path.display()))
                }
                (None, Some(aws)) => meshca_wiring::eks_delivery(aws, cluster.as_str(), options)
                    .await
                    .with_context(|| format!("EKS cluster {cluster}")),
                (None, None) => Ok(Arc::new(FilesDelivery::new(
                    crate::issue::out_dir(&f.out_dir, &cluster, &settings),
                    kind.landing(),
                    options.profile,
                ))),
            };
            let delivery = found.unwrap_or_else(|e| {
                eprintln!("meshca: {key}: {e:#}");
                Arc::new(meshca_core::delivery::NoWay(format!("{e:#}")))
            });
            Member {
                cluster,
                kind,
                delivery,
            }
        };
        use futures::StreamExt;
        let members: Vec<Member> = futures::stream::iter(keys)
            .map(way)
            .buffered(rollout::CONCURRENCY)
            .collect()
            .await;
        Ok(members)
    }

    /// The records to rotate: every kind escrowed for the clusters named (istio-cacerts for a
    /// cluster with none yet), or every record here.
    async fn keys(f: &FleetArgs, ports: &Ports) -> Result<Vec<EscrowKey>> {
        let escrowed = ports.escrow.keys().await.context("listing escrow")?;
        if f.clusters.is_empty() {
            return Ok(escrowed);
        }
        let mut keys = Vec::new();
        for name in &f.clusters {
            let cluster: ClusterName = name.parse()?;
            let mine: Vec<EscrowKey> = escrowed
                .iter()
                .filter(|k| k.cluster == cluster)
                .cloned()
                .collect();
            if mine.is_empty() {
                keys.push(EscrowKey::from(&cluster));
            } else {
                keys.extend(mine);
            }
        }
        Ok(keys)
    }

    /// The kind of `key` with the names its record was issued with (a cert-manager secret or
    /// TSB namespace of its own), or the kind's defaults.
    async fn recorded_kind(ports: &Ports, key: &EscrowKey) -> KindSpec {
        let defaults = Settings {
            kind: KindSpec::new(key.kind),
            ..Settings::default()
        };
        match ports
            .escrow
            .load(key)
            .await
            .ok()
            .and_then(|e| e.current?.terms)
        {
            Some(terms) => terms.apply(&defaults).kind,
            None => defaults.kind,
        }
    }
}

fn show(f: &FleetArgs, report: &RolloutReport) -> Result<()> {
    if f.output.json {
        let mut doc = serde_json::to_value(report)?;
        doc["phase_label"] = rollout::phase_label(&report.rotation).into();
        doc["may_advance"] = report.blockers.is_empty().into();
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    let r = &report.rotation;
    let now = OffsetDateTime::now_utc();
    let fp = |a: &Anchor| a.root_fingerprint()[..16].to_string();
    println!("rotation  {} → {}", r.from.locator, r.to.locator);
    println!(
        "phase     {} since {} ({} min), soak {}",
        rollout::phase_label(r),
        rfc3339(r.phase_started_at),
        r.phase_age(now).whole_minutes(),
        human(r.soak())
    );
    if r.is_active() {
        let stage = r.stage();
        let trust = if stage.trust == r.trust_both() {
            format!("old {} + new {}", fp(&r.from), fp(&r.to))
        } else {
            format!("{} alone", fp(stage.issuer))
        };
        println!("trust     root-cert.pem = {trust} (root SHA-256 prefixes)");
        println!("issuer    {}", stage.issuer.locator);
    }
    if !report.clusters.is_empty() {
        println!(
            "{:<24} {:<10} {:<11} DETAIL",
            "CLUSTER", "CONFIRMED", "THIS RUN"
        );
    }
    for line in &report.crls {
        println!("crls      {line}");
    }
    for s in &report.clusters {
        let did = s.outcome.as_ref().map_or("-", |o| o.label());
        let detail = s
            .blocking
            .clone()
            .unwrap_or_else(|| restarts(s.outcome.as_ref()));
        println!(
            "{:<24} {:<10} {:<11} {detail}",
            s.label(),
            if s.confirmed { "yes" } else { "no" },
            did
        );
    }
    // Proxies that read the trust anchors only when they start (Linkerd's, at injection) hold
    // the old ones until restarted: before the issuer moves, they must hold both.
    let anchored: Vec<String> = report
        .clusters
        .iter()
        .filter(|s| s.kind.profile().anchors.is_some())
        .map(|s| s.cluster.to_string())
        .collect();
    if r.phase == Phase::TrustBoth && !anchored.is_empty() {
        println!(
            "restart   the meshed workloads of {} (their proxies read the trust anchors when they start) before advancing",
            anchored.join(", ")
        );
    }
    match (r.phase, report.blockers.as_slice()) {
        (Phase::Done, _) => println!(
            "next      nothing: the fleet is under {} alone",
            r.target().locator
        ),
        (_, []) => println!("next      meshca rotate-root advance (every gate is met)"),
        (_, blockers) => println!("next      blocked: {}", blockers.join("; ")),
    }
    Ok(())
}

fn restarts(outcome: Option<&meshca_core::Outcome>) -> String {
    match outcome {
        Some(
            meshca_core::Outcome::Delivered { restarted, .. }
            | meshca_core::Outcome::Renewed { restarted, .. },
        ) if !restarted.is_empty() => {
            format!("restarted {}", restarted.join(", "))
        }
        _ => String::new(),
    }
}

fn human(d: Duration) -> String {
    match d.whole_seconds() {
        0 => "none".into(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// `26h`, `90m`, `2d`, `45s` or `0`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 26h, 90m, 2d or 0"))?;
    match unit {
        "s" => Ok(Duration::seconds(n)),
        "m" => Ok(Duration::minutes(n)),
        "h" => Ok(Duration::hours(n)),
        "d" => Ok(Duration::days(n)),
        _ => Err(format!("{s:?}: the unit must be s, m, h or d")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("26h"), Ok(Duration::hours(26)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("90m"), Ok(Duration::minutes(90)));
        assert!(
            parse_duration("1w").is_err()
                && parse_duration("h").is_err()
                && parse_duration("").is_err()
        );
        assert_eq!(human(meshca_core::rotation::DEFAULT_SOAK), "26h");
    }
}
