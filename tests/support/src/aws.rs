//! The emulated AWS (tests/emulator/meshca_aws.py) as a child process, one per test.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// The region every emulated client uses.
pub const REGION: &str = "eu-west-1";

/// What [`AwsEmulator::child_env`] leaves unset in a child: the caller's profile and region.
pub const AWS_UNSET: [&str; 2] = ["AWS_PROFILE", "AWS_REGION"];

/// The emulated AWS (moto's server with meshca's additions), one process per test, killed on drop.
pub struct AwsEmulator {
    child: Child,
    /// The process that answers every service no part below takes.
    pub port: u16,
    /// Its URL, for `AWS_ENDPOINT_URL`.
    pub endpoint: String,
    /// Processes of their own for the busiest services ([`AwsEmulator::start_split`]).
    parts: Vec<Part>,
}

/// One more emulator process, answering the calls of `services` (SDK service ids).
struct Part {
    child: Child,
    port: u16,
    services: &'static [&'static str],
}

/// The services [`AwsEmulator::start_split`] gives a process of their own, by the SDK's service
/// id (the name `AWS_ENDPOINT_URL_<ID>` is made of). Tagging goes with EKS: the emulator
/// answers GetResources for clusters from its EKS state.
const PARTS: [&[&str]; 4] = [
    &["ACM PCA"],
    &["Secrets Manager"],
    &["EKS", "Resource Groups Tagging API"],
    &["SQS"],
];

/// Control paths about the CA, answered by the process that emulates PCA.
const PCA_CONTROLS: [&str; 3] = ["issue/attempts", "fixtures/hierarchy", "ca/status"];

/// The workspace root: the nearest ancestor of this crate that holds the emulator.
pub fn workspace() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .find(|d| d.join("tests/emulator/meshca_aws.py").exists())
        .expect("inside the meshca workspace")
        .to_path_buf()
}

/// The venv tests/run creates; MESHCA_TEST_PYTHON overrides it.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("MESHCA_TEST_PYTHON") {
        return p.into();
    }
    let p = workspace().join("tests/.venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run tests/run, which creates the emulator's venv",
        p.display()
    );
    p
}

/// POST to the control API of the emulator on `port` (usable from any thread).
pub fn control_port(port: u16, path: &str, body: serde_json::Value) -> serde_json::Value {
    let body = body.to_string();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "POST /_meshca/{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, payload) = resp.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "{head}\n{payload}"
    );
    serde_json::from_str(payload).unwrap()
}

/// One emulator process and the port it serves on.
fn spawn() -> (Child, u16) {
    let mut child = Command::new(python())
        .arg(workspace().join("tests/emulator/meshca_aws.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the AWS emulator");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line
        .strip_prefix("READY ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("emulator said {line:?}"));
    (child, port)
}

/// The endpoint of `service` in the SDK's configuration: the part that takes it, or `main`.
#[derive(Debug)]
struct Endpoints {
    main: String,
    parts: Vec<(&'static str, String)>,
}

impl aws_types::service_config::LoadServiceConfig for Endpoints {
    fn load_config(&self, key: aws_types::service_config::ServiceConfigKey<'_>) -> Option<String> {
        if key.env() != "AWS_ENDPOINT_URL" {
            return None;
        }
        let part = self
            .parts
            .iter()
            .find(|(service, _)| *service == key.service_id());
        Some(part.map_or(&self.main, |(_, url)| url).clone())
    }
}

impl AwsEmulator {
    /// Starts one emulator process for every service.
    pub fn start() -> Self {
        let (child, port) = spawn();
        AwsEmulator {
            child,
            port,
            endpoint: format!("http://127.0.0.1:{port}"),
            parts: Vec::new(),
        }
    }

    /// The emulator as five processes: PCA, Secrets Manager, EKS (with tagging) and SQS each in
    /// their own, the rest in the main one. One Python process answers ~400 calls a second on
    /// one core; a fleet renewing at the quota needs more than that, so one process would time
    /// the emulator, not meshca. Clients reach each through `AWS_ENDPOINT_URL_<SERVICE>`
    /// ([`Self::child_env`], [`Self::sdk_config`]); the control API routes and merges.
    pub fn start_split() -> Self {
        let mut emu = Self::start();
        for services in PARTS {
            let (child, port) = spawn();
            emu.parts.push(Part {
                child,
                port,
                services,
            });
        }
        emu
    }

    /// Every process's port, the main one first.
    fn ports(&self) -> impl Iterator<Item = u16> + '_ {
        std::iter::once(self.port).chain(self.parts.iter().map(|p| p.port))
    }

    /// The port of the process answering `service`.
    pub fn port_of(&self, service: &str) -> u16 {
        self.parts
            .iter()
            .find(|p| p.services.contains(&service))
            .map_or(self.port, |p| p.port)
    }

    /// POST to the emulator's control API: to the process it is about; `reset` and `configure`
    /// to every process, `stats` summed over them.
    pub fn control(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        match path {
            "stats" => self
                .ports()
                .map(|p| control_port(p, path, body.clone()))
                .reduce(merge_stats)
                .unwrap_or_default(),
            "reset" | "configure" => self
                .ports()
                .map(|p| control_port(p, path, body.clone()))
                .last()
                .unwrap_or_default(),
            p if PCA_CONTROLS.contains(&p) => control_port(self.port_of("ACM PCA"), path, body),
            p if p.starts_with("eks/") => control_port(self.port_of("EKS"), path, body),
            _ => control_port(self.port, path, body),
        }
    }

    /// How many calls of `operation` it answered since the last reset.
    pub fn calls(&self, operation: &str) -> u64 {
        self.control("stats", serde_json::json!({}))["calls"][operation]
            .as_u64()
            .unwrap_or(0)
    }

    /// Distinct certificates the emulated PCA signed (an idempotent replay is not one).
    pub fn issued(&self) -> u64 {
        self.control("stats", serde_json::json!({}))["issued"]
            .as_u64()
            .unwrap_or(0)
    }

    /// A PCA hierarchy `levels` deep with keys of `key_algorithm`: the CAs' ARNs.
    pub fn hierarchy(&self, key_algorithm: &str, levels: u32) -> serde_json::Value {
        self.control(
            "fixtures/hierarchy",
            serde_json::json!({"key_algorithm": key_algorithm, "levels": levels}),
        )
    }

    /// The environment a child process (the `meshca` binary) needs to use this emulator, and
    /// nothing of the caller's own AWS set-up: set these, unset [`AWS_UNSET`].
    pub fn child_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("AWS_ENDPOINT_URL".to_string(), self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ];
        for (service, url) in self.endpoints().parts {
            env.push((
                format!(
                    "AWS_ENDPOINT_URL_{}",
                    service.to_uppercase().replace(' ', "_")
                ),
                url,
            ));
        }
        env
    }

    fn endpoints(&self) -> Endpoints {
        let parts = self
            .parts
            .iter()
            .flat_map(|p| {
                p.services
                    .iter()
                    .map(|s| (*s, format!("http://127.0.0.1:{}", p.port)))
            })
            .collect();
        Endpoints {
            main: self.endpoint.clone(),
            parts,
        }
    }

    /// An SDK configuration pointed at the emulator, with test credentials.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        let loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(REGION))
            .credentials_provider(aws_credential_types::Credentials::new(
                "testing", "testing", None, None, "emulator",
            ));
        if self.parts.is_empty() {
            return loader.endpoint_url(&self.endpoint).load().await;
        }
        // An endpoint set on the config would win over the per-service ones.
        loader
            .load()
            .await
            .to_builder()
            .service_config(self.endpoints())
            .build()
    }
}

/// Two processes' `stats` as one: calls per operation and the counters added up.
fn merge_stats(mut a: serde_json::Value, b: serde_json::Value) -> serde_json::Value {
    for (op, n) in b["calls"].as_object().cloned().unwrap_or_default() {
        let sum = a["calls"][&op].as_u64().unwrap_or(0) + n.as_u64().unwrap_or(0);
        a["calls"][&op] = sum.into();
    }
    for counter in ["throttled", "issued"] {
        a[counter] = (a[counter].as_u64().unwrap_or(0) + b[counter].as_u64().unwrap_or(0)).into();
    }
    a
}

impl Drop for AwsEmulator {
    fn drop(&mut self) {
        for child in
            std::iter::once(&mut self.child).chain(self.parts.iter_mut().map(|p| &mut p.child))
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
