//! `meshca issue`: a valid bundle for one cluster, reused from escrow while it is healthy.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use meshca_core::timestamp::rfc3339;

use meshca_core::{
    ClusterName, KeyAlgorithm, Kind, KindSpec, Obtained, Profile, Reconciler, RenewalPolicy,
    Secured, Settings, Validity,
};
use time::format_description::well_known::Rfc3339;
use time::{Date, Duration, OffsetDateTime};

use crate::OutputArgs;
use crate::ports::{AuthorityArgs, EscrowArgs, Ports};
use crate::report;
use crate::target::{self, DeliveryArgs, TargetArgs};

#[derive(Debug, Args)]
#[command(
    about = "Issue (or reuse) a cluster's intermediate CA and write its cacerts bundle",
    long_about = "\
Issue (or reuse) a cluster's intermediate CA and write its cacerts bundle.

A rerun for the same cluster reuses the escrowed bundle while it is valid and not due for
renewal, so running this from CI on every pipeline is cheap and safe. It renews when the bundle
is missing, invalid, signed under another root, due (less than a third of its validity left,
never less than 48 h), or when --force is given. The output says which happened and why.

Files written to <OUT_DIR>/<CLUSTER>/: ca-cert.pem, ca-key.pem (0600), cert-chain.pem,
root-cert.pem, cacerts.yaml (0600: it holds the key). All are written or none is.",
    after_help = "\
Examples:
  meshca issue --cluster demo
  meshca issue --cluster demo --force       # rotate; root-cert.pem stays byte-identical
  meshca issue --cluster prod-eu-1 --key-algorithm rsa-4096 --validity-days 180
  meshca issue --cluster prod-eu-1 --escrow secrets-manager \\
      --ca-arn arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/ID
  kubectl apply -f out/demo/cacerts.yaml
  meshca issue --cluster c1 --context kind-c1   # issue, then deliver istio-system/cacerts
  meshca issue --eks-cluster prod-eu-1 --region eu-west-1 --no-files \\
      --ca-arn ARN --escrow secrets-manager
  VAULT_TOKEN=… meshca issue --cluster c1 --vault-addr https://vault:8200 --vault-mount pki"
)]
pub struct IssueArgs {
    /// Cluster name as EKS spells it (letters, digits, '-' and '_', at most 100); defaults to --eks-cluster.
    #[arg(
        long,
        short = 'c',
        value_name = "NAME",
        required_unless_present = "eks_cluster"
    )]
    cluster: Option<String>,

    /// Key algorithm of the intermediate: rsa-2048, rsa-3072, rsa-4096, ec-p256, ec-p384.
    #[arg(long, value_name = "ALG", default_value = "ec-p256")]
    key_algorithm: String,

    /// Lifetime of the intermediate in days (≥ 1). Must end before the issuing CA does.
    #[arg(
        long,
        value_name = "DAYS",
        default_value_t = 365,
        conflicts_with = "not_after"
    )]
    validity_days: u32,

    /// Fixed end date instead of --validity-days (RFC 3339, or YYYY-MM-DD meaning 00:00 UTC).
    #[arg(long, value_name = "DATE")]
    not_after: Option<String>,

    /// Renew when less than this many days are left (default: a third of the validity, ≥ 2 days).
    #[arg(long, value_name = "DAYS")]
    renew_before_days: Option<u32>,

    /// Subject common name (default: "<cluster> istio intermediate CA").
    #[arg(long, value_name = "CN")]
    common_name: Option<String>,

    /// Subject organisation (O).
    #[arg(long, short = 'O', value_name = "O")]
    organization: Option<String>,

    /// Subject organisational unit (OU).
    #[arg(long, value_name = "OU")]
    organizational_unit: Option<String>,

    /// Kind of certificate (repeatable): istio-cacerts (Istio's intermediate in istio-system/cacerts),
    /// cert-manager-ca (the intermediate for istio-csr's cert-manager CA Issuer), xcp-central and
    /// mpc (TSB's management plane), xcp-edge (a TSB control plane).
    #[arg(
        long = "kind",
        value_name = "KIND",
        default_value = "istio-cacerts",
        help_heading = "Kinds"
    )]
    kinds: Vec<String>,

    /// xcp-edge: the cluster's name in TSB, the last part of its SPIFFE ID
    /// spiffe://xcp.tetrate.io/<NAME> (default: the cluster name).
    #[arg(long, value_name = "NAME", help_heading = "Kinds")]
    tsb_name: Option<String>,

    /// xcp-central: an address control planes dial (JWT mode), as a DNS name or an IP; repeatable.
    #[arg(long = "central-address", value_name = "ADDR", help_heading = "Kinds")]
    central_addresses: Vec<String>,

    /// xcp-central, mpc: namespace of TSB's management-plane secrets (xcp-central-cert,
    /// mpc-certs) [default: tsb].
    #[arg(long, value_name = "NS", help_heading = "Kinds")]
    tsb_namespace: Option<String>,

    /// cert-manager-ca: the secret istio-csr's CA Issuer reads, as NAMESPACE/NAME
    /// [default: cert-manager/istio-ca].
    #[arg(long, value_name = "NS/NAME", help_heading = "Kinds")]
    cert_manager_secret: Option<String>,

    /// Issue a new generation even if the escrowed one is healthy (same root).
    #[arg(long)]
    force: bool,

    /// Lab only: let the cluster move to an authority whose root it does not share, which cuts
    /// it off from every cluster of its old root. A fleet changes roots with `meshca rotate-root`.
    #[arg(long)]
    new_root: bool,

    /// Directory the bundle is written under, one folder per cluster.
    #[arg(long, value_name = "DIR", default_value = "out")]
    out_dir: PathBuf,

    /// Write no files (with --context or --eks-cluster: the key then exists only in the
    /// cluster and the escrow).
    #[arg(long)]
    no_files: bool,

    #[command(flatten)]
    authority: AuthorityArgs,

    #[command(flatten)]
    escrow: EscrowArgs,

    #[command(flatten)]
    target: TargetArgs,

    #[command(flatten)]
    delivery: DeliveryArgs,

    #[command(flatten)]
    output: OutputArgs,
}

pub async fn run(args: IssueArgs) -> Result<ExitCode> {
    // Everything the user typed is checked before anything is created or issued.
    let name = args
        .cluster
        .clone()
        .or_else(|| args.target.eks_cluster.clone())
        .context("--cluster is required")?;
    let cluster: ClusterName = name.parse()?;
    let base = settings(&args)?;
    let kinds = kinds(&args)?;
    for spec in &kinds {
        Settings {
            kind: spec.clone(),
            ..base.clone()
        }
        .subject(&cluster)
        .check()?;
    }
    if args.no_files && !args.target.is_set() {
        bail!("--no-files needs --context or --eks-cluster: otherwise the bundle would go nowhere");
    }

    let ports = Ports::build(&args.authority, &args.escrow).await?;
    let (authority, escrow, region) = (
        ports.in_force().await?,
        ports.escrow.clone(),
        ports.region.clone(),
    );

    // Reach the cluster (once per kind, each with its own landing) and check every output
    // directory before issuing, so a wrong context or a cluster that is not ACTIVE costs no
    // certificate.
    let target = args.target.describe();
    let mut jobs = Vec::new();
    for spec in kinds {
        let settings = Settings {
            kind: spec,
            ..base.clone()
        };
        let out = out_dir(&args.out_dir, &cluster, &settings);
        if !args.no_files {
            check_writable(&out)?;
        }
        let delivery = args
            .target
            .connect(
                region.clone().or_else(|| args.authority.region.clone()),
                args.delivery.options_for(&settings, &cluster),
            )
            .await
            .with_context(|| format!("connecting to {target}"))?;
        if let Some(d) = &delivery {
            let observed = d
                .observe()
                .await
                .with_context(|| format!("reading {target}"))?;
            let key = settings.kind.escrow_key(&cluster);
            if let Some(refusal) = d
                .refuses(&observed)
                .or_else(|| observed.owned_by_another(&key))
            {
                return Err(
                    anyhow::Error::new(refusal).context(format!("{target}: nothing issued"))
                );
            }
        }
        jobs.push((settings, out, delivery));
    }

    let mut docs = Vec::new();
    for (settings, out, delivery) in &jobs {
        let reconciler = Reconciler {
            authority: authority.as_ref(),
            escrow: escrow.as_ref(),
            settings,
        };
        let secured = reconciler.ensure_bundle(&cluster, args.force).await?;
        let landing = settings.kind.landing();
        if !args.no_files {
            meshca_wiring::write_files(out, &secured.bundle, &secured.meta, &landing)
                .with_context(|| format!("writing the bundle to {}", out.display()))?;
        }
        let delivered = match delivery {
            Some(d) => Some(
                d.deliver(&secured.bundle, &secured.meta)
                    .await
                    .with_context(|| format!("delivering to {target}"))?,
            ),
            None => None,
        };
        let files = (!args.no_files).then_some(out.as_path());
        let shown = Shown {
            cluster: &cluster,
            settings,
            secured: &secured,
            files,
            target: &target,
            delivered: delivered.as_ref(),
        };
        if args.output.json {
            docs.push(shown.json());
        } else {
            shown.print();
        }
    }
    if args.output.json {
        // One kind (the default): the document as it always was; several: an array of them.
        let doc = if docs.len() == 1 {
            docs.remove(0)
        } else {
            serde_json::Value::Array(docs)
        };
        println!("{}", serde_json::to_string_pretty(&doc)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// The settings every kind shares, from the flags.
fn settings(args: &IssueArgs) -> Result<Settings> {
    let key_algorithm: KeyAlgorithm = args.key_algorithm.parse()?;
    let validity = match &args.not_after {
        Some(date) => Validity::EndDate(parse_date(date)?),
        None if args.validity_days == 0 => bail!("--validity-days must be at least 1"),
        None => Validity::Days(args.validity_days),
    };
    if let Validity::EndDate(end) = validity
        && end <= OffsetDateTime::now_utc() + Duration::days(1)
    {
        bail!(
            "--not-after {} is in the past or less than a day away; an intermediate must live at least one day",
            rfc3339(end)
        );
    }
    let renewal = RenewalPolicy {
        renew_before: args.renew_before_days.map(|d| Duration::days(d.into())),
    };
    let lifetime = match validity {
        Validity::Days(d) => Duration::days(d.into()),
        Validity::EndDate(end) => end - OffsetDateTime::now_utc(),
    };
    if let Err(why) = renewal.check(lifetime, Profile::default().min_remaining) {
        bail!("--validity-days / --not-after and --renew-before-days do not work together: {why}");
    }
    Ok(Settings {
        key_algorithm,
        organization: args.organization.clone(),
        organizational_unit: args.organizational_unit.clone(),
        common_name: args.common_name.clone(),
        validity,
        profile: Profile {
            key_algorithm: Some(key_algorithm),
            ..Profile::default()
        },
        renewal,
        new_root: args.new_root,
        kind: KindSpec::default(),
        scope: None,
    })
}

/// The kinds asked for, each with its names from the flags; each at most once.
fn kinds(args: &IssueArgs) -> Result<Vec<KindSpec>> {
    let cert_manager_secret = args
        .cert_manager_secret
        .clone()
        .unwrap_or_else(|| "cert-manager/istio-ca".into());
    let (cm_namespace, cm_name) = cert_manager_secret
        .split_once('/')
        .filter(|(ns, n)| !ns.is_empty() && !n.is_empty())
        .with_context(|| {
            format!(
                "--cert-manager-secret {:?} is not NAMESPACE/NAME",
                args.cert_manager_secret
            )
        })?;
    let (mut dns, mut ips) = (Vec::new(), Vec::new());
    for a in &args.central_addresses {
        match meshca_core::kind::parse_address(a)
            .map_err(|e| anyhow::anyhow!("--central-address {e}"))?
        {
            meshca_core::kind::SanAddress::Ip(ip) => ips.push(ip),
            meshca_core::kind::SanAddress::Dns(name) => dns.push(name),
        }
    }
    if let Some(name) = &args.tsb_name {
        meshca_core::kind::check_tsb_name(name).map_err(|e| anyhow::anyhow!("--tsb-name: {e}"))?;
    }
    let asked = |k: Kind| args.kinds.iter().any(|x| x.parse::<Kind>().ok() == Some(k));
    let without_kind = [
        (
            !args.central_addresses.is_empty() && !asked(Kind::XcpCentral),
            "--central-address",
            "--kind xcp-central",
        ),
        (
            args.tsb_name.is_some() && !asked(Kind::XcpEdge),
            "--tsb-name",
            "--kind xcp-edge",
        ),
        (
            args.tsb_namespace.is_some() && !asked(Kind::XcpCentral) && !asked(Kind::Mpc),
            "--tsb-namespace",
            "--kind xcp-central or --kind mpc",
        ),
        (
            args.cert_manager_secret.is_some() && !asked(Kind::CertManagerCa),
            "--cert-manager-secret",
            "--kind cert-manager-ca",
        ),
    ];
    if let Some((_, flag, kind)) = without_kind.iter().find(|(given, ..)| *given) {
        bail!("{flag} is for {kind}, which is not asked for: it would be ignored");
    }
    let tsb_namespace = args.tsb_namespace.clone().unwrap_or_else(|| "tsb".into());
    let mut out: Vec<KindSpec> = Vec::new();
    for k in &args.kinds {
        let kind: Kind = k.parse()?;
        if out.iter().any(|s| s.kind == kind) {
            bail!("--kind {kind} is given twice");
        }
        let mut spec = KindSpec::new(kind);
        match kind {
            Kind::CertManagerCa => {
                (spec.namespace, spec.secret) = (cm_namespace.into(), cm_name.into())
            }
            Kind::XcpCentral => {
                (spec.namespace, spec.dns, spec.ips) =
                    (tsb_namespace.clone(), dns.clone(), ips.clone())
            }
            Kind::Mpc => spec.namespace = tsb_namespace.clone(),
            Kind::XcpEdge => spec.tsb_name = args.tsb_name.clone(),
            Kind::IstioCacerts => {}
        }
        out.push(spec);
    }
    Ok(out)
}

/// `<out>/<cluster>` for istio-cacerts (as always), `<out>/<cluster>/<kind>` for the others.
fn out_dir(root: &Path, cluster: &ClusterName, settings: &Settings) -> PathBuf {
    match settings.kind.kind {
        Kind::IstioCacerts => root.join(cluster.as_str()),
        other => root.join(cluster.as_str()).join(other.name()),
    }
}

/// One kind's result, for people or for scripts.
struct Shown<'a> {
    cluster: &'a ClusterName,
    settings: &'a Settings,
    secured: &'a Secured,
    files: Option<&'a Path>,
    target: &'a str,
    delivered: Option<&'a meshca_core::delivery::Delivered>,
}

impl Shown<'_> {
    fn json(&self) -> serde_json::Value {
        let (action, reason) = describe(self.secured);
        let mut doc = report::verified_json(&self.secured.verified, OffsetDateTime::now_utc());
        doc["cluster"] = self.cluster.as_str().into();
        doc["kind"] = self.settings.kind.kind.name().into();
        doc["action"] = action.into();
        doc["reason"] = reason.into();
        doc["generation"] = self.secured.meta.generation.into();
        doc["certificate_id"] = self.secured.meta.certificate_id.clone().into();
        doc["out_dir"] = self.files.map(|p| p.display().to_string()).into();
        doc["delivery"] = self
            .delivered
            .map(|d| target::delivered_json(self.target, d))
            .into();
        doc
    }

    fn print(&self) {
        let (action, reason) = describe(self.secured);
        let kind = self.settings.kind.kind;
        let label = if kind == Kind::IstioCacerts {
            String::new()
        } else {
            format!(" {kind}")
        };
        println!(
            "{}{label}: {action} generation {} ({reason})",
            self.cluster, self.secured.meta.generation
        );
        report::print_verified(&self.secured.verified, OffsetDateTime::now_utc());
        let landing = self.settings.kind.landing();
        let manifest = meshca_wiring::manifest_file(&landing);
        if let Some(dir) = self.files {
            let names = match landing.layout {
                meshca_core::kind::Layout::IstioCacerts => {
                    "ca-cert.pem,ca-key.pem,cert-chain.pem,root-cert.pem".to_string()
                }
                meshca_core::kind::Layout::Tls => "tls.crt,tls.key,ca.crt".to_string(),
            };
            println!("  files        {}/{{{names},{manifest}}}", dir.display());
        }
        match (self.delivered, self.files) {
            (Some(d), _) => target::print_delivered(self.target, d, &landing),
            (None, Some(dir)) => {
                println!("next: kubectl apply -f {}", dir.join(&manifest).display())
            }
            (None, None) => {}
        }
    }
}

fn describe(secured: &Secured) -> (&'static str, String) {
    match &secured.obtained {
        Obtained::Escrowed => {
            let remaining = secured.meta.not_after - OffsetDateTime::now_utc();
            (
                "reused",
                format!(
                    "escrowed bundle is valid, {} days left, renews after {}",
                    remaining.whole_days(),
                    secured.renew_at.date()
                ),
            )
        }
        Obtained::Issued(reason) => ("issued", reason.to_string()),
        Obtained::Resumed(reason) => (
            "resumed",
            format!("finished a generation an earlier run started; {reason}"),
        ),
        Obtained::Rerooted => (
            "re-rooted",
            "the same intermediate under the authority's new root bundle (no certificate issued)"
                .into(),
        ),
    }
}

fn parse_date(s: &str) -> Result<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = Date::parse(s, &format).with_context(|| {
        format!("--not-after {s:?} is neither RFC 3339 (2027-06-30T00:00:00Z) nor YYYY-MM-DD")
    })?;
    Ok(date.midnight().assume_utc())
}

/// Fails early, before a key is generated or a certificate paid for, if the bundle could not be
/// written afterwards.
/// Directories it had to create for the probe are removed again, so a run that fails later
/// leaves no trace in the output tree.
fn check_writable(dir: &Path) -> Result<()> {
    let mut first_missing = None;
    for ancestor in dir.ancestors().filter(|a| !a.as_os_str().is_empty()) {
        if ancestor.exists() {
            break;
        }
        first_missing = Some(ancestor.to_path_buf());
    }
    let probe = std::fs::create_dir_all(dir)
        .with_context(|| format!("output directory {} cannot be created", dir.display()))
        .and_then(|()| {
            tempfile::tempfile_in(dir)
                .with_context(|| format!("output directory {} is not writable", dir.display()))
        });
    if let Some(created) = first_missing {
        let _ = std::fs::remove_dir_all(created);
    }
    probe.map(drop)
}
