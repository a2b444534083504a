//! The Vault authority against a real OpenBao server (`bao server -dev -dev-tls`): a two-level
//! PKI, a token holding only meshca's policy (`meshca-policy.hcl`, the one the README shows),
//! TLS trusting the dev server's CA only, and openssl as the judge of what comes out.

use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use meshca_core::authority::{
    Authority, AuthorityError, AuthorityInfo, CertificateId, IssueRequest, Issued, RevocationReason,
};
use meshca_core::{ClusterName, Obtained, Outcome, ReconcileError, Reconciler, Settings, Validity};
use meshca_local::LocalEscrow;
use meshca_test_support::openssl::{run as openssl, sign};
use meshca_test_support::vault::Bao;
use meshca_vault::{Endpoint, Login, VaultPki};
use zeroize::Zeroizing;

const POLICY: &str = include_str!("../meshca-policy.hcl");

fn endpoint(bao: &Bao) -> Endpoint {
    Endpoint {
        ca_pem: Some(bao.ca_pem.clone()),
        ..Endpoint::new(&bao.addr)
    }
}

/// The authority as a platform team would run it: mount `pki`, a token with only meshca's policy.
fn vault(bao: &Bao) -> VaultPki {
    let token = bao.token_with_policy("meshca", POLICY);
    VaultPki::new(
        endpoint(bao),
        Login::Token(Zeroizing::new(token)),
        "pki",
        None,
    )
    .unwrap()
}

fn settings() -> Settings {
    Settings {
        validity: Validity::Days(30),
        ..Settings::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn issue_reuse_rotate_and_revoke_through_a_two_level_openbao_pki() {
    let bao = Bao::start();
    bao.two_level_pki();
    let authority = vault(&bao);
    let dir = tempfile::tempdir().unwrap();
    let escrow = LocalEscrow::new(dir.path().join("escrow"));
    let s = settings();
    let r = Reconciler {
        authority: &authority,
        escrow: &escrow,
        settings: &s,
    };
    let c: ClusterName = "c1".parse().unwrap();

    let started = std::time::Instant::now();
    let first = r.ensure_bundle(&c, false).await.unwrap();
    eprintln!(
        "issue through OpenBao: {} ms",
        started.elapsed().as_millis()
    );
    assert_eq!(
        first.obtained,
        Obtained::Issued(meshca_core::RenewReason::NoBundle)
    );
    assert_eq!(
        first.verified.chain.len(),
        3,
        "intermediate, Vault's intermediate, the root"
    );
    assert_eq!(first.verified.ca_cert.path_len, Some(0));
    assert!(
        first
            .verified
            .roots
            .iter()
            .all(|r| r.subject.contains("meshca test root"))
    );

    // openssl: a workload leaf signed with the new CA verifies to the root; a CA below it does not.
    let out = dir.path().join("out");
    meshca_local::files::write_dir(&out, &first.bundle, None).unwrap();
    sign(&out, "workload", "ca-cert.pem", "ca-key.pem", false);
    let (ok, text) = openssl(
        &[
            "verify",
            "-CAfile",
            "root-cert.pem",
            "-untrusted",
            "cert-chain.pem",
            "workload.pem",
        ],
        &out,
    );
    assert!(ok, "{text}");
    sign(&out, "sub-ca", "ca-cert.pem", "ca-key.pem", true);
    sign(&out, "deep", "sub-ca.pem", "sub-ca.key", false);
    let chain = format!(
        "{}{}",
        std::fs::read_to_string(out.join("sub-ca.pem")).unwrap(),
        first.bundle.cert_chain
    );
    std::fs::write(out.join("chain+sub.pem"), chain).unwrap();
    let (ok, text) = openssl(
        &[
            "verify",
            "-CAfile",
            "root-cert.pem",
            "-untrusted",
            "chain+sub.pem",
            "deep.pem",
        ],
        &out,
    );
    assert!(
        !ok && text.contains("path length"),
        "a CA below a pathlen:0 intermediate must not be usable: {text}"
    );

    // Rerun: the escrowed bundle is reused; nothing new in Vault.
    let before = bao.serials("pki").len();
    let again = r.ensure_bundle(&c, false).await.unwrap();
    assert_eq!(again.obtained, Obtained::Escrowed);
    assert_eq!(bao.serials("pki").len(), before);

    // Rotation: a new intermediate, root-cert.pem byte for byte the same.
    let rotated = r.ensure_bundle(&c, true).await.unwrap();
    assert_eq!(rotated.meta.generation, 2);
    assert_ne!(rotated.bundle.ca_cert, first.bundle.ca_cert);
    assert_eq!(
        rotated.bundle.root_cert.as_bytes(),
        first.bundle.root_cert.as_bytes()
    );

    // Cleanup revokes both generations (the first is still valid: the ledger keeps it); each
    // serial is in the mount's CRL.
    let outcome = r.cleanup(&c).await;
    let Outcome::Revoked { certificates } = &outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        certificates,
        &[
            first.meta.certificate_id.clone(),
            rotated.meta.certificate_id.clone()
        ]
    );
    let crl = bao.cli(&["read", "-field=certificate", "pki/cert/crl"]);
    std::fs::write(dir.path().join("crl.pem"), crl).unwrap();
    let (ok, text) = openssl(&["crl", "-in", "crl.pem", "-noout", "-text"], dir.path());
    assert!(ok, "{text}");
    for serial in [&first.meta.serial, &rotated.meta.serial] {
        assert!(
            text.to_uppercase().contains(&serial.to_uppercase()),
            "serial {serial} not in the CRL:\n{text}"
        );
    }
    // The same CRL through the authority port, with meshca's policy: what CRL mode publishes.
    let published = authority
        .crl()
        .await
        .unwrap()
        .expect("Vault publishes a CRL");
    let listed = meshca_core::crl::parse(&published).unwrap();
    let serial = rotated.meta.serial.trim_start_matches('0').to_lowercase();
    assert!(
        listed.iter().any(|l| l
            .serials
            .iter()
            .any(|s| s.trim_start_matches('0') == serial)),
        "{listed:?}"
    );
}

/// Forwards to Vault, then fails as if the process died after Vault signed.
struct CrashAfterSign<'a> {
    inner: &'a VaultPki,
    armed: AtomicBool,
}

#[async_trait]
impl Authority for CrashAfterSign<'_> {
    async fn describe(&self) -> Result<AuthorityInfo, AuthorityError> {
        self.inner.describe().await
    }
    async fn issue(&self, request: &IssueRequest<'_>) -> Result<CertificateId, AuthorityError> {
        let id = self.inner.issue(request).await?;
        if self.armed.swap(false, Ordering::SeqCst) {
            return Err(AuthorityError::Backend {
                operation: "issue",
                detail: format!("crashed after Vault signed {id}"),
            });
        }
        Ok(id)
    }
    async fn fetch(&self, id: &CertificateId) -> Result<Issued, AuthorityError> {
        self.inner.fetch(id).await
    }
    async fn revoke(
        &self,
        id: &CertificateId,
        serial: &str,
        reason: RevocationReason,
    ) -> Result<(), AuthorityError> {
        self.inner.revoke(id, serial, reason).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_stopped_after_vault_signed_is_resumed_with_that_certificate() {
    let bao = Bao::start();
    bao.two_level_pki();
    let authority = vault(&bao);
    let dir = tempfile::tempdir().unwrap();
    let escrow = LocalEscrow::new(dir.path().join("escrow"));
    let s = settings();
    let c: ClusterName = "c1".parse().unwrap();
    let before = bao.serials("pki").len();

    let crashing = CrashAfterSign {
        inner: &authority,
        armed: AtomicBool::new(true),
    };
    let err = Reconciler {
        authority: &crashing,
        escrow: &escrow,
        settings: &s,
    }
    .ensure_bundle(&c, false)
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("crashed after Vault signed"),
        "{err}"
    );
    assert_eq!(bao.serials("pki").len(), before + 1, "Vault signed once");

    let resumed = Reconciler {
        authority: &authority,
        escrow: &escrow,
        settings: &s,
    }
    .ensure_bundle(&c, false)
    .await
    .unwrap();
    assert!(
        matches!(resumed.obtained, Obtained::Resumed(_)),
        "{:?}",
        resumed.obtained
    );
    assert_eq!(
        bao.serials("pki").len(),
        before + 1,
        "the rerun adopted the certificate Vault had signed: one per generation"
    );
    assert!(bao.serials("pki").contains(&resumed.meta.certificate_id));
}

#[tokio::test(flavor = "multi_thread")]
async fn approle_login_issues_and_a_token_without_the_policy_is_a_clear_error() {
    let bao = Bao::start();
    bao.two_level_pki();
    let (role_id, secret_id) = bao.approle(POLICY, "20m");
    let login = Login::AppRole {
        mount: "approle".into(),
        role_id,
        secret_id: Zeroizing::new(secret_id),
    };
    let authority = VaultPki::new(endpoint(&bao), login, "pki", None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let escrow = LocalEscrow::new(dir.path().join("escrow"));
    let s = settings();
    let c: ClusterName = "c1".parse().unwrap();
    let secured = Reconciler {
        authority: &authority,
        escrow: &escrow,
        settings: &s,
    }
    .ensure_bundle(&c, false)
    .await
    .unwrap();
    assert_eq!(secured.meta.generation, 1);

    // A token with only the default policy: refused, with Vault's words, nothing escrowed.
    let weak = VaultPki::new(
        endpoint(&bao),
        Login::Token(Zeroizing::new(bao.token_without_policy())),
        "pki",
        None,
    )
    .unwrap();
    let escrow = LocalEscrow::new(dir.path().join("escrow-weak"));
    let err = Reconciler {
        authority: &weak,
        escrow: &escrow,
        settings: &s,
    }
    .ensure_bundle(&c, false)
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            ReconcileError::Authority {
                source: AuthorityError::Rejected { .. },
                ..
            }
        ),
        "{text}"
    );
    assert!(
        text.contains("permission denied") && text.contains("policy"),
        "{text}"
    );
    assert!(
        meshca_core::Escrow::load(&escrow, &(&c).into())
            .await
            .unwrap()
            .current
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_mounts_rejected_requests_bad_certificates_and_a_sealed_vault_are_clear_errors() {
    let bao = Bao::start();
    bao.two_level_pki();
    let root = Zeroizing::new(bao.root_token.clone());
    let dir = tempfile::tempdir().unwrap();
    let c: ClusterName = "c1".parse().unwrap();
    let s = settings();

    let nowhere = VaultPki::new(
        endpoint(&bao),
        Login::Token(root.clone()),
        "no-such-mount",
        None,
    )
    .unwrap();
    let err = nowhere.describe().await.unwrap_err();
    assert!(matches!(err, AuthorityError::NotFound { .. }), "{err}");

    // An issuer imported without its root: the error names the Vault issuer, not a local CA.
    let intermediate = bao.cli(&["read", "-field=certificate", "pki/issuer/default"]);
    let pem = dir.path().join("intermediate.pem");
    std::fs::write(&pem, intermediate.trim()).unwrap();
    bao.cli(&["secrets", "enable", "-path=pki-orphan", "pki"]);
    let imported = bao.json(&[
        "write",
        "pki-orphan/issuers/import/cert",
        &format!("pem_bundle=@{}", pem.display()),
    ]);
    let id = imported["data"]["imported_issuers"][0].as_str().unwrap();
    bao.cli(&[
        "write",
        "pki-orphan/config/issuers",
        &format!("default={id}"),
    ]);
    let orphan = VaultPki::new(
        endpoint(&bao),
        Login::Token(root.clone()),
        "pki-orphan",
        None,
    )
    .unwrap();
    let err = orphan.describe().await.unwrap_err();
    assert!(matches!(err, AuthorityError::Corrupt { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("Vault issuer pki-orphan/issuer/")
            && err
                .to_string()
                .contains("does not reach a self-signed root"),
        "{err}"
    );

    // A request Vault refuses (a CSR whose signature does not verify), with Vault's message.
    let authority = VaultPki::new(endpoint(&bao), Login::Token(root.clone()), "pki", None).unwrap();
    let key = meshca_core::PrivateKey::generate(meshca_core::KeyAlgorithm::EcP256).unwrap();
    let csr =
        meshca_core::csr::build_csr(&key, &meshca_core::csr::Subject::for_cluster(&c)).unwrap();
    let mut der = meshca_core::pem::parse_blocks("csr", &csr, "CERTIFICATE REQUEST")
        .unwrap()
        .remove(0)
        .into_contents();
    let last = der.len() - 1;
    der[last] ^= 0x01;
    let forged = meshca_core::pem::encode("CERTIFICATE REQUEST", &[der]);
    let request = IssueRequest {
        csr_pem: &forged,
        validity: Validity::Days(30),
        idempotency_token: "unused",
        template: meshca_core::Template::SubordinateCaPathLen0,
        resumed: false,
    };
    let err = authority.issue(&request).await.unwrap_err();
    assert!(matches!(err, AuthorityError::Rejected { .. }), "{err}");
    assert!(err.to_string().contains("sign-intermediate (400)"), "{err}");

    // Vault caps a validity beyond the mount's max TTL without a word: caught, nothing escrowed.
    bao.cli(&["secrets", "tune", "-max-lease-ttl=240h", "pki"]);
    let escrow = LocalEscrow::new(dir.path().join("escrow-capped"));
    let err = Reconciler {
        authority: &authority,
        escrow: &escrow,
        settings: &s,
    }
    .ensure_bundle(&c, false)
    .await
    .unwrap_err();
    assert!(
        matches!(err, ReconcileError::ValidityNotHonoured { .. }),
        "{err}"
    );
    let capped = meshca_core::Escrow::load(&escrow, &(&c).into())
        .await
        .unwrap();
    assert!(capped.current.is_none());
    // Refused, revoked at Vault, and its generation closed: raising the TTL as the error advises
    // then works, with a fresh generation rather than the capped certificate again.
    assert!(err.to_string().contains("it was revoked"), "{err}");
    let refused = capped.pending.unwrap();
    assert!(refused.refused.is_some());
    let serial = refused.certificate_id.unwrap().0;
    let shown = bao.cli(&[
        "read",
        "-field=revocation_time",
        &format!("pki/cert/{serial}"),
    ]);
    assert_ne!(
        shown.trim(),
        "0",
        "the capped certificate is revoked at Vault"
    );
    bao.cli(&["secrets", "tune", "-max-lease-ttl=43800h", "pki"]);
    let again = Reconciler {
        authority: &authority,
        escrow: &escrow,
        settings: &s,
    }
    .ensure_bundle(&c, false)
    .await
    .unwrap();
    assert_eq!(again.meta.generation, 2);
    assert_ne!(again.meta.certificate_id, serial);

    // Vault signs pathlen 1 where the profile wants 0: validated, refused, nothing escrowed.
    let loose = VaultPki::new(endpoint(&bao), Login::Token(root.clone()), "pki", None)
        .unwrap()
        .with_path_len(1);
    let escrow = LocalEscrow::new(dir.path().join("escrow"));
    let err = Reconciler {
        authority: &loose,
        escrow: &escrow,
        settings: &s,
    }
    .ensure_bundle(&c, false)
    .await
    .unwrap_err();
    assert!(matches!(err, ReconcileError::InvalidIssued { .. }), "{err}");
    assert!(
        err.to_string().contains("pathlen 1, profile wants 0"),
        "{err}"
    );
    assert!(
        meshca_core::Escrow::load(&escrow, &(&c).into())
            .await
            .unwrap()
            .current
            .is_none()
    );

    // Sealed: 503, said as such.
    bao.cli(&["operator", "seal"]);
    let err = authority.describe().await.unwrap_err();
    assert!(err.to_string().contains("Vault is sealed"), "{err}");

    // And TLS trusts only the CA given: another CA means no connection at all.
    let stranger = VaultPki::new(
        Endpoint {
            ca_pem: Some(stranger_ca()),
            ..Endpoint::new(&bao.addr)
        },
        Login::Token(root),
        "pki",
        None,
    )
    .unwrap();
    let err = stranger.describe().await.unwrap_err();
    assert!(err.to_string().contains("unreachable"), "{err}");
}

/// A self-signed CA certificate that did not sign the dev server's certificate.
fn stranger_ca() -> String {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "k.pem",
            "-subj",
            "/CN=stranger",
            "-days",
            "1",
            "-out",
            "ca.pem",
        ],
        dir.path(),
    );
    assert!(ok, "{out}");
    std::fs::read_to_string(dir.path().join("ca.pem")).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn short_lived_tokens_are_renewed_and_logins_repeated_before_the_next_call_needs_them() {
    let bao = Bao::start();
    bao.two_level_pki();
    bao.policy("meshca", POLICY);

    // A renewable token living 3 s: renewed after 2 s at the next call, so it outlives 3 s.
    let token = bao.json(&[
        "token",
        "create",
        "-policy=meshca",
        "-no-default-policy",
        "-ttl=3s",
        "-renewable=true",
    ]);
    let token = token["auth"]["client_token"].as_str().unwrap().to_string();
    let authority = VaultPki::new(
        endpoint(&bao),
        Login::Token(Zeroizing::new(token)),
        "pki",
        None,
    )
    .unwrap();
    for _ in 0..3 {
        authority.describe().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    }
    authority
        .describe()
        .await
        .expect("6.6 s after a 3 s token was created, it still works: it was renewed");

    // AppRole tokens living 3 s: the next call after two thirds logs in again. A 403 on the
    // expired token would be rescued by the log-in-again-once fallback, so the audit device
    // (OpenBao's own record) must show two logins and no refusal at all.
    let seen_before = bao.audited().len();
    let (role_id, secret_id) = bao.approle(POLICY, "3s");
    let login = Login::AppRole {
        mount: "approle".into(),
        role_id,
        secret_id: Zeroizing::new(secret_id),
    };
    let authority = VaultPki::new(endpoint(&bao), login, "pki", None).unwrap();
    authority.describe().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    authority
        .describe()
        .await
        .expect("the first token expired; a new login took its place");
    let audited = bao.audited().split_off(seen_before);
    let refused: Vec<_> = audited.iter().filter(|(_, e)| e.is_some()).collect();
    assert!(refused.is_empty(), "refused on the way: {refused:?}");
    let logins = audited
        .iter()
        .filter(|(p, _)| p == "auth/approle/login")
        .count();
    assert_eq!(logins, 2, "{audited:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mount_in_a_namespace_is_reached_with_the_namespace_header() {
    let bao = Bao::start();
    bao.cli(&["namespace", "create", "team-a"]);
    bao.cli_in("team-a", &["secrets", "enable", "pki"]);
    bao.cli_in(
        "team-a",
        &["secrets", "tune", "-max-lease-ttl=87600h", "pki"],
    );
    bao.cli_in(
        "team-a",
        &[
            "write",
            "pki/root/generate/internal",
            "common_name=team-a root",
            "ttl=87600h",
            "key_type=ec",
        ],
    );
    let root = Zeroizing::new(bao.root_token.clone());
    let dir = tempfile::tempdir().unwrap();
    let escrow = LocalEscrow::new(dir.path().join("escrow"));
    let s = settings();
    let c: ClusterName = "c1".parse().unwrap();

    // Without the namespace there is no such mount; with it, an intermediate under team-a's root.
    let outside = VaultPki::new(endpoint(&bao), Login::Token(root.clone()), "pki", None).unwrap();
    assert!(matches!(
        outside.describe().await.unwrap_err(),
        AuthorityError::NotFound { .. }
    ));
    let inside = Endpoint {
        namespace: Some("team-a".into()),
        ..endpoint(&bao)
    };
    let authority = VaultPki::new(inside, Login::Token(root), "pki", None).unwrap();
    let secured = Reconciler {
        authority: &authority,
        escrow: &escrow,
        settings: &s,
    }
    .ensure_bundle(&c, false)
    .await
    .unwrap();
    assert!(
        secured.verified.roots[0].subject.contains("team-a root"),
        "{}",
        secured.verified.roots[0].subject
    );
}

/// CRL mode needs the CRL of every CA above the issuer too: a parent mount that names no CRL in
/// what it signs is a clear refusal naming the setting, never a bundle a data plane would refuse
/// whole; one that names it gives its CRL beside the issuer's.
#[tokio::test(flavor = "multi_thread")]
async fn crl_mode_reads_the_parent_mounts_crl_or_names_the_setting_it_lacks() {
    let bao = Bao::start();
    bao.two_level_pki_naming_crls(false);
    let e = vault(&bao).crl().await.unwrap_err().to_string();
    assert!(e.contains("crl_distribution_points"), "{e}");
    assert!(e.contains("meshca test root"), "{e}");

    let named = Bao::start();
    named.two_level_pki();
    let crls = vault(&named).crl().await.unwrap().expect("CRLs");
    let issuers: Vec<String> = meshca_core::crl::parse(&crls)
        .unwrap()
        .into_iter()
        .map(|l| l.issuer)
        .collect();
    assert_eq!(issuers.len(), 2, "{issuers:?}");
    assert!(
        issuers[0].contains("meshca test intermediate"),
        "{issuers:?}"
    );
    assert!(issuers[1].contains("meshca test root"), "{issuers:?}");
}

/// A record kept before meshca kept a ledger: its earlier generations are found in the mount's
/// `certs/` by the subject naming the cluster, and revoked with the rest (the token holds only
/// meshca's policy); another cluster's certificate in the same mount is not touched.
#[tokio::test(flavor = "multi_thread")]
async fn generations_before_the_ledger_are_found_in_the_mount_by_subject_and_revoked() {
    let bao = Bao::start();
    bao.two_level_pki();
    let authority = vault(&bao);
    let dir = tempfile::tempdir().unwrap();
    let escrow = LocalEscrow::new(dir.path().join("escrow"));
    let s = settings();
    let r = Reconciler {
        authority: &authority,
        escrow: &escrow,
        settings: &s,
    };
    let (x, y): (ClusterName, ClusterName) = ("x".parse().unwrap(), "y".parse().unwrap());
    let mut xs = Vec::new();
    for force in [false, true, true] {
        xs.push(r.ensure_bundle(&x, force).await.unwrap().meta.serial);
    }
    let ys = r.ensure_bundle(&y, false).await.unwrap().meta.serial;
    let path = dir.path().join("escrow/x/current.json");
    let mut record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for field in ["superseded", "ledger_from"] {
        record.as_object_mut().unwrap().remove(field);
    }
    std::fs::write(&path, record.to_string()).unwrap();

    let now = time::OffsetDateTime::now_utc();
    let done = r
        .revoke(&x, RevocationReason::KeyCompromise, now, "test")
        .await
        .unwrap();
    let (mut got, mut want) = (done.serials.clone(), xs.clone());
    got.sort();
    want.sort();
    assert_eq!(got, want, "{done:?}");
    assert!(done.unknown.is_empty(), "{done:?}");
    let crl = authority.crl().await.unwrap().unwrap();
    let listed = meshca_core::fleet_crls::FleetCrls::assemble(&crl, Vec::new()).unwrap();
    assert!(xs.iter().all(|s| listed.lists(s)), "{:?}", listed.listed);
    assert!(!listed.lists(&ys), "y's certificate is not revoked");
}
