//! renewal-worker as Lambda runs it behind an SQS event source with MaximumConcurrency 4: four
//! worker processes (the real binary, each on its own Runtime API), fed batches from the
//! emulator's SQS by an emulated event source mapping, under one account-wide IssueCertificate
//! quota of 25 per second. With each worker at its share of the rate, no one-second window
//! holds more than the quota; at the full rate each, the same four workers exceed it.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use meshca_test_apiserver::store::Resource;
use meshca_test_apiserver::{ApiServer, Settings};
use meshca_test_support::aws::{AwsEmulator, REGION};
use meshca_test_support::queue::{Drained, QueueMapping, busiest_second};
use meshca_test_support::runtime::RuntimeStub;
use serde_json::json;

const QUOTA: usize = 25;
const WORKERS: usize = 4;

struct Fleet {
    emu: AwsEmulator,
    ca: String,
    queue_url: String,
    servers: BTreeMap<String, ApiServer>,
}

impl Fleet {
    async fn new(clusters: usize) -> Fleet {
        // As the bench runs it: PCA, Secrets Manager, EKS and SQS each in a process of their own,
        // which the worker binaries reach through AWS_ENDPOINT_URL_<SERVICE> alone.
        let emu = AwsEmulator::start_split();
        let ca = emu.hierarchy("EC_prime256v1", 2)["issuing"]
            .as_str()
            .unwrap()
            .to_string();
        let sqs = aws_sdk_sqs::Client::new(&emu.sdk_config().await);
        let queue = sqs
            .create_queue()
            .queue_name("meshca-work")
            .attributes(
                aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
                "30",
            )
            .send()
            .await
            .unwrap();
        let mut servers = BTreeMap::new();
        for i in 0..clusters {
            let name = format!("w-{i:03}");
            let server = ApiServer::start(Settings::eks_scoped(&name, "testing", "testing"))
                .await
                .unwrap();
            server.seed_istio(Some("docker.io/istio/pilot:1.24.2"));
            emu.control(
                "eks/cluster",
                json!({"region": REGION, "name": name, "endpoint": server.url(), "ca_pem": server.ca_pem(), "tags": {"meshca.io/enabled": "true"}}),
            );
            servers.insert(name, server);
        }
        Fleet {
            emu,
            ca,
            queue_url: queue.queue_url().unwrap().to_string(),
            servers,
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        let mut env = self.emu.child_env();
        env.extend(
            [
                ("AWS_REGION", REGION.to_string()),
                ("AWS_EC2_METADATA_DISABLED", "true".into()),
                ("MESHCA_CA_ARN", self.ca.clone()),
                ("MESHCA_REGIONS", REGION.into()),
                ("MESHCA_VALIDITY_DAYS", "30".into()),
                ("MESHCA_ISSUE_RATE", "20".into()),
            ]
            .map(|(k, v)| (k.to_string(), v)),
        );
        env
    }

    /// The sweep (in-process), fanning the fleet out onto the work queue.
    async fn sweep(&self) -> meshca_lambda::sweep::SweepReport {
        let mut vars: BTreeMap<String, String> = self.env().into_iter().collect();
        vars.extend([
            ("MESHCA_WORK_QUEUE_URL".into(), self.queue_url.clone()),
            ("MESHCA_FANOUT_THRESHOLD".into(), "10".into()),
        ]);
        let config = meshca_lambda::Config::from(&move |k: &str| vars.get(k).cloned()).unwrap();
        let app = meshca_lambda::App::with_sdk_config(config, &self.emu.sdk_config().await)
            .await
            .unwrap();
        app.sweep(std::time::Instant::now() + Duration::from_secs(600))
            .await
    }

    /// `WORKERS` renewal-worker processes, each told it is one of `share` consumers.
    async fn workers(&self, share: usize) -> (Vec<RuntimeStub>, Vec<tokio::process::Child>) {
        let (mut stubs, mut children) = (Vec::new(), Vec::new());
        for i in 0..WORKERS {
            let stub = RuntimeStub::start().await.unwrap();
            let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_renewal-worker"));
            cmd.env_clear()
                .env("AWS_LAMBDA_RUNTIME_API", stub.addr.to_string())
                .env("AWS_LAMBDA_FUNCTION_NAME", "renewal-worker")
                .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
                .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
                .env("AWS_LAMBDA_LOG_STREAM_NAME", format!("worker-{i}"))
                .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/renewal-worker")
                .env("MESHCA_WORKER_CONCURRENCY", share.to_string())
                .env("RUST_LOG", "warn")
                .envs(self.env())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .kill_on_drop(true);
            children.push(cmd.spawn().unwrap());
            stubs.push(stub);
        }
        (stubs, children)
    }

    async fn drain(&self, share: usize, expected: usize) -> (Drained, usize, u64) {
        self.emu.control("reset", json!({}));
        self.emu.control("configure", json!({"issue_tps": QUOTA}));
        let (stubs, _children) = self.workers(share).await;
        let mapping = QueueMapping::new(&self.emu.sdk_config().await, &self.queue_url).await;
        let drained = mapping
            .drain(stubs, expected, Duration::from_secs(240))
            .await;
        let times: Vec<f64> = self.emu.control("issue/attempts", json!({}))["times"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_f64().unwrap())
            .collect();
        let throttled = self.emu.control("stats", json!({}))["throttled"]
            .as_u64()
            .unwrap();
        (drained, busiest_second(&times), throttled)
    }

    fn assert_valid(&self, cluster: &str) {
        let s = self.servers[cluster]
            .get(Resource::Secrets, "istio-system", "cacerts")
            .unwrap_or_else(|| panic!("{cluster}: no cacerts"));
        let file = |n: &str| {
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(s["data"][n].as_str().unwrap())
                    .unwrap(),
            )
            .unwrap()
        };
        let bundle = meshca_core::Bundle::from_pems(
            &file("ca-cert.pem"),
            &file("ca-key.pem"),
            &file("cert-chain.pem"),
            &file("root-cert.pem"),
        )
        .unwrap();
        meshca_core::validate::validate(
            &bundle,
            &meshca_core::Profile::default(),
            time::OffsetDateTime::now_utc(),
        )
        .unwrap_or_else(|e| panic!("{cluster}: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn four_workers_behind_the_queue_stay_within_one_account_quota_and_renew_every_cluster() {
    let fleet = Fleet::new(80).await;
    let report = fleet.sweep().await;
    assert_eq!(
        (report.checked, report.fanned_out, report.failed),
        (80, 80, 0),
        "{report:?}"
    );
    assert_eq!(
        fleet.emu.calls("SendMessageBatch"),
        8,
        "ten messages per call"
    );

    let (drained, busiest, throttled) = fleet.drain(WORKERS, 80).await;
    assert!(drained.deleted >= 80, "{drained:?}");
    assert_eq!(drained.failed, 0, "{drained:?}");
    assert!(
        drained.batches >= WORKERS,
        "the batches were spread over the workers: {drained:?}"
    );
    assert!(
        busiest <= QUOTA,
        "{busiest} IssueCertificate attempts in one second, over the quota of {QUOTA}"
    );
    assert_eq!(throttled, 0);
    eprintln!("shared rate: {drained:?}, busiest second {busiest}, {throttled} throttled");
    for name in fleet.servers.keys() {
        fleet.assert_valid(name);
    }
    assert_eq!(
        fleet.emu.issued(),
        80,
        "one certificate per cluster (a message delivered twice finds its cluster renewed)"
    );

    // The same four workers, each at the whole rate (as if each were alone): over the quota.
    let requests: Vec<meshca_core::ReconcileRequest> = fleet
        .servers
        .keys()
        .map(|c| meshca_core::ReconcileRequest {
            cluster: c.clone(),
            region: Some(REGION.into()),
            account: None,
            force: true,
        })
        .collect();
    let sqs = meshca_aws::SqsFanOut::new(&fleet.emu.sdk_config().await, &fleet.queue_url);
    assert!(
        meshca_core::FanOut::send(&sqs, &requests)
            .await
            .iter()
            .all(Result::is_ok)
    );
    let (drained, busiest, throttled) = fleet.drain(1, 80).await;
    assert!(drained.deleted >= 80, "{drained:?}");
    eprintln!("whole rate each: {drained:?}, busiest second {busiest}, {throttled} throttled");
    assert!(
        busiest > QUOTA && throttled > 0,
        "unshared rates should exceed the quota: {busiest} in a second, {throttled} throttled"
    );
}
