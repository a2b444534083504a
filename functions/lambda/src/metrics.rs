//! CloudWatch metrics as Embedded Metric Format lines on stdout: Lambda ships them to
//! CloudWatch Logs, which extracts the metrics — no PutMetricData call, no extra permission.

use serde_json::{Value, json};
use time::OffsetDateTime;

use meshca_core::Outcome;

/// The CloudWatch namespace of every metric the functions emit.
pub const NAMESPACE: &str = "meshca";

/// Where the metrics of the per-cluster documents are aggregated: the whole fleet, no dimension.
/// Each distinct dimension value is a billed metric ($0.30 a month), so a per-cluster dimension
/// would make telemetry the largest line of the bill (docs/cost.md); per-cluster detail lives in
/// the document's fields instead, which Logs Insights queries (the dashboards do).
pub const DIMENSIONS: [[&str; 0]; 1] = [[]];

/// One line per reconciled cluster (`report` names it): its fields `Cluster`, `Account` (`home`
/// for meshca's own), `Region`, `Outcome` and `DaysLeft` when a bundle is in place are the
/// per-cluster record Logs Insights reads; its metrics `Renewals` and `Failures` count into the
/// fleet's totals, without dimensions.
pub fn cluster_metrics(report: &crate::Report, now: OffsetDateTime) -> Option<Value> {
    let (cluster, outcome) = (report.cluster.as_deref()?, &report.outcome);
    let mut doc = json!({
        "Cluster": cluster,
        "Account": report.account.as_deref().unwrap_or("home"),
        "Region": report.region.as_deref().unwrap_or("-"),
        "Outcome": outcome.label(),
        "Renewals": u8::from(matches!(outcome, Outcome::Renewed { .. })),
        "Failures": u8::from(matches!(outcome, Outcome::Failed { .. })),
    });
    if let Some(not_after) = outcome.not_after() {
        doc["DaysLeft"] = json!(days(not_after - now));
    }
    let metrics = [
        json!({"Name": "Renewals", "Unit": "Count"}),
        json!({"Name": "Failures", "Unit": "Count"}),
    ];
    doc["_aws"] = json!({
        "Timestamp": (now.unix_timestamp_nanos() / 1_000_000) as i64,
        "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": DIMENSIONS, "Metrics": metrics}],
    });
    Some(doc)
}

/// The billed metric series an EMF document feeds: (namespace, metric name, the dimension
/// values), one per metric and dimension set. The bench counts them per cluster and a test holds
/// the count flat as the fleet grows.
pub fn series(doc: &Value) -> Vec<String> {
    let Some(directives) = doc["_aws"]["CloudWatchMetrics"].as_array() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for d in directives {
        let namespace = d["Namespace"].as_str().unwrap_or_default();
        let (sets, metrics) = (array(&d["Dimensions"]), array(&d["Metrics"]));
        for set in sets {
            let values: Vec<String> = array(set)
                .iter()
                .filter_map(|k| k.as_str())
                .map(|k| format!("{k}={}", doc[k]))
                .collect();
            for m in metrics {
                let name = m["Name"].as_str().unwrap_or_default();
                out.push(format!("{namespace}/{name}{{{}}}", values.join(",")));
            }
        }
    }
    out
}

fn array(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// The EMF document for a whole sweep, without dimensions: `SoonestDaysLeft` (the alarm's
/// metric: one number for the fleet), counts of clusters checked, renewed and failed, of
/// IssueCertificate attempts PCA throttled (`IssueThrottled`), during a root rotation
/// `RotationPhaseAgeSeconds` and `RotationUnconfirmed`, and in CRL mode `CrlDaysLeft` and
/// `CrlFailures`.
pub fn sweep_metrics(report: &crate::sweep::SweepReport, now: OffsetDateTime) -> Value {
    let mut metrics = vec![
        json!({"Name": "ClustersChecked", "Unit": "Count"}),
        json!({"Name": "ClustersRenewed", "Unit": "Count"}),
        json!({"Name": "ClustersFailed", "Unit": "Count"}),
        json!({"Name": "IssueThrottled", "Unit": "Count"}),
    ];
    let mut doc = json!({
        "ClustersChecked": report.checked,
        "ClustersRenewed": report.renewed,
        "ClustersFailed": report.failed + report.errors.len(),
        "IssueThrottled": report.issue_throttled,
    });
    if let Some(s) = &report.soonest_expiry {
        doc["SoonestDaysLeft"] = json!(days(s.not_after - now));
        metrics.push(json!({"Name": "SoonestDaysLeft", "Unit": "None"}));
    }
    // A root rotation in progress: how long it has stood in its phase (the stuck-rotation
    // alarm's metric) and how many clusters hold it back.
    if let Some(r) = &report.rotation {
        doc["RotationPhaseAgeSeconds"] = json!(r.phase_age_seconds);
        doc["RotationUnconfirmed"] = json!(r.unconfirmed);
        doc["RotationPhase"] = json!(r.phase);
        metrics.push(json!({"Name": "RotationPhaseAgeSeconds", "Unit": "Seconds"}));
        metrics.push(json!({"Name": "RotationUnconfirmed", "Unit": "Count"}));
    }
    // CRL mode: the days until the fleet's first CRL lapses (past it, every data plane holding
    // them refuses every chain: the CrlDaysLeft alarm's metric), and clusters not reached.
    if let Some(c) = &report.crls {
        if let Some(lapse) = c.first_lapse {
            doc["CrlDaysLeft"] = json!(days(lapse - now));
            metrics.push(json!({"Name": "CrlDaysLeft", "Unit": "None"}));
        }
        doc["CrlFailures"] = json!(c.failures.len() + usize::from(c.error.is_some()));
        doc["CrlNotProtected"] = json!(c.not_protected.len());
        metrics.push(json!({"Name": "CrlFailures", "Unit": "Count"}));
        metrics.push(json!({"Name": "CrlNotProtected", "Unit": "Count"}));
    }
    doc["_aws"] = json!({
        "Timestamp": (now.unix_timestamp_nanos() / 1_000_000) as i64,
        "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": DIMENSIONS, "Metrics": metrics}],
    });
    doc
}

fn days(d: time::Duration) -> f64 {
    (d.whole_seconds() as f64 / 86_400.0 * 100.0).round() / 100.0
}

/// Writes one EMF line to stdout.
pub fn emit(doc: &Value) {
    println!("{doc}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshca_core::delivery::Change;

    #[test]
    fn a_renewal_reports_days_left_and_one_renewal() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let o = Outcome::Renewed {
            reason: meshca_core::RenewReason::Forced,
            generation: 2,
            change: Change::Rotated,
            changed: Vec::new(),
            restarted: Vec::new(),
            not_after: now + time::Duration::days(30),
            renew_at: now + time::Duration::days(20),
        };
        let mut report = crate::Report::new(Some("c1"), Some("eu-west-1"), o);
        let d = cluster_metrics(&report, now).unwrap();
        assert_eq!(d["DaysLeft"], 30.0);
        assert_eq!(d["Renewals"], 1);
        assert_eq!(d["Failures"], 0);
        assert_eq!(d["_aws"]["Timestamp"], 1_800_000_000_000i64);
        let names: Vec<&str> = d["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["Renewals", "Failures"],
            "DaysLeft is a field, not a metric"
        );
        assert_eq!(
            (&d["Account"], &d["Region"]),
            (&json!("home"), &json!("eu-west-1"))
        );
        assert_eq!(d["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([[]]));
        report.account = Some("222233334444".into());
        assert_eq!(
            cluster_metrics(&report, now).unwrap()["Account"],
            "222233334444"
        );
        report.outcome = Outcome::Failed {
            step: meshca_core::Step::Issue,
            error: "x".into(),
        };
        let failed = cluster_metrics(&report, now).unwrap();
        assert_eq!(failed["Failures"], 1);
        assert!(failed.get("DaysLeft").is_none());
    }

    #[test]
    fn a_sweep_reports_the_fleet_minimum_without_dimensions() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let report = crate::sweep::SweepReport {
            checked: 3,
            renewed: 1,
            failed: 1,
            errors: vec!["us-east-1: throttled".into()],
            soonest_expiry: Some(crate::sweep::Expiry {
                cluster: "c2".into(),
                account: None,
                region: "eu-west-1".into(),
                not_after: now + time::Duration::hours(36),
            }),
            ..Default::default()
        };
        let d = sweep_metrics(&report, now);
        assert_eq!(d["SoonestDaysLeft"], 1.5);
        assert_eq!(
            (
                d["ClustersChecked"].as_u64(),
                d["ClustersRenewed"].as_u64(),
                d["ClustersFailed"].as_u64()
            ),
            (Some(3), Some(1), Some(2))
        );
        assert_eq!(d["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([[]]));
        assert!(
            d.get("RotationPhaseAgeSeconds").is_none(),
            "no rotation, no rotation metric"
        );
        assert!(d.get("CrlDaysLeft").is_none(), "no CRL mode, no CRL metric");
    }

    #[test]
    fn crl_mode_reports_the_days_until_the_first_crl_lapses_and_clusters_not_reached() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let report = crate::sweep::SweepReport {
            crls: Some(crate::crls::CrlsReport {
                first_lapse: Some(now + time::Duration::hours(60)),
                failures: vec!["c3 in eu-west-1: not active (UPDATING)".into()],
                not_protected: vec![
                    "c2 in eu-west-1: not protected: istiod istiod is Istio 1.24".into(),
                ],
                ..Default::default()
            }),
            ..Default::default()
        };
        let d = sweep_metrics(&report, now);
        assert_eq!(
            (
                d["CrlDaysLeft"].as_f64(),
                d["CrlFailures"].as_u64(),
                d["CrlNotProtected"].as_u64()
            ),
            (Some(2.5), Some(1), Some(1))
        );
        let names: Vec<&str> = d["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["Name"].as_str())
            .collect();
        assert!(
            names.contains(&"CrlDaysLeft") && names.contains(&"CrlFailures"),
            "{names:?}"
        );
        // CRLs that could not be built at all: a failure, and no days left to trust.
        let unread = crate::sweep::SweepReport {
            crls: Some(crate::crls::CrlsReport {
                error: Some("reading the authority's CRLs: denied".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let d = sweep_metrics(&unread, now);
        assert_eq!(d["CrlFailures"], 1);
        assert!(d.get("CrlDaysLeft").is_none());
    }

    #[test]
    fn a_rotation_reports_its_phase_age_for_the_stuck_alarm() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let rotation = crate::rotation::RotationReport {
            phase: meshca_core::rotation::Phase::Switch,
            aborted: false,
            advanced_to: None,
            phase_age_seconds: 93_600,
            unconfirmed: 2,
            blockers: vec!["c1: unreachable".into()],
        };
        let d = sweep_metrics(
            &crate::sweep::SweepReport {
                rotation: Some(rotation),
                ..Default::default()
            },
            now,
        );
        assert_eq!(
            (
                d["RotationPhaseAgeSeconds"].as_i64(),
                d["RotationUnconfirmed"].as_u64()
            ),
            (Some(93_600), Some(2))
        );
        let names: Vec<&str> = d["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"RotationPhaseAgeSeconds") && names.contains(&"RotationUnconfirmed")
        );
    }

    /// Every outcome of a fleet over accounts and regions, plus the sweep's own document: the
    /// billed series they feed do not grow with the fleet. A per-cluster dimension fails it.
    #[test]
    fn the_billed_series_stay_flat_as_the_fleet_grows() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let later = now + time::Duration::days(30);
        let outcomes = [
            Outcome::Unchanged {
                generation: 1,
                not_after: later,
                renew_at: later,
            },
            Outcome::Failed {
                step: meshca_core::Step::Issue,
                error: "x".into(),
            },
        ];
        let fleet_series = |n: usize| {
            let mut all = std::collections::BTreeSet::new();
            for i in 0..n {
                let region = ["eu-west-1", "us-east-1"][i % 2];
                let mut r = crate::Report::new(
                    Some(&format!("c{i}")),
                    Some(region),
                    outcomes[i % 2].clone(),
                );
                r.account = (i % 3 != 0).then(|| format!("{:012}", i % 3));
                all.extend(series(&cluster_metrics(&r, now).unwrap()));
            }
            all.extend(series(&sweep_metrics(&Default::default(), now)));
            all
        };
        let (one, thousand) = (fleet_series(2), fleet_series(1000));
        assert_eq!(one, thousand, "series added by clusters");
        assert!(thousand.len() <= 8, "{thousand:?}");
    }

    /// The counter itself: a document with a per-cluster dimension feeds one series per cluster.
    #[test]
    fn a_per_cluster_dimension_is_counted_once_per_cluster() {
        let doc = |c: &str| {
            json!({"Cluster": c, "Renewals": 1, "_aws": {"CloudWatchMetrics": [
            {"Namespace": "meshca", "Dimensions": [["Cluster"], []], "Metrics": [{"Name": "Renewals"}]}]}})
        };
        let mut all: Vec<String> = series(&doc("a"));
        all.extend(series(&doc("b")));
        all.sort();
        all.dedup();
        assert_eq!(
            all,
            [
                "meshca/Renewals{Cluster=\"a\"}",
                "meshca/Renewals{Cluster=\"b\"}",
                "meshca/Renewals{}"
            ]
        );
    }
}
