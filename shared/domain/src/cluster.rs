//! Cluster names.

use std::fmt;
use std::str::FromStr;

/// A cluster name that is also a DNS-1123 label: it names the escrow record, the output
/// directory and the CN, so it must be safe as a path segment and in a subject.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct ClusterName(String);

#[derive(Debug, thiserror::Error)]
#[error(
    "cluster name {name:?} is not a DNS-1123 label: {why} (lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 characters)"
)]
pub struct InvalidClusterName {
    pub name: String,
    pub why: &'static str,
}

impl ClusterName {
    pub fn as_str(&self) -> &str {
        &self.0
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
        if s.len() > 63 {
            return bad("it is longer than 63 characters");
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return bad("it contains a character other than a-z, 0-9 or '-'");
        }
        if s.starts_with('-') || s.ends_with('-') {
            return bad("it starts or ends with '-'");
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
    fn accepts_labels_and_rejects_the_rest() {
        for ok in ["demo", "prod-eu-west-1", "a", "0abc", &"a".repeat(63)] {
            assert!(ok.parse::<ClusterName>().is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Demo",
            "-a",
            "a-",
            "a_b",
            "a.b",
            "../x",
            &"a".repeat(64),
            "a b",
        ] {
            assert!(bad.parse::<ClusterName>().is_err(), "{bad}");
        }
    }
}
