//! `meshca revoke`: a compromised cluster's certificates revoked at their authority and its
//! records held, so nothing issues or delivers it again until someone lifts the hold.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;
use meshca_core::authority::RevocationReason;
use meshca_core::escrow::EscrowKey;
use meshca_core::revocation::Revocation;
use meshca_core::{ClusterName, Kind, KindSpec, Reconciler, Settings};
use time::OffsetDateTime;

use crate::OutputArgs;
use crate::ports::{AuthorityArgs, EscrowArgs, Ports};
use crate::retire::escrowed_keys;

#[derive(Debug, Args)]
#[command(
    about = "Revoke a compromised cluster's certificates and hold it until the hold is lifted",
    long_about = "\
Revoke a compromised cluster's certificates and hold it until the hold is lifted.

Each certificate of the cluster in escrow (every kind, or the --kind given) is revoked at the
authority that issued it, with --reason, and its record is held: no `meshca issue`, sweep,
CreateCluster event or rotation issues or delivers that cluster again. Revoking a held cluster
again changes nothing. A revocation cannot be undone at the authority (a Private CA never takes
one back); `--lift` only ends the hold, and the cluster's next issue gets a new key and
generation.

Revoking at the authority is half the response: the other clusters' proxies refuse the
revoked intermediate only once their cacerts carry a CRL that lists it (Istio 1.27+).
A compromise of the root itself needs a root rotation (meshca rotate-root), not this.

Asks for confirmation on a terminal; elsewhere --yes is required. --dry-run says what would be
revoked and does nothing. In CRL mode (meshca crl) the fleet's CRLs, now listing the revoked
intermediate, are written into every other cluster's cacerts at once.",
    after_help = "\
Examples:
  meshca revoke --cluster prod-eu-1 --reason key-compromise --dry-run
  meshca revoke --cluster prod-eu-1 --reason key-compromise --yes
  meshca revoke --cluster prod-eu-1 --lift --yes     # then: meshca issue --cluster prod-eu-1

Exit status: 0 done, or nothing to change; 1 refused (no --yes off a terminal) or failed; 2 a
usage error."
)]
pub struct RevokeArgs {
    /// The cluster, as it was issued.
    #[arg(long, short = 'c', value_name = "NAME")]
    cluster: String,

    /// Why: key-compromise, ca-compromise, superseded, cessation-of-operation or
    /// affiliation-changed (recorded at the authority and in the record).
    #[arg(long, value_name = "REASON", required_unless_present = "lift")]
    reason: Option<String>,

    /// Revoke only this kind (repeatable) [default: every kind escrowed for the cluster].
    #[arg(long = "kind", value_name = "KIND")]
    kinds: Vec<String>,

    /// End the hold of an earlier revocation (the certificates stay revoked); the next issue
    /// gives the cluster a new key and generation.
    #[arg(long, conflicts_with = "reason")]
    lift: bool,

    /// Say what would be revoked; change nothing.
    #[arg(long)]
    dry_run: bool,

    /// Do it without asking (required where no terminal can answer).
    #[arg(long)]
    yes: bool,

    /// Turn the fleet's CRL mode on now (one-way; see `meshca crl`) if it is off, so the
    /// revocation reaches every other cluster's cacerts.
    #[arg(long)]
    enable_crl: bool,

    /// Directory the bundles were written under, one folder per cluster.
    #[arg(long, value_name = "DIR", default_value = "out")]
    out_dir: std::path::PathBuf,

    #[command(flatten)]
    fleet: crate::crl::FleetKubeconfig,

    #[command(flatten)]
    authority: AuthorityArgs,

    #[command(flatten)]
    escrow: EscrowArgs,

    #[command(flatten)]
    output: OutputArgs,
}

pub async fn run(args: RevokeArgs) -> Result<ExitCode> {
    let cluster: ClusterName = args.cluster.parse()?;
    let reason = args
        .reason
        .as_deref()
        .map(str::parse::<RevocationReason>)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--reason {e}"))?;
    let asked = args
        .kinds
        .iter()
        .map(|k| k.parse::<Kind>())
        .collect::<Result<Vec<_>, _>>()?;
    let ports = Ports::build(&args.authority, &args.escrow).await?;
    let keys = escrowed_keys(&ports, &cluster, &asked).await?;
    let what = match reason {
        Some(r) => format!("revoke ({r}) and hold"),
        None => "lift the hold on".into(),
    };
    if args.dry_run {
        plan(&ports, &keys, &what).await?;
        if reason.is_some() {
            plan_delivery(&ports, &cluster, &args).await?;
        }
        eprintln!("meshca: dry run: nothing was revoked or changed");
        return Ok(ExitCode::SUCCESS);
    }
    if !args.yes && !confirmed(&cluster, &what)? {
        bail!("nothing done: not confirmed (give --yes where no terminal can answer)");
    }
    let authority = ports.in_force().await?;
    let now = OffsetDateTime::now_utc();
    let asker = asker();
    let mut rows = Vec::new();
    for key in &keys {
        let settings = Settings {
            kind: KindSpec::new(key.kind),
            ..Settings::default()
        };
        let reconciler = Reconciler {
            authority: authority.as_ref(),
            escrow: ports.escrow.as_ref(),
            settings: &settings,
        };
        rows.push(match reason {
            Some(r) => reconciler
                .revoke(&cluster, r, now, &asker)
                .await
                .map(Done::Revoked),
            None => reconciler.lift(&cluster).await.map(Done::Lifted),
        });
    }
    print(&keys, &rows, args.output.json)?;
    if reason.is_some() && rows.iter().any(Result::is_ok) {
        enforce(&ports, &args).await?;
    }
    Ok(if rows.iter().all(Result::is_ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Hands the revocation to the data plane: the fleet's CRLs into every other cluster, in CRL
/// mode; otherwise says that nothing enforces it yet.
async fn enforce(ports: &Ports, args: &RevokeArgs) -> Result<()> {
    let lines = if args.enable_crl {
        Some(crate::crl::enable_and_publish(ports, &args.out_dir, &args.fleet).await?)
    } else if crate::crl::enabled(ports) {
        Some(crate::crl::publish(ports, &args.out_dir, &args.fleet).await?)
    } else {
        None
    };
    if let Some(lines) = lines {
        for line in lines {
            println!("{line}");
        }
        return Ok(());
    }
    eprintln!(
        "meshca: revoked at the authority, but nothing enforces it yet: CRL mode is off, so no other cluster's proxies know. Turn it on with `meshca crl enable` (or --enable-crl here)"
    );
    Ok(())
}

/// What one kind of the cluster went through.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "done")]
enum Done {
    Revoked(Revocation),
    Lifted(u64),
}

async fn plan(ports: &Ports, keys: &[EscrowKey], what: &str) -> Result<()> {
    let now = OffsetDateTime::now_utc();
    for key in keys {
        let current = ports.escrow.load(key).await?.current;
        let held = current
            .as_ref()
            .and_then(|c| c.revoked.as_ref())
            .is_some_and(|r| r.held);
        let Some(c) = current else {
            println!("would {what} {key}: nothing in service (a generation in flight)");
            continue;
        };
        println!(
            "would {what} {key}: generation {} (certificate {}, serial {}){}",
            c.meta.generation,
            c.meta.certificate_id,
            c.meta.serial,
            if held { "; it is held already" } else { "" }
        );
        if held {
            continue;
        }
        for e in c.superseded.iter().filter(|e| e.live(now)) {
            println!(
                "  and generation {} (certificate {}, serial {}), still valid until {}",
                e.generation,
                e.certificate_id,
                e.serial,
                meshca_core::timestamp::rfc3339(e.not_after)
            );
        }
        for u in c.unreached(now) {
            println!("  not reached from the ledger: {u}");
        }
    }
    Ok(())
}

/// What a revocation would hand to the data plane, for its dry run: the clusters that would get
/// the CRLs, and who enforces them there; or that nothing would, with CRL mode off.
async fn plan_delivery(ports: &Ports, cluster: &ClusterName, args: &RevokeArgs) -> Result<()> {
    if !args.enable_crl && !crate::crl::enabled(ports) {
        println!(
            "would deliver nothing: CRL mode is off, so no other cluster's proxies would refuse it (--enable-crl turns it on with the revocation)"
        );
        return Ok(());
    }
    let reached = crate::crl::would_reach(ports, cluster, &args.fleet).await?;
    if reached.is_empty() {
        println!("would deliver the CRLs to no other cluster: none is escrowed here");
    }
    for line in reached {
        println!("would write the fleet's CRLs, listing it, into {line}");
    }
    Ok(())
}

/// Asks on the terminal for the cluster's name; `false` where no terminal can answer.
/// Who runs this, for the record's audit entry: `user@host` as the environment tells.
fn asker() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "someone".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "a host".into());
    format!("{user}@{host} (meshca revoke)")
}

fn confirmed(cluster: &ClusterName, what: &str) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Ok(false);
    }
    eprint!(
        "meshca: {what} every certificate of {cluster}? It cannot be undone. Type the cluster's name to go on: "
    );
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim() == cluster.as_str())
}

fn print(
    keys: &[EscrowKey],
    rows: &[Result<Done, meshca_core::ReconcileError>],
    json: bool,
) -> Result<()> {
    if json {
        let doc: Vec<serde_json::Value> = keys
            .iter()
            .zip(rows)
            .map(|(key, row)| match row {
                Ok(done) => serde_json::json!({"record": key, "outcome": done}),
                Err(e) => serde_json::json!({"record": key, "error": e.to_string()}),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    for (key, row) in keys.iter().zip(rows) {
        match row {
            Ok(Done::Revoked(r)) if r.already => {
                println!(
                    "{key}: revoked and held already (generation {}); nothing changed",
                    r.generation
                )
            }
            Ok(Done::Revoked(r)) => {
                println!(
                    "{key}: revoked {} at the authority; generation {} held",
                    r.serials.join(", "),
                    r.generation
                );
                for unknown in &r.unknown {
                    println!("{key}: not revoked: {unknown}");
                }
            }
            Ok(Done::Lifted(generation)) => println!(
                "{key}: hold lifted (generation {generation} stays revoked); the next issue gives it a new key and generation"
            ),
            Err(e) => println!("{key}: {e}"),
        }
    }
    Ok(())
}
