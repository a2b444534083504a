//! The CRLs an AWS Private CA hierarchy publishes, for a fleet's `ca-crl.pem`.
//!
//! PCA keeps no CRL behind its API: a CA with a `CrlConfiguration` writes its complete CRL as
//! DER into an S3 bucket (`crl/<ca id>.crl`, or under a custom path), and names that location in
//! the CRL distribution point of every certificate it issues. The data plane needs the CRL of
//! every CA in a chain, so the issuing CA's CRL is found from its configuration and each CA above
//! it from the distribution point in the certificate it signed.

use aws_sdk_acmpca::types::{CrlConfiguration, CrlType};

/// Where one CA's CRL lies in S3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlLocation {
    /// The bucket.
    pub bucket: String,
    /// The object's key.
    pub key: String,
}

impl std::fmt::Display for CrlLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// The setting a CA needs for CRL mode, named in every refusal.
const SETTING: &str = "RevocationConfiguration.CrlConfiguration (Enabled, S3BucketName, CrlType COMPLETE): \
`aws acm-pca update-certificate-authority --revocation-configuration`";

impl CrlLocation {
    /// Where the CA `ca_arn` writes its CRL, from its configuration; why it cannot serve CRL
    /// mode otherwise (no CRL, or partitioned CRLs a fleet bundle cannot honour).
    pub fn configured(ca_arn: &str, config: Option<&CrlConfiguration>) -> Result<Self, String> {
        let config = config.filter(|c| c.enabled()).ok_or_else(|| {
            format!("it publishes no CRL, and CRL mode needs one from every CA: set its {SETTING}")
        })?;
        if config.crl_type() == Some(&CrlType::Partitioned) {
            return Err(format!(
                "it publishes partitioned CRLs, which carry a critical issuing distribution point a fleet bundle cannot honour: set its {SETTING}"
            ));
        }
        let bucket = config
            .s3_bucket_name()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| format!("its CRL configuration names no bucket: set its {SETTING}"))?;
        let id = ca_arn.rsplit('/').next().unwrap_or(ca_arn);
        let path = config
            .custom_path()
            .map(|p| p.trim_matches('/'))
            .filter(|p| !p.is_empty())
            .unwrap_or("crl");
        Ok(CrlLocation {
            bucket: bucket.to_string(),
            key: format!("{path}/{id}.crl"),
        })
    }

    /// From `s3://<bucket>/<key>`: where an offline root's owner put its CRL.
    pub fn from_s3_url(url: &str) -> Option<Self> {
        let (bucket, key) = url.strip_prefix("s3://")?.split_once('/')?;
        (!bucket.is_empty() && !key.is_empty()).then(|| CrlLocation {
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }

    /// From a CRL distribution point URL in S3's own names: virtual-hosted
    /// (`http://<bucket>.s3[.<region>].amazonaws.com/<key>`) or path-style
    /// (`http://s3[.<region>].amazonaws.com/<bucket>/<key>`). A custom CNAME hides the bucket.
    pub fn from_url(url: &str) -> Option<Self> {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))?;
        let (host, path) = rest.split_once('/')?;
        let host = host.strip_suffix(".amazonaws.com")?;
        let is_s3 = |h: &str| h == "s3" || h.starts_with("s3.") || h.starts_with("s3-");
        let (bucket, key) = if is_s3(host) {
            path.split_once('/')?
        } else {
            let (bucket, service) = host.split_once(".s3")?;
            if !(service.is_empty() || service.starts_with('.') || service.starts_with('-')) {
                return None;
            }
            (bucket, path)
        };
        (!bucket.is_empty() && !key.is_empty()).then(|| CrlLocation {
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }
}

/// The object at `at`, whole.
pub async fn read(s3: &aws_sdk_s3::Client, at: &CrlLocation) -> Result<Vec<u8>, String> {
    let object = s3
        .get_object()
        .bucket(&at.bucket)
        .key(&at.key)
        .send()
        .await
        .map_err(|e| {
            let (code, message) = crate::error_parts(&e);
            format!("reading {at}: {code}: {message}")
        })?;
    let body = object
        .body
        .collect()
        .await
        .map_err(|e| format!("reading {at}: {e}"))?;
    Ok(body.into_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = "arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/abc-123";

    fn config(enabled: bool, kind: Option<CrlType>, path: Option<&str>) -> CrlConfiguration {
        CrlConfiguration::builder()
            .enabled(enabled)
            .s3_bucket_name("crls")
            .set_crl_type(kind)
            .set_custom_path(path.map(str::to_string))
            .build()
            .unwrap()
    }

    #[test]
    fn a_cas_crl_is_where_its_configuration_says() {
        let at = CrlLocation::configured(CA, Some(&config(true, None, None))).unwrap();
        assert_eq!(at.to_string(), "s3://crls/crl/abc-123.crl");
        let at = CrlLocation::configured(
            CA,
            Some(&config(true, Some(CrlType::Complete), Some("/pki/crls/"))),
        )
        .unwrap();
        assert_eq!(at.to_string(), "s3://crls/pki/crls/abc-123.crl");
    }

    #[test]
    fn a_ca_without_usable_crls_is_refused_naming_the_setting() {
        for (what, c) in [
            ("none", None),
            ("disabled", Some(config(false, None, None))),
            (
                "partitioned",
                Some(config(true, Some(CrlType::Partitioned), None)),
            ),
        ] {
            let e = CrlLocation::configured(CA, c.as_ref()).unwrap_err();
            assert!(e.contains("CrlType COMPLETE"), "{what}: {e}");
        }
    }

    #[test]
    fn distribution_points_in_s3_names_are_read_and_custom_names_are_not() {
        let at = |u: &str| CrlLocation::from_url(u).map(|l| l.to_string());
        assert_eq!(
            at("http://crls.s3.eu-west-1.amazonaws.com/crl/abc.crl").as_deref(),
            Some("s3://crls/crl/abc.crl")
        );
        assert_eq!(
            at("http://crls.s3.amazonaws.com/crl/abc.crl").as_deref(),
            Some("s3://crls/crl/abc.crl")
        );
        assert_eq!(
            at("http://s3.eu-west-1.amazonaws.com/crls/crl/abc.crl").as_deref(),
            Some("s3://crls/crl/abc.crl")
        );
        assert_eq!(at("http://pki.example.com/crl/abc.crl"), None);
        assert_eq!(at("http://crls.s3.eu-west-1.amazonaws.com/"), None);
        assert_eq!(at("ldap://crls.s3.amazonaws.com/crl/abc.crl"), None);
    }
}
