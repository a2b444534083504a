//! AWS Private CA as the [`Authority`].

use aws_sdk_acmpca::Client;
use aws_sdk_acmpca::primitives::Blob;
use aws_sdk_acmpca::types::{
    CertificateAuthorityStatus, KeyAlgorithm as PcaKey, SigningAlgorithm, ValidityPeriodType,
};
use time::OffsetDateTime;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use meshca_core::authority::{
    Authority, AuthorityError, AuthorityInfo, CertificateId, IssueRequest, Issued, Listing,
    RevocationReason, Validity,
};
use meshca_core::cert::Certificate;
use meshca_core::pace::IssueBudget;
use meshca_core::pem::{self, CERTIFICATE};
use meshca_core::retry::Backoff;

use crate::arn::CaArn;
use crate::error_parts;
use aws_smithy_types::retry::RetryConfig;

/// The PCA template that gives BasicConstraints critical CA:TRUE pathlen:0 and KeyUsage
/// critical digitalSignature, keyCertSign, cRLSign, subject and SAN from the CSR.
pub const PATHLEN0_TEMPLATE: &str = "template/SubordinateCACertificate_PathLen0/V1";
/// The template of TLS identities: CA:FALSE, KU digitalSignature+keyEncipherment, EKU
/// serverAuth+clientAuth, subject and SANs from the CSR.
pub const END_ENTITY_TEMPLATE: &str = "template/EndEntityCertificate/V1";

/// AWS Private CA as the [`Authority`]: one CA, PathLen0 intermediates by default, retried and paced to the IssueCertificate quota.
#[derive(Debug, Clone)]
pub struct PcaAuthority {
    pub(crate) client: Client,
    pub(crate) ca_arn: String,
    template_arn: String,
    end_entity_template_arn: String,
    signing_algorithm: Option<String>,
    resolved_signing: std::sync::Arc<std::sync::OnceLock<String>>,
    backoff: Backoff,
    budget: Option<std::sync::Arc<IssueBudget>>,
    /// Reads the CRLs the hierarchy publishes to S3; without it the authority offers none.
    crl_reader: Option<aws_sdk_s3::Client>,
    /// Where the CRLs of CAs above it that publish none to S3 (an offline root) were put.
    root_crls: Vec<crate::pca_crl::CrlLocation>,
}

/// Codes PCA (and the SDK) answer when a quota is exceeded.
fn is_throttle(code: &str) -> bool {
    matches!(
        code,
        "ThrottlingException"
            | "LimitExceededException"
            | "TooManyRequestsException"
            | "Throttling"
    )
}

impl PcaAuthority {
    /// `template_arn`: `None` takes PathLen0/V1 in the partition of the CA ARN.
    pub fn new(
        client: Client,
        ca_arn: impl Into<String>,
        template_arn: Option<String>,
    ) -> Result<Self, AuthorityError> {
        let ca_arn = ca_arn.into();
        let parsed: CaArn = ca_arn.parse().map_err(|_| AuthorityError::NotFound {
            id: ca_arn.clone(),
            detail: "not a certificate authority ARN (arn:<partition>:acm-pca:<region>:<account>:certificate-authority/<id>)".into(),
        })?;
        Ok(Self::for_ca(client, &parsed, template_arn))
    }

    /// For an ARN already parsed, with a client in the CA's own region made from `config`.
    pub fn from_config(
        config: &aws_config::SdkConfig,
        ca: &CaArn,
        template_arn: Option<String>,
    ) -> Self {
        let config = config
            .to_builder()
            .region(aws_config::Region::new(ca.region().to_string()))
            .build();
        // An endpoint of one's own (an emulator, a VPC endpoint by IP) has no bucket host names.
        let s3 = aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(config.endpoint_url().is_some())
            .build();
        Self::for_ca(Client::new(&config), ca, template_arn)
            .with_crl_reader(aws_sdk_s3::Client::from_conf(s3))
    }

    /// Reads the hierarchy's CRLs from S3 with `s3`, for CRL mode.
    pub fn with_crl_reader(mut self, s3: aws_sdk_s3::Client) -> Self {
        self.crl_reader = Some(s3);
        self
    }

    /// For an ARN already parsed.
    pub fn for_ca(client: Client, ca: &CaArn, template_arn: Option<String>) -> Self {
        let template_arn = template_arn
            .unwrap_or_else(|| format!("arn:{}:acm-pca:::{PATHLEN0_TEMPLATE}", ca.partition()));
        let end_entity_template_arn =
            format!("arn:{}:acm-pca:::{END_ENTITY_TEMPLATE}", ca.partition());
        PcaAuthority {
            client,
            ca_arn: ca.to_string(),
            template_arn,
            end_entity_template_arn,
            signing_algorithm: None,
            resolved_signing: Default::default(),
            backoff: Backoff::default(),
            budget: None,
            crl_reader: None,
            root_crls: Vec::new(),
        }
    }

    /// Takes the CRL of a CA above this one that names no CRL in S3 (an offline root, or one
    /// outside AWS) from one of `locations`, whichever its issuer signed.
    pub fn with_root_crls(mut self, locations: Vec<crate::pca_crl::CrlLocation>) -> Self {
        self.root_crls = locations;
        self
    }

    /// Overrides the signing algorithm otherwise derived from the CA's key.
    pub fn with_signing_algorithm(mut self, algorithm: Option<String>) -> Self {
        self.signing_algorithm = algorithm;
        self
    }

    /// Spaces every IssueCertificate attempt, retries included, by `budget`. A retry that
    /// skipped the queue would take the quota slot of the next call in line, which then is
    /// throttled in turn: under a quota, throttles cascade unless retries wait their turn.
    pub fn with_issue_budget(mut self, budget: std::sync::Arc<IssueBudget>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// How long and how often to wait out throttling and `RequestInProgressException`.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The template ARN for what is asked: the configured CA template, or EndEntityCertificate/V1.
    fn template_for(&self, template: meshca_core::Template) -> &str {
        match template {
            meshca_core::Template::SubordinateCaPathLen0 => &self.template_arn,
            meshca_core::Template::EndEntity => &self.end_entity_template_arn,
        }
    }

    /// The CA's ARN as configured.
    pub fn ca_arn(&self) -> &str {
        &self.ca_arn
    }

    /// IssueCertificate of a CA certificate was denied. The usual cause with a CA in another
    /// account: its AWS RAM share carries the default permission, which allows end-entity
    /// templates only; PathLen0 CA certificates need the subordinate-CA managed permission.
    fn denied_subordinate(&self, message: &str) -> AuthorityError {
        AuthorityError::Rejected {
            id: self.ca_arn.clone(),
            reason: format!(
                "IssueCertificate: AccessDeniedException: {message}. Issuing a PathLen0 CA certificate needs IAM permission for \
                 acm-pca:IssueCertificate with this template and, for a CA shared from another account through AWS RAM, a share \
                 with the managed permission {RAM_SUBORDINATE_PERMISSION} (the default share allows end-entity certificates only)"
            ),
        }
    }

    fn backend(&self, operation: &'static str, code: &str, message: &str) -> AuthorityError {
        match code {
            "ResourceNotFoundException" | "InvalidArnException" => AuthorityError::NotFound {
                id: self.ca_arn.clone(),
                detail: format!("{code}: {message}"),
            },
            "InvalidStateException" => AuthorityError::NotActive {
                id: self.ca_arn.clone(),
                status: format!("not usable ({message})"),
            },
            "MalformedCSRException"
            | "InvalidArgsException"
            | "ValidationException"
            | "InvalidRequestException" => AuthorityError::Rejected {
                id: self.ca_arn.clone(),
                reason: format!("{operation}: {code}: {message}"),
            },
            _ => AuthorityError::Backend {
                operation,
                detail: format!("{code}: {message}"),
            },
        }
    }

    fn signing_for(&self, key: &PcaKey) -> Result<String, AuthorityError> {
        if let Some(s) = &self.signing_algorithm {
            return Ok(s.clone());
        }
        Ok(match key {
            PcaKey::Rsa2048 | PcaKey::Rsa3072 | PcaKey::Rsa4096 => "SHA256WITHRSA",
            PcaKey::EcPrime256v1 => "SHA256WITHECDSA",
            PcaKey::EcSecp384r1 => "SHA384WITHECDSA",
            PcaKey::EcSecp521r1 => "SHA512WITHECDSA",
            other => {
                return Err(AuthorityError::Rejected {
                    id: self.ca_arn.clone(),
                    reason: format!("CA key algorithm {} has no signing algorithm meshca knows; set one explicitly", other.as_str()),
                });
            }
        }
        .to_string())
    }

    /// Sends `call` again while it fails with a code `retry` accepts, pausing with jittered
    /// backoff, until the deadline.
    async fn retrying<T, E, R, Fut>(
        &self,
        retry: fn(&str) -> bool,
        mut call: impl FnMut() -> Fut,
    ) -> Result<T, Stop>
    where
        Fut: Future<Output = Result<T, SdkError<E, R>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let mut attempts = self.backoff.start();
        loop {
            match call().await.map_err(|e| error_parts(&e)) {
                Ok(v) => return Ok(v),
                Err((code, _)) if retry(&code) => match attempts.next_pause() {
                    Some(pause) => tokio::time::sleep(pause).await,
                    None => {
                        return Err(Stop::Deadline {
                            code,
                            attempts: attempts.attempts(),
                            waited_ms: attempts.elapsed().as_millis(),
                        });
                    }
                },
                Err((code, message)) => return Err(Stop::Failed { code, message }),
            }
        }
    }

    /// The error for a call that stopped, by the general rules.
    fn stopped(&self, operation: &'static str, stop: Stop) -> AuthorityError {
        match stop {
            Stop::Deadline {
                attempts,
                waited_ms,
                ..
            } => AuthorityError::Throttled {
                operation,
                attempts,
                waited_ms,
            },
            Stop::Failed { code, message } => self.backend(operation, &code, &message),
        }
    }
}

/// Why a retried call stopped without an answer.
enum Stop {
    /// It was still failing with a retryable code when the deadline came.
    Deadline {
        code: String,
        attempts: u32,
        waited_ms: u128,
    },
    /// It failed in a way not worth retrying.
    Failed { code: String, message: String },
}

const IN_PROGRESS: &str = "RequestInProgressException";

/// The AWS RAM managed permission that lets an account issue PathLen0 subordinate CA
/// certificates from a CA shared with it.
pub const RAM_SUBORDINATE_PERMISSION: &str =
    "AWSRAMSubordinateCACertificatePathLen0IssuanceCertificateAuthority";

/// `0a1b…` → `0a:1b:…`, the form RevokeCertificate takes.
fn colon_serial(hex: &str) -> String {
    let padded = if hex.len() % 2 == 1 {
        format!("0{hex}")
    } else {
        hex.to_string()
    };
    padded
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect::<Vec<_>>()
        .join(":")
}

#[async_trait::async_trait]
impl Authority for PcaAuthority {
    async fn describe(&self) -> Result<AuthorityInfo, AuthorityError> {
        const DESCRIBE: &str = "DescribeCertificateAuthority";
        let ca = self.described().await?;
        let status = ca
            .status()
            .map_or("UNKNOWN", CertificateAuthorityStatus::as_str);
        if status != CertificateAuthorityStatus::Active.as_str() {
            return Err(AuthorityError::NotActive {
                id: self.ca_arn.clone(),
                status: status.to_string(),
            });
        }
        let config = ca.certificate_authority_configuration().ok_or_else(|| {
            self.backend(DESCRIBE, "Empty", "no CertificateAuthorityConfiguration")
        })?;
        let key = config.key_algorithm().clone();
        let signing_algorithm = self.signing_for(&key)?;
        let _ = self.resolved_signing.set(signing_algorithm.clone());

        let out = self.ca_certificate().await?;
        let corrupt = |reason: String| AuthorityError::Backend {
            operation: "GetCertificateAuthorityCertificate",
            detail: reason,
        };
        let ca_pem = out
            .certificate()
            .ok_or_else(|| corrupt("no Certificate".into()))?;
        let ca_der =
            pem::certificates("CA certificate", ca_pem).map_err(|e| corrupt(e.to_string()))?;
        let ca_cert = Certificate::from_der("CA certificate", ca_der[0].clone())
            .map_err(|e| corrupt(e.to_string()))?;
        // The trust anchor: for a root CA its own certificate; for a subordinate, the chain's
        // self-signed top.
        let mut all = vec![ca_cert.clone()];
        if let Some(chain) = out.certificate_chain().filter(|c| !c.trim().is_empty()) {
            for (i, der) in pem::certificates("CA chain", chain)
                .map_err(|e| corrupt(e.to_string()))?
                .into_iter()
                .enumerate()
            {
                all.push(
                    Certificate::from_der(&format!("CA chain certificate {}", i + 1), der)
                        .map_err(|e| corrupt(e.to_string()))?,
                );
            }
        }
        let roots: Vec<&Vec<u8>> = all
            .iter()
            .filter(|c| c.is_self_signed())
            .map(|c| &c.der)
            .collect();
        if roots.is_empty() {
            return Err(corrupt(format!(
                "the chain of {} does not reach a self-signed root",
                self.ca_arn
            )));
        }
        Ok(AuthorityInfo {
            id: self.ca_arn.clone(),
            key_description: key.as_str().to_string(),
            key_algorithm: ca_cert.key_algorithm.clone().ok(),
            signing_algorithm,
            root_bundle: pem::encode(CERTIFICATE, &roots),
            not_after: ca_cert.not_after,
        })
    }

    async fn issue(&self, request: &IssueRequest<'_>) -> Result<CertificateId, AuthorityError> {
        // describe() has normally run already in this reconcile and left the answer here.
        let info_key = match self.resolved_signing.get() {
            Some(s) => s.clone(),
            None => self.describe().await?.signing_algorithm,
        };
        let validity = match request.validity {
            Validity::Days(d) => aws_sdk_acmpca::types::Validity::builder()
                .r#type(ValidityPeriodType::Days)
                .value(d.into()),
            Validity::EndDate(t) => aws_sdk_acmpca::types::Validity::builder()
                .r#type(ValidityPeriodType::EndDate)
                .value(end_date_value(t)),
        }
        .build()
        .map_err(|e| AuthorityError::Rejected {
            id: self.ca_arn.clone(),
            reason: e.to_string(),
        })?;

        let out = self
            .retrying(is_throttle, || {
                let send = self
                    .client
                    .issue_certificate()
                    .certificate_authority_arn(&self.ca_arn)
                    .csr(Blob::new(request.csr_pem.as_bytes()))
                    .signing_algorithm(SigningAlgorithm::from(info_key.as_str()))
                    .template_arn(self.template_for(request.template))
                    .validity(validity.clone())
                    .idempotency_token(request.idempotency_token)
                    .customize()
                    // Paced: every attempt waits for a budget slot, so the SDK's own retries
                    // (which would spend quota unpaced) are off; `retrying` retries in slots.
                    .config_override(match &self.budget {
                        Some(_) => aws_sdk_acmpca::config::Builder::default()
                            .retry_config(RetryConfig::disabled()),
                        None => aws_sdk_acmpca::config::Builder::default(),
                    })
                    .send();
                let budget = self.budget.clone();
                async move {
                    if let Some(b) = &budget {
                        b.acquire().await;
                    }
                    let answer = send.await;
                    // Counted where the fleet's budget can see it: throttles cost slots.
                    match (&budget, &answer) {
                        (Some(b), Err(e)) if is_throttle(&error_parts(e).0) => b.note_throttled(),
                        (Some(b), Ok(_)) => b.note_accepted(),
                        _ => {}
                    }
                    answer
                }
            })
            .await
            .map_err(|stop| match stop {
                Stop::Failed { code, message }
                    if code == "AccessDeniedException"
                        && request.template == meshca_core::Template::SubordinateCaPathLen0 =>
                {
                    self.denied_subordinate(&message)
                }
                other => self.stopped("IssueCertificate", other),
            })?;
        let arn = out
            .certificate_arn
            .ok_or_else(|| self.backend("IssueCertificate", "Empty", "no CertificateArn"))?;
        Ok(CertificateId(arn))
    }

    async fn fetch(&self, id: &CertificateId) -> Result<Issued, AuthorityError> {
        let out = self
            .retrying(
                |code| code == IN_PROGRESS || is_throttle(code),
                || {
                    self.client
                        .get_certificate()
                        .certificate_authority_arn(&self.ca_arn)
                        .certificate_arn(&id.0)
                        .send()
                },
            )
            .await
            .map_err(|stop| match stop {
                Stop::Deadline {
                    code, waited_ms, ..
                } if code == IN_PROGRESS => AuthorityError::StillInProgress {
                    id: id.clone(),
                    waited_ms,
                },
                Stop::Failed { code, message }
                    if code == "ResourceNotFoundException" && message.contains(&id.0) =>
                {
                    AuthorityError::UnknownCertificate(id.clone())
                }
                other => self.stopped("GetCertificate", other),
            })?;
        let bad = |r: String| AuthorityError::Backend {
            operation: "GetCertificate",
            detail: r,
        };
        let cert = out
            .certificate()
            .ok_or_else(|| bad("no Certificate".into()))?;
        let certificate = pem::normalise("issued certificate", cert, CERTIFICATE)
            .map_err(|e| bad(e.to_string()))?;
        let chain = match out.certificate_chain().filter(|c| !c.trim().is_empty()) {
            Some(c) => pem::normalise("certificate chain", c, CERTIFICATE)
                .map_err(|e| bad(e.to_string()))?,
            None => String::new(),
        };
        Ok(Issued { certificate, chain })
    }

    async fn revoke(
        &self,
        id: &CertificateId,
        serial: &str,
        reason: RevocationReason,
    ) -> Result<(), AuthorityError> {
        let _ = id;
        self.retrying(is_throttle, || {
            self.client
                .revoke_certificate()
                .certificate_authority_arn(&self.ca_arn)
                .certificate_serial(colon_serial(serial))
                .revocation_reason(aws_sdk_acmpca::types::RevocationReason::from(
                    reason.as_pca(),
                ))
                .send()
        })
        .await
        .map(drop)
        .or_else(|stop| match stop {
            // Revoked before (a run that stopped after the call): the revocation stands.
            Stop::Failed { code, .. } if code == "RequestAlreadyProcessedException" => Ok(()),
            stop => Err(self.stopped("RevokeCertificate", stop)),
        })
    }

    /// In CRL mode, from a fresh audit report in the bucket of the CA's CRL configuration (see
    /// [`crate::pca_audit`]); otherwise, or when no report can be had, why not.
    async fn issued_with_subject(
        &self,
        subject: &[u8],
        now: OffsetDateTime,
    ) -> Result<Listing, AuthorityError> {
        let bucket = match &self.crl_reader {
            Some(_) => self
                .crl_configuration()
                .await?
                .and_then(|c| c.s3_bucket_name),
            None => None,
        };
        let (Some(s3), Some(bucket)) = (&self.crl_reader, bucket) else {
            return Ok(Listing::Unlisted(
                "a Private CA lists what it issued only in an audit report, which meshca reads in CRL mode (from the bucket of the CA's CRL configuration): find them in the CA's audit report and revoke them there".into(),
            ));
        };
        Ok(
            match self.audited_with_subject(s3, &bucket, subject, now).await {
                Ok(found) => Listing::Found(found),
                Err(why) => Listing::Unlisted(format!(
                    "{why}; find them in the CA's next audit report and revoke them there"
                )),
            },
        )
    }

    /// The CRL of the issuing CA, from its CRL configuration, then of each CA above it, from
    /// the distribution point in the certificate it signed: every CA of the chain a cluster
    /// intermediate presents. Each is checked (complete, signed by its CA, in force).
    async fn crl(&self) -> Result<Option<String>, AuthorityError> {
        let Some(s3) = &self.crl_reader else {
            return Ok(None);
        };
        let unusable = |reason: String| AuthorityError::Corrupt {
            authority: format!("certificate authority {} (for CRL mode)", self.ca_arn),
            reason,
        };
        let configured = self.crl_configuration().await?;
        let own = crate::pca_crl::CrlLocation::configured(&self.ca_arn, configured.as_ref())
            .map_err(unusable)?;
        let chain = self.ca_chain_pems().await?;
        let mut out = self.published(s3, &own, &chain[0]).await?;
        for pair in chain.windows(2) {
            let (below, issuer) = (&pair[0], &pair[1]);
            let der = pem::certificates("CA certificate", below)
                .map_err(|e| unusable(e.to_string()))?
                .remove(0);
            let at = meshca_core::crl::distribution_points(&der)
                .iter()
                .find_map(|u| crate::pca_crl::CrlLocation::from_url(u));
            let crl = match at {
                Some(at) => self.published(s3, &at, issuer).await?,
                None => self.root_crl(s3, issuer).await?.ok_or_else(|| {
                    unusable(format!(
                        "the CA above it publishes no CRL meshca can find: the certificate it signed names no CRL distribution point in S3 ({below_subject}); give that CA a CRL configuration, or, for a root kept offline, put its CRL in S3 and name it (--root-crl s3://BUCKET/KEY; MESHCA_ROOT_CRLS)",
                        below_subject = below.lines().nth(1).unwrap_or_default()
                    ))
                })?,
            };
            out.push_str(&crl);
        }
        Ok(Some(out))
    }
}

impl PcaAuthority {
    /// DescribeCertificateAuthority of the CA, retried while throttled.
    async fn described(
        &self,
    ) -> Result<aws_sdk_acmpca::types::CertificateAuthority, AuthorityError> {
        const DESCRIBE: &str = "DescribeCertificateAuthority";
        self.retrying(is_throttle, || {
            self.client
                .describe_certificate_authority()
                .certificate_authority_arn(&self.ca_arn)
                .send()
        })
        .await
        .map_err(|stop| self.stopped(DESCRIBE, stop))?
        .certificate_authority
        .ok_or_else(|| self.backend(DESCRIBE, "Empty", "no CA in answer"))
    }

    /// GetCertificateAuthorityCertificate of the CA, retried while throttled.
    async fn ca_certificate(
        &self,
    ) -> Result<
        aws_sdk_acmpca::operation::get_certificate_authority_certificate::GetCertificateAuthorityCertificateOutput,
        AuthorityError,
    >{
        self.retrying(is_throttle, || {
            self.client
                .get_certificate_authority_certificate()
                .certificate_authority_arn(&self.ca_arn)
                .send()
        })
        .await
        .map_err(|stop| self.stopped("GetCertificateAuthorityCertificate", stop))
    }

    /// The CA's CRL configuration, as DescribeCertificateAuthority gives it.
    async fn crl_configuration(
        &self,
    ) -> Result<Option<aws_sdk_acmpca::types::CrlConfiguration>, AuthorityError> {
        Ok(self
            .described()
            .await?
            .revocation_configuration
            .and_then(|r| r.crl_configuration))
    }

    /// The CA's certificate, then each above it up to the root, one PEM each.
    async fn ca_chain_pems(&self) -> Result<Vec<String>, AuthorityError> {
        const GET: &str = "GetCertificateAuthorityCertificate";
        let out = self.ca_certificate().await?;
        let corrupt = |detail: String| AuthorityError::Backend {
            operation: GET,
            detail,
        };
        let text = format!(
            "{}\n{}",
            out.certificate().unwrap_or_default(),
            out.certificate_chain().unwrap_or_default()
        );
        let ders = pem::certificates("CA chain", &text).map_err(|e| corrupt(e.to_string()))?;
        if ders.is_empty() {
            return Err(corrupt("no Certificate".into()));
        }
        Ok(ders
            .iter()
            .map(|d| pem::encode(CERTIFICATE, std::slice::from_ref(d)))
            .collect())
    }

    /// The CRL of `issuer_pem`'s CA among the root CRLs named: the first one it signed that is
    /// in force. A named CRL that is unreadable, another CA's or lapsed is passed over; if none
    /// serves, the last reason is the error (a lapsed offline CRL says so).
    async fn root_crl(
        &self,
        s3: &aws_sdk_s3::Client,
        issuer_pem: &str,
    ) -> Result<Option<String>, AuthorityError> {
        let mut last = None;
        for at in &self.root_crls {
            match self.published(s3, at, issuer_pem).await {
                Ok(pem) => return Ok(Some(pem)),
                Err(e) => last = Some(e),
            }
        }
        last.map_or(Ok(None), Err)
    }

    /// The CRL at `at`, checked as issued by `issuer_pem`'s CA, in PEM.
    async fn published(
        &self,
        s3: &aws_sdk_s3::Client,
        at: &crate::pca_crl::CrlLocation,
        issuer_pem: &str,
    ) -> Result<String, AuthorityError> {
        let der = crate::pca_crl::read(s3, at)
            .await
            .map_err(|detail| AuthorityError::Backend {
                operation: "GetObject",
                detail,
            })?;
        meshca_core::crl::published(&at.to_string(), &der, issuer_pem, OffsetDateTime::now_utc())
            .map_err(|e| AuthorityError::Corrupt {
                authority: format!("certificate authority {} (for CRL mode)", self.ca_arn),
                reason: e.to_string(),
            })
    }
}

/// PCA's END_DATE validity is the integer YYYYMMDDHHMMSS in UTC.
fn end_date_value(t: OffsetDateTime) -> i64 {
    let t = t.to_offset(time::UtcOffset::UTC);
    let s = format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    s.parse().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_is_taken_from_the_partition_of_the_ca() {
        let conf = aws_sdk_acmpca::Config::builder()
            .behavior_version(aws_sdk_acmpca::config::BehaviorVersion::latest())
            .build();
        let client = Client::from_conf(conf);
        let gov = PcaAuthority::new(
            client.clone(),
            "arn:aws-us-gov:acm-pca:us-gov-west-1:1:certificate-authority/abc",
            None,
        )
        .unwrap();
        assert_eq!(
            gov.template_arn,
            "arn:aws-us-gov:acm-pca:::template/SubordinateCACertificate_PathLen0/V1"
        );
        assert_eq!(
            gov.template_for(meshca_core::Template::EndEntity),
            "arn:aws-us-gov:acm-pca:::template/EndEntityCertificate/V1"
        );
        assert!(
            PcaAuthority::new(
                client.clone(),
                "arn:aws:acm:eu-west-1:1:certificate/abc",
                None
            )
            .is_err()
        );
        assert!(PcaAuthority::new(client, "not-an-arn", None).is_err());
    }

    #[test]
    fn serial_and_end_date_formats() {
        assert_eq!(colon_serial("abc"), "0a:bc");
        assert_eq!(colon_serial("0a1b"), "0a:1b");
        assert_eq!(
            end_date_value(time::macros::datetime!(2027-03-04 05:06:07 UTC)),
            20270304050607
        );
    }
}
