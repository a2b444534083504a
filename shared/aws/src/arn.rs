//! ARNs, parsed once where they enter (a flag, an environment variable) and passed on typed.

use std::fmt;
use std::str::FromStr;

/// `arn:<partition>:<service>:<region>:<account>:<resource>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Arn {
    /// `aws`, `aws-cn` or `aws-us-gov`: what every other ARN in the same policy must name.
    pub partition: String,
    /// The service namespace, as IAM actions prefix it (`acm-pca`, `secretsmanager`).
    pub service: String,
    /// Empty for global resources (IAM roles).
    pub region: String,
    /// The owning account's twelve digits; empty for AWS-managed resources (templates).
    pub account: String,
    /// Everything after the fifth colon, `/` and `:` included.
    pub resource: String,
}

/// A text that does not have the ARN shape asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not {expected}")]
pub struct ArnError {
    /// What was given.
    pub text: String,
    /// The shape wanted, for the message.
    pub expected: &'static str,
}

impl FromStr for Arn {
    type Err = ArnError;
    fn from_str(s: &str) -> Result<Self, ArnError> {
        let bad = || ArnError {
            text: s.to_string(),
            expected: "an ARN (arn:<partition>:<service>:<region>:<account>:<resource>)",
        };
        let mut parts = s.splitn(6, ':');
        if parts.next() != Some("arn") {
            return Err(bad());
        }
        let mut next = || parts.next().map(str::to_string).ok_or_else(bad);
        let (partition, service, region, account, resource) =
            (next()?, next()?, next()?, next()?, next()?);
        if partition.is_empty() || service.is_empty() || resource.is_empty() {
            return Err(bad());
        }
        Ok(Arn {
            partition,
            service,
            region,
            account,
            resource,
        })
    }
}

impl fmt::Display for Arn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arn:{}:{}:{}:{}:{}",
            self.partition, self.service, self.region, self.account, self.resource
        )
    }
}

/// An AWS Private CA: `arn:<partition>:acm-pca:<region>:<account>:certificate-authority/<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CaArn(Arn);

impl CaArn {
    /// What a CA ARN looks like, for error messages and `--help`.
    pub const SHAPE: &'static str = "a certificate authority ARN (arn:<partition>:acm-pca:<region>:<account>:certificate-authority/<id>)";

    /// The partition the CA lives in: its templates' ARNs must name the same one.
    pub fn partition(&self) -> &str {
        &self.0.partition
    }

    /// The CA's region: where IssueCertificate is called.
    pub fn region(&self) -> &str {
        &self.0.region
    }

    /// The account that owns the CA: another than meshca's means a CA shared through RAM.
    pub fn account(&self) -> &str {
        &self.0.account
    }

    /// The ARN in general form.
    pub fn as_arn(&self) -> &Arn {
        &self.0
    }
}

impl FromStr for CaArn {
    type Err = ArnError;
    fn from_str(s: &str) -> Result<Self, ArnError> {
        let bad = ArnError {
            text: s.to_string(),
            expected: Self::SHAPE,
        };
        let arn: Arn = s.parse().map_err(|_| bad.clone())?;
        let id = arn
            .resource
            .strip_prefix("certificate-authority/")
            .unwrap_or_default();
        if arn.service != "acm-pca" || id.is_empty() || arn.region.is_empty() {
            return Err(bad);
        }
        Ok(CaArn(arn))
    }
}

impl fmt::Display for CaArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_arns_are_parsed_once_into_their_parts() {
        let ca: CaArn =
            "arn:aws-us-gov:acm-pca:us-gov-west-1:111122223333:certificate-authority/abc"
                .parse()
                .unwrap();
        assert_eq!(
            (ca.partition(), ca.region(), ca.account()),
            ("aws-us-gov", "us-gov-west-1", "111122223333")
        );
        assert_eq!(
            ca.to_string(),
            "arn:aws-us-gov:acm-pca:us-gov-west-1:111122223333:certificate-authority/abc"
        );
        for bad in [
            "arn:aws:acm:eu-west-1:1:certificate/abc",
            "arn:aws:s3:::bucket",
            "not-an-arn",
            "arn:aws:acm-pca:eu-west-1:1:certificate-authority/",
            "arn:aws:acm-pca::1:certificate-authority/abc",
        ] {
            let e = bad.parse::<CaArn>().unwrap_err();
            assert!(
                e.to_string()
                    .contains("is not a certificate authority ARN (arn:<partition>:acm-pca:"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn any_arn_gives_its_region() {
        let key: Arn = "arn:aws:kms:eu-west-1:111122223333:key/1234"
            .parse()
            .unwrap();
        assert_eq!(
            (key.service.as_str(), key.region.as_str()),
            ("kms", "eu-west-1")
        );
        assert!("alias/meshca".parse::<Arn>().is_err());
    }
}
