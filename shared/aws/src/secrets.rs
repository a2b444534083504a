//! Secrets Manager as the [`Escrow`]: one secret per cluster, each version a JSON record.
//!
//! Versions are immutable and keyed by ClientRequestToken, which gives the conditional write
//! the pipeline needs: the pending record of a generation is written with the generation token
//! as its ClientRequestToken and stage AWSPENDING; the same token with other data is refused
//! by Secrets Manager (ResourceExistsException), which is exactly "another run owns this
//! generation". Recording the certificate ARN and promoting write new versions with tokens
//! derived from the generation token, and move the AWSPENDING / AWSCURRENT stages.

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::types::Tag;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use std::collections::BTreeMap;

use aws_sdk_secretsmanager::types::SecretListEntry;
use meshca_core::escrow::{
    Claim, Current, Escrow, EscrowError, EscrowKey, Escrowed, Pending, Summary,
};

use crate::error_parts;

/// Secrets Manager's limit on a SecretString.
pub const MAX_SECRET_BYTES: usize = 65_536;

const CURRENT: &str = "AWSCURRENT";
const PENDING: &str = "AWSPENDING";

/// A version's content: what state the generation was in when it was written.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
enum Record {
    Pending(Box<Pending>),
    Current(Box<Current>),
}

#[derive(Debug, Clone)]
pub struct SecretsEscrow {
    client: Client,
    prefix: String,
    kms_key_id: Option<String>,
    tags: Vec<(String, String)>,
    recovery_window_days: i64,
    /// Secrets this instance has read a record from. A claim on one writes its version at once:
    /// a renewal's CreateSecret would only be refused (the secret exists), one call of ~14.
    known: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

impl SecretsEscrow {
    /// `prefix` is the name prefix, e.g. `meshca/eu-west-1`; the secret is `<prefix>/<cluster>`.
    pub fn new(client: Client, prefix: impl Into<String>) -> Self {
        SecretsEscrow {
            client,
            prefix: prefix.into().trim_end_matches('/').to_string(),
            kms_key_id: None,
            tags: Vec::new(),
            recovery_window_days: 30,
            known: Default::default(),
        }
    }

    /// A client in the region of `config`.
    pub fn from_config(config: &aws_config::SdkConfig, prefix: impl Into<String>) -> Self {
        Self::new(Client::new(config), prefix)
    }

    /// The text of any secret (not an escrow record): what a function reads its own credentials
    /// from, such as a Vault AppRole secret id.
    pub async fn read_string(
        config: &aws_config::SdkConfig,
        secret_id: &str,
    ) -> Result<zeroize::Zeroizing<String>, String> {
        let out = Client::new(config)
            .get_secret_value()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|e| {
                let (code, message) = error_parts(&e);
                format!("reading secret {secret_id}: {code}: {message}")
            })?;
        let text = out
            .secret_string()
            .ok_or_else(|| format!("secret {secret_id} holds no string"))?;
        Ok(zeroize::Zeroizing::new(text.trim().to_string()))
    }

    /// The default prefix for a region: `meshca/<region>`.
    pub fn default_prefix(region: &str) -> String {
        format!("meshca/{region}")
    }

    pub fn with_kms_key(mut self, key_id: Option<String>) -> Self {
        self.kms_key_id = key_id;
        self
    }

    pub fn with_tags(mut self, tags: Vec<(String, String)>) -> Self {
        self.tags = tags;
        self
    }

    /// Days a retired record stays recoverable (Secrets Manager allows 7–30).
    pub fn with_recovery_window(mut self, days: i64) -> Self {
        self.recovery_window_days = days.clamp(7, 30);
        self
    }

    pub fn secret_name(&self, cluster: &EscrowKey) -> String {
        format!("{}/{cluster}", self.prefix)
    }

    fn backend(operation: &'static str, cluster: &EscrowKey, detail: String) -> EscrowError {
        EscrowError::Backend {
            operation,
            cluster: cluster.to_string(),
            detail,
        }
    }

    /// The answer, or `None` when the call failed with the one code that means "already so"
    /// (the secret exists, the version exists, nothing to delete); any other failure is an error.
    fn tolerating<T, E, R>(
        &self,
        result: Result<T, SdkError<E, R>>,
        tolerated: &str,
        operation: &'static str,
        cluster: &EscrowKey,
    ) -> Result<Option<T>, EscrowError>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        match result {
            Ok(v) => Ok(Some(v)),
            Err(e) => match error_parts(&e) {
                (code, _) if code == tolerated => Ok(None),
                // Secrets Manager's answer for a secret scheduled for deletion.
                (code, message)
                    if code == "InvalidRequestException" && message.contains("deleted") =>
                {
                    Err(EscrowError::Retired {
                        cluster: cluster.to_string(),
                        secret: self.secret_name(cluster),
                    })
                }
                (code, message) => Err(Self::backend(
                    operation,
                    cluster,
                    format!("{code}: {message}"),
                )),
            },
        }
    }

    #[allow(
        clippy::expect_used,
        reason = "records of strings and numbers always serialise"
    )]
    fn encode(
        cluster: &EscrowKey,
        record: &Record,
    ) -> Result<zeroize::Zeroizing<String>, EscrowError> {
        let json =
            zeroize::Zeroizing::new(serde_json::to_string(record).expect("records serialise"));
        if json.len() > MAX_SECRET_BYTES {
            return Err(EscrowError::TooLarge {
                cluster: cluster.to_string(),
                size: json.len(),
                limit: MAX_SECRET_BYTES,
            });
        }
        Ok(json)
    }

    /// The record at a stage or version; `None` when the secret or that stage does not exist.
    async fn read(
        &self,
        cluster: &EscrowKey,
        stage: Option<&str>,
        version: Option<&str>,
    ) -> Result<Option<(Record, String)>, EscrowError> {
        let mut req = self
            .client
            .get_secret_value()
            .secret_id(self.secret_name(cluster));
        if let Some(s) = stage {
            req = req.version_stage(s);
        }
        if let Some(v) = version {
            req = req.version_id(v);
        }
        match self.tolerating(
            req.send().await,
            "ResourceNotFoundException",
            "read",
            cluster,
        )? {
            None => Ok(None),
            Some(out) => {
                self.remember(cluster);
                let text =
                    zeroize::Zeroizing::new(out.secret_string().unwrap_or_default().to_string());
                let record: Record =
                    serde_json::from_str(&text).map_err(|e| EscrowError::Corrupt {
                        cluster: cluster.to_string(),
                        reason: format!(
                            "{} version {}: {e}",
                            self.secret_name(cluster),
                            out.version_id().unwrap_or("?")
                        ),
                    })?;
                Ok(Some((
                    record,
                    out.version_id().unwrap_or_default().to_string(),
                )))
            }
        }
    }

    async fn ensure_secret(&self, cluster: &EscrowKey) -> Result<(), EscrowError> {
        let mut tags = vec![
            Tag::builder()
                .key("app.kubernetes.io/managed-by")
                .value("meshca")
                .build(),
            Tag::builder()
                .key("meshca:cluster")
                .value(cluster.cluster.as_str())
                .build(),
        ];
        if cluster.kind != meshca_core::Kind::IstioCacerts {
            tags.push(
                Tag::builder()
                    .key("meshca:kind")
                    .value(cluster.kind.name())
                    .build(),
            );
        }
        tags.extend(
            self.tags
                .iter()
                .map(|(k, v)| Tag::builder().key(k).value(v).build()),
        );
        let mut req = self
            .client
            .create_secret()
            .name(self.secret_name(cluster))
            .description(match cluster.kind {
                meshca_core::Kind::IstioCacerts => format!(
                    "meshca escrow: Istio intermediate CA of cluster {}",
                    cluster.cluster
                ),
                kind => format!("meshca escrow: {kind} of cluster {}", cluster.cluster),
            })
            .set_tags(Some(tags));
        if let Some(k) = &self.kms_key_id {
            req = req.kms_key_id(k);
        }
        self.tolerating(
            req.send().await,
            "ResourceExistsException",
            "create",
            cluster,
        )
        .map(drop)
    }

    /// Notes that `cluster`'s secret exists.
    fn remember(&self, cluster: &EscrowKey) {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(self.secret_name(cluster));
    }

    /// Drops `cluster`'s secret from those known to exist; whether it was there.
    fn forget(&self, cluster: &EscrowKey) -> bool {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.secret_name(cluster))
    }

    /// The pending version written, creating the secret first unless this instance has read
    /// it (and then too if it is gone since).
    async fn put_pending(&self, pending: &Pending, record: &Record) -> Result<bool, EscrowError> {
        let cluster = &pending.key();
        let known = self
            .known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&self.secret_name(cluster));
        if !known {
            self.ensure_secret(cluster).await?;
        }
        match self
            .put(cluster, pending.token.as_str(), record, PENDING)
            .await
        {
            Err(EscrowError::Backend { detail, .. })
                if known
                    && detail.starts_with("ResourceNotFoundException")
                    && self.forget(cluster) =>
            {
                self.ensure_secret(cluster).await?;
                self.put(cluster, pending.token.as_str(), record, PENDING)
                    .await
            }
            written => written,
        }
    }

    /// Writes a version; `Ok(false)` when the token already names a version with other data.
    async fn put(
        &self,
        cluster: &EscrowKey,
        token: &str,
        record: &Record,
        stage: &str,
    ) -> Result<bool, EscrowError> {
        let json = Self::encode(cluster, record)?;
        let sent = self
            .client
            .put_secret_value()
            .secret_id(self.secret_name(cluster))
            .client_request_token(token)
            .secret_string(json.as_str())
            .version_stages(stage)
            .send()
            .await;
        Ok(self
            .tolerating(sent, "ResourceExistsException", "write", cluster)?
            .is_some())
    }

    /// ListSecrets under `<prefix>/` (secrets scheduled for deletion are not listed): entries one
    /// level down whose names read as keys; the rotation record and deeper names (a member
    /// account's records under the same base) are not this escrow's.
    async fn listed(&self) -> Result<Vec<(EscrowKey, SecretListEntry)>, EscrowError> {
        use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
        let start = format!("{}/", self.prefix);
        let filter = Filter::builder()
            .key(FilterNameStringType::Name)
            .values(&start)
            .build();
        let mut pages = self
            .client
            .list_secrets()
            .filters(filter)
            .max_results(100)
            .into_paginator()
            .send();
        let mut listed = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                let (code, message) = error_parts(&e);
                EscrowError::Backend {
                    operation: "ListSecrets",
                    cluster: format!("{start}*"),
                    detail: format!("{code}: {message}"),
                }
            })?;
            for entry in page.secret_list.unwrap_or_default() {
                let key = entry
                    .name()
                    .and_then(|n| n.strip_prefix(&start))
                    .and_then(|rest| rest.parse::<EscrowKey>().ok());
                if let Some(key) = key {
                    listed.push((key, entry));
                }
            }
        }
        Ok(listed)
    }

    /// Puts the summary of `current` on its secret as tags (replacing the last generation's).
    async fn tag_summary(&self, current: &Current) -> Result<(), EscrowError> {
        let cluster = &current.key();
        let Some(summary) = Summary::of(current) else {
            return Ok(());
        };
        let tags: Vec<Tag> = summary_tags(&summary)
            .into_iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        let sent = self
            .client
            .tag_resource()
            .secret_id(self.secret_name(cluster))
            .set_tags(Some(tags))
            .send()
            .await;
        sent.map(drop).map_err(|e| {
            let (code, message) = error_parts(&e);
            Self::backend("tag", cluster, format!("{code}: {message}"))
        })
    }

    /// Removes AWSPENDING from `version`; `false` if it was not on it (or the call failed).
    async fn unstage_pending(&self, cluster: &EscrowKey, version: &str) -> bool {
        let sent = self
            .client
            .update_secret_version_stage()
            .secret_id(self.secret_name(cluster))
            .version_stage(PENDING)
            .remove_from_version_id(version)
            .send()
            .await;
        sent.is_ok()
    }

    async fn current_generation(&self, cluster: &EscrowKey) -> Result<u64, EscrowError> {
        Ok(match self.read(cluster, Some(CURRENT), None).await? {
            Some((Record::Current(c), _)) => c.meta.generation,
            _ => 0,
        })
    }
}

#[async_trait::async_trait]
impl Escrow for SecretsEscrow {
    /// ListSecrets under `<prefix>/` (secrets scheduled for deletion are not listed): names one
    /// level down that read as keys; the rotation record and deeper names (a member account's
    /// records under the same base) are not this escrow's.
    async fn keys(&self) -> Result<Vec<EscrowKey>, EscrowError> {
        let mut keys: Vec<EscrowKey> = self
            .listed()
            .await?
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// From the same listing (100 secrets a call): the summary tags `promote` writes, and
    /// whether any version is staged AWSPENDING (a generation may be in flight).
    async fn summaries(&self) -> Result<BTreeMap<EscrowKey, Option<Summary>>, EscrowError> {
        let listed = self.listed().await?;
        Ok(listed
            .into_iter()
            .map(|(key, entry)| (key, summary_of(&entry)))
            .collect())
    }

    async fn summarise(&self, key: &EscrowKey) -> Result<(), EscrowError> {
        match self.read(key, Some(CURRENT), None).await? {
            Some((Record::Current(current), _)) => self.tag_summary(&current).await,
            _ => Ok(()),
        }
    }

    async fn load(&self, cluster: &EscrowKey) -> Result<Escrowed, EscrowError> {
        let mut escrowed = Escrowed::default();
        // A brand-new secret's first version is AWSCURRENT whatever we asked, so AWSCURRENT
        // may hold a pending record.
        match self.read(cluster, Some(CURRENT), None).await? {
            Some((Record::Current(c), _)) => escrowed.current = Some(*c),
            Some((Record::Pending(p), _)) => escrowed.pending = Some(*p),
            None => {}
        }
        if let Some((Record::Pending(p), _)) = self.read(cluster, Some(PENDING), None).await? {
            escrowed.pending = Some(*p);
        }
        let done = escrowed.current.as_ref().map_or(0, |c| c.meta.generation);
        escrowed.pending = escrowed.pending.filter(|p| p.generation > done);
        Ok(escrowed)
    }

    async fn claim(&self, pending: &Pending) -> Result<Claim, EscrowError> {
        let cluster = &pending.key();
        let record = Record::Pending(Box::new(pending.clone()));
        if !self.put_pending(pending, &record).await? {
            return match self
                .read(cluster, None, Some(pending.token.as_str()))
                .await?
            {
                Some((Record::Pending(theirs), _)) => Ok(Claim::Lost(theirs)),
                _ => Err(EscrowError::Conflict {
                    cluster: cluster.to_string(),
                    generation: pending.generation,
                    token: pending.token.to_string(),
                }),
            };
        }
        let done = self.current_generation(cluster).await?;
        if done >= pending.generation {
            return Err(EscrowError::Conflict {
                cluster: cluster.to_string(),
                generation: done,
                token: "already promoted".into(),
            });
        }
        Ok(Claim::Won)
    }

    async fn record_issued(&self, pending: &Pending) -> Result<(), EscrowError> {
        let cluster = &pending.key();
        let record = Record::Pending(Box::new(pending.clone()));
        let step = pending.token.for_step(match pending.refused {
            None => "issued",
            Some(_) => "refused",
        });
        if self.put(cluster, &step, &record, PENDING).await? {
            return Ok(());
        }
        // Someone recorded this step already: fine if it is the same certificate.
        match self.read(cluster, None, Some(&step)).await? {
            Some((Record::Pending(p), _))
                if p.certificate_id == pending.certificate_id
                    && p.refused.is_some() == pending.refused.is_some() =>
            {
                Ok(())
            }
            _ => Err(EscrowError::Conflict {
                cluster: cluster.to_string(),
                generation: pending.generation,
                token: pending.token.to_string(),
            }),
        }
    }

    async fn promote(&self, current: &Current) -> Result<(), EscrowError> {
        let cluster = &current.key();
        if let Some((Record::Current(existing), _)) =
            self.read(cluster, Some(CURRENT), None).await?
        {
            if existing.token == current.token {
                // A rerun after a crash between the write and the tags.
                return self.tag_summary(&existing).await;
            }
            if existing.meta.generation > current.meta.generation {
                return Ok(());
            }
        }
        let record = Record::Current(Box::new(current.clone()));
        self.put(
            cluster,
            &current.token.for_step("current"),
            &record,
            CURRENT,
        )
        .await?;
        self.tag_summary(current).await?;
        // Take AWSPENDING off the finished generation so the next load (and the summary's
        // `pending`) does not see it. It is on the version the `issued` step wrote — a version's
        // id is the token it was written with — so no read is needed; otherwise, look.
        if !self
            .unstage_pending(cluster, &current.token.for_step("issued"))
            .await
            && let Some((Record::Pending(p), version)) =
                self.read(cluster, Some(PENDING), None).await?
            && p.generation <= current.meta.generation
        {
            self.unstage_pending(cluster, &version).await;
        }
        Ok(())
    }

    /// A new version in service; the summary's files tag is removed, so the record is read
    /// (and judged revoked) rather than kept from its summary if it is ever restored.
    async fn mark_revoked(&self, current: &Current) -> Result<(), EscrowError> {
        let cluster = &current.key();
        let record = Record::Current(Box::new(current.clone()));
        // One version per state the revocation passes through (held, confirmed, lifted): the
        // same token for two of them would make Secrets Manager keep the first and drop the rest.
        let step = match &current.revoked {
            Some(r) if r.held || r.authority_pending => format!(
                "revoked/{}/{}/{}/{}",
                r.at.unix_timestamp(),
                r.reason,
                r.held,
                r.authority_pending
            ),
            _ => "revoked".to_string(),
        };
        self.put(cluster, &current.token.for_step(&step), &record, CURRENT)
            .await?;
        let sent = self
            .client
            .untag_resource()
            .secret_id(self.secret_name(cluster))
            .tag_keys(FILES_TAG)
            .send()
            .await;
        sent.map(drop).map_err(|e| {
            let (code, message) = error_parts(&e);
            Self::backend("untag", cluster, format!("{code}: {message}"))
        })
    }

    async fn retire(&self, cluster: &EscrowKey) -> Result<(), EscrowError> {
        self.forget(cluster);
        let sent = self
            .client
            .delete_secret()
            .secret_id(self.secret_name(cluster))
            .recovery_window_in_days(self.recovery_window_days)
            .send()
            .await;
        self.tolerating(sent, "ResourceNotFoundException", "retire", cluster)
            .map(drop)
    }
}

/// The summary's tags. Values are what an operator reads in the console too.
const GENERATION_TAG: &str = "meshca:generation";
const NOT_BEFORE_TAG: &str = "meshca:not-before";
const NOT_AFTER_TAG: &str = "meshca:not-after";
const ISSUER_TAG: &str = "meshca:issuer";
const ROOT_TAG: &str = "meshca:root-sha256";
const FILES_TAG: &str = "meshca:files-sha256";
/// Secrets Manager's limit on a tag value; a longer issuer id leaves the record unsummarised.
const MAX_TAG_VALUE: usize = 256;

fn summary_tags(s: &Summary) -> Vec<(&'static str, String)> {
    let time = |t| meshca_core::timestamp::rfc3339(t);
    let mut tags = vec![
        (GENERATION_TAG, s.generation.to_string()),
        (NOT_BEFORE_TAG, time(s.not_before)),
        (NOT_AFTER_TAG, time(s.not_after)),
        (ROOT_TAG, s.root_sha256.clone()),
        (FILES_TAG, s.files_sha256.clone()),
    ];
    if s.authority_id.len() <= MAX_TAG_VALUE {
        tags.push((ISSUER_TAG, s.authority_id.clone()));
    }
    tags
}

/// The summary a listed secret carries, if all its tags are there and read.
fn summary_of(entry: &SecretListEntry) -> Option<Summary> {
    let tag = |key: &str| {
        entry
            .tags()
            .iter()
            .find(|t| t.key() == Some(key))
            .and_then(|t| t.value())
    };
    let time = |key: &str| {
        time::OffsetDateTime::parse(tag(key)?, &time::format_description::well_known::Rfc3339).ok()
    };
    let pending = entry
        .secret_versions_to_stages()
        .is_some_and(|v| v.values().any(|stages| stages.iter().any(|s| s == PENDING)));
    Some(Summary {
        generation: tag(GENERATION_TAG)?.parse().ok()?,
        not_before: time(NOT_BEFORE_TAG)?,
        not_after: time(NOT_AFTER_TAG)?,
        authority_id: tag(ISSUER_TAG)?.to_string(),
        root_sha256: tag(ROOT_TAG)?.to_string(),
        files_sha256: tag(FILES_TAG)?.to_string(),
        pending,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshca_core::escrow::GenerationToken;
    use meshca_core::key::{KeyAlgorithm, PrivateKey};

    #[test]
    fn records_over_64_kib_are_refused_before_any_call() {
        let name: meshca_core::ClusterName = "big".parse().unwrap();
        let cluster = EscrowKey::from(&name);
        let key = PrivateKey::generate(KeyAlgorithm::EcP256).unwrap();
        let mut pending = Pending {
            schema: meshca_core::escrow::SCHEMA,
            cluster: name.clone(),
            kind: meshca_core::Kind::IstioCacerts,
            generation: 1,
            token: GenerationToken::derive("x", &cluster, 1),
            authority_id: "x".into(),
            key_algorithm: KeyAlgorithm::EcP256,
            ca_key: key.to_pkcs8_pem(),
            csr: "c".repeat(70_000),
            certificate_id: None,
            validity: None,
            refused: None,
            created_at: time::OffsetDateTime::UNIX_EPOCH,
        };
        let e = SecretsEscrow::encode(&cluster, &Record::Pending(Box::new(pending.clone())))
            .unwrap_err();
        assert!(
            matches!(e, EscrowError::TooLarge { limit: 65_536, .. }),
            "{e}"
        );
        pending.csr = "c".repeat(100);
        let json = SecretsEscrow::encode(&cluster, &Record::Pending(Box::new(pending))).unwrap();
        assert!(json.contains("\"state\":\"pending\""));
    }

    #[test]
    fn step_tokens_fit_secrets_manager_and_differ_per_step() {
        let c: meshca_core::ClusterName = "c".parse().unwrap();
        let t = GenerationToken::derive("a", &c, 1);
        let (i, c) = (t.for_step("issued"), t.for_step("current"));
        assert_ne!(i, c);
        assert!((32..=64).contains(&i.len()));
    }
}
