//! A real kube-apiserver (and etcd) for scripts such as scripts/local-loop: started, set up,
//! announced with `READY <url>` on stdout, and run until killed (kill the process group: etcd and
//! kube-apiserver are its children).
//!
//! Flags: `--token-webhook URL --webhook-ca FILE` (authenticate unknown tokens through a
//! TokenReview webhook), `--grant NAMESPACE=USER` (repeatable; the namespace and a Role for
//! secrets and deployments), `--istiod-image IMAGE` (an istiod Deployment, ready),
//! `--kubeconfig FILE` (admin), `--ca-out FILE` (the server's CA).

use meshca_test_support::kube::RealApiServer;

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut webhook, mut webhook_ca, mut grants, mut istiod, mut kubeconfig, mut ca_out) =
        (None, None, vec![], None, None, None);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| panic!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--token-webhook" => webhook = Some(value()),
            "--webhook-ca" => {
                webhook_ca = Some(std::fs::read_to_string(value()).expect("read --webhook-ca"))
            }
            "--grant" => grants.push(value()),
            "--istiod-image" => istiod = Some(value()),
            "--kubeconfig" => kubeconfig = Some(value()),
            "--ca-out" => ca_out = Some(value()),
            other => panic!("unknown flag {other}"),
        }
    }
    let server = match (&webhook, &webhook_ca) {
        (Some(url), Some(ca)) => RealApiServer::with_token_webhook(url, ca),
        (None, None) => RealApiServer::start(),
        _ => panic!("--token-webhook and --webhook-ca go together"),
    };
    for grant in &grants {
        let (ns, user) = grant.split_once('=').expect("--grant NAMESPACE=USER");
        server.grant_namespace(ns, user);
    }
    if let Some(image) = &istiod {
        server.seed_istiod(image);
    }
    if let Some(path) = kubeconfig {
        std::fs::write(path, server.kubeconfig("real")).expect("write --kubeconfig");
    }
    if let Some(path) = ca_out {
        std::fs::write(path, &server.ca_pem).expect("write --ca-out");
    }
    println!("READY {}", server.url);
    let _server = server;
    loop {
        std::thread::park();
    }
}
