//! A bundle as the CLI writes and reads it: four PEM files and the Secret manifest beside them
//! (moved here from the domain's bundle tests when files and manifests left the domain).

use std::path::Path;

use meshca_core::{Bundle, BundleMeta, ClusterName, Reconciler, Settings};
use meshca_local::{LocalCa, LocalEscrow, LocalRootSpec};

/// A real bundle from the local CA, and the CA's directory (kept alive by the caller).
async fn issued(dir: &Path) -> (Bundle, BundleMeta) {
    let ca = LocalCa::open_or_create(&dir.join("ca"), &LocalRootSpec::default()).unwrap();
    let escrow = LocalEscrow::new(dir.join("escrow"));
    let s = Settings::default();
    let c: ClusterName = "c1".parse().unwrap();
    let secured = Reconciler {
        authority: &ca,
        escrow: &escrow,
        settings: &s,
    }
    .ensure_bundle(&c, false)
    .await
    .unwrap();
    (secured.bundle, secured.meta)
}

#[tokio::test]
async fn missing_file() {
    let state = tempfile::tempdir().unwrap();
    let (b, meta) = issued(state.path()).await;
    let dir = tempfile::tempdir().unwrap();
    meshca_wiring::write_files(
        dir.path(),
        &b,
        &meta,
        &meshca_core::KindSpec::default().landing(),
    )
    .unwrap();
    assert_eq!(meshca_wiring::read_bundle(dir.path()).unwrap().0, b);
    for file in meshca_core::bundle::FILES {
        let d = tempfile::tempdir().unwrap();
        meshca_wiring::write_files(
            d.path(),
            &b,
            &meta,
            &meshca_core::KindSpec::default().landing(),
        )
        .unwrap();
        std::fs::remove_file(d.path().join(file)).unwrap();
        let e = meshca_wiring::read_bundle(d.path()).unwrap_err();
        assert_eq!(e.to_string(), format!("{file} is missing"));
    }
}

#[tokio::test]
async fn manifest_round_trips_and_keeps_annotations() {
    let state = tempfile::tempdir().unwrap();
    let (b, meta) = issued(state.path()).await;
    let dir = tempfile::tempdir().unwrap();
    meshca_wiring::write_files(
        dir.path(),
        &b,
        &meta,
        &meshca_core::KindSpec::default().landing(),
    )
    .unwrap();
    let (back, read_meta) = meshca_wiring::read_bundle(&dir.path().join("cacerts.yaml")).unwrap();
    assert_eq!(back, b);
    assert_eq!(read_meta, Some(meta));
    use std::os::unix::fs::PermissionsExt;
    for (file, mode) in [
        ("ca-key.pem", 0o600),
        ("cacerts.yaml", 0o600),
        ("ca-cert.pem", 0o644),
    ] {
        let m = std::fs::metadata(dir.path().join(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(m, mode, "{file}");
    }
}
