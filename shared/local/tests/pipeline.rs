//! The local CA, local escrow and reconcile pipeline together, with openssl as the judge.

use meshca_test_support::openssl::run as openssl;
use std::path::Path;

use meshca_core::Obtained;
use meshca_core::authority::{Authority, IssueRequest, RevocationReason};
use meshca_core::escrow::{Claim, Escrow, GenerationToken, Pending, SCHEMA};
use meshca_core::{
    ClusterName, KeyAlgorithm, PrivateKey, Profile, ReconcileError, Reconciler, RenewReason,
    Settings, Validity,
};
use meshca_local::LocalEscrow;
use meshca_local::{LocalCa, LocalRootSpec};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use time::OffsetDateTime;

struct World {
    dir: tempfile::TempDir,
    ca: LocalCa,
    escrow: LocalEscrow,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let ca = LocalCa::open_or_create(&dir.path().join("ca"), &LocalRootSpec::default()).unwrap();
    let escrow = LocalEscrow::new(dir.path().join("escrow"));
    World { dir, ca, escrow }
}

fn settings(alg: KeyAlgorithm) -> Settings {
    Settings {
        key_algorithm: alg,
        profile: Profile {
            key_algorithm: Some(alg),
            ..Profile::default()
        },
        ..Settings::default()
    }
}

fn cluster(name: &str) -> ClusterName {
    name.parse().unwrap()
}

fn issued_count(ca_dir: &Path) -> usize {
    std::fs::read_dir(ca_dir.join("issued")).map_or(0, |d| {
        d.filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "pem")
        })
        .count()
    })
}

/// Signs a certificate under the bundle's intermediate, as istiod would.
fn sign_under(ca_cert_pem: &str, ca_key_pem: &str, name: &str, is_ca: bool) -> (String, KeyPair) {
    let issuer_key = KeyPair::from_pem(ca_key_pem).unwrap();
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, issuer_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec![format!("{name}.example")]).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    if is_ca {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
    }
    let now = OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::minutes(1);
    p.not_after = now + time::Duration::days(1);
    (p.signed_by(&key, &issuer).unwrap().pem(), key)
}

#[tokio::test]
async fn openssl_accepts_a_workload_leaf_and_rejects_a_ca_below_the_intermediate() {
    let w = world();
    for alg in [KeyAlgorithm::EcP256, KeyAlgorithm::Rsa2048] {
        let s = settings(alg);
        let c = cluster(&format!("judge-{}", alg.as_str()));
        let outcome = Reconciler {
            authority: &w.ca,
            escrow: &w.escrow,
            settings: &s,
        }
        .ensure_bundle(&c, false)
        .await
        .unwrap();
        let out = w.dir.path().join(c.as_str());
        meshca_local::files::write_dir(&out, &outcome.bundle, None).unwrap();

        // The intermediate's extensions are the PathLen0 template's.
        let (ok, text) = openssl(&["x509", "-in", "ca-cert.pem", "-noout", "-text"], &out);
        assert!(ok, "{text}");
        assert!(
            text.contains("X509v3 Basic Constraints: critical\n                CA:TRUE, pathlen:0"),
            "{text}"
        );
        assert!(text.contains("X509v3 Key Usage: critical\n                Digital Signature, Certificate Sign, CRL Sign"), "{text}");
        assert!(
            text.contains("X509v3 Subject Key Identifier")
                && text.contains("X509v3 Authority Key Identifier"),
            "{text}"
        );
        assert!(!text.contains("Extended Key Usage"), "{text}");
        assert!(
            text.contains(&format!("Subject: CN = {c} istio intermediate CA")),
            "{text}"
        );

        let (leaf, _) = sign_under(
            &outcome.bundle.ca_cert,
            &outcome.bundle.ca_key,
            "workload",
            false,
        );
        std::fs::write(out.join("leaf.pem"), &leaf).unwrap();
        let (ok, text) = openssl(
            &[
                "verify",
                "-CAfile",
                "root-cert.pem",
                "-untrusted",
                "cert-chain.pem",
                "leaf.pem",
            ],
            &out,
        );
        assert!(ok && text.contains("leaf.pem: OK"), "{text}");

        // A CA under a pathlen:0 intermediate must not be able to issue anything trusted.
        let (sub, sub_key) = sign_under(
            &outcome.bundle.ca_cert,
            &outcome.bundle.ca_key,
            "rogue-ca",
            true,
        );
        let (below, _) = sign_under(&sub, &sub_key.serialize_pem(), "below-rogue", false);
        std::fs::write(
            out.join("rogue-chain.pem"),
            format!("{sub}{}", outcome.bundle.cert_chain),
        )
        .unwrap();
        std::fs::write(out.join("below.pem"), below).unwrap();
        let (ok, text) = openssl(
            &[
                "verify",
                "-CAfile",
                "root-cert.pem",
                "-untrusted",
                "rogue-chain.pem",
                "below.pem",
            ],
            &out,
        );
        assert!(
            !ok,
            "openssl accepted a chain through a CA below a pathlen:0 intermediate: {text}"
        );
        assert!(text.contains("path length"), "{text}");
    }
}

#[tokio::test]
async fn rerun_reuses_force_renews_and_root_stays_byte_identical() {
    let w = world();
    let s = settings(KeyAlgorithm::EcP256);
    let c = cluster("reuse");
    let r = Reconciler {
        authority: &w.ca,
        escrow: &w.escrow,
        settings: &s,
    };
    let first = r.ensure_bundle(&c, false).await.unwrap();
    assert_eq!(first.obtained, Obtained::Issued(RenewReason::NoBundle));
    let second = r.ensure_bundle(&c, false).await.unwrap();
    assert!(
        matches!(second.obtained, Obtained::Escrowed),
        "{:?}",
        second.obtained
    );
    assert_eq!(second.bundle, first.bundle);
    let third = r.ensure_bundle(&c, true).await.unwrap();
    assert_eq!(third.obtained, Obtained::Issued(RenewReason::Forced));
    assert_eq!(third.meta.generation, 2);
    assert_ne!(third.bundle.ca_cert, first.bundle.ca_cert);
    assert_eq!(
        third.bundle.root_cert.as_bytes(),
        first.bundle.root_cert.as_bytes()
    );
    assert_eq!(issued_count(w.ca.dir()), 2);
}

/// A configured key algorithm applies at the cluster's next renewal (a healthy bundle is kept),
/// which reports the change; under the cluster's recorded terms (a rotation, a rerun) another
/// configured algorithm changes nothing.
#[tokio::test]
async fn changing_the_key_algorithm_applies_at_the_next_renewal_and_is_reported() {
    let w = world();
    let c = cluster("switch");
    let s1 = settings(KeyAlgorithm::EcP256);
    Reconciler {
        authority: &w.ca,
        escrow: &w.escrow,
        settings: &s1,
    }
    .ensure_bundle(&c, false)
    .await
    .unwrap();
    let s2 = Settings {
        standing: meshca_core::reconcile::Standing::Configured,
        ..settings(KeyAlgorithm::EcP384)
    };
    let r2 = Reconciler {
        authority: &w.ca,
        escrow: &w.escrow,
        settings: &s2,
    };
    let kept = r2.ensure_bundle(&c, false).await.unwrap();
    assert_eq!(kept.obtained, Obtained::Escrowed, "kept until its renewal");
    assert_eq!(kept.verified.key_algorithm, KeyAlgorithm::EcP256);
    let o = r2.ensure_bundle(&c, true).await.unwrap();
    assert_eq!(o.obtained, Obtained::Issued(RenewReason::Forced));
    assert_eq!(o.changed, vec!["key algorithm: ec-p256 → ec-p384"]);
    assert_eq!(o.verified.key_algorithm, KeyAlgorithm::EcP384);
    let s3 = settings(KeyAlgorithm::Rsa2048);
    let o = Reconciler {
        authority: &w.ca,
        escrow: &w.escrow,
        settings: &s3,
    }
    .ensure_bundle(&c, true)
    .await
    .unwrap();
    assert_eq!(
        o.verified.key_algorithm,
        KeyAlgorithm::EcP384,
        "as recorded"
    );
    assert!(o.changed.is_empty());
}

/// An authority whose root the cluster does not share is refused (it would cut the cluster off
/// from its mesh) and changes nothing; with `new_root` (a lab) it renews under the new root.
#[tokio::test]
async fn a_foreign_root_is_refused_unless_a_new_root_is_asked_for() {
    let w = world();
    let c = cluster("reroot");
    let s = settings(KeyAlgorithm::EcP256);
    let first = Reconciler {
        authority: &w.ca,
        escrow: &w.escrow,
        settings: &s,
    }
    .ensure_bundle(&c, false)
    .await
    .unwrap();
    let other =
        LocalCa::open_or_create(&w.dir.path().join("ca2"), &LocalRootSpec::default()).unwrap();
    let refused = Reconciler {
        authority: &other,
        escrow: &w.escrow,
        settings: &s,
    }
    .ensure_bundle(&c, false)
    .await
    .unwrap_err();
    assert!(
        matches!(refused, ReconcileError::ForeignRoot(_)),
        "{refused}"
    );
    let text = refused.to_string();
    assert!(
        text.contains("shares no root")
            && text.contains("meshca rotate-root")
            && text.contains("--new-root"),
        "{text}"
    );
    let kept = w.escrow.load(&(&c).into()).await.unwrap().current.unwrap();
    assert_eq!(
        (kept.meta.generation, kept.meta.serial.as_str()),
        (1, first.meta.serial.as_str()),
        "nothing changed"
    );
    let lab = Settings {
        new_root: true,
        ..s.clone()
    };
    let o = Reconciler {
        authority: &other,
        escrow: &w.escrow,
        settings: &lab,
    }
    .ensure_bundle(&c, false)
    .await
    .unwrap();
    assert_eq!(o.obtained, Obtained::Issued(RenewReason::RootChanged));
}

#[tokio::test]
async fn a_crash_after_issue_resumes_the_same_certificate() {
    let w = world();
    let c = cluster("crash");
    let s = settings(KeyAlgorithm::EcP256);
    // What a run that died right after IssueCertificate leaves behind.
    let mut pending = meshca_test_support::pending::first_pending(&w.ca, &c, &s).await;
    let key = PrivateKey::from_pkcs8_pem(&pending.ca_key).unwrap();
    assert!(matches!(
        w.escrow.claim(&pending).await.unwrap(),
        Claim::Won
    ));
    let id = meshca_test_support::pending::issue_for(&w.ca, &pending, s.validity).await;
    pending.certificate_id = Some(id.clone());
    w.escrow.record_issued(&pending).await.unwrap();

    let o = Reconciler {
        authority: &w.ca,
        escrow: &w.escrow,
        settings: &s,
    }
    .ensure_bundle(&c, false)
    .await
    .unwrap();
    assert!(
        matches!(o.obtained, Obtained::Resumed(_)),
        "{:?}",
        o.obtained
    );
    assert_eq!(o.meta.certificate_id, id.0);
    assert_eq!(o.verified.ca_cert.public_key_raw, key.public_key_raw());
    assert_eq!(
        issued_count(w.ca.dir()),
        1,
        "no second certificate for the generation"
    );
    assert!(
        w.escrow.load(&(&c).into()).await.unwrap().pending.is_none(),
        "promotion clears the pending record"
    );
}

#[tokio::test]
async fn a_crash_before_issue_reissues_with_the_same_token() {
    let w = world();
    let c = cluster("early-crash");
    let s = settings(KeyAlgorithm::EcP256);
    let pending = meshca_test_support::pending::first_pending(&w.ca, &c, &s).await;
    // The run called PCA but died before recording the certificate id: the token brings it back.
    let first = meshca_test_support::pending::issue_for(&w.ca, &pending, s.validity).await;
    w.escrow.claim(&pending).await.unwrap();
    let o = Reconciler {
        authority: &w.ca,
        escrow: &w.escrow,
        settings: &s,
    }
    .ensure_bundle(&c, false)
    .await
    .unwrap();
    assert_eq!(o.meta.certificate_id, first.0);
    assert_eq!(issued_count(w.ca.dir()), 1);
}

#[test]
fn two_runs_racing_for_one_cluster_issue_once() {
    // Separate threads and runtimes, released together: a real race on the files.
    for round in 0..25 {
        let w = world();
        let c = cluster(&format!("race-{round}"));
        let s = settings(KeyAlgorithm::EcP256);
        let start = std::sync::Barrier::new(2);
        let (a, b) = std::thread::scope(|scope| {
            let run = || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                start.wait();
                rt.block_on(
                    Reconciler {
                        authority: &w.ca,
                        escrow: &w.escrow,
                        settings: &s,
                    }
                    .ensure_bundle(&c, false),
                )
                .unwrap()
            };
            let a = scope.spawn(run);
            let b = scope.spawn(run);
            (a.join().unwrap(), b.join().unwrap())
        });
        assert_eq!(a.bundle, b.bundle, "round {round}");
        assert_eq!(a.meta.generation, 1);
        assert_eq!(issued_count(w.ca.dir()), 1, "round {round}");
    }
}

#[tokio::test]
async fn escrow_claims_are_conditional() {
    let w = world();
    let c = cluster("claims");
    let key = PrivateKey::generate(KeyAlgorithm::EcP256).unwrap();
    let mk = |generation, csr: &str| Pending {
        schema: SCHEMA,
        cluster: c.clone(),
        kind: meshca_core::Kind::IstioCacerts,
        generation,
        token: GenerationToken::derive("local:x", &c, generation),
        authority_id: "local:x".into(),
        key_algorithm: KeyAlgorithm::EcP256,
        ca_key: key.to_pkcs8_pem(),
        csr: csr.into(),
        certificate_id: None,
        created_at: OffsetDateTime::UNIX_EPOCH,
        validity: None,
        refused: None,
    };
    let ours = mk(1, "ours");
    assert!(matches!(w.escrow.claim(&ours).await.unwrap(), Claim::Won));
    assert!(
        matches!(w.escrow.claim(&ours).await.unwrap(), Claim::Won),
        "same record again is idempotent"
    );
    let theirs = mk(1, "theirs");
    let Claim::Lost(winner) = w.escrow.claim(&theirs).await.unwrap() else {
        panic!("second writer must lose")
    };
    assert_eq!(winner.csr, "ours");
    // Recording a certificate for a generation someone else holds is refused.
    let mut stranger = mk(2, "stranger");
    stranger.certificate_id = Some(meshca_core::CertificateId("x".into()));
    let e = w.escrow.record_issued(&stranger).await.unwrap_err();
    assert!(e.to_string().contains("belongs to another run"), "{e}");
    let e = w.escrow.claim(&stranger).await.unwrap_err();
    assert!(
        matches!(e, meshca_core::EscrowError::Conflict { generation: 1, .. }),
        "{e}"
    );
}

#[tokio::test]
async fn validity_beyond_the_root_is_refused_before_anything_is_written() {
    let w = world();
    let c = cluster("too-long");
    let s = Settings {
        validity: Validity::Days(4000),
        ..settings(KeyAlgorithm::EcP256)
    };
    let e = Reconciler {
        authority: &w.ca,
        escrow: &w.escrow,
        settings: &s,
    }
    .ensure_bundle(&c, false)
    .await
    .unwrap_err();
    assert!(matches!(e, ReconcileError::OutlivesAuthority { .. }), "{e}");
    assert!(w.escrow.load(&(&c).into()).await.unwrap().pending.is_none());
    assert_eq!(issued_count(w.ca.dir()), 0);

    // And the CA refuses it on its own too, as PCA does.
    let key = PrivateKey::generate(KeyAlgorithm::EcP256).unwrap();
    let csr = meshca_core::csr::build_csr(&key, &s.subject(&c)).unwrap();
    let e =
        w.ca.issue(&IssueRequest {
            csr_pem: &csr,
            validity: Validity::Days(4000),
            idempotency_token: "t",
            template: meshca_core::Template::SubordinateCaPathLen0,
            resumed: false,
        })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("after the root"), "{e}");
}

#[tokio::test]
async fn the_local_ca_is_reused_and_guarded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca");
    let a = LocalCa::open_or_create(&path, &LocalRootSpec::default()).unwrap();
    let b = LocalCa::open_or_create(&path, &LocalRootSpec::default()).unwrap();
    assert_eq!(a.root().der, b.root().der);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path.join("root-key.pem"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    std::fs::remove_file(path.join("root-key.pem")).unwrap();
    let e = LocalCa::open_or_create(&path, &LocalRootSpec::default()).unwrap_err();
    assert!(e.to_string().contains("root-key.pem is missing"), "{e}");
    assert!(
        !path.join("root-key.pem").exists(),
        "a half CA is not silently replaced"
    );

    std::fs::write(path.join("root-key.pem"), "garbage").unwrap();
    let e = LocalCa::open_or_create(&path, &LocalRootSpec::default()).unwrap_err();
    assert!(e.to_string().contains("unusable"), "{e}");

    let other = tempfile::tempdir().unwrap();
    let c2 = LocalCa::open_or_create(&other.path().join("ca"), &LocalRootSpec::default()).unwrap();
    drop(c2);
    std::fs::copy(
        other.path().join("ca/root-key.pem"),
        path.join("root-key.pem"),
    )
    .unwrap();
    let e = LocalCa::open_or_create(&path, &LocalRootSpec::default()).unwrap_err();
    assert!(
        e.to_string()
            .contains("root-key.pem does not match root-cert.pem"),
        "{e}"
    );
}

#[tokio::test]
async fn local_ca_revokes_and_keeps_idempotency() {
    let w = world();
    let key = PrivateKey::generate(KeyAlgorithm::EcP256).unwrap();
    let csr = meshca_core::csr::build_csr(
        &key,
        &meshca_core::csr::Subject::for_cluster(&cluster("rev")),
    )
    .unwrap();
    let req = IssueRequest {
        csr_pem: &csr,
        validity: Validity::Days(10),
        idempotency_token: "tok",
        template: meshca_core::Template::SubordinateCaPathLen0,
        resumed: false,
    };
    let a = w.ca.issue(&req).await.unwrap();
    let b = w.ca.issue(&req).await.unwrap();
    assert_eq!(a, b);
    let issued = w.ca.fetch(&a).await.unwrap();
    let serial = a.0.rsplit('/').next().unwrap().to_string();
    w.ca.revoke(&a, &serial, RevocationReason::CessationOfOperation)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(w.ca.dir().join("revoked").join(&serial)).unwrap(),
        "CESSATION_OF_OPERATION"
    );
    assert_eq!(issued.chain, w.ca.describe().await.unwrap().root_bundle);
    let bogus =
        meshca_core::CertificateId(format!("{}/../../etc", a.0.rsplit_once('/').unwrap().0));
    assert!(w.ca.fetch(&bogus).await.is_err());
}

#[tokio::test]
async fn a_generation_resumed_after_the_validity_setting_changed_keeps_what_it_asked_for() {
    let w = world();
    let c = cluster("changed");
    let before = Settings {
        validity: Validity::Days(30),
        ..settings(KeyAlgorithm::EcP256)
    };
    let mut pending = meshca_test_support::pending::first_pending(&w.ca, &c, &before).await;
    assert!(matches!(
        w.escrow.claim(&pending).await.unwrap(),
        Claim::Won
    ));
    let id = meshca_test_support::pending::issue_for(&w.ca, &pending, before.validity).await;
    pending.certificate_id = Some(id.clone());
    w.escrow.record_issued(&pending).await.unwrap();

    // The operator moved to 90 days meanwhile: the generation in flight is finished as asked
    // (30 days), not refused as if the authority had changed it.
    let after = Settings {
        validity: Validity::Days(90),
        ..settings(KeyAlgorithm::EcP256)
    };
    let o = Reconciler {
        authority: &w.ca,
        escrow: &w.escrow,
        settings: &after,
    }
    .ensure_bundle(&c, false)
    .await
    .unwrap();
    assert_eq!(o.meta.certificate_id, id.0);
    let days = (o.meta.not_after - OffsetDateTime::now_utc()).whole_days();
    assert!((29..=30).contains(&days), "{days}");

    // A record from before `validity` was kept still reads, and resumes with today's settings.
    let mut json: serde_json::Value = serde_json::to_value(&pending).unwrap();
    json.as_object_mut().unwrap().remove("validity");
    let old: Pending = serde_json::from_value(json).unwrap();
    assert_eq!(old.validity, None);
}

#[tokio::test]
async fn each_kind_of_a_cluster_has_its_own_records_and_istio_s_stay_where_they_were() {
    use meshca_core::escrow::EscrowKey;
    use meshca_core::kind::{Kind, KindSpec};
    let w = world();
    let c = cluster("c1");
    let istio = settings(KeyAlgorithm::EcP256);
    let edge = Settings {
        kind: KindSpec::new(Kind::XcpEdge),
        ..settings(KeyAlgorithm::EcP256)
    };
    let a = Reconciler {
        authority: &w.ca,
        escrow: &w.escrow,
        settings: &istio,
    }
    .ensure_bundle(&c, false)
    .await
    .unwrap();
    let b = Reconciler {
        authority: &w.ca,
        escrow: &w.escrow,
        settings: &edge,
    }
    .ensure_bundle(&c, false)
    .await
    .unwrap();
    assert_eq!(
        (a.meta.generation, b.meta.generation),
        (1, 1),
        "two first generations, not one renewal"
    );
    assert!(a.verified.ca_cert.is_ca && !b.verified.ca_cert.is_ca);
    for (s, first) in [(&istio, &a), (&edge, &b)] {
        let again = Reconciler {
            authority: &w.ca,
            escrow: &w.escrow,
            settings: s,
        }
        .ensure_bundle(&c, false)
        .await
        .unwrap();
        assert_eq!(
            (again.obtained, again.meta.certificate_id.clone()),
            (Obtained::Escrowed, first.meta.certificate_id.clone())
        );
    }
    // istio-cacerts keeps the directory and the record format it had before kinds existed.
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(w.dir.path().join("escrow/c1/current.json")).unwrap(),
    )
    .unwrap();
    assert!(record.get("kind").is_none(), "{record}");
    // The fields a current record had before kinds existed, so either version reads it, the
    // terms it was issued with and where its ledger starts (a reader that predates them ignores
    // them), and its intermediate's own CRL, signed as it was put in service.
    let keys: std::collections::BTreeSet<&str> = record
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let before: std::collections::BTreeSet<&str> = [
        "schema",
        "cluster",
        "token",
        "authority_id",
        "meta",
        "bundle",
        "promoted_at",
        "terms",
        "ledger_from",
        "own_crl",
    ]
    .into_iter()
    .collect();
    assert_eq!(keys, before);
    // istiod's rule holds for the record's own CRL and its certificate, until that expires.
    let until = time::OffsetDateTime::now_utc() + time::Duration::days(300);
    meshca_core::crl::signed_by_own(
        record["own_crl"].as_str().unwrap(),
        record["bundle"]["ca_cert"].as_str().unwrap(),
        until,
    )
    .unwrap();
    let edge_record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(w.dir.path().join("escrow/c1.xcp-edge/current.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(edge_record["kind"], "xcp-edge");
    assert!(
        edge_record.get("own_crl").is_none(),
        "the kubernetes.io/tls layout carries no CRL: {edge_record}"
    );
    let loaded = w
        .escrow
        .load(&EscrowKey::new(c.clone(), Kind::XcpEdge))
        .await
        .unwrap();
    assert_eq!(
        loaded.current.unwrap().meta.certificate_id,
        b.meta.certificate_id
    );
}
