//! Kinds of certificate meshca makes from one chain of trust: what each is (a CA with a path
//! length, or a TLS identity with SANs and both EKUs), which template signs it, what its CSR
//! asks for, and where it lands in a cluster. Escrow records, generation tokens and reports are
//! keyed by cluster and kind.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::cluster::ClusterName;

/// How much of a cluster's name a default CN holds: X.509 allows 64 characters, and the kind's
/// words (" istio intermediate CA") take the rest; a longer name is abbreviated, distinctly.
pub const CN_NAME_ROOM: usize = 40;

/// The kinds, by their mesh names.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Istio's intermediate CA in `istio-system/cacerts` (the four `*.pem` keys).
    #[default]
    IstioCacerts,
    /// The same intermediate for a cert-manager CA `Issuer` used by istio-csr (`kubernetes.io/tls`).
    CertManagerCa,
    /// TSB management plane: `spiffe://xcp.tetrate.io/central`.
    XcpCentral,
    /// TSB management plane: `spiffe://xcp.tetrate.io/mpc`.
    Mpc,
    /// Each TSB control plane: `spiffe://xcp.tetrate.io/<cluster-name-in-tsb>`.
    XcpEdge,
    /// Linkerd's identity issuer (an EC P-256 CA) and its trust anchors.
    LinkerdIssuer,
}

impl Kind {
    /// Every kind, in catalogue order.
    pub const ALL: [Kind; CATALOGUE.len()] = {
        let mut all = [Kind::IstioCacerts; CATALOGUE.len()];
        let mut i = 0;
        while i < CATALOGUE.len() {
            all[i] = CATALOGUE[i].kind;
            i += 1;
        }
        all
    };

    /// This kind's row of the catalogue.
    #[allow(
        clippy::expect_used,
        reason = "every kind has a row: a unit test walks the enum against the catalogue"
    )]
    pub fn profile(self) -> &'static KindProfile {
        CATALOGUE
            .iter()
            .find(|p| p.kind == self)
            .expect("every kind has a row in the catalogue (a unit test checks it)")
    }

    /// The kind's name, as flags, tags and escrow records spell it.
    pub fn name(self) -> &'static str {
        self.profile().name
    }

    /// Which template signs it.
    pub fn template(self) -> Template {
        self.profile().template
    }

    /// Whether the kind is a CA (an intermediate) rather than a TLS identity.
    pub fn is_ca(self) -> bool {
        self.template() == Template::SubordinateCaPathLen0
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is no kind in the catalogue.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a kind of certificate meshca makes ({names})", names = names())]
pub struct UnknownKind(pub String);

/// The kinds' names, comma-separated, in catalogue order.
pub fn names() -> String {
    CATALOGUE
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for Kind {
    type Err = UnknownKind;
    fn from_str(s: &str) -> Result<Self, UnknownKind> {
        CATALOGUE
            .iter()
            .find(|p| p.name == s)
            .map(|p| p.kind)
            .ok_or_else(|| UnknownKind(s.to_string()))
    }
}

/// One kind as data: what it is, how it is named, where it lands and who signs it. Everything
/// that lists kinds (the CLI, the functions' configuration, reports, infra grants) reads this.
#[derive(Debug)]
pub struct KindProfile {
    /// The kind this row describes.
    pub kind: Kind,
    /// The mesh's name for it, as flags, tags and escrow records spell it.
    pub name: &'static str,
    /// One line for help texts and the docs' table.
    pub about: &'static str,
    /// What the authority signs it with: a PathLen0 CA or an end-entity certificate.
    pub template: Template,
    /// The SPIFFE identity a TLS kind carries; `None` for a CA.
    pub identity: Option<IdentityRule>,
    /// Its common name.
    pub common_name: CommonNameRule,
    /// The default landing: namespace, secret name and its layout.
    pub namespace: &'static str,
    /// The default secret's name.
    pub secret: &'static str,
    /// Which keys the secret holds.
    pub layout: Layout,
    /// A ConfigMap of the trust anchors written beside the secret (the root bundle).
    pub anchors: Option<AnchorMap>,
    /// The only key algorithm the mesh accepts for it, whatever is configured.
    pub key_pin: Option<crate::key::KeyAlgorithm>,
    /// The key algorithm its issuing CA must have (the mesh checks the signature algorithm).
    pub parent_key: Option<crate::key::KeyAlgorithm>,
    /// The signer that issues it, by name in the deployment's registry of signers.
    pub signer: &'static str,
    /// The per-installation names it takes besides the cluster.
    pub inputs: &'static [Input],
}

/// The signer every kind uses unless its row names another.
pub const MAIN_SIGNER: &str = "main";
/// TSB's XCP identities may come from a CA of their own (`MESHCA_XCP_CA_ARN`).
pub const XCP_SIGNER: &str = "xcp";

/// How a TLS kind's SPIFFE identity is formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityRule {
    /// `spiffe://<domain>/<path>`, the same in every cluster.
    Fixed {
        /// The SPIFFE trust domain.
        domain: &'static str,
        /// The path after it.
        path: &'static str,
    },
    /// `spiffe://<domain>/<the cluster's name in TSB>` (default: the cluster name).
    TsbName {
        /// The SPIFFE trust domain.
        domain: &'static str,
    },
}

/// The CSR's default common name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommonNameRule {
    /// `<cluster> <suffix>`, the cluster name shortened to fit.
    ClusterThen(&'static str),
    /// The same in every cluster.
    Fixed(&'static str),
    /// `<prefix> <TSB name>` (default: the cluster name, shortened).
    TsbNameAfter(&'static str),
}

/// A ConfigMap that carries the trust anchors under one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnchorMap {
    /// The ConfigMap's name, in the secret's namespace.
    pub name: &'static str,
    /// The key the roots are under.
    pub key: &'static str,
}

/// A per-installation name a kind takes (a flag of `meshca issue`, a tag or setting of the
/// functions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Its cluster's name in TSB (`--tsb-name`).
    TsbName,
    /// DNS/IP SANs the peers dial (`--central-address`).
    Addresses,
    /// The namespace of TSB's management plane (`--tsb-namespace`).
    TsbNamespace,
    /// The whole landing as NAMESPACE/NAME (`--cert-manager-secret`).
    SecretName,
}

/// The catalogue: one row per kind.
pub static CATALOGUE: [KindProfile; 6] = [
    KindProfile {
        kind: Kind::IstioCacerts,
        name: "istio-cacerts",
        about: "Istio's intermediate CA in istio-system/cacerts",
        template: Template::SubordinateCaPathLen0,
        identity: None,
        common_name: CommonNameRule::ClusterThen("istio intermediate CA"),
        namespace: "istio-system",
        secret: "cacerts",
        layout: Layout::IstioCacerts,
        anchors: None,
        key_pin: None,
        parent_key: None,
        signer: MAIN_SIGNER,
        inputs: &[],
    },
    KindProfile {
        kind: Kind::CertManagerCa,
        name: "cert-manager-ca",
        about: "the intermediate for istio-csr's cert-manager CA Issuer",
        template: Template::SubordinateCaPathLen0,
        identity: None,
        common_name: CommonNameRule::ClusterThen("istio-csr CA"),
        namespace: "cert-manager",
        secret: "istio-ca",
        layout: Layout::Tls,
        anchors: None,
        key_pin: None,
        parent_key: None,
        signer: MAIN_SIGNER,
        inputs: &[Input::SecretName],
    },
    KindProfile {
        kind: Kind::XcpCentral,
        name: "xcp-central",
        about: "TSB's management plane: spiffe://xcp.tetrate.io/central",
        template: Template::EndEntity,
        identity: Some(IdentityRule::Fixed {
            domain: XCP_TRUST_DOMAIN,
            path: "central",
        }),
        common_name: CommonNameRule::Fixed("xcp-central"),
        namespace: "tsb",
        secret: "xcp-central-cert",
        layout: Layout::Tls,
        anchors: None,
        key_pin: None,
        parent_key: None,
        signer: XCP_SIGNER,
        inputs: &[Input::TsbNamespace, Input::Addresses],
    },
    KindProfile {
        kind: Kind::Mpc,
        name: "mpc",
        about: "TSB's management plane: spiffe://xcp.tetrate.io/mpc",
        template: Template::EndEntity,
        identity: Some(IdentityRule::Fixed {
            domain: XCP_TRUST_DOMAIN,
            path: "mpc",
        }),
        common_name: CommonNameRule::Fixed("mpc"),
        namespace: "tsb",
        secret: "mpc-certs",
        layout: Layout::Tls,
        anchors: None,
        key_pin: None,
        parent_key: None,
        signer: XCP_SIGNER,
        inputs: &[Input::TsbNamespace],
    },
    KindProfile {
        kind: Kind::XcpEdge,
        name: "xcp-edge",
        about: "a TSB control plane: spiffe://xcp.tetrate.io/<its TSB name>",
        template: Template::EndEntity,
        identity: Some(IdentityRule::TsbName {
            domain: XCP_TRUST_DOMAIN,
        }),
        common_name: CommonNameRule::TsbNameAfter("xcp-edge"),
        namespace: "istio-system",
        secret: "xcp-edge-cert",
        layout: Layout::Tls,
        anchors: None,
        key_pin: None,
        parent_key: None,
        signer: XCP_SIGNER,
        inputs: &[Input::TsbName],
    },
    KindProfile {
        kind: Kind::LinkerdIssuer,
        name: "linkerd-issuer",
        about: "Linkerd's identity issuer (EC P-256 CA) and its trust anchors, in linkerd",
        template: Template::SubordinateCaPathLen0,
        identity: None,
        common_name: CommonNameRule::Fixed("identity.linkerd.cluster.local"),
        namespace: "linkerd",
        secret: "linkerd-identity-issuer",
        layout: Layout::Tls,
        anchors: Some(AnchorMap {
            name: "linkerd-identity-trust-roots",
            key: "ca-bundle.crt",
        }),
        key_pin: Some(crate::key::KeyAlgorithm::EcP256),
        parent_key: Some(crate::key::KeyAlgorithm::EcP256),
        signer: MAIN_SIGNER,
        inputs: &[],
    },
];

impl KindProfile {
    /// Whether the kind takes `input`.
    pub fn takes(&self, input: Input) -> bool {
        self.inputs.contains(&input)
    }
}

/// What an authority is asked to sign, in its own terms: PCA's template ARNs, the local CA's
/// semantics of the same templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Template {
    /// `SubordinateCACertificate_PathLen0/V1`: CA:TRUE pathlen:0, KU digitalSignature,
    /// keyCertSign, cRLSign; subject and SANs from the CSR; no EKU.
    SubordinateCaPathLen0,
    /// `EndEntityCertificate/V1`: CA:FALSE, KU digitalSignature, keyEncipherment, EKU serverAuth
    /// and clientAuth; subject and SANs from the CSR.
    EndEntity,
}

/// The SPIFFE trust domain TSB's XCP identities live in.
pub const XCP_TRUST_DOMAIN: &str = "xcp.tetrate.io";

/// A TLS identity's names: the SPIFFE URI it must carry, and any DNS/IP names besides.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    /// The SPIFFE URI SAN.
    pub uri: String,
    /// DNS SANs.
    pub dns: Vec<String>,
    /// IP SANs.
    pub ips: Vec<IpAddr>,
}

/// Where a kind's secret lands and in which layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Landing {
    /// The secret's namespace.
    pub namespace: String,
    /// The secret's name.
    pub name: String,
    /// Which keys it holds.
    pub layout: Layout,
    /// The ConfigMap of trust anchors beside the secret, in its namespace, if the kind has one.
    pub anchors: Option<AnchorMap>,
}

/// The data keys of a kind's secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Opaque; `ca-cert.pem`, `ca-key.pem`, `cert-chain.pem`, `root-cert.pem`.
    IstioCacerts,
    /// `kubernetes.io/tls`; `tls.crt` (the certificate and its issuers, not the root), `tls.key`,
    /// `ca.crt` (the root).
    Tls,
}

/// One kind as a deployment configures it: the names that vary per installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindSpec {
    /// Which kind.
    pub kind: Kind,
    /// Namespace and name of the secret (defaults per kind, configurable).
    pub namespace: String,
    /// The secret's name.
    pub secret: String,
    /// xcp-edge: the cluster's name in TSB (default: the cluster name).
    pub tsb_name: Option<String>,
    /// xcp-central (JWT mode): the address control planes dial, as DNS names and IPs.
    pub dns: Vec<String>,
    /// xcp-central (JWT mode): IP addresses among them.
    pub ips: Vec<IpAddr>,
}

impl KindSpec {
    /// The kind with its default landing: `istio-system/cacerts`, `cert-manager/istio-ca`,
    /// `tsb/xcp-central-cert`, `tsb/mpc-certs`, `istio-system/xcp-edge-cert`.
    pub fn new(kind: Kind) -> Self {
        let p = kind.profile();
        KindSpec {
            kind,
            namespace: p.namespace.into(),
            secret: p.secret.into(),
            tsb_name: None,
            dns: vec![],
            ips: vec![],
        }
    }

    /// Where this kind's secret lands, and in which layout.
    pub fn landing(&self) -> Landing {
        let p = self.kind.profile();
        Landing {
            namespace: self.namespace.clone(),
            name: self.secret.clone(),
            layout: p.layout,
            anchors: p.anchors,
        }
    }

    /// The identity a TLS kind must carry for `cluster`; `None` for the CA kinds.
    pub fn identity(&self, cluster: &ClusterName) -> Option<Identity> {
        let p = self.kind.profile();
        let uri = match p.identity? {
            IdentityRule::Fixed { domain, path } => format!("spiffe://{domain}/{path}"),
            IdentityRule::TsbName { domain } => format!(
                "spiffe://{domain}/{}",
                self.tsb_name.as_deref().unwrap_or(cluster.as_str())
            ),
        };
        let (dns, ips) = if p.takes(Input::Addresses) {
            (self.dns.clone(), self.ips.clone())
        } else {
            (vec![], vec![])
        };
        Some(Identity { uri, dns, ips })
    }

    /// The default common name of the CSR.
    pub fn common_name(&self, cluster: &ClusterName) -> String {
        match self.kind.profile().common_name {
            CommonNameRule::ClusterThen(suffix) => {
                format!("{} {suffix}", cluster.abbreviated(CN_NAME_ROOM))
            }
            CommonNameRule::Fixed(cn) => cn.into(),
            CommonNameRule::TsbNameAfter(prefix) => match &self.tsb_name {
                Some(name) => format!("{prefix} {name}"),
                None => format!("{prefix} {}", cluster.abbreviated(55)),
            },
        }
    }

    /// What escrow and generation tokens key this kind of `cluster` by.
    pub fn escrow_key(&self, cluster: &ClusterName) -> EscrowKey {
        EscrowKey::new(cluster.clone(), self.kind)
    }
}

/// Whose records: one kind of certificate of one cluster. Serialised as its name.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct EscrowKey {
    /// The cluster.
    pub cluster: ClusterName,
    /// The kind.
    pub kind: Kind,
}

impl EscrowKey {
    /// The key of `kind` of `cluster`.
    pub fn new(cluster: ClusterName, kind: Kind) -> Self {
        EscrowKey { cluster, kind }
    }

    /// The cluster name for istio-cacerts, as every record before kinds existed;
    /// `<cluster>.<kind>` for the others — unambiguous, since a cluster name holds no dot.
    pub fn name(&self) -> String {
        match self.kind {
            Kind::IstioCacerts => self.cluster.to_string(),
            other => format!("{}.{other}", self.cluster),
        }
    }
}

/// `<cluster>` or `<cluster>.<kind>`, as [`EscrowKey::name`] writes it; anything else (the
/// rotation record, a foreign secret) is not a key.
impl std::str::FromStr for EscrowKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (cluster, kind) = match s.split_once('.') {
            Some((c, k)) => (c, k.parse::<Kind>().map_err(|e| e.to_string())?),
            None => (s, Kind::IstioCacerts),
        };
        let cluster: ClusterName = cluster
            .parse()
            .map_err(|e: crate::cluster::InvalidClusterName| e.to_string())?;
        if kind == Kind::IstioCacerts && s.contains('.') {
            return Err(format!(
                "{s:?}: istio-cacerts is named by its cluster alone"
            ));
        }
        Ok(EscrowKey::new(cluster, kind))
    }
}

impl TryFrom<String> for EscrowKey {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<EscrowKey> for String {
    fn from(k: EscrowKey) -> String {
        k.name()
    }
}

impl std::fmt::Display for EscrowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

impl From<&ClusterName> for EscrowKey {
    /// A cluster's Istio intermediate (`istio-cacerts`).
    fn from(cluster: &ClusterName) -> Self {
        EscrowKey::new(cluster.clone(), Kind::IstioCacerts)
    }
}

impl Default for KindSpec {
    fn default() -> Self {
        KindSpec::new(Kind::IstioCacerts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_exactly_one_row_named_once() {
        for (i, p) in CATALOGUE.iter().enumerate() {
            assert_eq!(p.kind.profile().name, p.name);
            assert_eq!(Kind::ALL[i], p.kind);
            assert_eq!(
                CATALOGUE.iter().filter(|q| q.name == p.name).count(),
                1,
                "{}",
                p.name
            );
            assert_eq!(p.identity.is_some(), p.template == Template::EndEntity);
        }
        assert!(UnknownKind("x".into()).to_string().contains(&names()));
    }

    #[test]
    fn kinds_by_their_mesh_names_with_their_defaults() {
        let c: ClusterName = "east-1".parse().unwrap();
        for k in Kind::ALL {
            assert_eq!(k.name().parse::<Kind>().unwrap(), k);
        }
        assert!("xcp".parse::<Kind>().is_err());
        let edge = KindSpec::new(Kind::XcpEdge);
        assert_eq!(
            edge.identity(&c).unwrap().uri,
            "spiffe://xcp.tetrate.io/east-1"
        );
        let named = KindSpec {
            tsb_name: Some("prod-east".into()),
            ..edge
        };
        assert_eq!(
            named.identity(&c).unwrap().uri,
            "spiffe://xcp.tetrate.io/prod-east"
        );
        assert_eq!(
            KindSpec::new(Kind::XcpCentral).identity(&c).unwrap().uri,
            "spiffe://xcp.tetrate.io/central"
        );
        assert_eq!(
            KindSpec::new(Kind::Mpc).landing(),
            Landing {
                namespace: "tsb".into(),
                name: "mpc-certs".into(),
                layout: Layout::Tls,
                anchors: None,
            }
        );
        assert_eq!(
            KindSpec::default().escrow_key(&c).name(),
            "east-1",
            "istio-cacerts keeps the name records always had"
        );
        assert_eq!(
            KindSpec::new(Kind::XcpEdge).escrow_key(&c).name(),
            "east-1.xcp-edge"
        );
        assert!(KindSpec::new(Kind::CertManagerCa).identity(&c).is_none());
        assert_eq!(Kind::Mpc.template(), Template::EndEntity);
        assert_eq!(
            Kind::CertManagerCa.template(),
            Template::SubordinateCaPathLen0
        );
    }
}

/// An address xcp-central must carry: an IP address, or a DNS name by RFC 1123 (labels of
/// letters, digits and `-`, at most 63 each, 253 in all). A URL, a port or a path is refused
/// with the host it should have been.
pub fn parse_address(text: &str) -> Result<SanAddress, String> {
    if let Ok(ip) = text.parse::<std::net::IpAddr>() {
        return Ok(SanAddress::Ip(ip));
    }
    let host = text.split("://").last().unwrap_or(text);
    let host = host.split(['/', ':']).next().unwrap_or(host);
    let bad = |why: &str| {
        let hint = if !host.is_empty() && host != text {
            format!(" (the host alone: {host})")
        } else {
            String::new()
        };
        Err(format!(
            "{text:?} is not an IP address or a DNS name: {why}{hint}"
        ))
    };
    if text.is_empty() {
        return bad("it is empty");
    }
    if host != text {
        return bad("give the host only, without scheme, port or path");
    }
    let name = text.strip_suffix('.').unwrap_or(text);
    if name.len() > 253 {
        return bad("it is longer than 253 characters");
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return bad(&format!(
                "label {label:?} is not letters, digits and inner '-' (1 to 63 characters)"
            ));
        }
    }
    Ok(SanAddress::Dns(name.to_ascii_lowercase()))
}

/// A DNS or IP subject alternative name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SanAddress {
    /// A DNS name.
    Dns(String),
    /// An IP address.
    Ip(std::net::IpAddr),
}

/// A cluster's name in TSB: the last segment of `spiffe://xcp.tetrate.io/<name>`, so one SPIFFE
/// path segment — letters, digits, `.`, `-` and `_`, not `.` or `..` — of at most 200 characters.
pub fn check_tsb_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "TSB name {name:?} is not one SPIFFE path segment (letters, digits, '.', '-', '_'; not '.' or '..')"
        ))
    }
}

#[cfg(test)]
mod names_tests {
    use super::*;

    #[test]
    fn addresses_are_hosts_or_ips_and_a_url_says_which_host_was_meant() {
        assert_eq!(
            parse_address("central.tsb.example"),
            Ok(SanAddress::Dns("central.tsb.example".into()))
        );
        assert_eq!(
            parse_address("Central.TSB.example."),
            Ok(SanAddress::Dns("central.tsb.example".into()))
        );
        assert_eq!(
            parse_address("10.0.0.7"),
            Ok(SanAddress::Ip("10.0.0.7".parse().unwrap()))
        );
        assert_eq!(
            parse_address("::1"),
            Ok(SanAddress::Ip("::1".parse().unwrap()))
        );
        let e = parse_address("https://central.example:8443/").unwrap_err();
        assert!(
            e.contains("host only") && e.contains("(the host alone: central.example)"),
            "{e}"
        );
        for bad in [
            "",
            "a..b",
            "-a.example",
            "a_b.example",
            "a b",
            &format!("{}.example", "a".repeat(64)),
        ] {
            assert!(parse_address(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tsb_names_are_one_spiffe_segment() {
        for ok in ["prod-east", "Prod_EU.1"] {
            assert_eq!(check_tsb_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", ".", "..", "Bad Name/../x", "a/b", "a%2f"] {
            assert!(check_tsb_name(bad).is_err(), "{bad:?}");
        }
    }
}
