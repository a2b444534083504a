//! Moving a kind kept in a secret of its own into its cluster's secret, and retiring one kind
//! of a cluster without touching the others.
//!
//! Before kinds shared a secret, each kind other than istio-cacerts had `<prefix>/<cluster>.<kind>`
//! ($0.40 a month each). Such a record is moved on the first write to it, or when the sweep
//! finds it in its listing: its versions are copied under the kind's labels with the ids they
//! had (a rerun writes nothing new), the summary is tagged, and only then is the old secret
//! scheduled for deletion. A run stopped anywhere in between leaves both; the next one finishes,
//! and reads the cluster's secret first.

use meshca_core::Kind;
use meshca_core::escrow::{EscrowError, EscrowKey};

use super::layout::{self, Labels};
use super::{Record, SecretsEscrow};

impl SecretsEscrow {
    /// Moves `key` in if it was found apart; whether it was.
    pub(super) async fn adopt_if_apart(&self, key: &EscrowKey) -> Result<bool, EscrowError> {
        let apart = self
            .apart
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(key);
        if apart {
            self.adopt(key).await?;
            self.apart
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(key);
        }
        Ok(apart)
    }

    /// Copies the current and pending records of `key`'s own secret into the cluster's
    /// secret (never over a newer generation there), then schedules the old one's deletion.
    pub(super) async fn adopt(&self, key: &EscrowKey) -> Result<(), EscrowError> {
        let old = self.secret_name_apart(key);
        let labels = Labels::of(key.kind);
        let mut records = Vec::new();
        for stage in [layout::CURRENT, layout::PENDING] {
            records.extend(self.read_from(&old, key, Some(stage), None).await?);
        }
        if !records.is_empty() {
            if !self.is_known(key) {
                self.ensure_secret(key).await?;
            }
            let mut newest = match self.read(key, Some(&labels.current), None).await? {
                Some((Record::Current(c), _)) => Some(c),
                _ => None,
            };
            for (record, version) in &records {
                let done = newest.as_ref().map_or(0, |c| c.meta.generation);
                if let Record::Current(c) = record
                    && c.meta.generation > done
                {
                    self.copy(key, version, record, &labels.current).await?;
                    newest = Some(c.clone());
                }
            }
            let done = newest.as_ref().map_or(0, |c| c.meta.generation);
            let pending = records.iter().filter_map(|(r, v)| match r {
                Record::Pending(p) if p.generation > done => Some((p.generation, r, v)),
                _ => None,
            });
            if let Some((_, record, version)) = pending.max_by_key(|(g, _, _)| *g) {
                self.copy(key, version, record, &labels.pending).await?;
            }
            // Tagged on every run: one stopped after the copy and before the tags has none.
            if let Some(current) = &newest {
                self.tag_summary(current).await?;
            }
        }
        self.delete(&old, key).await
    }

    /// Writes `record` into the cluster's secret as the version `version` it had apart, under
    /// `label`. A version of that id already there with the same record (a copy made before)
    /// is left as it is by Secrets Manager, label and all: the label is then moved to it.
    async fn copy(
        &self,
        key: &EscrowKey,
        version: &str,
        record: &Record,
        label: &str,
    ) -> Result<(), EscrowError> {
        let Some(labels) = self.put_labelled(key, version, record, label).await? else {
            return Err(EscrowError::Conflict {
                cluster: key.to_string(),
                generation: 0,
                token: format!("{version} (moving {} in)", self.secret_name_apart(key)),
            });
        };
        if labels.iter().any(|s| s == label) {
            return Ok(());
        }
        self.move_label(key, label, version).await
    }

    /// Moves `label` to `version`, from whichever version holds it.
    async fn move_label(
        &self,
        key: &EscrowKey,
        label: &str,
        version: &str,
    ) -> Result<(), EscrowError> {
        let name = self.secret_name(key);
        let described = self.client.describe_secret().secret_id(&name).send().await;
        let described = described.map_err(|e| Self::failed("write", key, &e))?;
        let holder = described.version_ids_to_stages().and_then(|v| {
            v.iter()
                .find(|(_, stages)| stages.iter().any(|s| s == label))
                .map(|(id, _)| id.clone())
        });
        let sent = self
            .client
            .update_secret_version_stage()
            .secret_id(&name)
            .version_stage(label)
            .move_to_version_id(version)
            .set_remove_from_version_id(holder)
            .send()
            .await;
        sent.map(drop).map_err(|e| Self::failed("write", key, &e))
    }

    /// Schedules the secret `name` for deletion; gone or already scheduled is done.
    async fn delete(&self, name: &str, key: &EscrowKey) -> Result<(), EscrowError> {
        let sent = self
            .client
            .delete_secret()
            .secret_id(name)
            .recovery_window_in_days(self.recovery_window_days)
            .send()
            .await;
        match self.tolerating(sent, "ResourceNotFoundException", "retire", key) {
            Ok(_) | Err(EscrowError::Retired { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Retires `key`'s kind. The last kind held takes the secret with it (recoverable for the
    /// recovery window, every kind's records inside); a kind retired beside others stays where
    /// it is, its record revoked (the pipeline marks it first), and is tagged retired: no longer
    /// listed, and issued a fresh generation if its cluster comes back.
    pub(super) async fn retire_kind(&self, key: &EscrowKey) -> Result<(), EscrowError> {
        self.forget(key);
        if key.kind != Kind::IstioCacerts {
            self.delete(&self.secret_name_apart(key), key).await?;
        }
        let name = self.secret_name(key);
        let described = self.client.describe_secret().secret_id(&name).send().await;
        let Some(secret) =
            self.tolerating(described, "ResourceNotFoundException", "retire", key)?
        else {
            return Ok(());
        };
        if secret.deleted_date().is_some() {
            return Ok(());
        }
        let versions = secret.version_ids_to_stages().cloned().unwrap_or_default();
        let tags = layout::tag_map(secret.tags());
        let others = layout::kinds_held(&key.cluster, &versions, &tags)
            .into_iter()
            .any(|(kind, _)| kind != key.kind);
        if !others {
            return self.delete(&name, key).await;
        }
        self.tag(key, vec![layout::retired(key.kind, &versions)])
            .await?;
        self.untag(key, layout::summary_tag_keys(key.kind)).await
    }

    pub(super) async fn untag(
        &self,
        key: &EscrowKey,
        tags: Vec<String>,
    ) -> Result<(), EscrowError> {
        let sent = self
            .client
            .untag_resource()
            .secret_id(self.secret_name(key))
            .set_tag_keys(Some(tags))
            .send()
            .await;
        sent.map(drop).map_err(|e| Self::failed("untag", key, &e))
    }
}
