//! Which kinds of certificate each cluster gets, from the functions' settings and the cluster's
//! tags; each kind's per-installation names are the catalogue row's inputs.

use std::collections::BTreeMap;

use meshca_core::kind::{Input, SanAddress};
use meshca_core::{Kind, KindSpec};

use super::{ConfigError, get};

/// Which kinds each opted-in cluster gets: MESHCA_KINDS (default `istio-cacerts`) unless the
/// cluster's MESHCA_KINDS_TAG (default `meshca.io/kinds`) names them; a MESHCA_TSB_ROLE_TAG
/// (default `meshca.io/tsb-role`) of `management-plane` adds xcp-central and mpc; the
/// MESHCA_TSB_NAME_TAG (default `meshca.io/tsb-name`) is the cluster's name in TSB (xcp-edge).
/// Kinds in a tag are separated by spaces or `+` (AWS tag values allow no comma).
/// MESHCA_TSB_NAMESPACE (default `tsb`), MESHCA_TSB_CENTRAL_ADDRESSES (space-separated DNS names
/// or IPs for xcp-central), MESHCA_CERT_MANAGER_SECRET (default `cert-manager/istio-ca`).
#[derive(Debug, Clone)]
pub struct Kinds {
    /// MESHCA_KINDS: the kinds of a cluster whose tags name none.
    pub default: Vec<Kind>,
    /// The tag that names a cluster's kinds.
    pub kinds_tag: String,
    /// The tag that names a TSB cluster's role (management or control plane).
    pub tsb_role_tag: String,
    /// The tag that holds a cluster's name in TSB.
    pub tsb_name_tag: String,
    /// Where TSB's management-plane secrets land.
    pub tsb_namespace: String,
    /// The addresses xcp-central's certificate names.
    pub central_addresses: Vec<SanAddress>,
    /// cert-manager-ca's landing: namespace and name.
    pub cert_manager_secret: (String, String),
}

impl Kinds {
    /// The kinds a cluster with `tags` gets, each with its names; an unknown kind in the tag is an
    /// error naming it (the cluster is then skipped with that reason).
    pub fn for_tags(&self, tags: &BTreeMap<String, String>) -> Result<Vec<KindSpec>, String> {
        let mut kinds = match tags.get(&self.kinds_tag) {
            Some(v) => parse_kinds(v).map_err(|e| format!("tag {}: {e}", self.kinds_tag))?,
            None => self.default.clone(),
        };
        if let Some(name) = tags.get(&self.tsb_name_tag) {
            meshca_core::kind::check_tsb_name(name)
                .map_err(|e| format!("tag {}: {e}", self.tsb_name_tag))?;
        }
        if tags.get(&self.tsb_role_tag).map(String::as_str) == Some("management-plane") {
            for k in [Kind::XcpCentral, Kind::Mpc] {
                if !kinds.contains(&k) {
                    kinds.push(k);
                }
            }
        }
        Ok(kinds.into_iter().map(|k| self.spec(k, tags)).collect())
    }

    fn spec(&self, kind: Kind, tags: &BTreeMap<String, String>) -> KindSpec {
        let mut spec = KindSpec::new(kind);
        let takes = |input| kind.profile().takes(input);
        if takes(Input::SecretName) {
            (spec.namespace, spec.secret) = self.cert_manager_secret.clone();
        }
        if takes(Input::TsbNamespace) {
            spec.namespace = self.tsb_namespace.clone();
        }
        if takes(Input::TsbName) {
            spec.tsb_name = tags.get(&self.tsb_name_tag).cloned();
        }
        if takes(Input::Addresses) {
            for a in &self.central_addresses {
                match a {
                    SanAddress::Ip(ip) => spec.ips.push(*ip),
                    SanAddress::Dns(name) => spec.dns.push(name.clone()),
                }
            }
        }
        spec
    }
}

/// `istio-cacerts xcp-edge` or `istio-cacerts+xcp-edge`, each kind once.
fn parse_kinds(text: &str) -> Result<Vec<Kind>, String> {
    if text.contains(',') {
        // The same list is read from a cluster tag, whose value cannot hold a comma.
        return Err(format!(
            "{text:?}: separate kinds with spaces or '+' (as in \"{}\"), not commas",
            text.replace(',', "+").replace(' ', "")
        ));
    }
    let mut out = Vec::new();
    for k in text.split([' ', '+']).filter(|k| !k.is_empty()) {
        let kind: Kind = k
            .parse()
            .map_err(|e: meshca_core::kind::UnknownKind| e.to_string())?;
        if !out.contains(&kind) {
            out.push(kind);
        }
    }
    if out.is_empty() {
        return Err("names no kind".into());
    }
    Ok(out)
}

pub(super) fn kinds(env: &dyn Fn(&str) -> Option<String>) -> Result<Kinds, ConfigError> {
    let default = match get(env, "MESHCA_KINDS") {
        Some(v) => parse_kinds(&v).map_err(|problem| ConfigError {
            var: "MESHCA_KINDS",
            problem,
        })?,
        None => vec![Kind::IstioCacerts],
    };
    let secret =
        get(env, "MESHCA_CERT_MANAGER_SECRET").unwrap_or_else(|| "cert-manager/istio-ca".into());
    let cert_manager_secret = secret
        .split_once('/')
        .filter(|(ns, n)| !ns.is_empty() && !n.is_empty())
        .map(|(ns, n)| (ns.to_string(), n.to_string()))
        .ok_or(ConfigError {
            var: "MESHCA_CERT_MANAGER_SECRET",
            problem: format!("{secret:?} is not NAMESPACE/NAME"),
        })?;
    let tag = |var, default: &str| get(env, var).unwrap_or_else(|| default.into());
    Ok(Kinds {
        default,
        kinds_tag: tag("MESHCA_KINDS_TAG", "meshca.io/kinds"),
        tsb_role_tag: tag("MESHCA_TSB_ROLE_TAG", "meshca.io/tsb-role"),
        tsb_name_tag: tag("MESHCA_TSB_NAME_TAG", "meshca.io/tsb-name"),
        tsb_namespace: tag("MESHCA_TSB_NAMESPACE", "tsb"),
        central_addresses: get(env, "MESHCA_TSB_CENTRAL_ADDRESSES")
            .map(|v| {
                v.split_whitespace()
                    .map(meshca_core::kind::parse_address)
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()
            .map_err(|problem| ConfigError {
                var: "MESHCA_TSB_CENTRAL_ADDRESSES",
                problem,
            })?
            .unwrap_or_default(),
        cert_manager_secret,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_separated_by_spaces_or_plus_and_a_comma_is_told_how() {
        let both = vec![Kind::IstioCacerts, Kind::CertManagerCa];
        assert_eq!(
            parse_kinds("istio-cacerts cert-manager-ca"),
            Ok(both.clone())
        );
        assert_eq!(
            parse_kinds("istio-cacerts+cert-manager-ca+istio-cacerts"),
            Ok(both)
        );
        let e = parse_kinds("istio-cacerts, cert-manager-ca").unwrap_err();
        assert!(e.contains("\"istio-cacerts+cert-manager-ca\""), "{e}");
        assert!(
            parse_kinds("istio").unwrap_err().contains("istio-cacerts"),
            "lists the kinds"
        );
        assert_eq!(parse_kinds(" + "), Err("names no kind".into()));
    }
}
