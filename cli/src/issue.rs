//! `meshca issue`: a valid bundle for one cluster, reused from escrow while it is healthy.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use meshca_core::timestamp::rfc3339;

use meshca_core::delivery::{CrlsChange, Delivered};
use meshca_core::kind::{CATALOGUE, Input, Layout};
use meshca_core::reconcile::Standing;
use meshca_core::terms::Asked;
use meshca_core::{
    ClusterName, Delivery, KeyAlgorithm, Kind, KindSpec, Obtained, Profile, Reconciler,
    RenewalPolicy, Secured, Settings, Terms, Validity,
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
root-cert.pem, cacerts.yaml (0600: it holds the key). All are written or none is.

What a cluster was issued with (key algorithm, validity, renew-before, subject, names) is
recorded in its escrow record: a flag left out means \"as recorded\", and a flag that differs
from the record is refused unless --force is given (the change is kept in the record's history).",
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
  VAULT_TOKEN=… meshca issue --cluster c1 --vault-addr https://vault:8200 --vault-mount pki

Exit status: 0 issued, reused or delivered; 1 an error (printed once, with the fix where there is
one); 2 a usage error."
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

    /// Key algorithm of the intermediate: rsa-2048, rsa-3072, rsa-4096, ec-p256, ec-p384
    /// [default: as recorded for the cluster, else ec-p256].
    #[arg(long, value_name = "ALG")]
    key_algorithm: Option<String>,

    /// Lifetime of the intermediate in days (≥ 3). Must end before the issuing CA does
    /// [default: as recorded for the cluster, else 365].
    #[arg(long, value_name = "DAYS", conflicts_with = "not_after")]
    validity_days: Option<u32>,

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

    /// Kind of certificate (repeatable); the kinds are listed below.
    #[arg(
        long = "kind",
        value_name = "KIND",
        default_value = "istio-cacerts",
        help_heading = "Kinds",
        long_help = kinds_help("Kind of certificate (repeatable):")
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

    /// Issue a new generation even if the escrowed one is healthy (same root); with a flag that
    /// differs from the cluster's record, issue it with the new value.
    #[arg(long)]
    force: bool,

    /// Say what would be created, issued, written and delivered, and do none of it (no root is
    /// created, no key generated, no file written, no cluster contacted).
    #[arg(long)]
    dry_run: bool,

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
    let base = asked(&args)?;
    let kinds = kinds(&args, &base)?;
    for (kind, asked) in &kinds {
        let terms = asked.over(None, &defaults(*kind));
        check(&terms, &cluster, *kind)?;
    }
    if args.no_files && !args.target.is_set() {
        bail!("--no-files needs --context or --eks-cluster: otherwise the bundle would go nowhere");
    }
    if let Some(dir) = args.authority.missing_local_root() {
        let root = args.authority.new_root_key()?;
        for (kind, _) in &kinds {
            if let Some(want) = kind.profile().parent_key.filter(|w| *w != root) {
                bail!(
                    "{kind} must be signed by an {want} CA, and the local root this would create in {} is {root}: add --root-key-algorithm {want}. Nothing was created",
                    dir.display()
                );
            }
        }
    }
    if args.dry_run {
        return dry_run(&args, &cluster, kinds).await;
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
    for (kind, asked) in kinds {
        let settings = settle(escrow.as_ref(), &cluster, kind, &asked, &args).await?;
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
        let crl_mode = crate::crl::enabled(&ports) && landing.layout == Layout::IstioCacerts;
        let delivered = match delivery {
            Some(d) if crl_mode => Some(
                deliver_in_crl_mode(&ports, d.as_ref(), &secured, &target, args.output.json)
                    .await?,
            ),
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
    // In CRL mode a new generation's own CRL reaches every cluster's files, and a new
    // cluster gets the fleet's CRLs with its first bundle.
    if !args.no_files && crate::crl::enabled(&ports) {
        let said = crate::crl::publish(&ports, &args.out_dir, &Default::default())
            .await
            .context("publishing the fleet's CRLs (CRL mode is on)")?;
        for line in said {
            if args.output.json {
                eprintln!("meshca: {line}");
            } else {
                println!("{line}");
            }
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

/// A flag's help followed by every kind of the catalogue, a line each.
pub fn kinds_help(first: &str) -> String {
    let mut text = first.to_string();
    for p in &CATALOGUE {
        text.push_str(&format!("\n  {:<16} {}", p.name, p.about));
    }
    text
}

/// The terms every kind shares, as the flags ask for them (`None`: not given).
/// CRL mode: the fleet's CRLs, this generation's own among them, go into the cluster before its
/// bundle (istiod discards a `cacerts` whose `ca-crl.pem` lacks its intermediate's CRL); a
/// cluster without `cacerts` gets its first bundle, then the CRLs. A line for people on stdout,
/// or stderr beside `--json`.
async fn deliver_in_crl_mode(
    ports: &Ports,
    d: &dyn Delivery,
    secured: &Secured,
    target: &str,
    json: bool,
) -> Result<Delivered> {
    let say = |line: String| match json {
        true => eprintln!("meshca: {line}"),
        false => println!("{line}"),
    };
    let fleet = crate::crl::fleet_crls(ports).await?;
    let (first, line) = crate::crl::deliver_to(&fleet, d, target).await?;
    let delivered = d
        .deliver(&secured.bundle, &secured.meta)
        .await
        .with_context(|| format!("delivering to {target}"))?;
    let line = match first {
        CrlsChange::NoBundleYet => crate::crl::deliver_to(&fleet, d, target).await?.1,
        _ => line,
    };
    say(line);
    Ok(delivered)
}

fn asked(args: &IssueArgs) -> Result<Asked> {
    let key_algorithm = args
        .key_algorithm
        .as_deref()
        .map(str::parse::<KeyAlgorithm>)
        .transpose()?;
    let validity = match (&args.not_after, args.validity_days) {
        (Some(date), _) => Some(Validity::EndDate(parse_date(date)?)),
        (None, Some(0)) => bail!("--validity-days must be at least 1"),
        (None, days) => days.map(Validity::Days),
    };
    if let Some(Validity::EndDate(end)) = validity
        && end <= OffsetDateTime::now_utc() + Duration::days(1)
    {
        bail!(
            "--not-after {} is in the past or less than a day away; an intermediate must live at least one day",
            rfc3339(end)
        );
    }
    Ok(Asked {
        key_algorithm,
        validity,
        renew_before_days: args.renew_before_days.map(i64::from),
        common_name: args.common_name.clone(),
        organization: args.organization.clone(),
        organizational_unit: args.organizational_unit.clone(),
        ..Asked::default()
    })
}

/// What a run would do, from the authority and escrow as they are; nothing is created.
async fn dry_run(
    args: &IssueArgs,
    cluster: &ClusterName,
    kinds: Vec<(Kind, Asked)>,
) -> Result<ExitCode> {
    let missing_root = args.authority.missing_local_root();
    let ports = match &missing_root {
        Some(dir) => {
            println!(
                "would create a new local root CA in {} ({} key)",
                dir.display(),
                args.authority.new_root_key()?
            );
            None
        }
        None => Some(Ports::build(&args.authority, &args.escrow).await?),
    };
    let authority = match &ports {
        Some(p) => Some(p.in_force().await?),
        None => None,
    };
    for (kind, asked) in kinds {
        let settings = match &ports {
            Some(p) => settle(p.escrow.as_ref(), cluster, kind, &asked, args).await?,
            None => asked.over(None, &defaults(kind)).apply(&Settings {
                kind: KindSpec::new(kind),
                ..Settings::default()
            }),
        };
        let label = match kind {
            Kind::IstioCacerts => cluster.to_string(),
            other => format!("{cluster} {other}"),
        };
        let verdict = match (&ports, &authority) {
            (Some(p), Some(a)) => {
                let reconciler = Reconciler {
                    authority: a.as_ref(),
                    escrow: p.escrow.as_ref(),
                    settings: &settings,
                };
                let generation = p
                    .escrow
                    .load(&settings.kind.escrow_key(cluster))
                    .await?
                    .current
                    .map_or(0, |c| c.meta.generation);
                Some((reconciler.assess(cluster).await?, generation))
            }
            _ => None,
        };
        let terms = Terms::of(&settings).summary();
        match verdict {
            Some((meshca_core::Verdict::Keep { renew_at, .. }, g)) if !args.force => println!(
                "{label}: would reuse generation {g} (escrowed bundle is valid, renews after {})",
                renew_at.date()
            ),
            Some((meshca_core::Verdict::Renew { reason, .. }, g)) => {
                println!(
                    "{label}: would issue generation {} ({reason}) with {terms}",
                    g + 1
                )
            }
            Some((_, g)) => println!(
                "{label}: would issue generation {} (renewal forced) with {terms}",
                g + 1
            ),
            None => println!(
                "{label}: would issue generation 1 (no bundle escrowed for this cluster) with {terms}"
            ),
        }
        if !args.no_files {
            println!(
                "  would write  {}/",
                out_dir(&args.out_dir, cluster, &settings).display()
            );
        }
        if args.target.is_set() {
            let landing = settings.kind.landing();
            println!(
                "  would deliver to {}: {}/{}",
                args.target.describe(),
                landing.namespace,
                landing.name
            );
        }
    }
    eprintln!("meshca: dry run: nothing was created, issued, written or delivered");
    Ok(ExitCode::SUCCESS)
}

/// The terms of a kind no record speaks for.
fn defaults(kind: Kind) -> Terms {
    Terms::of(&Settings {
        kind: KindSpec::new(kind),
        ..Settings::default()
    })
}

/// Terms that can work: validity and renew-before agree, the subject fits a certificate.
fn check(terms: &Terms, cluster: &ClusterName, kind: Kind) -> Result<()> {
    let lifetime = match terms.validity {
        Validity::Days(d) => Duration::days(d.into()),
        Validity::EndDate(end) => end - OffsetDateTime::now_utc(),
    };
    let renewal = RenewalPolicy {
        renew_before: terms.renew_before_days.map(Duration::days),
    };
    if let Err(why) = renewal.check(lifetime, Profile::default().min_remaining) {
        bail!("--validity-days / --not-after and --renew-before-days do not work together: {why}");
    }
    if let Some(pin) = kind.profile().key_pin
        && terms.key_algorithm != pin
    {
        bail!(
            "--key-algorithm {}: {kind} is {pin} only (its mesh accepts no other key)",
            terms.key_algorithm
        );
    }
    terms
        .apply(&Settings {
            kind: KindSpec::new(kind),
            ..Settings::default()
        })
        .subject(cluster)
        .check()?;
    Ok(())
}

/// The settings one kind of `cluster` is issued with: what the flags ask, else what its record
/// holds, else the defaults. A flag that differs from the record is refused without --force:
/// nothing changes a cluster's terms by accident.
async fn settle(
    escrow: &dyn meshca_core::Escrow,
    cluster: &ClusterName,
    kind: Kind,
    asked: &Asked,
    args: &IssueArgs,
) -> Result<Settings> {
    let key = KindSpec::new(kind).escrow_key(cluster);
    let recorded = escrow
        .load(&key)
        .await
        .with_context(|| format!("reading {key}'s record"))?
        .current
        .and_then(|c| c.terms);
    if let Some(terms) = &recorded {
        let differ = asked.disagreements(terms);
        if !differ.is_empty() && !args.force {
            bail!(
                "{key} is recorded with {}; the flags differ: {}. Nothing was issued: leave the flags out to keep what is recorded, or add --force to issue a new generation with them (the change is kept in the record's history)",
                terms.summary(),
                differ.join("; ")
            );
        }
    }
    let terms = asked.over(recorded.as_ref(), &defaults(kind));
    check(&terms, cluster, kind)?;
    Ok(terms.apply(&Settings {
        kind: KindSpec::new(kind),
        new_root: args.new_root,
        standing: Standing::Configured,
        ..Settings::default()
    }))
}

/// The kinds asked for, each with its names from the flags; each at most once.
fn kinds(args: &IssueArgs, base: &Asked) -> Result<Vec<(Kind, Asked)>> {
    let cert_manager_secret = args
        .cert_manager_secret
        .as_deref()
        .map(|given| crate::target::namespace_name("--cert-manager-secret", given))
        .transpose()?;
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
    let wanted: Vec<Kind> = args.kinds.iter().filter_map(|x| x.parse().ok()).collect();
    let given = [
        (
            Input::Addresses,
            !dns.is_empty() || !ips.is_empty(),
            "--central-address",
        ),
        (Input::TsbName, args.tsb_name.is_some(), "--tsb-name"),
        (
            Input::TsbNamespace,
            args.tsb_namespace.is_some(),
            "--tsb-namespace",
        ),
        (
            Input::SecretName,
            cert_manager_secret.is_some(),
            "--cert-manager-secret",
        ),
    ];
    for (input, _, flag) in given.iter().filter(|(_, given, _)| *given) {
        if !wanted.iter().any(|k| k.profile().takes(*input)) {
            let takers: Vec<String> = CATALOGUE
                .iter()
                .filter(|p| p.takes(*input))
                .map(|p| format!("--kind {}", p.name))
                .collect();
            bail!(
                "{flag} is for {}, which is not asked for: it would be ignored",
                takers.join(" or ")
            );
        }
    }
    let mut out: Vec<(Kind, Asked)> = Vec::new();
    for k in &args.kinds {
        let kind: Kind = k.parse()?;
        if out.iter().any(|(seen, _)| *seen == kind) {
            bail!("--kind {kind} is given twice");
        }
        let takes = |input| kind.profile().takes(input);
        let mut asked = base.clone();
        if takes(Input::SecretName)
            && let Some((ns, name)) = cert_manager_secret
        {
            (asked.namespace, asked.secret) = (Some(ns.into()), Some(name.into()));
        }
        if takes(Input::TsbNamespace) {
            asked.namespace.clone_from(&args.tsb_namespace);
        }
        if takes(Input::Addresses) {
            (asked.dns, asked.ips) = (dns.clone(), ips.clone());
        }
        if takes(Input::TsbName) {
            asked.tsb_name.clone_from(&args.tsb_name);
        }
        out.push((kind, asked));
    }
    Ok(out)
}

/// `<out>/<cluster>` for istio-cacerts (as always), `<out>/<cluster>/<kind>` for the others.
pub fn out_dir(root: &Path, cluster: &ClusterName, settings: &Settings) -> PathBuf {
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
                meshca_core::kind::Layout::Tls => match &landing.anchors {
                    Some(a) => format!("tls.crt,tls.key,ca.crt,{}", a.key),
                    None => "tls.crt,tls.key,ca.crt".to_string(),
                },
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
