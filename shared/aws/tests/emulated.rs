//! AWS Private CA and Secrets Manager adapters against the emulated AWS, through the real SDK.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use meshca_aws::{PcaAuthority, SecretsEscrow};
use meshca_core::Obtained;
use meshca_core::authority::{Authority, IssueRequest};
use meshca_core::escrow::{Claim, Escrow};
use meshca_core::retry::Backoff;
use meshca_core::{
    AuthorityError, ClusterName, KeyAlgorithm, Profile, ReconcileError, Reconciler, Settings,
    Validity,
};
use meshca_test_support::aws::{AwsEmulator, REGION};
use serde_json::json;

struct Aws {
    emu: AwsEmulator,
    pca: aws_sdk_acmpca::Client,
    sm: aws_sdk_secretsmanager::Client,
}

async fn aws() -> Aws {
    let emu = AwsEmulator::start();
    let config = emu.sdk_config().await;
    Aws {
        pca: aws_sdk_acmpca::Client::new(&config),
        sm: aws_sdk_secretsmanager::Client::new(&config),
        emu,
    }
}

fn fast() -> Backoff {
    Backoff {
        first: Duration::from_millis(20),
        max: Duration::from_millis(200),
        deadline: Duration::from_secs(20),
    }
}

impl Aws {
    fn authority(&self, ca: &serde_json::Value) -> PcaAuthority {
        PcaAuthority::new(self.pca.clone(), ca.as_str().unwrap(), None)
            .unwrap()
            .with_backoff(fast())
    }
    fn escrow(&self) -> SecretsEscrow {
        SecretsEscrow::new(self.sm.clone(), SecretsEscrow::default_prefix(REGION))
            .with_kms_key(Some("alias/meshca".into()))
    }
}

fn settings() -> Settings {
    Settings {
        validity: Validity::Days(30),
        ..Settings::default()
    }
}

fn cluster(s: &str) -> ClusterName {
    s.parse().unwrap()
}

fn openssl_verify(bundle: &meshca_core::Bundle, dir: &Path) {
    for (name, text) in bundle.files() {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let out = Command::new("openssl")
        .args([
            "verify",
            "-CAfile",
            "root-cert.pem",
            "-untrusted",
            "cert-chain.pem",
            "ca-cert.pem",
        ])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn issue_through_a_root_pca_escrow_in_secrets_manager() {
    let a = aws().await;
    let h = a.emu.hierarchy("EC_prime256v1", 1);
    let (authority, escrow, s) = (a.authority(&h["issuing"]), a.escrow(), settings());
    let c = cluster("prod-eu-1");
    let o = Reconciler {
        authority: &authority,
        escrow: &escrow,
        settings: &s,
    }
    .ensure_bundle(&c, false)
    .await
    .unwrap();
    assert!(matches!(o.obtained, Obtained::Issued(_)));
    assert_eq!(o.verified.chain.len(), 2);
    assert!(
        o.meta
            .certificate_id
            .starts_with(h["issuing"].as_str().unwrap()),
        "{}",
        o.meta.certificate_id
    );
    let dir = tempfile::tempdir().unwrap();
    openssl_verify(&o.bundle, dir.path());
    assert_eq!(a.emu.calls("IssueCertificate"), 1);

    // The escrowed record is what a rerun reuses: no second issuance.
    let again = Reconciler {
        authority: &authority,
        escrow: &escrow,
        settings: &s,
    }
    .ensure_bundle(&c, false)
    .await
    .unwrap();
    assert!(
        matches!(again.obtained, Obtained::Escrowed),
        "{:?}",
        again.obtained
    );
    assert_eq!(again.bundle, o.bundle);
    assert_eq!(a.emu.calls("IssueCertificate"), 1);
    let stored =
        a.sm.get_secret_value()
            .secret_id("meshca/eu-west-1/prod-eu-1")
            .send()
            .await
            .unwrap();
    let record: serde_json::Value = serde_json::from_str(stored.secret_string().unwrap()).unwrap();
    assert_eq!(record["state"], "current");
    assert_eq!(record["meta"]["generation"], 1);
}

#[tokio::test]
async fn issue_through_a_subordinate_pca() {
    let a = aws().await;
    let h = a.emu.hierarchy("EC_prime256v1", 2);
    let (authority, escrow, s) = (a.authority(&h["issuing"]), a.escrow(), settings());
    let o = Reconciler {
        authority: &authority,
        escrow: &escrow,
        settings: &s,
    }
    .ensure_bundle(&cluster("c2"), false)
    .await
    .unwrap();
    assert_eq!(
        o.verified.chain.len(),
        3,
        "intermediate, issuing sub CA, root"
    );
    assert_eq!(o.verified.roots.len(), 1);
    assert!(o.verified.chain[2].is_self_signed());
    openssl_verify(&o.bundle, tempfile::tempdir().unwrap().path());
}

#[tokio::test]
async fn rsa_and_ec_cas_get_their_signing_algorithm() {
    let a = aws().await;
    for (key, alg) in [
        ("RSA_2048", "SHA256WITHRSA"),
        ("EC_prime256v1", "SHA256WITHECDSA"),
        ("EC_secp384r1", "SHA384WITHECDSA"),
    ] {
        let h = a.emu.hierarchy(key, 1);
        let authority = a.authority(&h["issuing"]);
        assert_eq!(authority.describe().await.unwrap().signing_algorithm, alg);
        let s = Settings {
            key_algorithm: KeyAlgorithm::Rsa2048,
            profile: Profile {
                key_algorithm: Some(KeyAlgorithm::Rsa2048),
                ..Profile::default()
            },
            ..settings()
        };
        let c = cluster(&format!("c-{}", key.to_lowercase().replace('_', "-")));
        Reconciler {
            authority: &authority,
            escrow: &a.escrow(),
            settings: &s,
        }
        .ensure_bundle(&c, false)
        .await
        .unwrap();
    }
    // An explicit algorithm of the wrong family is refused by PCA, and surfaces as a rejection.
    let h = a.emu.hierarchy("EC_prime256v1", 1);
    let authority = a
        .authority(&h["issuing"])
        .with_signing_algorithm(Some("SHA256WITHRSA".into()));
    let e = Reconciler {
        authority: &authority,
        escrow: &a.escrow(),
        settings: &settings(),
    }
    .ensure_bundle(&cluster("wrong-alg"), false)
    .await
    .unwrap_err();
    assert!(
        matches!(
            e,
            ReconcileError::Authority {
                source: AuthorityError::Rejected { .. },
                ..
            }
        ),
        "{e}"
    );
}

#[tokio::test]
async fn in_progress_polls_are_waited_out() {
    let a = aws().await;
    let h = a.emu.hierarchy("EC_prime256v1", 1);
    a.emu.control("configure", json!({"in_progress_polls": 3}));
    let (authority, escrow, s) = (a.authority(&h["issuing"]), a.escrow(), settings());
    Reconciler {
        authority: &authority,
        escrow: &escrow,
        settings: &s,
    }
    .ensure_bundle(&cluster("slow"), false)
    .await
    .unwrap();
    assert_eq!(a.emu.calls("GetCertificate"), 4);

    // With a deadline too short, a typed error instead of a hang.
    a.emu
        .control("configure", json!({"in_progress_polls": 1000}));
    let impatient = a.authority(&h["issuing"]).with_backoff(Backoff {
        deadline: Duration::from_millis(300),
        ..fast()
    });
    let e = Reconciler {
        authority: &impatient,
        escrow: &escrow,
        settings: &s,
    }
    .ensure_bundle(&cluster("slower"), false)
    .await
    .unwrap_err();
    assert!(
        matches!(
            e,
            ReconcileError::Authority {
                source: AuthorityError::StillInProgress { .. },
                ..
            }
        ),
        "{e}"
    );
    // The generation is pending with its certificate ARN: the rerun fetches, it does not reissue.
    a.emu.control("configure", json!({"in_progress_polls": 0}));
    let issued = a.emu.calls("IssueCertificate");
    let o = Reconciler {
        authority: &authority,
        escrow: &escrow,
        settings: &s,
    }
    .ensure_bundle(&cluster("slower"), false)
    .await
    .unwrap();
    assert!(
        matches!(o.obtained, Obtained::Resumed(_)),
        "{:?}",
        o.obtained
    );
    assert_eq!(a.emu.calls("IssueCertificate"), issued);
}

#[tokio::test]
async fn a_throttling_storm_is_survived() {
    let a = aws().await;
    let h = a.emu.hierarchy("EC_prime256v1", 1);
    a.emu.control("configure", json!({"issue_tps": 2}));
    let (authority, escrow, s) = (a.authority(&h["issuing"]), a.escrow(), settings());
    let r = Reconciler {
        authority: &authority,
        escrow: &escrow,
        settings: &s,
    };
    let names: Vec<ClusterName> = (0..8).map(|i| cluster(&format!("storm-{i}"))).collect();
    let results = futures_join_all(names.iter().map(|c| r.ensure_bundle(c, false))).await;
    for r in results {
        r.unwrap();
    }
    let stats = a.emu.control("stats", json!({}));
    assert!(
        stats["throttled"].as_u64().unwrap() > 0,
        "the quota was never hit: {stats}"
    );

    // The same storm with every attempt waiting its turn in a budget under the quota: no throttle.
    a.emu.control("reset", json!({}));
    let h = a.emu.hierarchy("EC_prime256v1", 1);
    a.emu.control("configure", json!({"issue_tps": 5}));
    let budget = std::sync::Arc::new(meshca_core::pace::IssueBudget::per_second(4.0));
    let paced = a.authority(&h["issuing"]).with_issue_budget(budget);
    let r = Reconciler {
        authority: &paced,
        escrow: &escrow,
        settings: &s,
    };
    let names: Vec<ClusterName> = (0..12).map(|i| cluster(&format!("calm-{i}"))).collect();
    let started = std::time::Instant::now();
    for o in futures_join_all(names.iter().map(|c| r.ensure_bundle(c, false))).await {
        o.unwrap();
    }
    let stats = a.emu.control("stats", json!({}));
    assert_eq!(stats["throttled"], 0, "{stats}");
    assert!(
        started.elapsed() >= Duration::from_millis(2700),
        "12 issues at 4/s take at least 2.75 s"
    );

    // Past the deadline a throttle is a typed error.
    a.emu.control("configure", json!({"issue_tps": 0, "faults": [{"operation": "IssueCertificate", "fail": 1000, "of": 1000, "code": "ThrottlingException", "status": 400}]}));
    let impatient = a.authority(&h["issuing"]).with_backoff(Backoff {
        deadline: Duration::from_millis(300),
        ..fast()
    });
    let e = Reconciler {
        authority: &impatient,
        escrow: &escrow,
        settings: &s,
    }
    .ensure_bundle(&cluster("storm-x"), false)
    .await
    .unwrap_err();
    assert!(
        matches!(
            e,
            ReconcileError::Authority {
                source: AuthorityError::Throttled {
                    operation: "IssueCertificate",
                    ..
                },
                ..
            }
        ),
        "{e}"
    );
}

async fn futures_join_all<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut out = Vec::new();
    let handles: Vec<_> = futs.collect();
    // Run them concurrently on this task.
    let mut pinned: Vec<_> = handles.into_iter().map(Box::pin).collect();
    let mut done: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (i, f) in pinned.iter_mut().enumerate() {
            if done[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => done[i] = Some(v),
                    std::task::Poll::Pending => all = false,
                }
            }
        }
        if all {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out.extend(done.into_iter().map(Option::unwrap));
    out
}

#[tokio::test]
async fn a_run_stopped_after_issue_is_resumed_with_one_issuance() {
    let a = aws().await;
    let h = a.emu.hierarchy("EC_prime256v1", 1);
    let (authority, escrow, s) = (a.authority(&h["issuing"]), a.escrow(), settings());
    let c = cluster("crashy");
    // The first run: claimed, issued, recorded the ARN, then died.
    let mut p = meshca_test_support::pending::first_pending(&authority, &c, &s).await;
    assert!(matches!(escrow.claim(&p).await.unwrap(), Claim::Won));
    let id = meshca_test_support::pending::issue_for(&authority, &p, s.validity).await;
    p.certificate_id = Some(id.clone());
    escrow.record_issued(&p).await.unwrap();

    let o = Reconciler {
        authority: &authority,
        escrow: &escrow,
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
    assert_eq!(
        a.emu.calls("IssueCertificate"),
        1,
        "exactly one IssueCertificate for the generation"
    );
}

#[tokio::test]
async fn a_run_stopped_before_recording_gets_the_same_certificate_back() {
    let a = aws().await;
    let h = a.emu.hierarchy("EC_prime256v1", 1);
    let (authority, escrow, s) = (a.authority(&h["issuing"]), a.escrow(), settings());
    let c = cluster("crashy2");
    let p = meshca_test_support::pending::first_pending(&authority, &c, &s).await;
    escrow.claim(&p).await.unwrap();
    let id = meshca_test_support::pending::issue_for(&authority, &p, s.validity).await;
    let o = Reconciler {
        authority: &authority,
        escrow: &escrow,
        settings: &s,
    }
    .ensure_bundle(&c, false)
    .await
    .unwrap();
    assert_eq!(
        o.meta.certificate_id, id.0,
        "the idempotency token named the same certificate"
    );
}

#[tokio::test]
async fn an_escrow_conflict_is_detected() {
    let a = aws().await;
    let h = a.emu.hierarchy("EC_prime256v1", 1);
    let (authority, escrow, s) = (a.authority(&h["issuing"]), a.escrow(), settings());
    let c = cluster("contested");
    let ours = meshca_test_support::pending::first_pending(&authority, &c, &s).await;
    let theirs = meshca_test_support::pending::first_pending(&authority, &c, &s).await;
    assert_eq!(ours.token, theirs.token);
    assert!(matches!(escrow.claim(&ours).await.unwrap(), Claim::Won));
    assert!(
        matches!(escrow.claim(&ours).await.unwrap(), Claim::Won),
        "a retry of the same write is idempotent"
    );
    let Claim::Lost(winner) = escrow.claim(&theirs).await.unwrap() else {
        panic!("the second writer must lose")
    };
    assert_eq!(winner.csr, ours.csr);

    let mut a1 = ours.clone();
    a1.certificate_id = Some(meshca_core::CertificateId("arn:one".into()));
    escrow.record_issued(&a1).await.unwrap();
    let mut a2 = ours.clone();
    a2.certificate_id = Some(meshca_core::CertificateId("arn:two".into()));
    let e = escrow.record_issued(&a2).await.unwrap_err();
    assert!(
        matches!(e, meshca_core::EscrowError::Conflict { .. }),
        "{e}"
    );
}

#[tokio::test]
async fn two_reconciles_at_once_issue_one_certificate() {
    let a = aws().await;
    let h = a.emu.hierarchy("EC_prime256v1", 1);
    let (authority, escrow, s) = (a.authority(&h["issuing"]), a.escrow(), settings());
    let c = cluster("twins");
    let r = Reconciler {
        authority: &authority,
        escrow: &escrow,
        settings: &s,
    };
    let (x, y) = tokio::join!(r.ensure_bundle(&c, false), r.ensure_bundle(&c, false));
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.bundle, y.bundle);
    assert_eq!(x.meta.certificate_id, y.meta.certificate_id);
}

#[tokio::test]
async fn bad_certificates_from_pca_are_never_escrowed() {
    let a = aws().await;
    let h = a.emu.hierarchy("EC_prime256v1", 1);
    let (authority, escrow, s) = (a.authority(&h["issuing"]), a.escrow(), settings());
    for (kind, expect) in [
        ("not-ca", "is not a CA"),
        ("pathlen1", "pathlen 1, profile wants 0"),
        ("wrong-key", "does not match"),
    ] {
        a.emu
            .control("configure", json!({"bad_certificates": [kind]}));
        let c = cluster(&format!("bad-{kind}"));
        let e = Reconciler {
            authority: &authority,
            escrow: &escrow,
            settings: &s,
        }
        .ensure_bundle(&c, false)
        .await
        .unwrap_err();
        assert!(
            matches!(e, ReconcileError::InvalidIssued { .. }),
            "{kind}: {e}"
        );
        assert!(e.to_string().contains(expect), "{kind}: {e}");
        assert!(
            escrow.load(&(&c).into()).await.unwrap().current.is_none(),
            "{kind} was escrowed as current"
        );
        // Nothing half-done is left: the certificate is revoked, its generation closed.
        assert!(e.to_string().contains("it was revoked"), "{kind}: {e}");
        let pending = escrow.load(&(&c).into()).await.unwrap().pending.unwrap();
        assert!(pending.refused.is_some(), "{kind}: the refusal is recorded");
    }
    assert_eq!(a.emu.calls("RevokeCertificate"), 3);
    // Once the CA behaves, the name is not stuck on its refused generation: a fresh one is issued.
    a.emu.control("configure", json!({"bad_certificates": []}));
    let c = cluster("bad-pathlen1");
    let r = Reconciler {
        authority: &authority,
        escrow: &escrow,
        settings: &s,
    };
    let secured = r.ensure_bundle(&c, false).await.unwrap();
    assert_eq!(secured.meta.generation, 2);
    assert!(matches!(secured.obtained, meshca_core::Obtained::Issued(_)));
    assert!(escrow.load(&(&c).into()).await.unwrap().pending.is_none());
}

#[tokio::test]
async fn unusable_cas_are_clear_errors() {
    let a = aws().await;
    let h = a.emu.hierarchy("EC_prime256v1", 1);
    a.emu.control(
        "ca/status",
        json!({"arn": h["issuing"], "status": "DISABLED"}),
    );
    let e = a.authority(&h["issuing"]).describe().await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "certificate authority {} is DISABLED, not ACTIVE; it cannot issue",
            h["issuing"].as_str().unwrap()
        )
    );

    let missing = h["issuing"]
        .as_str()
        .unwrap()
        .replace("certificate-authority/", "certificate-authority/0000");
    let e = PcaAuthority::new(a.pca.clone(), missing, None)
        .unwrap()
        .describe()
        .await
        .unwrap_err();
    assert!(matches!(e, AuthorityError::NotFound { .. }), "{e}");
    let e = PcaAuthority::new(a.pca.clone(), "arn:aws:s3:::bucket", None).unwrap_err();
    assert!(
        e.to_string().contains("not a certificate authority ARN"),
        "{e}"
    );
}

#[tokio::test]
async fn secrets_manager_down_means_nothing_issued_and_a_clear_error() {
    let a = aws().await;
    let h = a.emu.hierarchy("EC_prime256v1", 1);
    a.emu.control("configure", json!({"faults": [{"operation": "GetSecretValue", "fail": 100, "of": 100, "code": "InternalServiceError", "status": 500}]}));
    let (authority, escrow, s) = (a.authority(&h["issuing"]), a.escrow(), settings());
    let c = cluster("sm-down");
    let e = Reconciler {
        authority: &authority,
        escrow: &escrow,
        settings: &s,
    }
    .ensure_bundle(&c, false)
    .await
    .unwrap_err();
    assert!(
        matches!(
            e,
            ReconcileError::Escrow {
                source: meshca_core::EscrowError::Backend { .. },
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("InternalServiceError"), "{e}");
    assert_eq!(a.emu.calls("IssueCertificate"), 0);
    a.emu.control("reset", json!({}));
    Reconciler {
        authority: &authority,
        escrow: &escrow,
        settings: &s,
    }
    .ensure_bundle(&c, false)
    .await
    .unwrap();
    assert_eq!(a.emu.calls("IssueCertificate"), 1);
}

#[tokio::test]
async fn retire_keeps_the_secret_recoverable() {
    let a = aws().await;
    let h = a.emu.hierarchy("EC_prime256v1", 1);
    let (authority, escrow, s) = (
        a.authority(&h["issuing"]),
        a.escrow().with_recovery_window(7),
        settings(),
    );
    let c = cluster("gone");
    Reconciler {
        authority: &authority,
        escrow: &escrow,
        settings: &s,
    }
    .ensure_bundle(&c, false)
    .await
    .unwrap();
    escrow.retire(&(&c).into()).await.unwrap();
    let d =
        a.sm.describe_secret()
            .secret_id("meshca/eu-west-1/gone")
            .send()
            .await
            .unwrap();
    assert!(
        d.deleted_date().is_some(),
        "scheduled for deletion, not gone"
    );
    let tags: Vec<_> = d
        .tags()
        .iter()
        .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()))
        .collect();
    assert!(tags.contains(&("meshca:cluster", "gone")), "{tags:?}");
}

#[tokio::test]
async fn a_renewal_writes_into_the_secret_it_read_and_a_vanished_secret_is_made_again() {
    let a = aws().await;
    let h = a.emu.hierarchy("EC_prime256v1", 1);
    let (authority, escrow, s) = (a.authority(&h["issuing"]), a.escrow(), settings());
    let c = cluster("renewed");
    let reconciler = Reconciler {
        authority: &authority,
        escrow: &escrow,
        settings: &s,
    };
    reconciler.ensure_bundle(&c, false).await.unwrap();
    assert_eq!(a.emu.calls("CreateSecret"), 1);
    let renewed = reconciler.ensure_bundle(&c, true).await.unwrap();
    assert_eq!(
        (renewed.meta.generation, a.emu.calls("CreateSecret")),
        (2, 1),
        "a renewal makes no CreateSecret"
    );

    // Deleted behind this instance's back: the claim finds it gone and makes it again.
    a.sm.delete_secret()
        .secret_id("meshca/eu-west-1/renewed")
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap();
    let p = meshca_test_support::pending::first_pending(&authority, &c, &s).await;
    assert!(matches!(escrow.claim(&p).await.unwrap(), Claim::Won));
    assert_eq!(a.emu.calls("CreateSecret"), 2);
    let loaded = escrow.load(&(&c).into()).await.unwrap();
    assert_eq!(
        loaded.pending.map(|p| p.generation),
        Some(1),
        "the claim is in the new secret"
    );
}

#[tokio::test]
async fn a_csr_pca_rejects_and_revocation() {
    let a = aws().await;
    let h = a.emu.hierarchy("EC_prime256v1", 1);
    let authority = a.authority(&h["issuing"]);
    authority.describe().await.unwrap();
    // A CSR with an empty subject, which PCA refuses.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    let csr = p.serialize_request(&key).unwrap().pem().unwrap();
    let e = authority
        .issue(&IssueRequest {
            csr_pem: &csr,
            validity: Validity::Days(10),
            idempotency_token: "empty-subject",
            template: meshca_core::Template::SubordinateCaPathLen0,
            resumed: false,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&e, AuthorityError::Rejected { reason, .. } if reason.contains("MalformedCSRException")),
        "{e}"
    );

    let o = Reconciler {
        authority: &authority,
        escrow: &a.escrow(),
        settings: &settings(),
    }
    .ensure_bundle(&cluster("revokee"), false)
    .await
    .unwrap();
    let id = meshca_core::CertificateId(o.meta.certificate_id.clone());
    authority
        .revoke(
            &id,
            &o.meta.serial,
            meshca_core::authority::RevocationReason::CessationOfOperation,
        )
        .await
        .unwrap();
    assert_eq!(a.emu.calls("RevokeCertificate"), 1);
}

#[tokio::test]
async fn tls_identities_are_signed_with_the_end_entity_template() {
    use meshca_core::kind::{Kind, KindSpec};
    let a = aws().await;
    let h = a.emu.hierarchy("EC_prime256v1", 2);
    let authority = a.authority(&h["issuing"]);
    for kind in [Kind::XcpEdge, Kind::Mpc] {
        let c = cluster(&format!("tsb-{kind}"));
        let s = Settings {
            kind: KindSpec::new(kind),
            ..settings()
        };
        let o = Reconciler {
            authority: &authority,
            escrow: &a.escrow(),
            settings: &s,
        }
        .ensure_bundle(&c, false)
        .await
        .unwrap();
        let leaf = &o.verified.ca_cert;
        assert!(
            !leaf.is_ca && leaf.server_auth && leaf.client_auth && leaf.digital_signature,
            "{kind}: {leaf:?}"
        );
        let wanted = s.kind.identity(&c).unwrap().uri;
        assert_eq!(leaf.uri_sans, [wanted], "{kind}: the SAN came from the CSR");
        assert_eq!(
            o.verified.chain.len(),
            3,
            "{kind}: leaf, issuing sub CA, root"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_denied_ca_certificate_names_the_ram_permission_a_shared_ca_needs() {
    let a = aws().await;
    let h = a.emu.hierarchy("EC_prime256v1", 2);
    a.emu.control("configure", json!({"faults": [{"operation": "IssueCertificate", "fail": 1, "code": "AccessDeniedException", "status": 400}]}));
    let pca = a.authority(&h["issuing"]);
    let (escrow, s) = (a.escrow(), settings());
    let e = Reconciler {
        authority: &pca,
        escrow: &escrow,
        settings: &s,
    }
    .ensure_bundle(&cluster("shared-ca"), false)
    .await
    .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("AccessDeniedException")
            && text.contains("AWSRAMSubordinateCACertificatePathLen0IssuanceCertificateAuthority"),
        "{text}"
    );
}

/// Two revocations of one cluster at once (an operator and a revoke event, or one event
/// delivered twice): both finish, the record ends held with every generation marked revoked,
/// and the CA's published CRL lists each certificate once (PCA answers a repeat with
/// RequestAlreadyProcessedException, which counts as done).
#[tokio::test]
async fn two_revocations_at_once_converge_with_one_revocation_per_certificate() {
    use meshca_core::authority::RevocationReason;
    let a = aws().await;
    let h = a.emu.control(
        "fixtures/hierarchy",
        json!({"key_algorithm": "EC_prime256v1", "levels": 1, "crl_bucket": "race-crls"}),
    );
    let config = a.emu.sdk_config().await;
    let s3 = aws_sdk_s3::config::Builder::from(&config)
        .force_path_style(true)
        .build();
    let authority = a
        .authority(&h["issuing"])
        .with_crl_reader(aws_sdk_s3::Client::from_conf(s3));
    let (escrow, s) = (a.escrow(), settings());
    let r = Reconciler {
        authority: &authority,
        escrow: &escrow,
        settings: &s,
    };
    let c = cluster("raced");
    let first = r.ensure_bundle(&c, false).await.unwrap();
    let second = r.ensure_bundle(&c, true).await.unwrap();
    assert_eq!(second.meta.generation, 2);

    let now = time::OffsetDateTime::now_utc();
    let (x, y) = tokio::join!(
        r.revoke(&c, RevocationReason::KeyCompromise, now, "an operator"),
        r.revoke(&c, RevocationReason::KeyCompromise, now, "a revoke event"),
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    let mut serials: Vec<String> = x.serials.iter().chain(&y.serials).cloned().collect();
    serials.sort();
    serials.dedup();
    let mut both = vec![first.meta.serial.clone(), second.meta.serial.clone()];
    both.sort();
    assert_eq!(serials, both, "{x:?} {y:?}");

    let key = meshca_core::escrow::EscrowKey::from(&c);
    let held = escrow.load(&key).await.unwrap().current.unwrap();
    let revoked = held.revoked.as_ref().unwrap();
    assert!(revoked.held && !revoked.authority_pending, "{revoked:?}");
    assert!(
        held.superseded.iter().all(|e| e.revoked),
        "{:?}",
        held.superseded
    );

    let crl = authority
        .crl()
        .await
        .unwrap()
        .expect("the CA publishes its CRL");
    let listed = meshca_core::crl::parse(&crl).unwrap();
    let plain = |s: &str| s.trim_start_matches('0').to_ascii_lowercase();
    for serial in &both {
        let times = listed
            .iter()
            .flat_map(|l| &l.serials)
            .filter(|s| plain(s) == plain(serial))
            .count();
        assert_eq!(times, 1, "serial {serial} in {listed:?}");
    }
    // A third changes nothing.
    let again = r
        .revoke(&c, RevocationReason::KeyCompromise, now, "an operator")
        .await
        .unwrap();
    assert!(again.already);
}
