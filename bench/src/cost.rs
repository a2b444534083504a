//! What meshca costs a month per cluster, computed from what the benchmark measured (AWS calls
//! by operation, certificates, secrets, Lambda GB-seconds, log bytes, metric series) and the list
//! prices in `bench/prices.json`, the one place prices live. Pure arithmetic, so it is tested
//! here and the benchmark only feeds it numbers.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// `bench/prices.json`: list prices with their source and the day they were checked, and what
/// a deployment creates (alarms, keys), which infra/test_parity.py checks against the stacks.
#[derive(Debug, Deserialize)]
pub struct Prices {
    /// The day the prices were checked.
    pub checked: String,
    /// Where they were read (the pricing pages).
    pub source: String,
    /// AWS Private CA.
    pub pca: Pca,
    /// Secrets Manager.
    pub secrets_manager: SecretsManager,
    /// KMS.
    pub kms: Kms,
    /// Lambda.
    pub lambda: Lambda,
    /// CloudWatch.
    pub cloudwatch: CloudWatch,
    /// EventBridge.
    pub eventbridge: EventBridge,
    /// What a deployment creates, checked against the templates.
    pub deployment: Deployment,
    /// The per-workload path meshca is compared with.
    pub per_workload_anchor: Anchor,
}

/// AWS Private CA's prices.
#[derive(Debug, Deserialize)]
pub struct Pca {
    /// A general-purpose CA's monthly fee.
    pub general_purpose_ca_per_month: f64,
    /// Per certificate, by how many the account has issued that month.
    pub certificate_tiers: Vec<Tier>,
    /// A short-lived-certificate CA's monthly fee.
    pub short_lived_ca_per_month: f64,
    /// Each certificate of a short-lived CA.
    pub short_lived_certificate_each: f64,
}

/// One tier of the general-purpose CA's certificate price.
#[derive(Debug, Deserialize)]
pub struct Tier {
    /// The month's count this tier ends at (`None`: no end).
    pub up_to: Option<u64>,
    /// Each certificate in it.
    pub each: f64,
}

/// Secrets Manager's prices.
#[derive(Debug, Deserialize)]
pub struct SecretsManager {
    /// Each secret a month.
    pub secret_per_month: f64,
    /// Each 10,000 API calls.
    pub per_10k_calls: f64,
}

/// KMS's prices.
#[derive(Debug, Deserialize)]
pub struct Kms {
    /// Each customer-managed key a month.
    pub key_per_month: f64,
    /// Each 10,000 requests.
    pub per_10k_requests: f64,
}

/// Lambda's prices (arm64).
#[derive(Debug, Deserialize)]
pub struct Lambda {
    /// Each million invocations.
    pub per_million_requests: f64,
    /// Each GB-second.
    pub per_gb_second: f64,
}

/// CloudWatch's prices.
#[derive(Debug, Deserialize)]
pub struct CloudWatch {
    /// Each metric series a month.
    pub metric_series_per_month: f64,
    /// Each standard alarm a month.
    pub alarm_per_month: f64,
    /// Each GB of logs ingested.
    pub logs_ingestion_per_gb: f64,
}

/// EventBridge's prices.
#[derive(Debug, Deserialize)]
pub struct EventBridge {
    /// Each million custom events put.
    pub custom_events_per_million: f64,
}

/// What one deployment creates.
#[derive(Debug, Deserialize)]
pub struct Deployment {
    /// CloudWatch alarms.
    pub alarms: u32,
    /// KMS keys.
    pub kms_keys: u32,
    /// The sweep function's memory.
    pub sweep_memory_mb: u32,
}

/// The per-workload path: istio-csr asking PCA for every workload certificate.
#[derive(Debug, Deserialize)]
pub struct Anchor {
    /// Workloads in a cluster.
    pub workloads_per_cluster: f64,
    /// How long each workload certificate lives.
    pub certificate_hours: f64,
}

impl Prices {
    /// The prices in the JSON file at `path`.
    pub fn load(path: &Path) -> anyhow::Result<Prices> {
        let text = std::fs::read_to_string(path)?;
        Ok(serde_json::from_str(&text)?)
    }

    /// Dollars for `n` certificates issued in one month, tier by tier.
    pub fn certificates(&self, n: f64) -> f64 {
        let (mut left, mut floor, mut usd) = (n, 0.0, 0.0);
        for t in &self.pca.certificate_tiers {
            let room = t.up_to.map_or(f64::INFINITY, |u| u as f64 - floor);
            let here = left.min(room);
            usd += here * t.each;
            left -= here;
            floor += room;
            if left <= 0.0 {
                break;
            }
        }
        usd
    }

    /// The general-purpose CA's flat fee, per cluster: shown apart, as the issue asks.
    pub fn ca_fee(&self, clusters: f64) -> f64 {
        self.pca.general_purpose_ca_per_month / clusters
    }

    /// The per-workload path (istio-csr + aws-privateca-issuer in every cluster), certificates
    /// only, per cluster per month: on a general-purpose CA and on a short-lived CA (whose
    /// flat fee is included: it is that path's own CA).
    pub fn per_workload(&self, clusters: f64) -> (f64, f64) {
        let a = &self.per_workload_anchor;
        let per_cluster = a.workloads_per_cluster * 30.0 * 24.0 / a.certificate_hours;
        let general = self.certificates(per_cluster * clusters) / clusters;
        let short = per_cluster * self.pca.short_lived_certificate_each
            + self.pca.short_lived_ca_per_month / clusters;
        (general, short)
    }
}

/// What one cluster (every kind it has) used, measured by the benchmark.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    /// One renewal of the cluster, every kind: AWS calls by operation.
    pub renewal_calls: BTreeMap<String, f64>,
    /// Certificates issued per cluster in a renewal.
    pub renewal_certificates: f64,
    /// Lambda GB-seconds per cluster in a renewal.
    pub renewal_gb_seconds: f64,
    /// Log bytes per cluster in a renewal.
    pub renewal_log_bytes: f64,
    /// Its share of one steady sweep (nothing due): AWS calls by operation, listing included.
    pub sweep_calls: BTreeMap<String, f64>,
    /// Lambda GB-seconds per cluster in a steady sweep.
    pub sweep_gb_seconds: f64,
    /// Log bytes per cluster in a steady sweep.
    pub sweep_log_bytes: f64,
    /// Escrow secrets it holds.
    pub secrets: f64,
    /// Billed metric series that grow with the fleet, per cluster; and those that do not.
    pub series_per_cluster: f64,
    /// Billed metric series of the whole fleet.
    pub series_fleet: f64,
}

/// How a month goes: `renewals` of each cluster in it (1 in a month where all renew; the
/// lifetime's share in an average one) and `sweeps` (720 at the hourly default).
#[derive(Debug, Clone, Copy)]
pub struct Month {
    /// Renewals of each kind per cluster this month.
    pub renewals: f64,
    /// Sweeps this month.
    pub sweeps: f64,
}

/// Secrets Manager operations: billed per call, and each one that reads or writes a value
/// asks KMS for the secret's data key (one KMS request each, under the deployment's key).
const SECRETS_CALLS: [&str; 9] = [
    "GetSecretValue",
    "PutSecretValue",
    "CreateSecret",
    "DescribeSecret",
    "ListSecrets",
    "TagResource",
    "UntagResource",
    "UpdateSecretVersionStage",
    "DeleteSecret",
];
const KMS_BY_SECRETS: [&str; 3] = ["GetSecretValue", "PutSecretValue", "CreateSecret"];
const KMS_CALLS: [&str; 4] = ["Decrypt", "Encrypt", "GenerateDataKey", "DescribeKey"];

/// One line of the bill: what, and dollars per cluster per month.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// The line's name.
    pub what: &'static str,
    /// Its dollars per cluster.
    pub usd: f64,
}

/// The bill of a fleet of `clusters` for one month, per cluster, line by line; the CA's flat
/// fee is not in it (see [`Prices::ca_fee`]).
pub fn bill(p: &Prices, m: &Measured, clusters: f64, month: Month) -> Vec<Line> {
    let calls = |ops: &[&str]| {
        let sum = |by: &BTreeMap<String, f64>| {
            ops.iter()
                .map(|o| by.get(*o).copied().unwrap_or(0.0))
                .sum::<f64>()
        };
        sum(&m.renewal_calls) * month.renewals + sum(&m.sweep_calls) * month.sweeps
    };
    let certificates =
        p.certificates(m.renewal_certificates * month.renewals * clusters) / clusters;
    let kms_requests = calls(&KMS_BY_SECRETS) + calls(&KMS_CALLS);
    let gb_seconds = m.renewal_gb_seconds * month.renewals + m.sweep_gb_seconds * month.sweeps;
    let log_gb = (m.renewal_log_bytes * month.renewals + m.sweep_log_bytes * month.sweeps) / 1e9;
    let series = m.series_per_cluster + m.series_fleet / clusters;
    let cw = &p.cloudwatch;
    vec![
        Line {
            what: "PCA certificates",
            usd: certificates,
        },
        Line {
            what: "Secrets Manager secrets",
            usd: m.secrets * p.secrets_manager.secret_per_month,
        },
        Line {
            what: "Secrets Manager calls",
            usd: calls(&SECRETS_CALLS) * p.secrets_manager.per_10k_calls / 1e4,
        },
        Line {
            what: "KMS key and requests",
            usd: f64::from(p.deployment.kms_keys) * p.kms.key_per_month / clusters
                + kms_requests * p.kms.per_10k_requests / 1e4,
        },
        Line {
            what: "Lambda requests and GB-seconds",
            usd: month.sweeps / clusters * p.lambda.per_million_requests / 1e6
                + gb_seconds * p.lambda.per_gb_second,
        },
        Line {
            what: "CloudWatch metric series",
            usd: series * cw.metric_series_per_month,
        },
        Line {
            what: "CloudWatch alarms",
            usd: f64::from(p.deployment.alarms) * cw.alarm_per_month / clusters,
        },
        Line {
            what: "CloudWatch Logs ingestion",
            usd: log_gb * cw.logs_ingestion_per_gb,
        },
        // The schedule and EKS's own events are free; what meshca puts on a bus is not.
        Line {
            what: "EventBridge custom events",
            usd: calls(&["PutEvents"]) * p.eventbridge.custom_events_per_million / 1e6,
        },
    ]
}

/// The sum of the lines.
pub fn total(lines: &[Line]) -> f64 {
    lines.iter().map(|l| l.usd).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prices() -> Prices {
        Prices::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("prices.json")).unwrap()
    }

    #[test]
    fn certificates_are_priced_tier_by_tier() {
        let p = prices();
        assert!((p.certificates(1000.0) - 750.0).abs() < 1e-9);
        assert!((p.certificates(3000.0) - (750.0 + 2000.0 * 0.35)).abs() < 1e-9);
        let above = 750.0 + 9000.0 * 0.35 + 20_000.0 * 0.001;
        assert!((p.certificates(30_000.0) - above).abs() < 1e-9);
        assert_eq!(p.certificates(0.0), 0.0);
    }

    #[test]
    fn a_bill_counts_every_line_from_what_was_measured() {
        let p = prices();
        let m = Measured {
            renewal_calls: BTreeMap::from([
                ("GetSecretValue".into(), 4.0),
                ("IssueCertificate".into(), 3.0),
            ]),
            renewal_certificates: 3.0,
            sweep_calls: BTreeMap::from([("ListSecrets".into(), 0.01)]),
            secrets: 3.0,
            series_fleet: 8.0,
            ..Default::default()
        };
        let lines = bill(
            &p,
            &m,
            1000.0,
            Month {
                renewals: 1.0,
                sweeps: 720.0,
            },
        );
        let line = |w: &str| lines.iter().find(|l| l.what == w).unwrap().usd;
        assert!(
            (line("PCA certificates") - 1.45).abs() < 1e-9,
            "3000 certificates: 750 + 700"
        );
        assert!((line("Secrets Manager secrets") - 1.2).abs() < 1e-9);
        // 4 + 7.2 calls; 4 KMS requests for the value reads; the key shared by 1000.
        assert!((line("Secrets Manager calls") - 11.2 * 0.05 / 1e4).abs() < 1e-12);
        assert!((line("KMS key and requests") - (0.001 + 4.0 * 0.03 / 1e4)).abs() < 1e-12);
        assert!((line("CloudWatch metric series") - 8.0 * 0.30 / 1000.0).abs() < 1e-12);
        assert!((line("CloudWatch alarms") - 10.0 * 0.10 / 1000.0).abs() < 1e-12);
        assert!((total(&lines) - lines.iter().map(|l| l.usd).sum::<f64>()).abs() < 1e-12);
    }

    #[test]
    fn the_per_workload_path_pays_per_workload_certificate() {
        let p = prices();
        let (general, short) = p.per_workload(1000.0);
        // 100 workloads × 30 daily certificates = 3,000 per cluster, 3 million for the fleet.
        let expected = (750.0 + 9000.0 * 0.35 + (3_000_000.0 - 10_000.0) * 0.001) / 1000.0;
        assert!((general - expected).abs() < 1e-9, "{general}");
        assert!((short - (3000.0 * 0.058 + 0.05)).abs() < 1e-9, "{short}");
    }
}
