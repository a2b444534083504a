//! An escrow summary vouches for a cluster's secret only when the secret holds exactly its
//! bundle: fed secrets that differ in each way a drift can, it must send each to the full look.

mod pki;

use meshca_core::delivery::Observed;
use meshca_core::escrow::EscrowKey;
use meshca_core::escrow::{Current, GenerationToken, SCHEMA, Summary};
use meshca_core::validate::Profile;
use meshca_core::{BundleMeta, ClusterName, Kind};
use pki::{Spec, bundle, good, signed};
use time::OffsetDateTime;

fn current(b: meshca_core::Bundle) -> Current {
    let cluster: ClusterName = "c1".parse().unwrap();
    Current {
        schema: SCHEMA,
        cluster: cluster.clone(),
        kind: Kind::IstioCacerts,
        token: GenerationToken::derive("ca", &cluster, 1),
        authority_id: "ca".into(),
        meta: BundleMeta {
            generation: 1,
            serial: "01".into(),
            not_after: OffsetDateTime::now_utc() + time::Duration::days(365),
            certificate_id: "ca/1".into(),
            fingerprint_sha256: String::new(),
            root_fingerprint_sha256: meshca_core::cert::sha256_hex(b.root_cert.as_bytes()),
            owner: Some(EscrowKey::from(&cluster)),
        },
        bundle: b,
        promoted_at: OffsetDateTime::now_utc(),
        terms: None,
        history: Vec::new(),
        revoked: None,
        superseded: Vec::new(),
        ledger_from: None,
        own_crl: None,
    }
}

#[test]
fn a_summary_vouches_only_for_a_secret_holding_exactly_its_bundle() {
    let (root, int) = good();
    let escrowed = bundle(&int, &[&root], &[&root]);
    let summary = Summary::of(&current(escrowed.clone())).expect("a readable bundle has a summary");
    let (profile, now) = (Profile::default(), OffsetDateTime::now_utc());
    let managed = |b: meshca_core::Bundle| Observed::Managed {
        bundle: Some(b),
        meta: None,
    };
    assert!(summary.delivered_in(&managed(escrowed.clone()), &profile, now));

    // Absent, not ours, unreadable: look closer.
    assert!(!summary.delivered_in(&Observed::Absent, &profile, now));
    assert!(!summary.delivered_in(
        &Observed::Unmanaged {
            bundle: Some(escrowed.clone())
        },
        &profile,
        now
    ));
    assert!(!summary.delivered_in(
        &Observed::Managed {
            bundle: None,
            meta: None
        },
        &profile,
        now
    ));
    // Another intermediate (an older generation, another cluster's).
    let other = signed(&root, Spec::intermediate("c1", 365));
    assert!(!summary.delivered_in(&managed(bundle(&other, &[&root], &[&root])), &profile, now));
    // The same intermediate with a changed chain or root file.
    let mut b = escrowed.clone();
    b.root_cert = format!("{}{}", b.root_cert, b.ca_cert);
    assert!(!summary.delivered_in(&managed(b), &profile, now));
    let mut b = escrowed.clone();
    b.cert_chain = b.ca_cert.clone();
    assert!(!summary.delivered_in(&managed(b), &profile, now));
    // A key that is not the certificate's (the key is not in the summary: validation catches it).
    let mut b = escrowed.clone();
    b.ca_key = zeroize::Zeroizing::new(other.key.serialize_pem());
    assert!(!summary.delivered_in(&managed(b), &profile, now));
}
