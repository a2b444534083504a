//! Cluster names.

use std::fmt;
use std::str::FromStr;

/// A cluster's name as EKS spells it: 1 to 100 letters, digits, `-` and `_`, starting with a
/// letter or digit (`Prod_EU_1` as well as `prod-eu-1`). Every such name is a safe path segment
/// and Secrets Manager name part as it is, so the escrow record and the output directory keep
/// it; it never starts with `_`, so names meshca gives its own records (`_rotation`) never meet
/// a cluster's. Where a name must be shorter or plainer (a certificate's CN) a form is derived
/// from it that keeps distinct names distinct ([`ClusterName::abbreviated`]).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct ClusterName(String);

#[derive(Debug, thiserror::Error)]
#[error(
    "cluster name {name:?} is not an EKS cluster name: {why} (letters, digits, '-' and '_', starting with a letter or digit, at most 100 characters)"
)]
/// A name that cannot be a cluster's (EKS's rules).
pub struct InvalidClusterName {
    /// The name given.
    pub name: String,
    /// Which rule it breaks.
    pub why: &'static str,
}

/// EKS's limit on a cluster name.
pub const MAX_LEN: usize = 100;

impl ClusterName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name itself when it has at most `max` characters; else its first characters, `-`
    /// and 8 hex digits of its SHA-256, `max` in all: names that share a long prefix stay apart.
    pub fn abbreviated(&self, max: usize) -> String {
        if self.0.len() <= max {
            return self.0.clone();
        }
        let digest = crate::cert::sha256_hex(self.0.as_bytes());
        let keep = max.saturating_sub(9);
        format!(
            "{}-{}",
            self.0[..keep].trim_end_matches(['-', '_']),
            &digest[..8]
        )
    }
}

impl FromStr for ClusterName {
    type Err = InvalidClusterName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why| {
            Err(InvalidClusterName {
                name: s.to_string(),
                why,
            })
        };
        if s.is_empty() {
            return bad("it is empty");
        }
        if s.len() > MAX_LEN {
            return bad("it is longer than 100 characters");
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return bad("it contains a character other than a letter, a digit, '-' or '_'");
        }
        if !s.as_bytes()[0].is_ascii_alphanumeric() {
            return bad("it does not start with a letter or digit");
        }
        Ok(ClusterName(s.to_string()))
    }
}

impl TryFrom<String> for ClusterName {
    type Error = InvalidClusterName;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ClusterName> for String {
    fn from(c: ClusterName) -> String {
        c.0
    }
}

impl fmt::Display for ClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_eks_name_and_rejects_the_rest() {
        for ok in [
            "demo",
            "prod-eu-west-1",
            "a",
            "0abc",
            "Prod_EU_1",
            "a-",
            "A_",
            &"a".repeat(100),
        ] {
            assert!(ok.parse::<ClusterName>().is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "_rotation",
            "a.b",
            "../x",
            &"a".repeat(101),
            "a b",
            "a/b",
            "é",
        ] {
            let e = bad.parse::<ClusterName>().unwrap_err().to_string();
            assert!(e.contains("is not an EKS cluster name"), "{bad}: {e}");
        }
    }

    #[test]
    fn an_abbreviation_fits_and_keeps_long_names_apart() {
        let short: ClusterName = "Prod_EU_1".parse().unwrap();
        assert_eq!(short.abbreviated(40), "Prod_EU_1");
        let (a, b): (ClusterName, ClusterName) = (
            format!("{}a", "x".repeat(99)).parse().unwrap(),
            format!("{}b", "x".repeat(99)).parse().unwrap(),
        );
        let (x, y) = (a.abbreviated(40), b.abbreviated(40));
        assert!(x.len() <= 40 && y.len() <= 40, "{x} {y}");
        assert_ne!(x, y);
        assert!(x.starts_with("xxxxxxxx"), "{x}");
    }
}
