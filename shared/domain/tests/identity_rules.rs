//! The rules of the TLS kinds (TSB's XCP identities): each rejects a certificate crafted to break
//! it, with its own error — a CA where a leaf is wanted, a missing or wrong SPIFFE ID, one EKU
//! missing, a missing DNS name, a chain to another root.

mod pki;

use meshca_core::kind::{Identity, Kind, KindSpec};
use meshca_core::validate::{InvalidBundle, Profile, Shape, validate};
use meshca_core::{Bundle, ClusterName};
use pki::{Spec, bundle, root, signed};
use time::OffsetDateTime;

const EDGE: &str = "spiffe://xcp.tetrate.io/east-1";

fn edge_profile() -> Profile {
    let c: ClusterName = "east-1".parse().unwrap();
    let identity = KindSpec::new(Kind::XcpEdge).identity(&c).unwrap();
    Profile {
        shape: Shape::Leaf(identity),
        ..Profile::default()
    }
}

fn check(b: &Bundle, profile: &Profile) -> Result<meshca_core::Verified, InvalidBundle> {
    validate(b, profile, OffsetDateTime::now_utc())
}

/// Root → issuing CA → `leaf`, the hierarchy a PCA subordinate signs identities in.
fn under_issuing(leaf: Spec) -> Bundle {
    let root = root(Spec::ca("test root", 3650));
    let issuing = signed(&root, Spec::ca("xcp issuing CA", 1000));
    let leaf = signed(&issuing, leaf);
    bundle(&leaf, &[&issuing, &root], &[&root])
}

#[test]
fn an_edge_identity_passes() {
    let v = check(
        &under_issuing(Spec::identity("xcp-edge east-1", EDGE, 365)),
        &edge_profile(),
    )
    .unwrap();
    assert_eq!(v.ca_cert.uri_sans, [EDGE]);
    assert!(v.ca_cert.server_auth && v.ca_cert.client_auth && !v.ca_cert.is_ca);
}

#[test]
fn a_ca_where_a_leaf_is_wanted() {
    let e = check(
        &under_issuing(Spec {
            uris: vec![EDGE],
            eku: (true, true),
            ..Spec::intermediate("ca", 365)
        }),
        &edge_profile(),
    )
    .unwrap_err();
    assert!(matches!(e, InvalidBundle::NotALeaf), "{e}");
}

#[test]
fn a_missing_or_wrong_spiffe_id() {
    let e = check(
        &under_issuing(Spec {
            uris: vec![],
            ..Spec::identity("x", EDGE, 365)
        }),
        &edge_profile(),
    )
    .unwrap_err();
    assert!(matches!(e, InvalidBundle::WrongIdentity { .. }), "{e}");
    let e = check(
        &under_issuing(Spec::identity("x", "spiffe://xcp.tetrate.io/west-2", 365)),
        &edge_profile(),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("do not include spiffe://xcp.tetrate.io/east-1"),
        "{e}"
    );
}

#[test]
fn one_eku_missing() {
    let e = check(
        &under_issuing(Spec {
            eku: (true, false),
            ..Spec::identity("x", EDGE, 365)
        }),
        &edge_profile(),
    )
    .unwrap_err();
    assert!(matches!(e, InvalidBundle::MissingEku("clientAuth")), "{e}");
    let e = check(
        &under_issuing(Spec {
            eku: (false, true),
            ..Spec::identity("x", EDGE, 365)
        }),
        &edge_profile(),
    )
    .unwrap_err();
    assert!(matches!(e, InvalidBundle::MissingEku("serverAuth")), "{e}");
}

#[test]
fn the_central_address_must_be_among_the_sans() {
    let central = Identity {
        uri: "spiffe://xcp.tetrate.io/central".into(),
        dns: vec!["central.tsb.example".into()],
        ips: vec![],
    };
    let profile = Profile {
        shape: Shape::Leaf(central),
        ..Profile::default()
    };
    let good = Spec {
        dns: vec!["central.tsb.example"],
        ..Spec::identity("central", "spiffe://xcp.tetrate.io/central", 365)
    };
    check(&under_issuing(good), &profile).unwrap();
    let e = check(
        &under_issuing(Spec::identity(
            "central",
            "spiffe://xcp.tetrate.io/central",
            365,
        )),
        &profile,
    )
    .unwrap_err();
    assert!(
        matches!(&e, InvalidBundle::MissingSan(s) if s == "DNS:central.tsb.example"),
        "{e}"
    );
}

#[test]
fn a_chain_to_another_root() {
    let ours = root(Spec::ca("test root", 3650));
    let theirs = root(Spec::ca("other root", 3650));
    let issuing = signed(&theirs, Spec::ca("xcp issuing CA", 1000));
    let leaf = signed(&issuing, Spec::identity("x", EDGE, 365));
    let e = check(
        &bundle(&leaf, &[&issuing, &theirs], &[&ours]),
        &edge_profile(),
    )
    .unwrap_err();
    assert!(matches!(e, InvalidBundle::ChainBroken(_)), "{e}");
}

#[test]
fn a_leaf_is_not_accepted_where_an_intermediate_is_wanted() {
    let e = check(
        &under_issuing(Spec::identity("x", EDGE, 365)),
        &Profile::default(),
    )
    .unwrap_err();
    assert!(matches!(e, InvalidBundle::NotCa), "{e}");
}
