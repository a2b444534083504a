//! Every bundle rule of DESIGN.md rejects a bundle crafted to break it, with its own error.

mod pki;

use meshca_core::validate::{InvalidBundle, Profile, validate};
use meshca_core::{Bundle, KeyAlgorithm};
use pki::{Spec, bundle, good, root, signed};
use time::{Duration, OffsetDateTime};

fn check(b: &Bundle) -> Result<meshca_core::Verified, InvalidBundle> {
    validate(b, &Profile::default(), OffsetDateTime::now_utc())
}

fn err(b: &Bundle) -> InvalidBundle {
    check(b).expect_err("bundle should be rejected")
}

#[test]
fn a_good_bundle_passes() {
    let (root, int) = good();
    let v = check(&bundle(&int, &[&root], &[&root])).unwrap();
    assert_eq!(v.chain.len(), 2);
    assert_eq!(v.key_algorithm, KeyAlgorithm::EcP256);
    assert!(v.remaining > Duration::days(364));
}

#[test]
fn a_two_level_hierarchy_passes() {
    let root = root(Spec::ca("root", 3650));
    let sub = signed(
        &root,
        Spec {
            path_len: Some(1),
            ..Spec::ca("issuing sub CA", 1000)
        },
    );
    let int = signed(&sub, Spec::intermediate("c1", 365));
    let v = check(&bundle(&int, &[&sub, &root], &[&root])).unwrap();
    assert_eq!(v.chain.len(), 3);
}

#[test]
fn wrong_key() {
    let (root, int) = good();
    let other = signed(&root, Spec::intermediate("other", 365));
    let mut b = bundle(&int, &[&root], &[&root]);
    b.ca_key = zeroize::Zeroizing::new(other.key.serialize_pem());
    let e = err(&b);
    assert!(matches!(e, InvalidBundle::KeyMismatch), "{e}");
    assert_eq!(e.to_string(), "ca-key.pem does not match ca-cert.pem");
}

#[test]
fn not_a_ca() {
    let (root, _) = good();
    let leaf = signed(
        &root,
        Spec {
            is_ca: false,
            path_len: None,
            ..Spec::intermediate("leaf", 30)
        },
    );
    let e = err(&bundle(&leaf, &[&root], &[&root]));
    assert!(matches!(e, InvalidBundle::NotCa), "{e}");
    assert!(e.to_string().contains("ca-cert.pem is not a CA"));
}

#[test]
fn pathlen_one() {
    let (root, _) = good();
    let int = signed(
        &root,
        Spec {
            path_len: Some(1),
            ..Spec::intermediate("c1", 365)
        },
    );
    let e = err(&bundle(&int, &[&root], &[&root]));
    assert_eq!(e.to_string(), "pathlen 1, profile wants 0");
}

#[test]
fn pathlen_unlimited() {
    let (root, _) = good();
    let int = signed(&root, Spec::ca("c1", 365));
    let e = err(&bundle(&int, &[&root], &[&root]));
    assert!(e.to_string().starts_with("pathlen unlimited"), "{e}");
}

#[test]
fn pathlen_follows_the_profile() {
    let (root, _) = good();
    let int = signed(
        &root,
        Spec {
            path_len: Some(1),
            ..Spec::intermediate("c1", 365)
        },
    );
    let profile = Profile::ca(1);
    validate(
        &bundle(&int, &[&root], &[&root]),
        &profile,
        OffsetDateTime::now_utc(),
    )
    .unwrap();
}

#[test]
fn no_key_cert_sign() {
    let (root, _) = good();
    let int = signed(
        &root,
        Spec {
            key_cert_sign: false,
            ..Spec::intermediate("c1", 365)
        },
    );
    assert!(matches!(
        err(&bundle(&int, &[&root], &[&root])),
        InvalidBundle::NoKeyCertSign
    ));
}

#[test]
fn wrong_key_type() {
    let (root, int) = good();
    let profile = Profile {
        key_algorithm: Some(KeyAlgorithm::Rsa2048),
        ..Profile::default()
    };
    let e = validate(
        &bundle(&int, &[&root], &[&root]),
        &profile,
        OffsetDateTime::now_utc(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "ca-key.pem is ec-p256, profile wants rsa-2048"
    );
}

#[test]
fn expired() {
    let root = root(Spec::ca("root", 3650));
    let now = OffsetDateTime::now_utc();
    let int = signed(
        &root,
        Spec {
            not_before: now - Duration::days(30),
            not_after: now - Duration::days(1),
            ..Spec::intermediate("c1", 0)
        },
    );
    let e = err(&bundle(&int, &[&root], &[&root]));
    assert!(matches!(e, InvalidBundle::Expired { .. }), "{e}");
    assert!(e.to_string().contains("expired"), "{e}");
}

#[test]
fn not_yet_valid() {
    let root = root(Spec::ca("root", 3650));
    let now = OffsetDateTime::now_utc();
    let int = signed(
        &root,
        Spec {
            not_before: now + Duration::days(2),
            ..Spec::intermediate("c1", 30)
        },
    );
    assert!(matches!(
        err(&bundle(&int, &[&root], &[&root])),
        InvalidBundle::NotYetValid { .. }
    ));
}

#[test]
fn too_little_life_left() {
    let (root, _) = good();
    let now = OffsetDateTime::now_utc();
    let int = signed(
        &root,
        Spec {
            not_after: now + Duration::hours(10),
            ..Spec::intermediate("c1", 0)
        },
    );
    let e = err(&bundle(&int, &[&root], &[&root]));
    assert!(matches!(e, InvalidBundle::TooLittleLife { .. }), "{e}");
    assert!(e.to_string().contains("below the minimum of 24 h"), "{e}");
}

#[test]
fn chain_to_another_root() {
    let (root_a, _) = good();
    let root_b = root(Spec::ca("other root", 3650));
    let int = signed(&root_b, Spec::intermediate("c1", 365));
    let e = err(&bundle(&int, &[&root_b], &[&root_a]));
    assert!(
        e.to_string()
            .starts_with("cert-chain.pem does not verify to root-cert.pem"),
        "{e}"
    );
}

#[test]
fn forged_link_in_chain() {
    // Same name as the real root, different key: names chain, signature does not.
    let (root, int) = good();
    let impostor = pki::root(Spec::ca("test root", 3650));
    let e = err(&bundle(&int, &[&impostor], &[&root]));
    assert!(matches!(e, InvalidBundle::ChainBroken(_)), "{e}");
    assert!(e.to_string().contains("does not verify"), "{e}");
}

#[test]
fn intermediate_outliving_its_root() {
    let root = root(Spec::ca("root", 100));
    let int = signed(&root, Spec::intermediate("c1", 365));
    let e = err(&bundle(&int, &[&root], &[&root]));
    assert!(matches!(e, InvalidBundle::OutlivesIssuer { .. }), "{e}");
    assert!(
        e.to_string().starts_with("certificate outlives its issuer"),
        "{e}"
    );
}

#[test]
fn chain_stops_short_of_the_root() {
    let (root, int) = good();
    let e = err(&bundle(&int, &[], &[&root]));
    assert!(matches!(e, InvalidBundle::ChainStopsShort { .. }), "{e}");

    let root = pki::root(Spec::ca("root", 3650));
    let sub = signed(
        &root,
        Spec {
            path_len: Some(1),
            ..Spec::ca("sub", 1000)
        },
    );
    let int = signed(&sub, Spec::intermediate("c1", 365));
    let e = err(&bundle(&int, &[&sub], &[&root]));
    assert!(
        e.to_string()
            .starts_with("cert-chain.pem stops short of the root"),
        "{e}"
    );
}

#[test]
fn chain_that_does_not_start_with_ca_cert() {
    let (root, int) = good();
    let other = signed(&root, Spec::intermediate("other", 365));
    let mut b = bundle(&int, &[&root], &[&root]);
    b.cert_chain = format!("{}{}", other.pem, root.pem);
    assert!(matches!(err(&b), InvalidBundle::ChainHead));
}

#[test]
fn two_certificates_in_ca_cert() {
    let (root, int) = good();
    let mut b = bundle(&int, &[&root], &[&root]);
    b.ca_cert = b.cert_chain.clone();
    assert_eq!(
        err(&b).to_string(),
        "ca-cert.pem holds 2 certificates; it must hold exactly one"
    );
}

#[test]
fn garbage_in_a_file() {
    let (root, int) = good();
    let good = bundle(&int, &[&root], &[&root]);
    let e = Bundle::from_pems(
        &good.ca_cert,
        &good.ca_key,
        "not pem at all",
        &good.root_cert,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("cert-chain.pem holds no CERTIFICATE block"),
        "{e}"
    );
    let e = Bundle::from_pems(
        &good.ca_cert,
        &good.ca_cert,
        &good.cert_chain,
        &good.root_cert,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("ca-key.pem holds a CERTIFICATE block"),
        "{e}"
    );
}

#[test]
fn an_issuer_whose_path_length_leaves_no_room_for_the_intermediate() {
    let root = root(Spec::ca("root", 3650));
    let sub = signed(
        &root,
        Spec {
            path_len: Some(0),
            ..Spec::ca("PathLen0 issuing CA", 1000)
        },
    );
    let int = signed(&sub, Spec::intermediate("c1", 365));
    let e = err(&bundle(&int, &[&sub, &root], &[&root]));
    assert!(
        matches!(
            e,
            InvalidBundle::IssuerPathLen {
                path_len: 0,
                below: 1,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("PathLen0 issuing CA"), "{e}");
}

#[test]
fn an_issuer_that_is_not_a_ca() {
    let root = root(Spec::ca("root", 3650));
    let sub = signed(
        &root,
        Spec {
            is_ca: false,
            path_len: None,
            ..Spec::ca("not a CA", 1000)
        },
    );
    let int = signed(&sub, Spec::intermediate("c1", 365));
    let e = err(&bundle(&int, &[&sub, &root], &[&root]));
    assert!(matches!(e, InvalidBundle::IssuerNotCa(_)), "{e}");
}
