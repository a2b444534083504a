//! The emulated AWS (tests/emulator/meshca_aws.py) as a child process, one per test.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub const REGION: &str = "eu-west-1";

/// What [`AwsEmulator::child_env`] leaves unset in a child: the caller's profile and region.
pub const AWS_UNSET: [&str; 2] = ["AWS_PROFILE", "AWS_REGION"];

pub struct AwsEmulator {
    child: Child,
    pub port: u16,
    pub endpoint: String,
}

/// The workspace root: the nearest ancestor of this crate that holds the emulator.
pub fn workspace() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.ancestors().find(|d| d.join("tests/emulator/meshca_aws.py").exists()).expect("inside the meshca workspace").to_path_buf()
}

/// The venv tests/run creates; MESHCA_TEST_PYTHON overrides it.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("MESHCA_TEST_PYTHON") {
        return p.into();
    }
    let p = workspace().join("tests/.venv/bin/python");
    assert!(p.exists(), "{} is missing: run tests/run, which creates the emulator's venv", p.display());
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
    assert!(head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"), "{head}\n{payload}");
    serde_json::from_str(payload).unwrap()
}

impl AwsEmulator {
    pub fn start() -> Self {
        let mut child = Command::new(python())
            .arg(workspace().join("tests/emulator/meshca_aws.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the AWS emulator");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port: u16 = line.strip_prefix("READY ").and_then(|p| p.trim().parse().ok()).unwrap_or_else(|| panic!("emulator said {line:?}"));
        AwsEmulator { child, port, endpoint: format!("http://127.0.0.1:{port}") }
    }

    /// POST to the emulator's control API.
    pub fn control(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        control_port(self.port, path, body)
    }

    pub fn calls(&self, operation: &str) -> u64 {
        self.control("stats", serde_json::json!({}))["calls"][operation].as_u64().unwrap_or(0)
    }

    /// Distinct certificates the emulated PCA signed (an idempotent replay is not one).
    pub fn issued(&self) -> u64 {
        self.control("stats", serde_json::json!({}))["issued"].as_u64().unwrap_or(0)
    }

    pub fn hierarchy(&self, key_algorithm: &str, levels: u32) -> serde_json::Value {
        self.control("fixtures/hierarchy", serde_json::json!({"key_algorithm": key_algorithm, "levels": levels}))
    }

    /// The environment a child process (the `meshca` binary) needs to use this emulator, and
    /// nothing of the caller's own AWS set-up: set these, unset [`AWS_UNSET`].
    pub fn child_env(&self) -> [(&'static str, String); 4] {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }

    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(REGION))
            .endpoint_url(&self.endpoint)
            .credentials_provider(aws_credential_types::Credentials::new("testing", "testing", None, None, "emulator"))
            .load()
            .await
    }
}

impl Drop for AwsEmulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
