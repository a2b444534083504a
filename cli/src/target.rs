//! Which cluster's API a command talks to: a kubeconfig context, or an EKS cluster reached with
//! the caller's IAM identity (no kubeconfig needed).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use std::sync::Arc;

use meshca_core::delivery::{Delivered, Delivery, DeliveryOptions, RestartPolicy};
use meshca_core::validate::Profile;

#[derive(Debug, Args, Clone, Default)]
pub struct TargetArgs {
    /// Kubeconfig context of the cluster to deliver to / read from (as in `kubectl --context`).
    #[arg(
        long,
        value_name = "NAME",
        conflicts_with = "eks_cluster",
        help_heading = "Cluster"
    )]
    pub context: Option<String>,

    /// Kubeconfig file for --context (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(
        long,
        value_name = "FILE",
        requires = "context",
        help_heading = "Cluster"
    )]
    pub kubeconfig: Option<PathBuf>,

    /// EKS cluster to deliver to / read from, in --region: endpoint and CA from DescribeCluster,
    /// authenticated as the current AWS identity (it needs an access entry in the cluster).
    #[arg(long, value_name = "NAME", help_heading = "Cluster")]
    pub eks_cluster: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct DeliveryArgs {
    /// Take over an existing istio-system/cacerts that meshca did not create.
    #[arg(long, help_heading = "Cluster")]
    pub adopt: bool,

    /// Restart istiod after writing cacerts: auto (only where Istio needs it: first cacerts while
    /// istiod runs, a changed root, or Istio < 1.19), always, never.
    #[arg(long, value_name = "WHEN", default_value = "auto", value_parser = ["auto", "always", "never"], help_heading = "Cluster")]
    pub restart_istiod: String,
}

impl TargetArgs {
    pub fn is_set(&self) -> bool {
        self.context.is_some() || self.eks_cluster.is_some()
    }

    /// A human name for the target, for messages.
    pub fn describe(&self) -> String {
        match (&self.context, &self.eks_cluster) {
            (Some(c), _) => format!("context {c}"),
            (_, Some(e)) => format!("EKS cluster {e}"),
            _ => "no cluster".into(),
        }
    }

    /// Connects; `None` when no cluster was named.
    pub async fn connect(
        &self,
        region: Option<String>,
        options: DeliveryOptions,
    ) -> Result<Option<Arc<dyn Delivery>>> {
        if let Some(context) = &self.context {
            return Ok(Some(
                meshca_wiring::kubeconfig_delivery(
                    self.kubeconfig.as_deref(),
                    Some(context),
                    options,
                )
                .await?,
            ));
        }
        if let Some(name) = &self.eks_cluster {
            let config = meshca_wiring::sdk_config(region).await;
            let region = config.region().map(|r| r.to_string()).unwrap_or_default();
            let delivery = meshca_wiring::eks_delivery(&config, name, options)
                .await
                .with_context(|| format!("connecting to EKS cluster {name} in {region}"))?;
            return Ok(Some(delivery));
        }
        Ok(None)
    }
}

impl DeliveryArgs {
    pub fn options(&self, profile: Profile) -> DeliveryOptions {
        DeliveryOptions {
            adopt: self.adopt,
            restart: self
                .restart_istiod
                .parse::<RestartPolicy>()
                .unwrap_or_default(),
            profile,
            ..DeliveryOptions::default()
        }
    }

    /// The options for one kind: its profile for this cluster and where its secret lands.
    pub fn options_for(
        &self,
        settings: &meshca_core::Settings,
        cluster: &meshca_core::ClusterName,
    ) -> DeliveryOptions {
        DeliveryOptions {
            landing: settings.kind.landing(),
            ..self.options(settings.delivery_profile(cluster))
        }
    }
}

/// A secret named `NAMESPACE/NAME` on the command line (`flag` says which), both parts given.
pub fn namespace_name<'a>(flag: &str, text: &'a str) -> anyhow::Result<(&'a str, &'a str)> {
    text.split_once('/')
        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty())
        .ok_or_else(|| anyhow::anyhow!("{flag} {text:?} is not NAMESPACE/NAME"))
}

/// One line per fact of a delivery, for people.
pub fn print_delivered(target: &str, d: &Delivered, landing: &meshca_core::kind::Landing) {
    let change = serde_json::to_value(d.change)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    println!(
        "delivered to {target}: {}/{} {change}",
        landing.namespace, landing.name
    );
    if landing.layout != meshca_core::kind::Layout::IstioCacerts {
        return;
    }
    if d.istiod.is_empty() {
        println!("  istiod       none found in istio-system (it will load cacerts when installed)");
    }
    for (name, decision) in &d.istiod {
        let verb = if decision.restart {
            "restarted"
        } else {
            "not restarted"
        };
        println!("  istiod       {name} {verb}: {}", decision.reason);
    }
}

pub fn delivered_json(target: &str, d: &Delivered) -> serde_json::Value {
    serde_json::json!({
        "target": target,
        "change": d.change,
        "fingerprint_sha256": d.fingerprint_sha256,
        "conflicts_retried": d.conflicts,
        "istiod": d.istiod.iter().map(|(n, r)| serde_json::json!({"name": n, "restart": r.restart, "reason": r.reason})).collect::<Vec<_>>(),
    })
}
