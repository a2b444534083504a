//! 8. What a month costs per cluster: COST_CLUSTERS clusters, each with three kinds, through
//!    the expiry-sweep binary (as deployed: info logs, the sweep's memory), one sweep that
//!    renews them all and one steady sweep. What they used (AWS calls by operation, secrets
//!    created, certificates, GB-seconds, the bytes they logged, the metric series their EMF
//!    lines feed) goes through `meshca_bench::cost` with bench/prices.json.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use meshca_bench::cost::{self, Line, Measured, Month, Prices};
use meshca_test_support::runtime::RuntimeStub;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use crate::aws::AwsEmulator;
use crate::{Row, calls_by_operation, clusters, emulator, function_command, workspace};

const COST_CLUSTERS: usize = 100;
const KINDS: &str = "istio-cacerts cert-manager-ca xcp-edge";
/// Lambda's own START, END and REPORT lines per invocation, which the binary does not print.
const PLATFORM_LINES_BYTES: f64 = 350.0;

/// One sweep as measured: its wall time, AWS calls by operation, the lines it logged.
struct Sweep {
    wall: f64,
    calls: BTreeMap<String, f64>,
    lines: Vec<String>,
}

pub async fn cost(sweep_bin: &Path, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let prices = Prices::load(&workspace().join("bench/prices.json"))?;
    let (emu, ca) = emulator();
    let _servers = clusters(&emu, "k", COST_CLUSTERS).await?;
    let mut stub = RuntimeStub::start().await?;
    let memory = prices.deployment.sweep_memory_mb.to_string();
    let extra = [
        ("MESHCA_KINDS", KINDS),
        ("RUST_LOG", "info"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory.as_str()),
    ];
    let mut cmd = function_command(sweep_bin, &stub, &emu, &ca, &extra);
    let mut child = cmd.stdout(Stdio::piped()).spawn()?;
    let log = collect(child.stdout.take().context("no stdout")?);
    let renewal = sweep(&mut stub, &emu, &log, "renewed").await?;
    emu.control("reset", json!({}));
    let steady = sweep(&mut stub, &emu, &log, "checked").await?;
    drop(child);

    let m = measured(&prices, &renewal, &steady)?;
    let (validity, sweep_minutes) = (
        default_of("MESHCA_VALIDITY_DAYS")?,
        default_of("MESHCA_SWEEP_MINUTES")?,
    );
    // Renewal at a third of the lifetime left: every two thirds of it.
    let sweeps = 30.0 * 24.0 * 60.0 / sweep_minutes;
    let months = [
        Month {
            renewals: 1.0,
            sweeps,
        },
        Month {
            renewals: 30.0 / (validity * 2.0 / 3.0),
            sweeps,
        },
    ];
    let fleets = [1000.0, 10_000.0];
    let bills: Vec<Vec<Line>> = fleets
        .iter()
        .flat_map(|&n| months.iter().map(move |&mo| (n, mo)))
        .map(|(n, mo)| cost::bill(&prices, &m, n, mo))
        .collect();
    table(rows, &prices, &m, &bills);
    Ok(())
}

/// Every line the binary prints, kept as it arrives.
fn collect(mut out: tokio::process::ChildStdout) -> Arc<Mutex<Vec<u8>>> {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let sink = buf.clone();
    tokio::spawn(async move {
        let mut chunk = [0u8; 65536];
        while let Ok(n) = out.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    buf
}

async fn sweep(
    stub: &mut RuntimeStub,
    emu: &AwsEmulator,
    log: &Arc<Mutex<Vec<u8>>>,
    expect: &str,
) -> anyhow::Result<Sweep> {
    let from = log.lock().unwrap().len();
    let t = Instant::now();
    let (ok, body) = stub.invoke("{}").await;
    let wall = t.elapsed().as_secs_f64();
    let report: Value = serde_json::from_str(&body)?;
    let counts = |k: &str| report[k].as_u64().unwrap_or(0);
    let judged = match expect {
        "renewed" => counts("renewed") == (COST_CLUSTERS * KINDS.split(' ').count()) as u64,
        _ => counts("checked") == COST_CLUSTERS as u64 && counts("renewed") == 0,
    };
    if !ok || counts("failed") != 0 || !judged {
        let (c, r, f) = (counts("checked"), counts("renewed"), counts("failed"));
        bail!(
            "cost sweep ({expect} expected): checked {c}, renewed {r}, failed {f}; errors {}",
            report["errors"]
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // the last lines through the pipe
    let text = String::from_utf8_lossy(&log.lock().unwrap()[from..]).to_string();
    let calls = calls_by_operation(emu)
        .into_iter()
        .map(|(k, n)| (k, n as f64))
        .collect();
    Ok(Sweep {
        wall,
        calls,
        lines: text.lines().map(String::from).collect(),
    })
}

fn measured(prices: &Prices, renewal: &Sweep, steady: &Sweep) -> anyhow::Result<Measured> {
    let n = COST_CLUSTERS as f64;
    let per =
        |calls: &BTreeMap<String, f64>| calls.iter().map(|(k, v)| (k.clone(), v / n)).collect();
    let gb = f64::from(prices.deployment.sweep_memory_mb) / 1024.0;
    let bytes = |s: &Sweep| {
        (s.lines.iter().map(|l| l.len() + 1).sum::<usize>() as f64 + PLATFORM_LINES_BYTES) / n
    };
    let (mut fleet, mut own) = (BTreeSet::new(), BTreeSet::new());
    for line in renewal.lines.iter().chain(&steady.lines) {
        let Ok(doc) = serde_json::from_str::<Value>(line) else {
            bail!("a log line that is not JSON: {line}");
        };
        for s in meshca_lambda::metrics::series(&doc) {
            // A series whose dimension values name a cluster grows with the fleet.
            if s.contains("\"k-") {
                own.insert(s)
            } else {
                fleet.insert(s)
            };
        }
    }
    Ok(Measured {
        renewal_calls: per(&renewal.calls),
        renewal_certificates: renewal
            .calls
            .get("IssueCertificate")
            .copied()
            .unwrap_or(0.0)
            / n,
        renewal_gb_seconds: renewal.wall * gb / n,
        renewal_log_bytes: bytes(renewal),
        sweep_calls: per(&steady.calls),
        sweep_gb_seconds: steady.wall * gb / n,
        sweep_log_bytes: bytes(steady),
        secrets: renewal.calls.get("CreateSecret").copied().unwrap_or(0.0) / n,
        series_per_cluster: own.len() as f64 / n,
        series_fleet: fleet.len() as f64,
    })
}

/// A setting's default from infra/cdk/lib/settings.json, the list the deployments share.
fn default_of(env: &str) -> anyhow::Result<f64> {
    let text = std::fs::read_to_string(workspace().join("infra/cdk/lib/settings.json"))?;
    let doc: Value = serde_json::from_str(&text)?;
    doc["settings"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["env"] == env)
        .and_then(|s| s["default"].as_str()?.parse().ok())
        .with_context(|| format!("settings.json: no numeric default for {env}"))
}

fn table(rows: &mut Vec<Row>, p: &Prices, m: &Measured, bills: &[Vec<Line>]) {
    let usd = |v: f64| format!("${v:.4}");
    let four = |f: &dyn Fn(&[Line]) -> f64| {
        let v: Vec<String> = bills.iter().map(|b| usd(f(b))).collect();
        format!("{} / {} · {} / {}", v[0], v[1], v[2], v[3])
    };
    rows.push(Row(
        format!("cost per cluster a month, {KINDS} (1,000 clusters: renewal month / average month · 10,000: the same; prices of {})", p.checked),
        String::new(),
        String::new(),
    ));
    for (i, line) in bills[0].iter().enumerate() {
        rows.push(Row(
            format!("  {}", line.what),
            four(&|b: &[Line]| b[i].usd),
            String::new(),
        ));
    }
    rows.push(Row(
        "  total".into(),
        four(&|b: &[Line]| cost::total(b)),
        "≤ $1.00 (1,000, average month)".into(),
    ));
    rows.push(Row(
        "  escrow secrets per cluster (measured: secrets created / clusters)".into(),
        format!("{:.2}", m.secrets),
        "1: every kind in one".into(),
    ));
    rows.push(Row(
        format!(
            "  the CA's flat fee (${:.0} a month), apart (1,000 / 10,000)",
            p.pca.general_purpose_ca_per_month
        ),
        format!("{} / {}", usd(p.ca_fee(1000.0)), usd(p.ca_fee(10_000.0))),
        String::new(),
    ));
    let ((g1, s1), (g2, s2)) = (p.per_workload(1000.0), p.per_workload(10_000.0));
    rows.push(Row(
        format!(
            "  per-workload path: istio-csr + PCA, {:.0} workloads × {:.0} h certificates, general-purpose / short-lived CA (1,000 · 10,000)",
            p.per_workload_anchor.workloads_per_cluster, p.per_workload_anchor.certificate_hours
        ),
        format!("{} / {} · {} / {}", usd(g1), usd(s1), usd(g2), usd(s2)),
        String::new(),
    ));
    rows.push(Row(
        "  billed metric series per cluster / fleet-wide".into(),
        format!("{:.2} / {:.0}", m.series_per_cluster, m.series_fleet),
        "≤ 2 per cluster".into(),
    ));
    let calls = |c: &BTreeMap<String, f64>| c.values().sum::<f64>();
    rows.push(Row(
        "  measured per cluster: renewal (AWS calls, certificates, secrets, GB-s, log bytes) / steady sweep (calls, GB-s, bytes)".into(),
        format!(
            "{:.1}, {:.1}, {:.1}, {:.4}, {:.0} / {:.3}, {:.6}, {:.0}",
            calls(&m.renewal_calls), m.renewal_certificates, m.secrets, m.renewal_gb_seconds, m.renewal_log_bytes,
            calls(&m.sweep_calls), m.sweep_gb_seconds, m.sweep_log_bytes
        ),
        String::new(),
    ));
}
