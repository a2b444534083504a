//! istiod's CRL rule as meshca enforces it before writing a `cacerts`: `ca-crl.pem` must hold a
//! valid CRL signed by the cluster's own intermediate. Each way to break it is refused.

mod pki;

use meshca_core::PrivateKey;
use meshca_core::authority::RevocationReason;
use meshca_core::crl::{self, CrlError, Entry};
use pki::{Ca, Spec, good, signed};
use time::{Duration, OffsetDateTime};

fn key(ca: &Ca) -> PrivateKey {
    PrivateKey::from_pkcs8_pem(&ca.key.serialize_pem()).unwrap()
}

fn crl_of(ca: &Ca, entries: &[Entry], from: OffsetDateTime, until: OffsetDateTime) -> String {
    crl::sign(&ca.pem, &key(ca), entries, from, until).unwrap()
}

#[test]
fn a_bundle_with_the_intermediates_own_crl_passes_and_lists_what_the_root_revoked() {
    let (root, int) = good();
    let other = signed(&root, Spec::intermediate("c2 istio intermediate CA", 365));
    let now = OffsetDateTime::now_utc();
    let revoked = Entry {
        serial: "0a1b2c".into(),
        at: now,
        reason: RevocationReason::KeyCompromise,
    };
    let text = crl_of(&root, &[revoked], now, now + Duration::days(30))
        + &crl_of(
            &int,
            &[],
            now - Duration::days(1),
            now + Duration::days(365),
        )
        + &crl_of(&other, &[], now, now + Duration::days(365));
    crl::signed_by_own(&text, &int.pem, now).unwrap();
    crl::signed_by_own(&text, &other.pem, now).unwrap();
    let listed = crl::parse(&text).unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0].serials, ["0a1b2c"]);
    assert!(listed[1].serials.is_empty());
}

#[test]
fn a_bundle_without_the_intermediates_own_crl_is_refused() {
    let (root, int) = good();
    let now = OffsetDateTime::now_utc();
    let only_root = crl_of(&root, &[], now, now + Duration::days(30));
    let e = crl::signed_by_own(&only_root, &int.pem, now).unwrap_err();
    assert!(matches!(e, CrlError::NoOwnCrl(_)), "{e}");
    assert!(e.to_string().contains("istiod would discard"), "{e}");
}

#[test]
fn a_crl_naming_the_intermediate_but_signed_by_another_key_is_refused() {
    let (root, int) = good();
    // Same subject, another key: what a second generation of the cluster looks like.
    let impostor = signed(&root, Spec::intermediate("c1 istio intermediate CA", 365));
    let now = OffsetDateTime::now_utc();
    let text = crl_of(&impostor, &[], now, now + Duration::days(30));
    assert!(matches!(
        crl::signed_by_own(&text, &int.pem, now),
        Err(CrlError::NoOwnCrl(_))
    ));
}

#[test]
fn a_lapsed_own_crl_is_refused() {
    let (_, int) = good();
    let now = OffsetDateTime::now_utc();
    let lapsed = crl_of(&int, &[], now - Duration::days(10), now - Duration::days(1));
    assert!(matches!(
        crl::signed_by_own(&lapsed, &int.pem, now),
        Err(CrlError::NoOwnCrl(_))
    ));
}

#[test]
fn text_that_is_no_crl_is_refused() {
    let (_, int) = good();
    let now = OffsetDateTime::now_utc();
    assert!(matches!(
        crl::signed_by_own(&int.pem, &int.pem, now),
        Err(CrlError::Parse(_))
    ));
    assert!(matches!(crl::parse(""), Err(CrlError::Parse(_))));
}

fn der_of(pem_text: &str) -> Vec<u8> {
    ::pem::parse(pem_text).unwrap().into_contents()
}

/// What an authority publishes (AWS Private CA's DER in S3) is checked before it joins a fleet
/// bundle: its issuer's own, signed by it, in force, complete. Each way to break it is refused.
#[test]
fn a_published_crl_is_used_only_when_complete_signed_by_its_ca_and_in_force() {
    let (root, int) = good();
    let now = OffsetDateTime::now_utc();
    let good_crl = crl_of(&root, &[], now, now + Duration::days(7));
    let pem_text = crl::published("s3://b/crl/r.crl", &der_of(&good_crl), &root.pem, now).unwrap();
    assert_eq!(crl::parse(&pem_text).unwrap().len(), 1);

    let of_another = crl_of(&int, &[], now, now + Duration::days(7));
    let lapsed = crl_of(&root, &[], now - Duration::days(9), now - Duration::days(2));
    for (what, der) in [
        ("another CA's", der_of(&of_another)),
        ("a lapsed", der_of(&lapsed)),
        ("no", b"not a crl".to_vec()),
    ] {
        let e = crl::published("s3://b/crl/r.crl", &der, &root.pem, now).unwrap_err();
        assert!(
            matches!(&e, CrlError::Published { location, .. } if location == "s3://b/crl/r.crl"),
            "{what} CRL: {e}"
        );
    }

    // A partitioned CRL (issuing distribution point): refused, naming the setting.
    let issuer = rcgen::Issuer::from_ca_cert_pem(&root.pem, &root.key).unwrap();
    let partitioned = rcgen::CertificateRevocationListParams {
        this_update: now,
        next_update: now + Duration::days(7),
        crl_number: rcgen::SerialNumber::from_slice(&[1]),
        issuing_distribution_point: Some(rcgen::CrlIssuingDistributionPoint {
            distribution_point: rcgen::CrlDistributionPoint {
                uris: vec!["http://b.s3.amazonaws.com/crl/r/1.crl".into()],
            },
            scope: None,
        }),
        revoked_certs: vec![],
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
    .signed_by(&issuer)
    .unwrap();
    let e = crl::published("s3://b/crl/r.crl", partitioned.der(), &root.pem, now).unwrap_err();
    assert!(e.to_string().contains("CrlType to COMPLETE"), "{e}");
}

#[test]
fn a_certificates_distribution_points_say_where_its_issuers_crl_is() {
    let (root, _) = good();
    let mut params = rcgen::CertificateParams::new(vec!["leaf.example".to_string()]).unwrap();
    params.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
        uris: vec!["http://crls.s3.eu-west-1.amazonaws.com/crl/abc.crl".into()],
    }];
    let issuer = rcgen::Issuer::from_ca_cert_pem(&root.pem, &root.key).unwrap();
    let leaf = params
        .signed_by(&rcgen::KeyPair::generate().unwrap(), &issuer)
        .unwrap();
    assert_eq!(
        crl::distribution_points(leaf.der()),
        ["http://crls.s3.eu-west-1.amazonaws.com/crl/abc.crl"]
    );
    assert!(crl::distribution_points(&der_of(&root.pem)).is_empty());
}

/// A data plane finds a CA's CRL by the CRL's authority key identifier: one that differs from the
/// CA's subject key identifier is never looked at, so it is no CRL of that CA.
#[test]
fn a_crl_whose_key_identifier_is_not_its_cas_is_refused() {
    let (_, int) = good();
    let now = OffsetDateTime::now_utc();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&int.pem, &int.key).unwrap();
    let stray = rcgen::CertificateRevocationListParams {
        this_update: now,
        next_update: now + Duration::days(7),
        crl_number: rcgen::SerialNumber::from_slice(&[1]),
        issuing_distribution_point: None,
        revoked_certs: vec![],
        key_identifier_method: rcgen::KeyIdMethod::PreSpecified(vec![7; 20]),
    }
    .signed_by(&issuer)
    .unwrap()
    .pem()
    .unwrap();
    assert!(matches!(
        crl::signed_by_own(&stray, &int.pem, now),
        Err(CrlError::NoOwnCrl(_))
    ));
    // meshca's own signing takes the CA's identifier, whatever method derived it.
    crl::signed_by_own(
        &crl_of(&int, &[], now, now + Duration::days(7)),
        &int.pem,
        now,
    )
    .unwrap();
}

/// An intermediate's own CRL signed again (its content fixed by the intermediate's validity) says
/// the same to a verifier, though its signature differs: it is not delivered again. Another
/// nextUpdate, another revoked serial, another order or another CRL is a change.
#[test]
fn crls_signed_again_with_the_same_content_are_equivalent_and_any_change_is_not() {
    let (root, int) = good();
    let now = OffsetDateTime::now_utc();
    let own = || crl::own(&int.pem, &int.key.serialize_pem()).unwrap();
    let (a, b) = (own(), own());
    assert_ne!(a, b, "ECDSA signatures are randomised");
    assert!(crl::equivalent(&a, &b));
    let root_crl = |entries: &[Entry], until| crl_of(&root, entries, now, until);
    let month = now + Duration::days(30);
    assert!(crl::equivalent(
        &format!("{}{a}", root_crl(&[], month)),
        &format!("{}{b}", root_crl(&[], month))
    ));
    let revoked = Entry {
        serial: "0a1b2c".into(),
        at: now,
        reason: RevocationReason::KeyCompromise,
    };
    for changed in [
        format!("{}{b}", root_crl(&[revoked], month)),
        format!("{}{b}", root_crl(&[], month + Duration::days(1))),
        format!("{b}{}", root_crl(&[], month)),
        b.clone(),
    ] {
        assert!(
            !crl::equivalent(&format!("{}{a}", root_crl(&[], month)), &changed),
            "{changed}"
        );
    }
}
