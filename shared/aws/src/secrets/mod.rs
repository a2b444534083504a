//! Secrets Manager as the [`Escrow`]: one secret per cluster, every kind of the cluster in it,
//! each version one kind's JSON record.
//!
//! Versions are immutable and keyed by ClientRequestToken, which gives the conditional write
//! the pipeline needs: the pending record of a generation is written with the generation token
//! as its ClientRequestToken under the kind's pending label; the same token with other data is
//! refused by Secrets Manager (ResourceExistsException), which is exactly "another run owns this
//! generation". Recording the certificate ARN and promoting write new versions with tokens
//! derived from the generation token, and move the kind's labels (`layout.rs`).
//!
//! Kinds other than istio-cacerts once had a secret each (`<prefix>/<cluster>.<kind>`); such a
//! record is read where it is and moved into the cluster's secret before its next write
//! (`adoption.rs`).

mod adoption;
mod layout;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::types::Tag;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use std::collections::{BTreeMap, HashMap};

use aws_sdk_secretsmanager::types::SecretListEntry;
use meshca_core::Kind;
use meshca_core::escrow::{
    Claim, Current, Escrow, EscrowError, EscrowKey, Escrowed, Pending, Summary,
};

use layout::Labels;

use crate::error_parts;

/// Secrets Manager's limit on a SecretString.
pub const MAX_SECRET_BYTES: usize = 65_536;

/// A version's content: what state the generation was in when it was written.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
enum Record {
    Pending(Box<Pending>),
    Current(Box<Current>),
    /// The version a secret is created with ([`layout::placeholder_version`]): no kind's record.
    Placeholder {
        schema: u32,
    },
}

impl Record {
    /// The record if it is `key`'s kind: a secret holds every kind of its cluster.
    fn of_kind(self, kind: Kind) -> Option<Self> {
        match &self {
            Record::Pending(p) if p.kind == kind => Some(self),
            Record::Current(c) if c.kind == kind => Some(self),
            _ => None,
        }
    }
}

/// Secrets Manager as the [`Escrow`]: one secret per cluster under a prefix (see the module).
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
    /// Keys found in a secret of their own (the layout before kinds shared one): moved into the
    /// cluster's secret before their next write.
    apart: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<EscrowKey>>>,
    /// This instance has listed the escrow: a kind kept apart would have been seen there, so a
    /// load need not look for one (a sweep's reconciles save a read per kind).
    listed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl SecretsEscrow {
    /// `prefix` is the name prefix, e.g. `meshca/eu-west-1`; a cluster's secret is
    /// `<prefix>/<cluster>`.
    pub fn new(client: Client, prefix: impl Into<String>) -> Self {
        SecretsEscrow {
            client,
            prefix: prefix.into().trim_end_matches('/').to_string(),
            kms_key_id: None,
            tags: Vec::new(),
            recovery_window_days: 30,
            known: Default::default(),
            apart: Default::default(),
            listed: Default::default(),
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

    /// Encrypts new secrets with this KMS key (default: the account's `aws/secretsmanager` key).
    pub fn with_kms_key(mut self, key_id: Option<String>) -> Self {
        self.kms_key_id = key_id;
        self
    }

    /// Tags every new secret carries beside meshca's own (a deployment's cost-allocation tags).
    pub fn with_tags(mut self, tags: Vec<(String, String)>) -> Self {
        self.tags = tags;
        self
    }

    /// Days a retired record stays recoverable (Secrets Manager allows 7–30).
    pub fn with_recovery_window(mut self, days: i64) -> Self {
        self.recovery_window_days = days.clamp(7, 30);
        self
    }

    /// The secret that holds every kind of `key`'s cluster.
    pub fn secret_name(&self, key: &EscrowKey) -> String {
        format!("{}/{}", self.prefix, key.cluster)
    }

    /// Where a kind other than istio-cacerts was kept before kinds shared a secret.
    pub fn secret_name_apart(&self, key: &EscrowKey) -> String {
        format!("{}/{key}", self.prefix)
    }

    fn backend(operation: &'static str, cluster: &EscrowKey, detail: String) -> EscrowError {
        EscrowError::Backend {
            operation,
            cluster: cluster.to_string(),
            detail,
        }
    }

    fn failed<E, R>(operation: &'static str, key: &EscrowKey, e: &SdkError<E, R>) -> EscrowError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let (code, message) = error_parts(e);
        Self::backend(operation, key, format!("{code}: {message}"))
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

    /// `key`'s record in its cluster's secret at a label or version; `None` when the secret,
    /// the label or the version does not exist, or holds another kind's record.
    async fn read(
        &self,
        key: &EscrowKey,
        stage: Option<&str>,
        version: Option<&str>,
    ) -> Result<Option<(Record, String)>, EscrowError> {
        self.read_from(&self.secret_name(key), key, stage, version)
            .await
    }

    /// `key`'s record in the secret `name`.
    async fn read_from(
        &self,
        name: &str,
        key: &EscrowKey,
        stage: Option<&str>,
        version: Option<&str>,
    ) -> Result<Option<(Record, String)>, EscrowError> {
        let mut req = self.client.get_secret_value().secret_id(name);
        if let Some(s) = stage {
            req = req.version_stage(s);
        }
        if let Some(v) = version {
            req = req.version_id(v);
        }
        let Some(out) =
            self.tolerating(req.send().await, "ResourceNotFoundException", "read", key)?
        else {
            return Ok(None);
        };
        self.remember(name);
        let text = zeroize::Zeroizing::new(out.secret_string().unwrap_or_default().to_string());
        let record: Record = serde_json::from_str(&text).map_err(|e| EscrowError::Corrupt {
            cluster: key.to_string(),
            reason: format!("{name} version {}: {e}", out.version_id().unwrap_or("?")),
        })?;
        let version = out.version_id().unwrap_or_default().to_string();
        Ok(record.of_kind(key.kind).map(|r| (r, version)))
    }

    /// Creates the cluster's secret, with its placeholder version (AWSCURRENT has to be on some
    /// version; not on another kind's record).
    async fn ensure_secret(&self, key: &EscrowKey) -> Result<(), EscrowError> {
        let mut tags = vec![
            Tag::builder()
                .key("app.kubernetes.io/managed-by")
                .value("meshca")
                .build(),
            Tag::builder()
                .key("meshca:cluster")
                .value(key.cluster.as_str())
                .build(),
        ];
        tags.extend(
            self.tags
                .iter()
                .map(|(k, v)| Tag::builder().key(k).value(v).build()),
        );
        let placeholder = Self::encode(
            key,
            &Record::Placeholder {
                schema: meshca_core::escrow::SCHEMA,
            },
        )?;
        let mut req = self
            .client
            .create_secret()
            .name(self.secret_name(key))
            .description(format!(
                "meshca escrow: the certificate authorities meshca keeps for cluster {}",
                key.cluster
            ))
            .client_request_token(layout::placeholder_version(&key.cluster))
            .secret_string(placeholder.as_str())
            .set_tags(Some(tags));
        if let Some(k) = &self.kms_key_id {
            req = req.kms_key_id(k);
        }
        self.tolerating(req.send().await, "ResourceExistsException", "create", key)
            .map(drop)
    }

    /// Notes that the secret `name` exists.
    fn remember(&self, name: &str) {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string());
    }

    /// Drops `key`'s secret from those known to exist; whether it was there.
    fn forget(&self, key: &EscrowKey) -> bool {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.secret_name(key))
    }

    fn is_known(&self, key: &EscrowKey) -> bool {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&self.secret_name(key))
    }

    /// The pending version written, creating the secret first unless this instance has read
    /// it (and then too if it is gone since).
    async fn put_pending(&self, pending: &Pending, record: &Record) -> Result<bool, EscrowError> {
        let key = &pending.key();
        let pending_label = Labels::of(key.kind).pending;
        let known = self.is_known(key);
        if !known {
            self.ensure_secret(key).await?;
        }
        match self
            .put(key, pending.token.as_str(), record, &pending_label)
            .await
        {
            Err(EscrowError::Backend { detail, .. })
                if known && detail.starts_with("ResourceNotFoundException") && self.forget(key) =>
            {
                self.ensure_secret(key).await?;
                self.put(key, pending.token.as_str(), record, &pending_label)
                    .await
            }
            written => written,
        }
    }

    /// Writes a version; `Ok(false)` when the token already names a version with other data.
    async fn put(
        &self,
        key: &EscrowKey,
        token: &str,
        record: &Record,
        stage: &str,
    ) -> Result<bool, EscrowError> {
        Ok(self
            .put_labelled(key, token, record, stage)
            .await?
            .is_some())
    }

    /// Writes a version; the labels it carries after the call (a version written before with
    /// the same record is left as it was), or `None` when the token names one with other data.
    async fn put_labelled(
        &self,
        key: &EscrowKey,
        token: &str,
        record: &Record,
        stage: &str,
    ) -> Result<Option<Vec<String>>, EscrowError> {
        let json = Self::encode(key, record)?;
        let sent = self
            .client
            .put_secret_value()
            .secret_id(self.secret_name(key))
            .client_request_token(token)
            .secret_string(json.as_str())
            .version_stages(stage)
            .send()
            .await;
        let written = self.tolerating(sent, "ResourceExistsException", "write", key)?;
        Ok(written.map(|out| out.version_stages().to_vec()))
    }

    /// ListSecrets under `<prefix>/` (secrets scheduled for deletion are not listed), read as
    /// keys: every kind a cluster's secret holds, and each kind still in a secret of its own.
    /// The rotation record and deeper names (a member account's records under the same base)
    /// are not this escrow's.
    async fn listed(&self) -> Result<Vec<(EscrowKey, Option<Summary>)>, EscrowError> {
        let start = format!("{}/", self.prefix);
        let mut listed = Vec::new();
        for entry in self.list_under(&start).await? {
            let key = entry
                .name()
                .and_then(|n| n.strip_prefix(&start))
                .and_then(|rest| rest.parse::<EscrowKey>().ok());
            match key {
                Some(key) if key.kind == Kind::IstioCacerts => {
                    self.remember(&self.secret_name(&key));
                    listed.extend(held_in(&key.cluster, &entry));
                }
                Some(key) => {
                    self.note_apart(&key);
                    listed.push((key, None));
                }
                None => {}
            }
        }
        self.listed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(listed)
    }

    async fn list_under(&self, start: &str) -> Result<Vec<SecretListEntry>, EscrowError> {
        use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
        let filter = Filter::builder()
            .key(FilterNameStringType::Name)
            .values(start)
            .build();
        let mut pages = self
            .client
            .list_secrets()
            .filters(filter)
            .max_results(100)
            .into_paginator()
            .send();
        let mut entries = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                let (code, message) = error_parts(&e);
                EscrowError::Backend {
                    operation: "ListSecrets",
                    cluster: format!("{start}*"),
                    detail: format!("{code}: {message}"),
                }
            })?;
            entries.extend(page.secret_list.unwrap_or_default());
        }
        Ok(entries)
    }

    fn note_apart(&self, key: &EscrowKey) {
        self.apart
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone());
    }

    /// Puts the summary of `current` on its secret as tags (replacing the last generation's).
    async fn tag_summary(&self, current: &Current) -> Result<(), EscrowError> {
        let key = &current.key();
        let Some(summary) = Summary::of(current) else {
            return Ok(());
        };
        self.tag(key, layout::summary_tags(key.kind, &summary))
            .await
    }

    /// Sets `tags` on `key`'s cluster secret (a tag of the same key is replaced).
    async fn tag(&self, key: &EscrowKey, tags: Vec<(String, String)>) -> Result<(), EscrowError> {
        let tags: Vec<Tag> = tags
            .into_iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        let sent = self
            .client
            .tag_resource()
            .secret_id(self.secret_name(key))
            .set_tags(Some(tags))
            .send()
            .await;
        sent.map(drop).map_err(|e| Self::failed("tag", key, &e))
    }

    /// Removes `label` from `version`; `false` if it was not on it (or the call failed).
    async fn unstage(&self, key: &EscrowKey, label: &str, version: &str) -> bool {
        let sent = self
            .client
            .update_secret_version_stage()
            .secret_id(self.secret_name(key))
            .version_stage(label)
            .remove_from_version_id(version)
            .send()
            .await;
        sent.is_ok()
    }

    async fn current_generation(&self, key: &EscrowKey) -> Result<u64, EscrowError> {
        let label = Labels::of(key.kind).current;
        Ok(match self.read(key, Some(&label), None).await? {
            Some((Record::Current(c), _)) => c.meta.generation,
            _ => 0,
        })
    }

    /// What `key`'s two labels hold in the secret `name` (a current label may hold a pending
    /// record: a secret's first version always takes AWSCURRENT).
    async fn load_from(
        &self,
        name: &str,
        key: &EscrowKey,
        labels: &Labels,
    ) -> Result<Escrowed, EscrowError> {
        let mut escrowed = Escrowed::default();
        match self
            .read_from(name, key, Some(&labels.current), None)
            .await?
        {
            Some((Record::Current(c), _)) => escrowed.current = Some(*c),
            Some((Record::Pending(p), _)) => escrowed.pending = Some(*p),
            _ => {}
        }
        if let Some((Record::Pending(p), _)) = self
            .read_from(name, key, Some(&labels.pending), None)
            .await?
        {
            escrowed.pending = Some(*p);
        }
        Ok(escrowed)
    }
}

impl SecretsEscrow {
    /// What a kind kept in a secret of its own holds (noting it, to be moved in). Every secret
    /// with a version has an AWSCURRENT one: without it there is nothing apart, and the pending
    /// label is not read. After a listing that showed none for this key, nothing is read.
    async fn load_apart(&self, key: &EscrowKey) -> Result<Escrowed, EscrowError> {
        let name = self.secret_name_apart(key);
        let mut escrowed = Escrowed::default();
        let seen_apart = self
            .apart
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(key);
        if self.listed.load(std::sync::atomic::Ordering::Relaxed) && !seen_apart {
            return Ok(escrowed);
        }
        match self
            .read_from(&name, key, Some(layout::CURRENT), None)
            .await?
        {
            None => return Ok(escrowed),
            Some((Record::Current(c), _)) => escrowed.current = Some(*c),
            Some((Record::Pending(p), _)) => escrowed.pending = Some(*p),
            Some(_) => {}
        }
        if let Some((Record::Pending(p), _)) = self
            .read_from(&name, key, Some(layout::PENDING), None)
            .await?
        {
            escrowed.pending = Some(*p);
        }
        self.note_apart(key);
        Ok(escrowed)
    }
}

/// The kinds a listed cluster secret holds, each with the summary its tags carry.
fn held_in(
    cluster: &meshca_core::ClusterName,
    entry: &SecretListEntry,
) -> Vec<(EscrowKey, Option<Summary>)> {
    let versions: HashMap<String, Vec<String>> = entry
        .secret_versions_to_stages()
        .map(|v| v.iter().map(|(id, s)| (id.clone(), s.clone())).collect())
        .unwrap_or_default();
    let tags = layout::tag_map(entry.tags());
    layout::kinds_held(cluster, &versions, &tags)
        .into_iter()
        .map(|(kind, pending)| {
            (
                EscrowKey::new(cluster.clone(), kind),
                layout::summary_from(kind, &tags, pending),
            )
        })
        .collect()
}

#[async_trait::async_trait]
impl Escrow for SecretsEscrow {
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
    /// whether the kind's pending label is set (a generation may be in flight). A kind still in
    /// a secret of its own has no summary, so the sweep looks at it and moves it in.
    async fn summaries(&self) -> Result<BTreeMap<EscrowKey, Option<Summary>>, EscrowError> {
        let mut summaries = BTreeMap::new();
        for (key, summary) in self.listed().await? {
            let unsummarised = summary.is_none();
            let entry = summaries.entry(key).or_insert(summary);
            if unsummarised {
                *entry = None;
            }
        }
        Ok(summaries)
    }

    async fn summarise(&self, key: &EscrowKey) -> Result<(), EscrowError> {
        if self.adopt_if_apart(key).await? {
            return Ok(());
        }
        let label = Labels::of(key.kind).current;
        match self.read(key, Some(&label), None).await? {
            Some((Record::Current(current), _)) => self.tag_summary(&current).await,
            _ => Ok(()),
        }
    }

    async fn load(&self, key: &EscrowKey) -> Result<Escrowed, EscrowError> {
        let labels = Labels::of(key.kind);
        let mut escrowed = self.load_from(&self.secret_name(key), key, &labels).await?;
        if escrowed.current.is_none()
            && escrowed.pending.is_none()
            && key.kind != Kind::IstioCacerts
        {
            escrowed = self.load_apart(key).await?;
        }
        let done = escrowed.current.as_ref().map_or(0, |c| c.meta.generation);
        escrowed.pending = escrowed.pending.filter(|p| p.generation > done);
        Ok(escrowed)
    }

    async fn claim(&self, pending: &Pending) -> Result<Claim, EscrowError> {
        let key = &pending.key();
        self.adopt_if_apart(key).await?;
        let record = Record::Pending(Box::new(pending.clone()));
        if !self.put_pending(pending, &record).await? {
            return match self.read(key, None, Some(pending.token.as_str())).await? {
                Some((Record::Pending(theirs), _)) => Ok(Claim::Lost(theirs)),
                _ => Err(EscrowError::Conflict {
                    cluster: key.to_string(),
                    generation: pending.generation,
                    token: pending.token.to_string(),
                }),
            };
        }
        let done = self.current_generation(key).await?;
        if done >= pending.generation {
            return Err(EscrowError::Conflict {
                cluster: key.to_string(),
                generation: done,
                token: "already promoted".into(),
            });
        }
        Ok(Claim::Won)
    }

    async fn record_issued(&self, pending: &Pending) -> Result<(), EscrowError> {
        let key = &pending.key();
        self.adopt_if_apart(key).await?;
        let record = Record::Pending(Box::new(pending.clone()));
        let step = pending.token.for_step(match pending.refused {
            None => "issued",
            Some(_) => "refused",
        });
        if self
            .put(key, &step, &record, &Labels::of(key.kind).pending)
            .await?
        {
            return Ok(());
        }
        // Someone recorded this step already: fine if it is the same certificate.
        match self.read(key, None, Some(&step)).await? {
            Some((Record::Pending(p), _))
                if p.certificate_id == pending.certificate_id
                    && p.refused.is_some() == pending.refused.is_some() =>
            {
                Ok(())
            }
            _ => Err(EscrowError::Conflict {
                cluster: key.to_string(),
                generation: pending.generation,
                token: pending.token.to_string(),
            }),
        }
    }

    async fn promote(&self, current: &Current) -> Result<(), EscrowError> {
        let key = &current.key();
        self.adopt_if_apart(key).await?;
        let labels = Labels::of(key.kind);
        if let Some((Record::Current(existing), _)) =
            self.read(key, Some(&labels.current), None).await?
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
            key,
            &current.token.for_step("current"),
            &record,
            &labels.current,
        )
        .await?;
        self.tag_summary(current).await?;
        // Take the pending label off the finished generation so the next load (and the
        // summary's `pending`) does not see it. It is on the version the `issued` step wrote —
        // a version's id is the token it was written with — so no read is needed; otherwise,
        // look.
        if !self
            .unstage(key, &labels.pending, &current.token.for_step("issued"))
            .await
            && let Some((Record::Pending(p), version)) =
                self.read(key, Some(&labels.pending), None).await?
            && p.generation <= current.meta.generation
        {
            self.unstage(key, &labels.pending, &version).await;
        }
        Ok(())
    }

    /// A new version in service; the summary's files tag is removed, so the record is read
    /// (and judged revoked) rather than kept from its summary if it is ever restored.
    async fn mark_revoked(&self, current: &Current) -> Result<(), EscrowError> {
        let key = &current.key();
        self.adopt_if_apart(key).await?;
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
        let label = Labels::of(key.kind).current;
        self.put(key, &current.token.for_step(&step), &record, &label)
            .await?;
        self.untag(key, vec![layout::files_tag(key.kind)]).await
    }

    async fn retire(&self, key: &EscrowKey) -> Result<(), EscrowError> {
        self.retire_kind(key).await
    }
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

    /// The largest record meshca writes: an RSA-4096 key, a chain three CAs deep, two roots
    /// (a rotation in progress), the longest names, fifty changes of terms, a revocation and a
    /// full ledger of earlier generations, each of another authority. A version holds one kind's
    /// record, so this is what the 64 KiB limit is measured against: 31.5 KB before the ledger,
    /// 37.9 KB with it, so the margin kept is a quarter of the limit, no longer half.
    #[test]
    fn the_largest_record_fits_a_version_with_a_quarter_of_it_to_spare() {
        use meshca_core::Kind;
        use rcgen::{CertificateParams, DistinguishedName, DnType, IsCa, Issuer};
        let key = PrivateKey::generate(KeyAlgorithm::Rsa4096).unwrap();
        let long = "x".repeat(64);
        let params = |cn: &str| {
            let mut p = CertificateParams::default();
            let mut dn = DistinguishedName::new();
            dn.push(DnType::OrganizationName, long.as_str());
            dn.push(DnType::OrganizationalUnitName, long.as_str());
            dn.push(DnType::CommonName, format!("{cn} {}", &long[..40]));
            p.distinguished_name = dn;
            p.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            p
        };
        let pair = key.key_pair();
        let root = params("root").self_signed(pair).unwrap();
        let second_root = params("next root").self_signed(pair).unwrap();
        let mut issuer = Issuer::new(params("root"), pair);
        let mut chain = Vec::new();
        for cn in ["policy CA", "issuing CA", "c1 istio intermediate CA"] {
            let cert = params(cn).signed_by(pair, &issuer).unwrap();
            chain.insert(0, cert.pem());
            issuer = Issuer::new(params(cn), pair);
        }
        let bundle = meshca_core::Bundle::from_pems(
            &chain[0],
            &key.to_pkcs8_pem(),
            &format!("{}{}", chain.concat(), root.pem()),
            &format!("{}{}", root.pem(), second_root.pem()),
        )
        .unwrap();
        let name: meshca_core::ClusterName = "a".repeat(100).parse().unwrap();
        let settings = meshca_core::Settings {
            key_algorithm: KeyAlgorithm::Rsa4096,
            organization: Some(long.clone()),
            organizational_unit: Some(long.clone()),
            common_name: Some(long.clone()),
            ..meshca_core::Settings::default()
        };
        let arn = format!(
            "arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/{}",
            "f".repeat(36)
        );
        // The intermediate's own CRL (RSA-4096, long names), kept for it and the newest earlier ones.
        let own_crl = meshca_core::crl::own(&bundle.ca_cert, &bundle.ca_key).unwrap();
        let current = Current {
            schema: meshca_core::escrow::SCHEMA,
            cluster: name.clone(),
            kind: Kind::CertManagerCa,
            token: GenerationToken::derive(&arn, &name, 9),
            authority_id: arn.clone(),
            meta: meshca_core::BundleMeta {
                generation: 9,
                serial: "f".repeat(40),
                not_after: time::OffsetDateTime::UNIX_EPOCH,
                certificate_id: format!("{arn}/certificate/{}", "f".repeat(32)),
                fingerprint_sha256: "f".repeat(64),
                root_fingerprint_sha256: "f".repeat(64),
                owner: Some(EscrowKey::new(name.clone(), Kind::CertManagerCa)),
            },
            bundle,
            promoted_at: time::OffsetDateTime::UNIX_EPOCH,
            terms: Some(meshca_core::terms::Terms::of(&settings)),
            history: (0..50)
                .map(|g| meshca_core::terms::TermsChange {
                    at: time::OffsetDateTime::UNIX_EPOCH,
                    generation: g,
                    changes: vec![format!("organization: {long} → {long}")],
                })
                .collect(),
            revoked: Some(meshca_core::escrow::Revoked {
                at: time::OffsetDateTime::UNIX_EPOCH,
                reason: "KEY_COMPROMISE".into(),
                by: Some(format!(
                    "arn:aws:sts::111122223333:assumed-role/{}",
                    "f".repeat(64)
                )),
                held: true,
                authority_pending: true,
            }),
            // As many earlier generations as a record keeps, each of another authority.
            superseded: (0..meshca_core::ledger::MAX_SUPERSEDED as u64)
                .map(|g| meshca_core::ledger::Issuance {
                    generation: g,
                    authority_id: Some(arn.replace("ffff", "eeee")),
                    certificate_id: format!("{arn}/certificate/{}", "f".repeat(32)),
                    serial: "f".repeat(40),
                    not_after: time::OffsetDateTime::UNIX_EPOCH,
                    revoked: true,
                    own_crl: (g as usize
                        >= meshca_core::ledger::MAX_SUPERSEDED
                            - meshca_core::ledger::OWN_CRLS_KEPT)
                        .then(|| own_crl.clone()),
                })
                .collect(),
            ledger_from: Some(1),
            own_crl: Some(own_crl.clone()),
        };
        let key_name = current.key();
        let json = SecretsEscrow::encode(&key_name, &Record::Current(Box::new(current))).unwrap();
        eprintln!(
            "largest current record: {} bytes of {MAX_SECRET_BYTES}",
            json.len()
        );
        assert!(
            json.len() <= MAX_SECRET_BYTES * 3 / 4,
            "{} bytes",
            json.len()
        );
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
