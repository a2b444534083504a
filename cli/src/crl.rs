//! `meshca crl`: revocation-ready fleets on files. Once CRL mode is on, every cluster's
//! `cacerts` carries `ca-crl.pem`: the authority's CRL (what it revoked) and each cluster
//! intermediate's own empty CRL, so the data plane (Istio 1.27+) refuses what is revoked and
//! admits the rest.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use meshca_core::ClusterName;
use meshca_core::crl;
use meshca_core::delivery::{CrlsChange, CrlsDelivered};
use meshca_core::escrow::{Current, EscrowKey};
use meshca_core::fleet_crls::FleetCrls;
use meshca_core::kind::Layout;
use meshca_wiring::EscrowSpec;
use time::OffsetDateTime;

use crate::ports::{AuthorityArgs, EscrowArgs, Ports};
use crate::target::TargetArgs;

/// The file in the escrow directory that turns CRL mode on.
const MODE_FILE: &str = "crl-mode.json";
/// Each intermediate's own CRL, signed once per generation, kept beside the records.
const OWN_CRLS: &str = "crl";

#[derive(Debug, Args)]
#[command(
    about = "Turn CRL mode on and publish the fleet's CRLs into every cluster's cacerts",
    long_about = "\
Turn CRL mode on and publish the fleet's CRLs into every cluster's cacerts.

In CRL mode every istio-cacerts cluster gets ca-crl.pem (in out/<cluster>/ and in its
cacerts.yaml): the authority's CRL, listing what it revoked, and each cluster intermediate's
own CRL. Istio 1.27+ hands it to every proxy, and a proxy with a CRL refuses a chain in which
any CA has no CRL, or a lapsed one: so every CRL is delivered everywhere, and re-published
before it lapses (the local root's CRL is valid 30 days; `meshca crl publish` re-signs it).

Turn it on before you need it: `meshca revoke` then reaches every other cluster at once.
It is one-way: istiod keeps a CRL it has seen even if ca-crl.pem is emptied. Kinds in the
kubernetes.io/tls layout (TSB, cert-manager, Linkerd) are not protected: their readers take no
CRL from meshca.",
    after_help = "\
Examples:
  meshca crl enable            # record CRL mode, write every cluster's ca-crl.pem
  meshca crl publish           # re-sign the authority's CRL and write it everywhere again

Exit status: 0 published; 1 an error (a CRL that would not fit, an authority that publishes none);
2 a usage error."
)]
pub struct CrlArgs {
    #[command(subcommand)]
    command: CrlCommand,
}

#[derive(Debug, Subcommand)]
enum CrlCommand {
    /// Record CRL mode for the fleet (one-way) and publish.
    #[command(after_help = "\
Examples:
  meshca crl enable
  meshca crl enable --out-dir fleet-out

Exit status: 0 recorded and published; 1 an error; 2 a usage error.")]
    Enable(PublishArgs),
    /// Publish again: re-sign the authority's CRL and write every cluster's ca-crl.pem.
    #[command(after_help = "\
Examples:
  meshca crl publish
  meshca crl publish --out-dir fleet-out
  meshca crl publish --context prod-eu   # and into that cluster's cacerts

Exit status: 0 published; 1 an error; 2 a usage error.")]
    Publish(PublishArgs),
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Directory the bundles were written under, one folder per cluster.
    #[arg(long, value_name = "DIR", default_value = "out")]
    out_dir: PathBuf,

    #[command(flatten)]
    authority: AuthorityArgs,

    #[command(flatten)]
    escrow: EscrowArgs,

    /// Also write them into this cluster's istio-system/cacerts (one cluster a run; the files
    /// are written either way).
    #[command(flatten)]
    target: TargetArgs,

    #[command(flatten)]
    fleet: FleetKubeconfig,
}

/// The clusters of the fleet through their APIs, one kubeconfig context each.
#[derive(Debug, Args, Clone, Default)]
pub struct FleetKubeconfig {
    /// Also write the fleet's CRLs into every cluster's istio-system/cacerts through this
    /// kubeconfig, whose contexts are named after the clusters (as `meshca rotate-root
    /// --kubeconfig` takes them); a cluster without a context is said so.
    #[arg(long, value_name = "FILE", help_heading = "Cluster")]
    pub fleet_kubeconfig: Option<PathBuf>,
}

pub async fn run(args: CrlArgs) -> Result<ExitCode> {
    let (enable, a) = match args.command {
        CrlCommand::Enable(a) => (true, a),
        CrlCommand::Publish(a) => (false, a),
    };
    let ports = Ports::build(&a.authority, &a.escrow).await?;
    // The escrow decides whether this command can work at all: before any call to the CA.
    escrow_dir(&ports)?;
    let lines = if enable {
        enable_and_publish(&ports, &a.out_dir, &a.fleet).await?
    } else if enabled(&ports) {
        publish(&ports, &a.out_dir, &a.fleet).await?
    } else {
        bail!(
            "CRL mode is off for the fleet in {}: turn it on with `meshca crl enable`",
            escrow_dir(&ports)?.display()
        );
    };
    for line in lines {
        println!("{line}");
    }
    if a.target.is_set() {
        let region = ports.region.clone().or_else(|| a.authority.region.clone());
        let delivery = a
            .target
            .connect(region, meshca_core::DeliveryOptions::default())
            .await?
            .context("no cluster named")?;
        let fleet = fleet_crls(&ports).await?;
        let (_, line) = deliver_to(&fleet, delivery.as_ref(), &a.target.describe()).await?;
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Turns CRL mode on and publishes, only once the authority's CRLs were read: a fleet whose
/// authority publishes none is never put in a mode nothing can serve.
pub async fn enable_and_publish(
    ports: &Ports,
    out_root: &Path,
    fleet: &FleetKubeconfig,
) -> Result<Vec<String>> {
    let authority_crl = authority_crl(ports).await?;
    enable(ports)?;
    publish_bundle(ports, out_root, fleet, authority_crl).await
}

/// The authority's CRLs: every CA above the cluster intermediates.
async fn authority_crl(ports: &Ports) -> Result<String> {
    ports.in_force().await?.crl().await?.context(
        "the authority publishes no CRL meshca can read, so CRL mode cannot protect this fleet",
    )
}

/// The local escrow directory: on Secrets Manager escrow CRL mode is the functions' setting.
fn escrow_dir(ports: &Ports) -> Result<PathBuf> {
    match &ports.escrow_spec {
        EscrowSpec::Local { dir } => Ok(dir.clone()),
        EscrowSpec::SecretsManager { .. } => {
            bail!(
                "meshca crl works on the local escrow (files) only: for a fleet escrowed in Secrets Manager, CRL mode is the functions' setting (CDK crlMode, Terraform crl_mode), and `meshca fleet --escrow secrets-manager --eks` shows where each cluster stands"
            )
        }
    }
}

/// Records CRL mode for the fleet these ports keep, if it is not on yet.
fn enable(ports: &Ports) -> Result<()> {
    let dir = escrow_dir(ports)?;
    if dir.join(MODE_FILE).exists() {
        return Ok(());
    }
    let at = meshca_core::timestamp::rfc3339(OffsetDateTime::now_utc());
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join(MODE_FILE),
        format!("{{\"enabled_at\": \"{at}\"}}\n"),
    )?;
    println!(
        "CRL mode is on for the fleet in {} (one-way: istiod keeps a CRL it has seen)",
        dir.display()
    );
    Ok(())
}

/// Whether CRL mode is on for the fleet these ports keep.
pub fn enabled(ports: &Ports) -> bool {
    escrow_dir(ports).is_ok_and(|d| enabled_in(&d))
}

/// Whether CRL mode is on for the fleet escrowed in `dir`.
pub fn enabled_in(dir: &Path) -> bool {
    dir.join(MODE_FILE).exists()
}

/// Builds the fleet's CRL bundle and writes it into every istio-cacerts cluster's files (and,
/// with a fleet kubeconfig, its cacerts); a line per record for people, the kinds it cannot
/// protect included.
pub async fn publish(
    ports: &Ports,
    out_root: &Path,
    fleet: &FleetKubeconfig,
) -> Result<Vec<String>> {
    let authority_crl = authority_crl(ports).await?;
    publish_bundle(ports, out_root, fleet, authority_crl).await
}

/// The fleet's CRLs as escrow records them, the istio records they come from, and a line for
/// each kind they cannot protect.
async fn assemble(
    ports: &Ports,
    authority_crl: &str,
) -> Result<(FleetCrls, Vec<Current>, Vec<String>)> {
    let mut said = Vec::new();
    let dir = escrow_dir(ports)?;
    let mut records: Vec<Current> = Vec::new();
    for key in ports.escrow.keys().await.context("listing escrow")? {
        if key.kind.profile().layout != Layout::IstioCacerts {
            said.push(format!(
                "{key}: not protected: the kubernetes.io/tls layout carries no CRL (its reader ignores one)"
            ));
            continue;
        }
        if let Some(current) = ports.escrow.load(&key).await?.current {
            records.push(current);
        }
    }
    let now = OffsetDateTime::now_utc();
    let mut own = Vec::new();
    for current in &records {
        match current.own_crl {
            Some(_) => own.extend(current.own_crls(now)?),
            // A record kept before meshca signed its own CRL at issuance: signed once, kept here.
            None => ensure_own_crl(&dir, current)?,
        }
    }
    let authority_and_kept = format!("{authority_crl}{}", live_own_crls(&dir, now)?);
    let fleet = FleetCrls::assemble(&authority_and_kept, own)?;
    said.extend(fleet.fits()?);
    Ok((fleet, records, said))
}

async fn publish_bundle(
    ports: &Ports,
    out_root: &Path,
    clusters: &FleetKubeconfig,
    authority_crl: String,
) -> Result<Vec<String>> {
    let (fleet, records, mut said) = assemble(ports, &authority_crl).await?;
    let now = OffsetDateTime::now_utc();
    let (crls, revoked, bytes) = (fleet.listed.len(), fleet.revoked(), fleet.text.len());
    let set = crl::CrlSet::parse(&fleet.text)?;
    for current in &records {
        let key = current.key();
        let out = out_root.join(key.cluster.as_str());
        if current.revoked.as_ref().is_some_and(|r| r.held) {
            said.push(write_revoked_note(&out, &key)?);
            if !fleet.lists(&current.meta.serial) {
                said.push(format!(
                    "{key}: revoked at the authority, CRL pending: no CRL it publishes lists serial {} yet (AWS Private CA publishes about 30 minutes after a revocation); run `meshca crl publish` again then",
                    current.meta.serial
                ));
            }
            continue;
        }
        // istiod's rule: a cacerts whose CRLs lack its own intermediate's is never written.
        set.signed_by_own(&current.bundle.ca_cert, now)?;
        write_cluster(&out, current, &fleet.text)?;
        said.push(format!(
            "{key}: ca-crl.pem written ({crls} CRLs, {revoked} revoked certificates listed, {bytes} bytes)"
        ));
        if let Some(kubeconfig) = &clusters.fleet_kubeconfig {
            said.push(into_cluster(kubeconfig, &key.cluster, &fleet).await);
        }
    }
    Ok(said)
}

/// The fleet's CRLs into `cluster`'s cacerts through its context in `kubeconfig`; what happened,
/// for people (a cluster not reached is a line, not the end of the run).
async fn into_cluster(kubeconfig: &Path, cluster: &ClusterName, fleet: &FleetCrls) -> String {
    let target = format!("context {cluster}");
    let delivery = match by_context(kubeconfig, cluster).await {
        Ok(d) => d,
        Err(e) => return format!("{target}: NOT REACHED: {e:#}"),
    };
    match delivery.deliver_crls(&fleet.text).await {
        Ok(done) => said_of(&target, fleet, &done),
        Err(e) => format!("{target}: NOT WRITTEN: {e}"),
    }
}

/// What a revocation would reach, for its dry run: every other istio cluster of the fleet whose
/// files get the CRLs and, with a fleet kubeconfig, whose `cacerts` would and who enforces them
/// there (read, nothing written); a line each.
pub async fn would_reach(
    ports: &Ports,
    revoked: &ClusterName,
    fleet: &FleetKubeconfig,
) -> Result<Vec<String>> {
    let mut said = Vec::new();
    for key in ports.escrow.keys().await.context("listing escrow")? {
        if key.cluster == *revoked || key.kind.profile().layout != Layout::IstioCacerts {
            continue;
        }
        let Some(current) = ports.escrow.load(&key).await?.current else {
            continue;
        };
        if current.revoked.as_ref().is_some_and(|r| r.held) {
            continue;
        }
        said.push(format!("{key}: its files' ca-crl.pem"));
        if let Some(kubeconfig) = &fleet.fleet_kubeconfig {
            said.push(enforcement_in(kubeconfig, &key.cluster).await);
        }
    }
    Ok(said)
}

/// Who enforces the CRLs in `cluster`, read through its context in `kubeconfig`.
async fn enforcement_in(kubeconfig: &Path, cluster: &ClusterName) -> String {
    let target = format!("context {cluster}");
    let delivery = match by_context(kubeconfig, cluster).await {
        Ok(d) => d,
        Err(e) => return format!("{target}: NOT REACHED: {e:#}"),
    };
    match delivery.crl_readers().await {
        Ok(Some(readers)) => format!(
            "{target}: its cacerts; {}",
            meshca_core::enforcement::judge(&readers)
        ),
        Ok(None) => format!("{target}: its cacerts"),
        Err(e) => format!("{target}: NOT READ: {e}"),
    }
}

/// `cluster`'s `cacerts` through the context of its name in a fleet's `kubeconfig`.
async fn by_context(
    kubeconfig: &Path,
    cluster: &ClusterName,
) -> Result<std::sync::Arc<dyn meshca_core::Delivery>, meshca_wiring::WiringError> {
    meshca_wiring::kubeconfig_delivery(
        Some(kubeconfig),
        Some(cluster.as_str()),
        meshca_core::DeliveryOptions::default(),
    )
    .await
}

/// What writing `fleet` into the cluster `target` names did, for people.
fn said_of(target: &str, fleet: &FleetCrls, done: &CrlsDelivered) -> String {
    let what = match done.change {
        CrlsChange::Written => "written",
        CrlsChange::Unchanged => "unchanged",
        CrlsChange::NoBundleYet => {
            return format!(
                "{target}: no cacerts yet: the fleet's CRLs go in after its first bundle"
            );
        }
    };
    let enforced = done.readers.as_ref().map_or_else(String::new, |r| {
        meshca_core::enforcement::judge(r).to_string()
    });
    format!(
        "{target}: istio-system/cacerts ca-crl.pem {what} ({} CRLs, {} revoked certificates listed); {enforced}",
        fleet.listed.len(),
        fleet.revoked()
    )
}

/// Writes the fleet's CRLs into one cluster's `cacerts` through its API (`target` names it in
/// what is said): a line for people, whether its istiod enforces them included. The cluster's
/// first bundle comes first: a cluster without `cacerts` is said so.
pub async fn deliver_to(
    fleet: &FleetCrls,
    delivery: &dyn meshca_core::Delivery,
    target: &str,
) -> Result<(CrlsChange, String)> {
    let done = delivery
        .deliver_crls(&fleet.text)
        .await
        .with_context(|| format!("writing the fleet's CRLs into {target}"))?;
    Ok((done.change, said_of(target, fleet, &done)))
}

/// A root rotation through the clusters' APIs in CRL mode: the fleet's CRLs, as escrow records
/// them now (the phase's new generations and both roots' among them), into every istio member,
/// before the rollout puts the waiting generations in force.
#[async_trait::async_trait]
impl meshca_core::rollout::CrlPass for Ports {
    async fn deliver(&self, members: &[meshca_core::rollout::Member]) -> Vec<String> {
        use futures::StreamExt;
        let fleet = match fleet_crls(self).await {
            Ok(fleet) => fleet,
            Err(e) => return vec![format!("the fleet's CRLs could not be built: {e:#}")],
        };
        // The futures made first, so no closure is part of the (Send) stream's type.
        let mut each = Vec::new();
        for m in members {
            if m.kind.landing().layout != Layout::IstioCacerts {
                continue;
            }
            let fleet = &fleet;
            each.push(async move {
                match deliver_to(fleet, m.delivery.as_ref(), m.cluster.as_str()).await {
                    Ok((_, said)) => said,
                    Err(e) => format!("{}: {e:#}", m.cluster),
                }
            });
        }
        futures::stream::iter(each)
            .buffered(meshca_core::rollout::CONCURRENCY)
            .collect()
            .await
    }
}

/// The fleet's CRLs as escrow records them now, the authority's read afresh.
pub async fn fleet_crls(ports: &Ports) -> Result<FleetCrls> {
    let authority_crl = authority_crl(ports).await?;
    Ok(assemble(ports, &authority_crl).await?.0)
}

/// Every intermediate's own CRL kept under `<escrow>/crl/` that has not lapsed: a renewed
/// cluster's earlier generation signs workloads until their certificates rotate, and a data plane
/// refuses a chain whose CA has no CRL, so each generation's CRL stays until it expires.
fn live_own_crls(dir: &Path, now: OffsetDateTime) -> Result<String> {
    let listing = match std::fs::read_dir(dir.join(OWN_CRLS)) {
        Ok(listing) => listing,
        // No cluster issued yet: the authority's CRL alone.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(e.into()),
    };
    let mut files: Vec<PathBuf> = listing
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.sort();
    let mut out = String::new();
    for path in files {
        let text = std::fs::read_to_string(&path)?;
        let live = crl::parse(&text)?
            .iter()
            .all(|l| l.next_update.is_none_or(|t| t > now));
        if live {
            out.push_str(&text);
        }
    }
    Ok(out)
}

/// The intermediate's own empty CRL for its generation: signed once, valid until the
/// intermediate itself expires, kept under `<escrow>/crl/` (where [`live_own_crls`] reads it).
fn ensure_own_crl(dir: &Path, current: &Current) -> Result<()> {
    let path =
        dir.join(OWN_CRLS)
            .join(format!("{}.{}.pem", current.key(), current.meta.generation));
    if path.exists() {
        return Ok(());
    }
    let text = crl::own(&current.bundle.ca_cert, &current.bundle.ca_key)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, &text)?;
    Ok(())
}

fn write_cluster(out: &Path, current: &Current, bundle: &str) -> Result<()> {
    Ok(meshca_wiring::write_crl_files(
        out,
        &current.bundle,
        &current.meta,
        bundle,
    )?)
}

fn write_revoked_note(out: &Path, key: &EscrowKey) -> Result<String> {
    let note = format!(
        "{key} is revoked and held by meshca: do not deploy these files. Lift with `meshca revoke --cluster {} --lift`.\n",
        key.cluster
    );
    meshca_wiring::write_note(out, "REVOKED", &note)?;
    Ok(format!(
        "{key}: revoked and held; {}/REVOKED says so",
        out.display()
    ))
}
