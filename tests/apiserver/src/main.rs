//! Runs the test API server on its own, for the local Lambda loop and for poking at by hand.
//!
//! It prints `READY <url>` once listening, writes its CA and a kubeconfig where asked, and
//! serves until interrupted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use clap::Parser;
use meshca_test_apiserver::{ApiServer, Settings};

#[derive(Parser)]
#[command(
    about = "HTTPS Kubernetes API server for meshca tests (namespaces, secrets, deployments)"
)]
struct Args {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Cluster name EKS tokens must be signed for.
    #[arg(long, default_value = "c1")]
    cluster: String,
    /// A static bearer token to accept (written into --kubeconfig).
    #[arg(long, default_value = "meshca-test-token")]
    token: String,
    /// ACCESS_KEY_ID=SECRET to check EKS token signatures with (repeatable); none: structure only.
    #[arg(long = "aws-key", value_parser = parse_key)]
    aws_keys: Vec<(String, String)>,
    /// Limit EKS-token callers to these namespaces (repeatable), as a namespace-scoped access entry does.
    #[arg(long = "eks-namespace")]
    eks_namespaces: Vec<String>,
    /// Create istio-system with an istiod Deployment running this image.
    #[arg(long)]
    istiod_image: Option<String>,
    /// Write the serving CA (PEM) here.
    #[arg(long)]
    ca_out: Option<PathBuf>,
    /// Write a kubeconfig (context = --cluster, user = --token) here.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,

    /// Also answer TokenReviews at /apis/authentication.k8s.io/v1/tokenreviews, as EKS's
    /// authenticator does for a real kube-apiserver's token webhook.
    #[arg(long)]
    token_review: bool,
}

fn parse_key(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| "expected ACCESS_KEY_ID=SECRET".into())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let settings = Settings {
        cluster: args.cluster.clone(),
        static_token: Some(args.token.clone()),
        aws_keys: args.aws_keys.into_iter().collect::<BTreeMap<_, _>>(),
        eks_namespaces: (!args.eks_namespaces.is_empty())
            .then(|| args.eks_namespaces.into_iter().collect::<BTreeSet<_>>()),
        port: args.port,
        token_review: args.token_review,
        sts: None,
    };
    let server = ApiServer::start(settings).await?;
    if let Some(image) = &args.istiod_image {
        server.seed_istio(Some(image));
    }
    if let Some(p) = &args.ca_out {
        std::fs::write(p, server.ca_pem())?;
    }
    if let Some(p) = &args.kubeconfig {
        std::fs::write(p, server.kubeconfig(&args.cluster, &args.token))?;
    }
    println!("READY {}", server.url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
