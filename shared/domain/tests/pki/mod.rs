//! A small PKI built with rcgen, for crafting bundles good and bad.
#![allow(dead_code)]

use meshca_core::Bundle;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use time::{Duration, OffsetDateTime};

pub struct Ca {
    pub params: CertificateParams,
    pub key: KeyPair,
    pub pem: String,
}

pub struct Spec {
    pub name: &'static str,
    pub is_ca: bool,
    pub path_len: Option<u8>,
    pub key_cert_sign: bool,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub alg: &'static rcgen::SignatureAlgorithm,
    /// ExtendedKeyUsage serverAuth, clientAuth (TLS identities).
    pub eku: (bool, bool),
    /// URI and DNS subjectAltNames.
    pub uris: Vec<&'static str>,
    pub dns: Vec<&'static str>,
}

impl Spec {
    pub fn ca(name: &'static str, days: i64) -> Spec {
        let now = OffsetDateTime::now_utc();
        Spec {
            name,
            is_ca: true,
            path_len: None,
            key_cert_sign: true,
            not_before: now - Duration::hours(1),
            not_after: now + Duration::days(days),
            alg: &rcgen::PKCS_ECDSA_P256_SHA256,
            eku: (false, false),
            uris: vec![],
            dns: vec![],
        }
    }
    /// A TLS identity as EndEntityCertificate/V1 makes it: CA:FALSE, both EKUs, this URI SAN.
    pub fn identity(name: &'static str, uri: &'static str, days: i64) -> Spec {
        Spec {
            is_ca: false,
            path_len: None,
            key_cert_sign: false,
            eku: (true, true),
            uris: vec![uri],
            ..Spec::ca(name, days)
        }
    }
    pub fn intermediate(name: &'static str, days: i64) -> Spec {
        Spec {
            path_len: Some(0),
            ..Spec::ca(name, days)
        }
    }
}

fn params(spec: &Spec) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, spec.name);
    p.is_ca = match (spec.is_ca, spec.path_len) {
        (false, _) => IsCa::ExplicitNoCa,
        (true, None) => IsCa::Ca(BasicConstraints::Unconstrained),
        (true, Some(n)) => IsCa::Ca(BasicConstraints::Constrained(n)),
    };
    p.key_usages = if spec.key_cert_sign {
        vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ]
    } else {
        vec![KeyUsagePurpose::DigitalSignature]
    };
    if spec.eku.0 {
        p.extended_key_usages
            .push(rcgen::ExtendedKeyUsagePurpose::ServerAuth);
    }
    if spec.eku.1 {
        p.extended_key_usages
            .push(rcgen::ExtendedKeyUsagePurpose::ClientAuth);
    }
    for u in &spec.uris {
        p.subject_alt_names.push(rcgen::SanType::URI(
            rcgen::string::Ia5String::try_from(*u).unwrap(),
        ));
    }
    for d in &spec.dns {
        p.subject_alt_names.push(rcgen::SanType::DnsName(
            rcgen::string::Ia5String::try_from(*d).unwrap(),
        ));
    }
    p.not_before = spec.not_before;
    p.not_after = spec.not_after;
    p.use_authority_key_identifier_extension = true;
    p
}

pub fn root(spec: Spec) -> Ca {
    let key = KeyPair::generate_for(spec.alg).unwrap();
    let params = params(&spec);
    let pem = params.self_signed(&key).unwrap().pem();
    Ca { params, key, pem }
}

pub fn signed(parent: &Ca, spec: Spec) -> Ca {
    let key = KeyPair::generate_for(spec.alg).unwrap();
    let params = params(&spec);
    let issuer = Issuer::from_params(&parent.params, &parent.key);
    let pem = params.signed_by(&key, &issuer).unwrap().pem();
    Ca { params, key, pem }
}

/// A bundle for `leaf` whose chain is `leaf` + `above` and whose roots are `roots`.
pub fn bundle(leaf: &Ca, above: &[&Ca], roots: &[&Ca]) -> Bundle {
    let chain: String = std::iter::once(leaf)
        .chain(above.iter().copied())
        .map(|c| c.pem.as_str())
        .collect();
    let roots: String = roots.iter().map(|c| c.pem.as_str()).collect();
    Bundle::from_pems(&leaf.pem, &leaf.key.serialize_pem(), &chain, &roots).unwrap()
}

/// Root → intermediate, all healthy.
pub fn good() -> (Ca, Ca) {
    let root = root(Spec::ca("test root", 3650));
    let int = signed(&root, Spec::intermediate("c1 istio intermediate CA", 365));
    (root, int)
}
