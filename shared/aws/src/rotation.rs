//! The fleet's root rotation record in Secrets Manager: one secret in the home region.
//!
//! Secrets Manager has no compare-and-swap, but a version's ClientRequestToken is unique per
//! secret: each revision is written with a token derived from its number, so two runs that
//! both read revision N and race to write N+1 cannot both succeed (the loser gets
//! ResourceExistsException), while a retry of the same write is accepted as idempotent.

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::types::Tag;
use meshca_core::escrow::GenerationToken;
use meshca_core::rotation::{RootRotation, RotationStore, RotationStoreError};

use crate::error_parts;

/// The record's name beside the escrow secrets `<prefix>/<cluster>`: no cluster can be called
/// `_rotation` (no EKS cluster name starts with an underscore), so the names never meet, and
/// the escrow's IAM grant on `<prefix>/*` covers it.
pub fn record_name(prefix: &str) -> String {
    format!("{}/_rotation", prefix.trim_end_matches('/'))
}

/// The fleet's root-rotation record as one Secrets Manager secret, `<prefix>/_rotation`: read and written with version-stage compare-and-swap like escrow records.
pub struct SecretsRotationStore {
    client: Client,
    name: String,
    kms_key_id: Option<String>,
}

impl SecretsRotationStore {
    /// The record in the secret `name`, encrypted with `kms_key_id` when given.
    pub fn new(client: Client, name: impl Into<String>, kms_key_id: Option<String>) -> Self {
        SecretsRotationStore {
            client,
            name: name.into(),
            kms_key_id,
        }
    }

    /// The same with a client in the region of `config`.
    pub fn from_config(
        config: &aws_config::SdkConfig,
        name: impl Into<String>,
        kms_key_id: Option<String>,
    ) -> Self {
        Self::new(Client::new(config), name, kms_key_id)
    }

    fn backend(operation: &'static str, code: String, message: String) -> RotationStoreError {
        RotationStoreError::Backend {
            operation,
            detail: format!("{code}: {message}"),
        }
    }

    async fn ensure_secret(&self) -> Result<(), RotationStoreError> {
        let mut req = self
            .client
            .create_secret()
            .name(&self.name)
            .description(
                "meshca: the fleet's root rotation record (public roots and phases; no keys)",
            )
            .tags(
                Tag::builder()
                    .key("app.kubernetes.io/managed-by")
                    .value("meshca")
                    .build(),
            );
        if let Some(k) = &self.kms_key_id {
            req = req.kms_key_id(k);
        }
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e) => match error_parts(&e) {
                (code, _) if code == "ResourceExistsException" => Ok(()),
                (code, message) => Err(Self::backend("create", code, message)),
            },
        }
    }
}

#[async_trait::async_trait]
impl RotationStore for SecretsRotationStore {
    async fn load(&self) -> Result<Option<RootRotation>, RotationStoreError> {
        match self
            .client
            .get_secret_value()
            .secret_id(&self.name)
            .send()
            .await
        {
            Ok(out) => {
                let text = out.secret_string().ok_or_else(|| {
                    RotationStoreError::Corrupt(format!("{} holds no string", self.name))
                })?;
                serde_json::from_str(text)
                    .map(Some)
                    .map_err(|e| RotationStoreError::Corrupt(format!("{}: {e}", self.name)))
            }
            Err(e) => match error_parts(&e) {
                (code, _) if code == "ResourceNotFoundException" => Ok(None),
                (code, message) => Err(Self::backend("read", code, message)),
            },
        }
    }

    async fn save(&self, rotation: &RootRotation) -> Result<RootRotation, RotationStoreError> {
        let stored = self.load().await?;
        let saved = RootRotation {
            revision: rotation.next_revision(stored.as_ref())?,
            ..rotation.clone()
        };
        let json = serde_json::to_string(&saved)
            .map_err(|e| RotationStoreError::Corrupt(e.to_string()))?;
        if stored.is_none() {
            self.ensure_secret().await?;
        }
        let token = GenerationToken::derive("meshca-rotation", &self.name, saved.revision);
        let sent = self
            .client
            .put_secret_value()
            .secret_id(&self.name)
            .client_request_token(token.as_str())
            .secret_string(json)
            .send()
            .await;
        match sent {
            Ok(_) => Ok(saved),
            Err(e) => match error_parts(&e) {
                (code, _) if code == "ResourceExistsException" => Err(RotationStoreError::Conflict),
                (code, message) => Err(Self::backend("write", code, message)),
            },
        }
    }
}
