//! TSB's XCP identities from the local CA, used for what they exist for: a real mTLS handshake
//! between the management plane (xcp-central) and a control plane (xcp-edge), each side trusting
//! only the root (`ca.crt`). An edge identity from another root is refused.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;

use meshca_core::kind::{Kind, KindSpec};
use meshca_core::{Bundle, ClusterName, Reconciler, Secured, Settings};
use meshca_local::{LocalCa, LocalEscrow, LocalRootSpec};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

const CENTRAL_ADDRESS: &str = "central.tsb.example";

async fn identity(ca_dir: &Path, state: &Path, cluster: &str, spec: KindSpec) -> Secured {
    let ca = LocalCa::open_or_create(ca_dir, &LocalRootSpec::default()).unwrap();
    let escrow = LocalEscrow::new(state.join(format!("escrow-{}", spec.kind)));
    let settings = Settings {
        kind: spec,
        ..Settings::default()
    };
    let c: ClusterName = cluster.parse().unwrap();
    Reconciler {
        authority: &ca,
        escrow: &escrow,
        settings: &settings,
    }
    .ensure_bundle(&c, false)
    .await
    .unwrap()
}

/// `tls.crt`: the certificate and its issuers, the self-signed root left out.
fn tls_crt(b: &Bundle) -> Vec<CertificateDer<'static>> {
    let roots: Vec<Vec<u8>> = meshca_core::pem::certificates("root", &b.root_cert).unwrap();
    meshca_core::pem::certificates("chain", &b.cert_chain)
        .unwrap()
        .into_iter()
        .filter(|d| !roots.contains(d))
        .map(CertificateDer::from)
        .collect()
}

fn key(b: &Bundle) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_slice(b.ca_key.as_bytes()).unwrap()
}

/// `ca.crt`: the root alone.
fn trust(b: &Bundle) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for der in meshca_core::pem::certificates("root", &b.root_cert).unwrap() {
        roots.add(CertificateDer::from(der)).unwrap();
    }
    Arc::new(roots)
}

/// One handshake, server `central`, client `edge`; the client's view of the result and, on
/// success, the URI SANs each side saw of the other.
fn handshake(central: &Bundle, edge: &Bundle) -> Result<(Vec<String>, Vec<String>), String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(trust(central), provider.clone())
        .build()
        .unwrap();
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(tls_crt(central), key(central))
        .unwrap();
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(trust(edge))
        .with_client_auth_cert(tls_crt(edge), key(edge))
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let served = std::thread::spawn(move || -> Result<Vec<String>, String> {
        let (tcp, _) = listener.accept().unwrap();
        let conn = rustls::ServerConnection::new(Arc::new(server)).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).map_err(|e| e.to_string())?;
        tls.write_all(b"!").map_err(|e| e.to_string())?;
        Ok(peer_uris(tls.conn.peer_certificates()))
    });
    let conn = rustls::ClientConnection::new(
        Arc::new(client),
        ServerName::try_from(CENTRAL_ADDRESS).unwrap(),
    )
    .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, TcpStream::connect(addr).unwrap());
    let client_side = (|| -> Result<Vec<String>, String> {
        tls.write_all(b"?").map_err(|e| e.to_string())?;
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).map_err(|e| e.to_string())?;
        Ok(peer_uris(tls.conn.peer_certificates()))
    })();
    drop(tls);
    let server_side = served.join().unwrap();
    Ok((server_side?, client_side?))
}

fn peer_uris(certs: Option<&[CertificateDer<'_>]>) -> Vec<String> {
    let leaf = certs
        .and_then(|c| c.first())
        .expect("the peer sent a certificate");
    meshca_core::cert::Certificate::from_der("peer", leaf.to_vec())
        .unwrap()
        .uri_sans
}

#[tokio::test(flavor = "multi_thread")]
async fn central_and_edge_complete_an_mtls_handshake_trusting_only_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    let central = KindSpec {
        dns: vec![CENTRAL_ADDRESS.into()],
        ..KindSpec::new(Kind::XcpCentral)
    };
    let central = identity(&ca, dir.path(), "mgmt", central).await;
    let edge = identity(&ca, dir.path(), "east-1", KindSpec::new(Kind::XcpEdge)).await;
    assert_eq!(
        edge.verified.ca_cert.uri_sans,
        ["spiffe://xcp.tetrate.io/east-1"]
    );
    assert!(
        !edge.verified.ca_cert.is_ca
            && edge.verified.ca_cert.server_auth
            && edge.verified.ca_cert.client_auth
    );

    let (server_saw, client_saw) =
        handshake(&central.bundle, &edge.bundle).expect("mTLS between central and edge");
    assert_eq!(
        server_saw,
        ["spiffe://xcp.tetrate.io/east-1"],
        "central authenticated the edge by its SPIFFE ID"
    );
    assert_eq!(
        client_saw,
        ["spiffe://xcp.tetrate.io/central"],
        "the edge authenticated central"
    );

    // An edge identity from another root: central refuses it.
    let stranger = identity(
        &dir.path().join("other-ca"),
        dir.path(),
        "east-2",
        KindSpec::new(Kind::XcpEdge),
    )
    .await;
    let mixed = Bundle {
        root_cert: central.bundle.root_cert.clone(),
        ..stranger.bundle.clone()
    };
    let err =
        handshake(&central.bundle, &mixed).expect_err("an edge from another root must be refused");
    // Both local roots carry the same name, so the verifier finds the name and the signature fails.
    assert!(
        err.contains("invalid peer certificate"),
        "refused for its certificate: {err}"
    );
}
