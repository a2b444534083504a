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
