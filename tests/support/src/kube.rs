//! A real `kube-apiserver` (with its own etcd) as child processes, built by `tests/kube/build`
//! into `tests/.kube/`: what meshca's Kubernetes calls meet in a real cluster, not in our own test
//! server. Loopback only; an admin token (group system:masters); TLS with a CA of its own.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::aws::workspace;

/// A real kube-apiserver and its etcd, built by the test command, killed on drop.
pub struct RealApiServer {
    etcd: Child,
    apiserver: Child,
    _dir: tempfile::TempDir,
    /// The API server's URL.
    pub url: String,
    /// PEM of the CA that signed the server's certificate.
    pub ca_pem: String,
    /// A bearer token of user `admin` in group `system:masters`.
    pub token: String,
}

/// Where `tests/kube/build` put the binaries; MESHCA_TEST_KUBE overrides it.
pub fn binaries() -> PathBuf {
    if let Some(p) = std::env::var_os("MESHCA_TEST_KUBE") {
        return p.into();
    }
    let dir = workspace().join("tests/.kube/bin");
    assert!(
        dir.join("kube-apiserver").exists(),
        "{} is missing: run tests/run, which runs tests/kube/build",
        dir.display()
    );
    dir
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A CA and a serving certificate for 127.0.0.1/localhost, PEM: (ca, cert, key).
fn serving_pki() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, "meshca test kube-apiserver CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    leaf.distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    let cert = leaf
        .signed_by(&key, &Issuer::from_params(&ca, &ca_key))
        .unwrap()
        .pem();
    (ca_pem, cert, key.serialize_pem())
}

impl RealApiServer {
    /// Starts etcd and the API server and waits until they answer.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// The same, authenticating bearer tokens it does not know through a TokenReview webhook at
    /// `url` whose certificate `ca_pem` signed — EKS's aws-iam-authenticator, played by our
    /// test server; RBAC then decides what the authenticated caller may do.
    pub fn with_token_webhook(url: &str, ca_pem: &str) -> Self {
        Self::start_with(Some((url, ca_pem)))
    }

    /// Starts one, again on new ports when another process took a port between `free_port`
    /// choosing it and the server binding it (seen when many tests start servers at once).
    fn start_with(webhook: Option<(&str, &str)>) -> Self {
        let mut attempts = 0;
        loop {
            attempts += 1;
            match Self::try_start(webhook) {
                Ok(server) => return server,
                Err(why) if attempts < 3 && why.contains("address already in use") => continue,
                Err(why) => panic!("{why}"),
            }
        }
    }

    fn try_start(webhook: Option<(&str, &str)>) -> Result<Self, String> {
        let bin = binaries();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (etcd_port, peer_port, port) = (free_port(), free_port(), free_port());
        let etcd = Command::new(bin.join("etcd"))
            .arg(format!("--data-dir={}", d.join("etcd").display()))
            .args(["--name=default", "--log-level=error"])
            .arg(format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"))
            .arg(format!(
                "--advertise-client-urls=http://127.0.0.1:{etcd_port}"
            ))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"
            ))
            .arg(format!(
                "--initial-cluster=default=http://127.0.0.1:{peer_port}"
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd");
        let (ca_pem, cert, key) = serving_pki();
        let write = |name: &str, text: &str| {
            std::fs::write(d.join(name), text).unwrap();
            d.join(name).display().to_string()
        };
        let (cert_file, key_file) = (write("tls.crt", &cert), write("tls.key", &key));
        let sa = rcgen::KeyPair::generate().unwrap();
        let (sa_key, sa_pub) = (
            write("sa.key", &sa.serialize_pem()),
            write("sa.pub", &sa.public_key_pem()),
        );
        let token = format!("admin-{}", std::process::id());
        let tokens = write(
            "tokens.csv",
            &format!("{token},admin,admin,\"system:masters\"\n"),
        );
        let log = std::fs::File::create(d.join("apiserver.log")).unwrap();
        let mut extra = Vec::new();
        if let Some((url, ca)) = webhook {
            use base64::Engine;
            let ca = base64::engine::general_purpose::STANDARD.encode(ca);
            let config = format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: authenticator\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\n\
                 users:\n- name: apiserver\n  user: {{}}\ncontexts:\n- name: webhook\n  context:\n    cluster: authenticator\n    user: apiserver\n\
                 current-context: webhook\n"
            );
            let file = write("token-webhook.kubeconfig", &config);
            extra.push(format!("--authentication-token-webhook-config-file={file}"));
            extra.push("--authentication-token-webhook-version=v1".into());
            extra.push("--authentication-token-webhook-cache-ttl=0s".into());
        }
        let apiserver = Command::new(bin.join("kube-apiserver"))
            .arg(format!("--etcd-servers=http://127.0.0.1:{etcd_port}"))
            .args([
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                "--insecure-port=0",
            ])
            .arg(format!("--secure-port={port}"))
            .arg(format!("--tls-cert-file={cert_file}"))
            .arg(format!("--tls-private-key-file={key_file}"))
            .arg(format!("--cert-dir={}", d.join("certs").display()))
            .arg(format!("--token-auth-file={tokens}"))
            .args([
                "--authorization-mode=RBAC",
                "--service-cluster-ip-range=10.0.0.0/24",
            ])
            .args([
                "--service-account-issuer=https://kubernetes.default.svc",
                "--enable-priority-and-fairness=false",
            ])
            .arg(format!("--service-account-key-file={sa_pub}"))
            .arg(format!("--service-account-signing-key-file={sa_key}"))
            .args(&extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start kube-apiserver");
        let mut server = RealApiServer {
            etcd,
            apiserver,
            url: format!("https://127.0.0.1:{port}"),
            ca_pem,
            token,
            _dir: dir,
        };
        std::fs::write(server.ca_file(), &server.ca_pem).unwrap();
        std::fs::write(server.admin_kubeconfig(), server.kubeconfig("admin")).unwrap();
        server.wait_ready()?;
        Ok(server)
    }

    fn ca_file(&self) -> PathBuf {
        self._dir.path().join("ca.pem")
    }

    fn admin_kubeconfig(&self) -> PathBuf {
        self._dir.path().join("admin.kubeconfig")
    }

    /// Polls `/readyz` with the admin token until it answers 200 (etcd and the apiserver up);
    /// what its log ends with, if it never does.
    fn wait_ready(&mut self) -> Result<(), String> {
        let ca = self.ca_file();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(90) {
            let out = Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
                .arg(&ca)
                .args([
                    "-H",
                    &format!("Authorization: Bearer {}", self.token),
                    &format!("{}/readyz", self.url),
                ])
                .output();
            if out.is_ok_and(|o| o.stdout == b"200") {
                return Ok(());
            }
            if self.apiserver.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let log =
            std::fs::read_to_string(self._dir.path().join("apiserver.log")).unwrap_or_default();
        let tail = log.char_indices().rev().nth(3000).map_or(0, |(i, _)| i);
        Err(format!(
            "kube-apiserver did not become ready on {}; its log ends:\n{}",
            self.url,
            &log[tail..]
        ))
    }

    /// `kubectl <args>` as the admin, with `stdin` piped in; panics with kubectl's words on failure.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> String {
        use std::io::Write;
        let kubeconfig = self.admin_kubeconfig();
        let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
        let mut child = Command::new(kubectl)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl is installed by tests/run");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.unwrap_or_default().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whether `user` may `verb resource` (`kubectl auth can-i`, more `args` after it), as the
    /// server's RBAC decides.
    pub fn can_i(&self, user: &str, verb: &str, resource: &str, args: &[&str]) -> bool {
        let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
        let out = Command::new(kubectl)
            .arg("--kubeconfig")
            .arg(self.admin_kubeconfig())
            .args(["auth", "can-i", verb, resource, "--as", user])
            .args(args)
            .output()
            .expect("kubectl is installed by tests/run");
        String::from_utf8_lossy(&out.stdout).trim() == "yes"
    }

    /// What an EKS access entry with AmazonEKSEditPolicy scoped to `namespace` amounts to, for
    /// `user`: the namespace, and a Role and RoleBinding there for secrets and deployments.
    pub fn grant_namespace(&self, namespace: &str, user: &str) {
        self.kubectl(&["create", "namespace", namespace], None);
        let rbac = format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: meshca, namespace: {namespace}}}\nrules:\n\
             - {{apiGroups: [\"\"], resources: [secrets], verbs: [get, list, create, update, patch]}}\n\
             - {{apiGroups: [apps], resources: [deployments], verbs: [get, list, patch]}}\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: meshca, namespace: {namespace}}}\n\
             roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: meshca}}\n\
             subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: \"{user}\"}}]\n"
        );
        self.kubectl(&["apply", "-f", "-"], Some(&rbac));
    }

    /// An istiod Deployment of `image` in istio-system whose status says one replica is ready
    /// (no controller runs here: the status subresource is written as the controller would).
    pub fn seed_istiod(&self, image: &str) {
        let deployment = format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: istiod, namespace: istio-system, labels: {{app: istiod}}}}\n\
             spec:\n  selector: {{matchLabels: {{app: istiod}}}}\n  template:\n    metadata: {{labels: {{app: istiod}}}}\n\
             \x20   spec: {{containers: [{{name: discovery, image: \"{image}\"}}]}}\n"
        );
        self.kubectl(&["apply", "-f", "-"], Some(&deployment));
        let ca = self.ca_file();
        let status = r#"{"status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1}}"#;
        let out = Command::new("curl")
            .args(["-sf", "-X", "PATCH", "--cacert"])
            .arg(&ca)
            .args([
                "-H",
                &format!("Authorization: Bearer {}", self.token),
                "-H",
                "Content-Type: application/merge-patch+json",
            ])
            .args([
                "-d",
                status,
                &format!(
                    "{}/apis/apps/v1/namespaces/istio-system/deployments/istiod/status",
                    self.url
                ),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "setting istiod's status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `istio-system/cacerts`, as kubectl shows it.
    pub fn cacerts(&self) -> serde_json::Value {
        serde_json::from_str(&self.kubectl(
            &[
                "-n",
                "istio-system",
                "get",
                "secret",
                "cacerts",
                "-o",
                "json",
            ],
            None,
        ))
        .expect("kubectl prints JSON")
    }

    /// The file `name` of `istio-system/cacerts`, decoded, if the secret carries it.
    pub fn cacerts_file(&self, name: &str) -> Option<String> {
        use base64::Engine;
        let b64 = self.cacerts()["data"][name].as_str()?.to_string();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("a secret's data is base64");
        Some(String::from_utf8(bytes).expect("a PEM file"))
    }

    /// One kubeconfig at `path` with a context per server, named as given, merged by kubectl
    /// (as a fleet's kubeconfig is: `meshca rotate-root --kubeconfig`, `--fleet-kubeconfig`).
    pub fn fleet_kubeconfig(servers: &[(&RealApiServer, &str)], path: &Path) {
        let dir = path.parent().expect("a file in a directory");
        let mut parts = Vec::new();
        for (s, name) in servers {
            let one = dir.join(format!("{name}.yaml"));
            std::fs::write(&one, s.kubeconfig(name)).unwrap();
            parts.push(one.display().to_string());
        }
        let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
        let merged = Command::new(kubectl)
            .args(["config", "view", "--flatten"])
            .env("KUBECONFIG", parts.join(":"))
            .output()
            .expect("kubectl is installed by tests/run");
        assert!(
            merged.status.success(),
            "{}",
            String::from_utf8_lossy(&merged.stderr)
        );
        std::fs::write(path, &merged.stdout).unwrap();
    }

    /// A kubeconfig with one context `name` for the admin token.
    pub fn kubeconfig(&self, name: &str) -> String {
        use base64::Engine;
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem);
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: {name}\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\n\
             users:\n- name: {name}\n  user:\n    token: {token}\ncontexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: {name}\n\
             current-context: {name}\n",
            url = self.url,
            token = self.token
        )
    }
}

impl Drop for RealApiServer {
    fn drop(&mut self) {
        for child in [&mut self.apiserver, &mut self.etcd] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
