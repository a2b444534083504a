//! The rules a bundle must meet before anything is written or delivered (DESIGN.md, "The
//! bundle"). Each broken rule is its own error variant so callers — and operators reading logs —
//! can tell exactly which one failed.

use time::{Duration, OffsetDateTime};

use crate::bundle::{Bundle, CA_CERT, CERT_CHAIN, ROOT_CERT};
use crate::cert::{CertError, Certificate};
use crate::key::{KeyAlgorithm, PrivateKey};
use crate::kind::Identity;
use crate::pem::{self, PemError};
use crate::timestamp::rfc3339;

/// What a bundle must look like for this deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// What the certificate is: a CA with a path length, or a TLS identity.
    pub shape: Shape,
    /// The configured key type; `None` accepts any supported one (used by `inspect`).
    pub key_algorithm: Option<KeyAlgorithm>,
    /// A bundle with less life left than this is refused. Istio's default workload certificate
    /// lives 24 h, and a workload certificate must not outlive the CA that signed it.
    pub min_remaining: Duration,
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            shape: Shape::Ca { path_len: 0 },
            key_algorithm: None,
            min_remaining: Duration::hours(24),
        }
    }
}

/// The certificate's own rules, by what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// A CA: BasicConstraints CA:TRUE with this pathLenConstraint (PathLen0 template → 0) and
    /// keyCertSign.
    Ca {
        /// The pathLenConstraint required.
        path_len: u32,
    },
    /// A TLS identity: CA:FALSE, digitalSignature, EKU serverAuth and clientAuth, and these names.
    Leaf(Identity),
}

impl Profile {
    /// A CA with this path length, any key type.
    pub fn ca(path_len: u32) -> Self {
        Profile {
            shape: Shape::Ca { path_len },
            ..Profile::default()
        }
    }
}

/// A rule of DESIGN.md a bundle breaks, by file: what istiod or a data plane would refuse.
#[derive(Debug, thiserror::Error)]
pub enum InvalidBundle {
    /// A file is not PEM of the right kind.
    #[error(transparent)]
    Pem(#[from] PemError),
    /// A certificate does not parse.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// `ca-cert.pem` must hold exactly one certificate.
    #[error("ca-cert.pem holds {0} certificates; it must hold exactly one")]
    CaCertCount(usize),
    /// `ca-key.pem` is not a usable key.
    #[error("ca-key.pem is not a usable private key: {0}")]
    KeyUnreadable(String),
    /// The intermediate is not a CA.
    #[error("ca-cert.pem is not a CA (BasicConstraints CA:TRUE missing)")]
    NotCa,
    /// The intermediate's path length is not the kind's.
    #[error("pathlen {found}, profile wants {wanted}")]
    PathLen {
        /// The pathLenConstraint found (or `none`).
        found: String,
        /// The one the kind requires.
        wanted: u32,
    },
    /// The intermediate may not sign certificates.
    #[error("ca-cert.pem lacks keyCertSign in KeyUsage, so it cannot sign workload certificates")]
    NoKeyCertSign,
    /// A CA where a TLS identity belongs.
    #[error("the certificate is a CA (BasicConstraints CA:TRUE) where a TLS identity is wanted")]
    NotALeaf,
    #[error(
        "the certificate lacks ExtendedKeyUsage {0}; a mesh identity needs serverAuth and clientAuth"
    )]
    /// A TLS identity without serverAuth or clientAuth.
    MissingEku(&'static str),
    /// A TLS identity without digitalSignature.
    #[error("the certificate lacks KeyUsage digitalSignature")]
    NoDigitalSignature,
    /// A TLS identity with the wrong SPIFFE identity.
    #[error("the certificate's URI SANs {found:?} do not include {wanted}")]
    WrongIdentity {
        /// The URI SANs found.
        found: Vec<String>,
        /// The identity the kind requires.
        wanted: String,
    },
    /// A TLS identity without a DNS or IP name it must carry.
    #[error("the certificate's SANs lack {0}")]
    MissingSan(String),
    /// The key is not the certificate's.
    #[error("ca-key.pem does not match ca-cert.pem")]
    KeyMismatch,
    /// The key is not of the algorithm the kind or settings require.
    #[error("ca-key.pem is {found}, profile wants {wanted}")]
    WrongKeyType {
        /// The key's algorithm.
        found: String,
        /// The algorithm required.
        wanted: KeyAlgorithm,
    },
    /// `cert-chain.pem` does not begin with the intermediate.
    #[error("cert-chain.pem does not start with ca-cert.pem")]
    ChainHead,
    #[error(
        "cert-chain.pem: \"{0}\" signs the certificate below it but is not a CA (BasicConstraints CA:TRUE missing)"
    )]
    /// A certificate in the chain signs another but is not a CA.
    IssuerNotCa(String),
    #[error(
        "cert-chain.pem: \"{issuer}\" allows {path_len} CA certificate(s) below it (pathlen {path_len}) but has {below}; a data plane refuses this chain: its issuer must be a CA with a larger path length"
    )]
    /// A CA in the chain has more CAs below it than its path length allows.
    IssuerPathLen {
        /// The CA, by subject.
        issuer: String,
        /// Its pathLenConstraint.
        path_len: u32,
        /// How many CAs it has below it.
        below: usize,
    },
    /// A signature in the chain does not verify up to a root.
    #[error("cert-chain.pem does not verify to root-cert.pem: {0}")]
    ChainBroken(String),
    #[error(
        "cert-chain.pem stops short of the root: it ends at \"{last}\", which root-cert.pem does not contain; append the issuers up to and including the root"
    )]
    /// The chain ends below a root in `root-cert.pem`.
    ChainStopsShort {
        /// The subject the chain ends at.
        last: String,
    },
    /// A certificate in `root-cert.pem` is not a CA.
    #[error("root-cert.pem: \"{0}\" is not a CA certificate")]
    RootNotCa(String),
    /// A certificate has expired.
    #[error("{file}: \"{subject}\" expired at {}", rfc3339(*not_after))]
    Expired {
        /// Which file.
        file: &'static str,
        /// The certificate, by subject.
        subject: String,
        /// When it expired.
        not_after: OffsetDateTime,
    },
    /// A certificate is not valid yet.
    #[error("{file}: \"{subject}\" is not valid before {}", rfc3339(*not_before))]
    NotYetValid {
        /// Which file.
        file: &'static str,
        /// The certificate, by subject.
        subject: String,
        /// When it becomes valid.
        not_before: OffsetDateTime,
    },
    #[error(
        "certificate outlives its issuer: \"{subject}\" ends {}, after \"{issuer}\" which ends {}",
        rfc3339(*not_after),
        rfc3339(*issuer_not_after)
    )]
    /// A certificate ends after its issuer does.
    OutlivesIssuer {
        /// The certificate, by subject.
        subject: String,
        /// When it ends.
        not_after: OffsetDateTime,
        /// Its issuer, by subject.
        issuer: String,
        /// When the issuer ends.
        issuer_not_after: OffsetDateTime,
    },
    /// The intermediate has too little life left to be worth delivering.
    #[error("ca-cert.pem has {} h of life left, below the minimum of {} h", remaining.whole_hours(), minimum.whole_hours())]
    TooLittleLife {
        /// What is left.
        remaining: Duration,
        /// The least the rules allow.
        minimum: Duration,
    },
}

/// A bundle that passed every rule, with the parsed certificates for reporting.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The intermediate (or TLS identity).
    pub ca_cert: Certificate,
    /// cert-chain.pem, intermediate first, root last.
    pub chain: Vec<Certificate>,
    /// `root-cert.pem`'s certificates.
    pub roots: Vec<Certificate>,
    /// The key's algorithm.
    pub key_algorithm: KeyAlgorithm,
    /// The intermediate's life left.
    pub remaining: Duration,
}

/// The certificates of a bundle, parsed but not judged — enough for `inspect` to describe a
/// bundle that fails validation.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// `ca-cert.pem`'s certificates (one, in a valid bundle).
    pub ca_cert: Vec<Certificate>,
    /// `cert-chain.pem`'s certificates.
    pub chain: Vec<Certificate>,
    /// `root-cert.pem`'s certificates.
    pub roots: Vec<Certificate>,
}

/// The bundle's certificates, parsed but not judged.
pub fn parse(bundle: &Bundle) -> Result<Parsed, InvalidBundle> {
    let load = |file: &'static str, text: &str| -> Result<Vec<Certificate>, InvalidBundle> {
        pem::certificates(file, text)?
            .into_iter()
            .enumerate()
            .map(|(i, der)| {
                Certificate::from_der(&format!("{file} certificate {}", i + 1), der)
                    .map_err(Into::into)
            })
            .collect()
    };
    Ok(Parsed {
        ca_cert: load(CA_CERT, &bundle.ca_cert)?,
        chain: load(CERT_CHAIN, &bundle.cert_chain)?,
        roots: load(ROOT_CERT, &bundle.root_cert)?,
    })
}

/// Each issuer in the chain is a CA whose path length admits the CA certificates below it
/// (RFC 5280, 4.2.1.9: the end entity and self-issued certificates are not counted). A data
/// plane validating the path refuses the chain otherwise, so a subordinate made from a PathLen0
/// template cannot stand above a cluster's intermediate, however well the signatures check.
fn issuers_admit(chain: &[Certificate]) -> Result<(), InvalidBundle> {
    for (at, issuer) in chain.iter().enumerate().skip(1) {
        if !issuer.is_ca {
            return Err(InvalidBundle::IssuerNotCa(issuer.subject.clone()));
        }
        let below = chain[..at]
            .iter()
            .filter(|c| c.is_ca && !c.is_self_signed())
            .count();
        if let Some(path_len) = issuer.path_len
            && (path_len as usize) < below
        {
            return Err(InvalidBundle::IssuerPathLen {
                issuer: issuer.subject.clone(),
                path_len,
                below,
            });
        }
    }
    Ok(())
}

/// A CA of the path length asked for, or a TLS identity with both EKUs and its names.
fn check_shape(c: &Certificate, shape: &Shape) -> Result<(), InvalidBundle> {
    match shape {
        Shape::Ca { path_len } => {
            if !c.is_ca {
                return Err(InvalidBundle::NotCa);
            }
            if c.path_len != Some(*path_len) {
                let found = c
                    .path_len
                    .map_or_else(|| "unlimited (none set)".to_string(), |p| p.to_string());
                return Err(InvalidBundle::PathLen {
                    found,
                    wanted: *path_len,
                });
            }
            if !c.key_cert_sign {
                return Err(InvalidBundle::NoKeyCertSign);
            }
        }
        Shape::Leaf(identity) => {
            if c.is_ca {
                return Err(InvalidBundle::NotALeaf);
            }
            if !c.digital_signature {
                return Err(InvalidBundle::NoDigitalSignature);
            }
            for (present, name) in [(c.server_auth, "serverAuth"), (c.client_auth, "clientAuth")] {
                if !present {
                    return Err(InvalidBundle::MissingEku(name));
                }
            }
            if !c.uri_sans.contains(&identity.uri) {
                return Err(InvalidBundle::WrongIdentity {
                    found: c.uri_sans.clone(),
                    wanted: identity.uri.clone(),
                });
            }
            if let Some(d) = identity.dns.iter().find(|d| !c.dns_sans.contains(d)) {
                return Err(InvalidBundle::MissingSan(format!("DNS:{d}")));
            }
            if let Some(ip) = identity.ips.iter().find(|ip| !c.ip_sans.contains(ip)) {
                return Err(InvalidBundle::MissingSan(format!("IP:{ip}")));
            }
        }
    }
    Ok(())
}

/// Checks every rule; the first broken one is returned.
pub fn validate(
    bundle: &Bundle,
    profile: &Profile,
    now: OffsetDateTime,
) -> Result<Verified, InvalidBundle> {
    let Parsed {
        ca_cert,
        chain,
        roots,
    } = parse(bundle)?;
    let [ca_cert]: [Certificate; 1] = ca_cert
        .try_into()
        .map_err(|v: Vec<_>| InvalidBundle::CaCertCount(v.len()))?;

    // The certificate itself, by what it must be.
    check_shape(&ca_cert, &profile.shape)?;

    // The key: readable, ours, and of the configured type.
    let key = PrivateKey::from_pkcs8_pem(&bundle.ca_key)
        .map_err(|e| InvalidBundle::KeyUnreadable(e.to_string()))?;
    if key.public_key_raw() != ca_cert.public_key_raw.as_slice() {
        return Err(InvalidBundle::KeyMismatch);
    }
    let key_algorithm = key.algorithm();
    if let Some(wanted) = profile.key_algorithm
        && wanted != key_algorithm
    {
        return Err(InvalidBundle::WrongKeyType {
            found: key_algorithm.to_string(),
            wanted,
        });
    }
    drop(key);

    // The chain: starts at ca-cert.pem, each link signed by the next, ending at a root we trust.
    if chain.first().map(|c| &c.der) != Some(&ca_cert.der) {
        return Err(InvalidBundle::ChainHead);
    }
    if let Some(r) = roots.iter().find(|r| !r.is_ca) {
        return Err(InvalidBundle::RootNotCa(r.subject.clone()));
    }
    for pair in chain.windows(2) {
        pair[0]
            .signed_by(&pair[1])
            .map_err(InvalidBundle::ChainBroken)?;
    }
    issuers_admit(&chain)?;
    let Some(last) = chain.last() else {
        return Err(InvalidBundle::ChainHead);
    };
    if !roots.iter().any(|r| r.der == last.der) {
        return Err(match roots.iter().find(|r| last.signed_by(r).is_ok()) {
            Some(_) => InvalidBundle::ChainStopsShort {
                last: last.subject.clone(),
            },
            None if last.is_self_signed() => InvalidBundle::ChainBroken(format!(
                "it ends at root \"{}\", which is not in root-cert.pem",
                last.subject
            )),
            None => InvalidBundle::ChainBroken(format!(
                "\"{}\" is signed by \"{}\", which is not in root-cert.pem",
                last.subject, last.issuer
            )),
        });
    }

    // Time: every certificate current, none outliving its issuer, enough life left.
    for (file, certs) in [(CERT_CHAIN, &chain), (ROOT_CERT, &roots)] {
        for c in certs.iter() {
            if c.not_after <= now {
                return Err(InvalidBundle::Expired {
                    file,
                    subject: c.subject.clone(),
                    not_after: c.not_after,
                });
            }
            if c.not_before > now {
                return Err(InvalidBundle::NotYetValid {
                    file,
                    subject: c.subject.clone(),
                    not_before: c.not_before,
                });
            }
        }
    }
    for pair in chain.windows(2) {
        if pair[0].not_after > pair[1].not_after {
            return Err(InvalidBundle::OutlivesIssuer {
                subject: pair[0].subject.clone(),
                not_after: pair[0].not_after,
                issuer: pair[1].subject.clone(),
                issuer_not_after: pair[1].not_after,
            });
        }
    }
    let remaining = ca_cert.not_after - now;
    if remaining < profile.min_remaining {
        return Err(InvalidBundle::TooLittleLife {
            remaining,
            minimum: profile.min_remaining,
        });
    }

    Ok(Verified {
        ca_cert,
        chain,
        roots,
        key_algorithm,
        remaining,
    })
}
