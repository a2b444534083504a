//! `meshca retire`: decommission a cluster by hand, as DeleteCluster does in the functions —
//! revoke its certificates at their authority and retire its escrow records.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use meshca_core::escrow::EscrowKey;
use meshca_core::{ClusterName, Kind, KindSpec, Outcome, Reconciler, Settings};

use crate::OutputArgs;
use crate::ports::{AuthorityArgs, EscrowArgs, Ports};

#[derive(Debug, Args)]
#[command(
    about = "Decommission a cluster: revoke its certificates and retire its escrow records",
    long_about = "\
Decommission a cluster: revoke its certificates and retire its escrow records.

What the functions do when EKS deletes a cluster, by hand: each certificate of the cluster
(every kind escrowed for it, or the --kind given) is revoked at the authority that issued it,
its record is marked revoked and retired (files: moved under <escrow>/retired/; Secrets
Manager: deleted with its recovery window). A record restored later never puts the revoked
certificate back: the name's next issue starts a fresh generation.

Without --yes nothing is done: the command lists what it would revoke. Revocation cannot be
undone. The cluster's own secrets and the files under out/ are left as they are.",
    after_help = "\
Examples:
  meshca retire --cluster old-eu-1                 # what would be revoked
  meshca retire --cluster old-eu-1 --yes
  meshca retire --cluster old-eu-1 --kind xcp-edge --yes
  meshca retire --cluster old-eu-1 --escrow secrets-manager --ca-arn ARN --yes

Exit status: 0 revoked and retired; 1 without --yes (what would be done is shown), or any kind
that failed (the others are still done); 2 a usage error."
)]
pub struct RetireArgs {
    /// The cluster, as it was issued.
    #[arg(long, short = 'c', value_name = "NAME")]
    cluster: String,

    /// Retire only this kind (repeatable) [default: every kind escrowed for the cluster].
    #[arg(long = "kind", value_name = "KIND")]
    kinds: Vec<String>,

    /// Do it: revoke and retire. Without it, only say what would be done.
    #[arg(long)]
    yes: bool,

    #[command(flatten)]
    authority: AuthorityArgs,

    #[command(flatten)]
    escrow: EscrowArgs,

    #[command(flatten)]
    output: OutputArgs,
}

pub async fn run(args: RetireArgs) -> Result<ExitCode> {
    let cluster: ClusterName = args.cluster.parse()?;
    let asked = args
        .kinds
        .iter()
        .map(|k| k.parse::<Kind>())
        .collect::<Result<Vec<_>, _>>()?;
    let ports = Ports::build(&args.authority, &args.escrow).await?;
    let keys = escrowed_keys(&ports, &cluster, &asked).await?;
    if !args.yes {
        for key in &keys {
            let current = ports.escrow.load(key).await?.current;
            let what = current.map_or("a generation in flight".into(), |c| {
                format!(
                    "generation {} (certificate {})",
                    c.meta.generation, c.meta.certificate_id
                )
            });
            println!("would revoke {key}: {what}, and retire its record");
        }
        eprintln!("meshca: nothing done: add --yes to revoke and retire (it cannot be undone)");
        return Ok(ExitCode::FAILURE);
    }
    let authority = ports.in_force().await?;
    let mut rows = Vec::new();
    let mut failed = false;
    for key in keys {
        let settings = Settings {
            kind: KindSpec::new(key.kind),
            ..Settings::default()
        };
        let outcome = Reconciler {
            authority: authority.as_ref(),
            escrow: ports.escrow.as_ref(),
            settings: &settings,
        }
        .cleanup(&cluster)
        .await;
        failed |= matches!(outcome, Outcome::Failed { .. });
        rows.push((key, outcome));
    }
    print(&rows, args.output.json)?;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The records of `cluster` to retire: the kinds asked for, else every kind escrowed.
pub(crate) async fn escrowed_keys(
    ports: &Ports,
    cluster: &ClusterName,
    asked: &[Kind],
) -> Result<Vec<EscrowKey>> {
    let keys: Vec<EscrowKey> = ports
        .escrow
        .keys()
        .await
        .context("listing escrow")?
        .into_iter()
        .filter(|k| k.cluster == *cluster && (asked.is_empty() || asked.contains(&k.kind)))
        .collect();
    if keys.is_empty() {
        bail!("nothing is escrowed for {cluster} here: no certificate to revoke");
    }
    Ok(keys)
}

fn print(rows: &[(EscrowKey, Outcome)], json: bool) -> Result<()> {
    if json {
        let doc: Vec<serde_json::Value> = rows
            .iter()
            .map(|(key, outcome)| {
                serde_json::json!({
                    "cluster": key.cluster.as_str(),
                    "kind": key.kind.name(),
                    "outcome": outcome,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    for (key, outcome) in rows {
        match outcome {
            Outcome::Revoked { certificates } => println!(
                "{key}: revoked {} and retired its record",
                if certificates.is_empty() {
                    "nothing (no certificate was issued)".to_string()
                } else {
                    certificates.join(", ")
                }
            ),
            Outcome::Failed { step, error } => println!("{key}: failed at {step}: {error}"),
            other => println!("{key}: {}", other.label()),
        }
    }
    Ok(())
}
