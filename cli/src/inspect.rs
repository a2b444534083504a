//! `meshca inspect`: judge a bundle by the rules istiod's CA must meet.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use meshca_core::crl::CrlError;
use meshca_core::delivery::{DeliveryOptions, Observed};
use meshca_core::fleet_crls::FleetCrls;
use meshca_core::validate::{self, Profile};
use meshca_core::{KeyAlgorithm, Kind, KindSpec};
use time::{Duration, OffsetDateTime};

use crate::OutputArgs;
use crate::report;
use crate::target::TargetArgs;

#[derive(Debug, Args)]
#[command(
    about = "Validate a cacerts bundle (directory or Secret manifest) and show what is in it",
    long_about = "\
Validate a cacerts bundle and show what is in it.

PATH is a directory holding ca-cert.pem, ca-key.pem, cert-chain.pem and root-cert.pem, or a
Secret manifest (YAML or JSON, as written by `meshca issue` or printed by
`kubectl get secret cacerts -n istio-system -o yaml`).

The bundle passes when: cert-chain.pem starts with ca-cert.pem and verifies link by link up to
a root in root-cert.pem; ca-cert.pem is a CA with the expected path length and keyCertSign;
ca-key.pem matches it (and is of --key-algorithm if given); no certificate outlives its issuer
or is expired; and more than --min-remaining-hours of life are left.

A bundle holding tls.crt, tls.key and ca.crt is read from those — as istiod reads cacerts (it
prefers them over the *.pem keys) and as a kubernetes.io/tls secret is read. --kind judges by
that kind's rules: a CA with --path-len for istio-cacerts and cert-manager-ca; for xcp-central,
mpc and xcp-edge a TLS identity (CA:FALSE, serverAuth and clientAuth, its SPIFFE ID).

With --context or --eks-cluster instead of PATH, the live secret of that cluster is read and
judged (istio-system/cacerts, or the kind's secret; nothing is written).

In CRL mode the bundle's ca-crl.pem (beside the files of a directory, or in the live secret) is
judged as the data plane reads it: it must hold a CRL of the bundle's own intermediate (istiod
discards a cacerts without one) and no lapsed CRL (a proxy then refuses every peer).

Exit status: 0 valid, 1 invalid, missing or unreadable, 2 usage error.",
    after_help = "\
Examples:
  meshca inspect out/demo
  meshca inspect out/demo/cacerts.yaml --json | jq .ca_cert.days_left
  meshca inspect --context kind-c1
  meshca inspect --eks-cluster prod-eu-1 --region eu-west-1 --json"
)]
pub struct InspectArgs {
    /// Bundle directory or Secret manifest.
    #[arg(required_unless_present_any = ["context", "eks_cluster"], conflicts_with_all = ["context", "eks_cluster"])]
    path: Option<PathBuf>,

    #[command(flatten)]
    target: TargetArgs,

    /// AWS region of --eks-cluster (default: AWS_REGION / the profile).
    #[arg(
        long,
        value_name = "REGION",
        requires = "eks_cluster",
        help_heading = "Cluster"
    )]
    region: Option<String>,

    /// Require this key algorithm (rsa-2048, rsa-3072, rsa-4096, ec-p256, ec-p384).
    #[arg(long, value_name = "ALG")]
    key_algorithm: Option<String>,

    /// Required BasicConstraints path length of the intermediate (the CA kinds).
    #[arg(long, value_name = "N", default_value_t = 0)]
    path_len: u32,

    /// Judge by this kind's rules; with --context/--eks-cluster, read that kind's secret.
    #[arg(
        long,
        value_name = "KIND",
        default_value = "istio-cacerts",
        long_help = crate::issue::kinds_help(
            "Judge by this kind's rules; with --context/--eks-cluster, read that kind's secret:"
        )
    )]
    kind: String,

    /// xcp-edge: the SPIFFE name it must carry (spiffe://xcp.tetrate.io/<NAME>).
    #[arg(long, value_name = "NAME")]
    tsb_name: Option<String>,

    /// xcp-central: an address it must carry as a DNS or IP SAN; repeatable.
    #[arg(long = "central-address", value_name = "ADDR")]
    central_addresses: Vec<String>,

    /// Namespace/name of the secret to read with --context/--eks-cluster (default: the kind's).
    #[arg(long, value_name = "NS/NAME")]
    secret: Option<String>,

    /// Refuse a bundle with less life left than this.
    #[arg(long, value_name = "HOURS", default_value_t = 24)]
    min_remaining_hours: u32,

    /// The local escrow whose record of the bundle's owner (a manifest's or secret's
    /// meshca.io/cluster) to show beside it: the terms it was issued with.
    #[arg(
        long,
        value_name = "DIR",
        env = "MESHCA_ESCROW_DIR",
        default_value = ".meshca/escrow"
    )]
    escrow_dir: PathBuf,

    #[command(flatten)]
    output: OutputArgs,
}

pub async fn run(args: InspectArgs) -> Result<ExitCode> {
    let key_algorithm = args
        .key_algorithm
        .as_deref()
        .map(str::parse::<KeyAlgorithm>)
        .transpose()?;
    let spec = kind_spec(&args)?;
    let shape = match identity(&spec, &args)? {
        Some(identity) => meshca_core::Shape::Leaf(identity),
        None => meshca_core::Shape::Ca {
            path_len: args.path_len,
        },
    };
    let profile = Profile {
        shape,
        key_algorithm,
        min_remaining: Duration::hours(args.min_remaining_hours.into()),
    };
    // `None`: not known here (a manifest file is judged by its four files alone).
    let crls: Option<Option<String>>;
    let (bundle, meta, source) = match &args.path {
        Some(path) => {
            if !path.exists() {
                bail!("{} does not exist", path.display());
            }
            let (bundle, meta) = meshca_wiring::read_bundle(path)?;
            crls = path
                .is_dir()
                .then(|| std::fs::read_to_string(path.join(meshca_core::bundle::CA_CRL)).ok());
            (bundle, meta, path.display().to_string())
        }
        None => {
            let target = args.target.describe();
            let delivery: std::sync::Arc<dyn meshca_core::Delivery> = args
                .target
                .connect(
                    args.region.clone(),
                    DeliveryOptions {
                        landing: spec.landing(),
                        ..DeliveryOptions::default()
                    },
                )
                .await
                .with_context(|| format!("connecting to {target}"))?
                .context("no cluster named")?;
            let source = format!("{target} {}/{}", spec.namespace, spec.secret);
            let (bundle, meta, owner) = match delivery
                .observe()
                .await
                .with_context(|| format!("reading {source}"))?
            {
                Observed::Absent => {
                    let why = if spec.kind == Kind::IstioCacerts {
                        "there is no cacerts secret; istiod runs on its self-signed CA"
                    } else {
                        "there is no such secret"
                    };
                    println!("{source}: MISSING: {why}");
                    return Ok(ExitCode::FAILURE);
                }
                Observed::Managed { bundle, meta } => (bundle, meta, "managed by meshca"),
                Observed::Unmanaged { bundle } => (bundle, None, "not managed by meshca"),
            };
            let Some(bundle) = bundle else {
                println!(
                    "{source}: INVALID: the secret lacks one of ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem (or tls.crt, tls.key, ca.crt), or one is not PEM"
                );
                return Ok(ExitCode::FAILURE);
            };
            crls = Some(
                delivery
                    .observe_crls()
                    .await
                    .with_context(|| format!("reading {source}"))?,
            );
            (bundle, meta, format!("{source} ({owner})"))
        }
    };
    let path = &source;
    let now = OffsetDateTime::now_utc();
    // A bundle whose CRLs the data plane would refuse is not valid either: istiod discards a
    // cacerts without its intermediate's CRL, and a lapsed CRL refuses every peer.
    let held_crls = crls.as_ref().map(|held| {
        held.as_deref()
            .map(|text| FleetCrls::held(text, &bundle.ca_cert, now))
    });
    let result = validate::validate(&bundle, &profile, now)
        .map_err(|e| e.to_string())
        .and_then(|v| match &held_crls {
            Some(Some(Err(e))) => Err(e.to_string()),
            _ => Ok(v),
        });
    let recorded = recorded_terms(&args.escrow_dir, meta.as_ref()).await;

    if args.output.json {
        let mut doc = match &result {
            Ok(v) => report::verified_json(v, now),
            Err(_) => validate::parse(&bundle)
                .map(|p| report::parsed_json(&p, now))
                .unwrap_or_else(|_| serde_json::json!({})),
        };
        doc["path"] = path.clone().into();
        doc["valid"] = result.is_ok().into();
        doc["error"] = result.as_ref().err().map(ToString::to_string).into();
        doc["meshca"] = serde_json::to_value(&meta)?;
        doc["recorded_terms"] = serde_json::to_value(&recorded)?;
        if let Some(held) = &held_crls {
            doc["crls"] = crls_json(held.as_ref(), now);
        }
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        match &result {
            Ok(v) => {
                println!("{path}: valid");
                report::print_verified(v, now);
            }
            Err(e) => {
                println!("{path}: INVALID: {e}");
                if let Ok(parsed) = validate::parse(&bundle) {
                    report::print_parsed(&parsed, now);
                }
            }
        }
        if let Some(m) = meta {
            println!(
                "  meshca       generation {}, certificate {}",
                m.generation, m.certificate_id
            );
        }
        if let Some(t) = &recorded {
            println!("  recorded     {}", t.summary());
        }
        if let Some(held) = &held_crls {
            println!("  CRLs         {}", crls_line(held.as_ref(), now));
        }
    }
    Ok(if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// What the bundle's `ca-crl.pem` says, for people.
fn crls_line(held: Option<&Result<FleetCrls, CrlError>>, now: OffsetDateTime) -> String {
    match held {
        None => "none (CRL mode is off here: nothing revoked is refused)".into(),
        Some(Err(e)) => format!("REFUSED by the data plane: {e}"),
        Some(Ok(h)) => format!(
            "{} in ca-crl.pem, its own among them, {} revoked certificates listed{}",
            h.listed.len(),
            h.revoked(),
            h.first_lapse()
                .map(|t| format!("; the first lapses in {} days", (t - now).whole_days()))
                .unwrap_or_default()
        ),
    }
}

fn crls_json(held: Option<&Result<FleetCrls, CrlError>>, now: OffsetDateTime) -> serde_json::Value {
    match held {
        None => serde_json::Value::Null,
        Some(Err(e)) => serde_json::json!({"valid": false, "error": e.to_string()}),
        Some(Ok(h)) => serde_json::json!({
            "valid": true,
            "count": h.listed.len(),
            "revoked": h.revoked(),
            "days_left": h.first_lapse().map(|t| (t - now).whole_days()),
        }),
    }
}

/// The terms the bundle's owner is recorded with in the local escrow, if it names its owner and
/// the escrow holds its record.
async fn recorded_terms(
    escrow_dir: &std::path::Path,
    meta: Option<&meshca_core::BundleMeta>,
) -> Option<meshca_core::Terms> {
    let owner = meta?.owner.as_ref()?;
    if !escrow_dir.exists() {
        return None;
    }
    let spec = meshca_wiring::EscrowSpec::Local {
        dir: escrow_dir.to_path_buf(),
    };
    meshca_wiring::escrow(&spec, None, None)
        .ok()?
        .load(owner)
        .await
        .ok()?
        .current?
        .terms
}

/// The kind to judge by, and where its secret is.
fn kind_spec(args: &InspectArgs) -> Result<KindSpec> {
    let mut spec = KindSpec::new(args.kind.parse::<Kind>()?);
    if let Some(s) = &args.secret {
        let (ns, name) = crate::target::namespace_name("--secret", s)?;
        (spec.namespace, spec.secret) = (ns.into(), name.into());
    }
    spec.tsb_name = args.tsb_name.clone();
    for a in &args.central_addresses {
        match a.parse::<std::net::IpAddr>() {
            Ok(ip) => spec.ips.push(ip),
            Err(_) => spec.dns.push(a.clone()),
        }
    }
    Ok(spec)
}

/// The identity a TLS kind must carry; xcp-edge needs its name.
fn identity(spec: &KindSpec, args: &InspectArgs) -> Result<Option<meshca_core::Identity>> {
    let by_tsb_name = matches!(
        spec.kind.profile().identity,
        Some(meshca_core::kind::IdentityRule::TsbName { .. })
    );
    if by_tsb_name && args.tsb_name.is_none() {
        bail!(
            "--kind {} needs --tsb-name: the SPIFFE name the identity must carry",
            spec.kind
        );
    }
    // The cluster name only matters for xcp-edge, whose --tsb-name was required above.
    #[allow(clippy::expect_used, reason = "a constant valid cluster name")]
    let placeholder: meshca_core::ClusterName = "cluster".parse().expect("a valid name");
    Ok(spec.identity(&placeholder))
}
