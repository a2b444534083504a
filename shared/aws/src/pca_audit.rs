//! What a Private CA issued, read from its audit report: how a revocation finds a cluster's
//! generations issued before meshca kept a ledger.
//!
//! PCA has no API that lists issued certificates. It writes, on request, an audit report of
//! every certificate it issued or revoked into an S3 bucket it may write to: the bucket of its
//! CRL configuration is one (CRL mode requires it, and grants meshca the read). A report takes
//! a while to appear and a CA writes one per 30 minutes, so every way this can fall short is a
//! reason the revocation names, never a failed revocation.

use std::time::Duration;

use aws_sdk_acmpca::types::{AuditReportResponseFormat, AuditReportStatus};
use meshca_core::CertificateId;
use meshca_core::cert::{Certificate, common_name, subject_of};
use meshca_core::pem;
use time::OffsetDateTime;

use crate::pca::PcaAuthority;
use crate::pca_crl::CrlLocation;

/// How long one revocation waits for a report PCA is writing.
pub const AUDIT_WAIT: Duration = Duration::from_secs(90);
/// How often it asks whether the report is written.
const AUDIT_POLL: Duration = Duration::from_secs(1);

/// One certificate as the JSON report lists it (the fields meshca reads).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    certificate_arn: String,
    subject: String,
    not_after: String,
    revoked_at: Option<String>,
}

impl PcaAuthority {
    /// Every certificate the CA issued whose subject is `subject` (DER), unrevoked and valid
    /// at `now`, by ARN and serial, from a fresh audit report in `bucket`; why not, otherwise.
    pub(crate) async fn audited_with_subject(
        &self,
        s3: &aws_sdk_s3::Client,
        bucket: &str,
        subject: &[u8],
        now: OffsetDateTime,
    ) -> Result<Vec<(CertificateId, String)>, String> {
        let at = self.audit_report(bucket).await?;
        let text = crate::pca_crl::read(s3, &at).await?;
        let entries: Vec<Entry> = serde_json::from_slice(&text)
            .map_err(|e| format!("the audit report {at} is not PCA's JSON report: {e}"))?;
        // The report prints names as text: search by common name, then compare the DER.
        let cn = common_name(subject).map(|cn| format!("CN={}", rfc4514_escaped(&cn)));
        let mut found = Vec::new();
        for e in entries {
            let live = e.revoked_at.is_none() && not_after(&e.not_after).is_some_and(|t| t > now);
            let named = cn.as_ref().is_none_or(|cn| e.subject.contains(cn.as_str()));
            if !(live && named) {
                continue;
            }
            let cert = self.issued_certificate(&e.certificate_arn).await?;
            if subject_of(&cert.der).as_deref() == Some(subject) {
                found.push((CertificateId(e.certificate_arn), cert.serial));
            }
        }
        Ok(found)
    }

    /// Asks the CA for an audit report in `bucket` and waits until it is written.
    async fn audit_report(&self, bucket: &str) -> Result<CrlLocation, String> {
        let made = self
            .client
            .create_certificate_authority_audit_report()
            .certificate_authority_arn(&self.ca_arn)
            .s3_bucket_name(bucket)
            .audit_report_response_format(AuditReportResponseFormat::Json)
            .send()
            .await
            .map_err(|e| match crate::error_parts(&e) {
                (code, _) if code == "RequestInProgressException" => format!(
                    "{} wrote an audit report less than 30 minutes ago (it writes one each 30 minutes): revoke again after that",
                    &self.ca_arn
                ),
                (code, message) => {
                    format!("CreateCertificateAuthorityAuditReport in {bucket}: {code}: {message}")
                }
            })?;
        let id = made.audit_report_id().unwrap_or_default().to_string();
        let started = tokio::time::Instant::now();
        loop {
            let seen = self
                .client
                .describe_certificate_authority_audit_report()
                .certificate_authority_arn(&self.ca_arn)
                .audit_report_id(&id)
                .send()
                .await
                .map_err(|e| {
                    let (code, message) = crate::error_parts(&e);
                    format!("DescribeCertificateAuthorityAuditReport {id}: {code}: {message}")
                })?;
            match seen.audit_report_status() {
                Some(AuditReportStatus::Success) => {
                    return Ok(CrlLocation {
                        bucket: seen.s3_bucket_name().unwrap_or(bucket).to_string(),
                        key: seen
                            .s3_key()
                            .or(made.s3_key())
                            .unwrap_or_default()
                            .to_string(),
                    });
                }
                Some(AuditReportStatus::Failed) => {
                    return Err(format!(
                        "PCA failed to write the audit report {id} into {bucket}: can it write there?"
                    ));
                }
                _ if started.elapsed() >= AUDIT_WAIT => {
                    return Err(format!(
                        "the audit report {id} was still being written after {} s",
                        AUDIT_WAIT.as_secs()
                    ));
                }
                _ => tokio::time::sleep(AUDIT_POLL).await,
            }
        }
    }

    /// A certificate the CA issued, by its ARN.
    async fn issued_certificate(&self, arn: &str) -> Result<Certificate, String> {
        let out = self
            .client
            .get_certificate()
            .certificate_authority_arn(&self.ca_arn)
            .certificate_arn(arn)
            .send()
            .await
            .map_err(|e| {
                let (code, message) = crate::error_parts(&e);
                format!("GetCertificate {arn}: {code}: {message}")
            })?;
        let der = pem::certificates(arn, out.certificate().unwrap_or_default())
            .map_err(|e| e.to_string())?
            .into_iter()
            .next()
            .ok_or_else(|| format!("GetCertificate {arn}: no certificate"))?;
        Certificate::from_der(arn, der).map_err(|e| e.to_string())
    }
}

/// The report's time stamps: `2026-12-04T03:32:20+0000`.
fn not_after(text: &str) -> Option<OffsetDateTime> {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second][offset_hour sign:mandatory][offset_minute]"
    );
    OffsetDateTime::parse(text, &format).ok()
}

/// A value as RFC 4514 writes it inside a name (what the report's subjects are).
fn rfc4514_escaped(value: &str) -> String {
    let mut out = String::new();
    for (i, c) in value.chars().enumerate() {
        let edge = (i == 0 && (c == ' ' || c == '#')) || (i + 1 == value.len() && c == ' ');
        if edge || matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_s_dates_and_names_are_read_as_pca_writes_them() {
        let t = not_after("2027-12-04T03:32:20+0000").unwrap();
        assert_eq!((t.year(), t.hour(), t.second()), (2027, 3, 20));
        assert_eq!(not_after("2027-12-04"), None);
        assert_eq!(
            rfc4514_escaped("x istio intermediate CA"),
            "x istio intermediate CA"
        );
        assert_eq!(rfc4514_escaped("Example, Inc."), "Example\\, Inc.");
        assert_eq!(rfc4514_escaped(" lead"), "\\ lead");
    }
}
