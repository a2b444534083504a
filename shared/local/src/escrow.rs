//! Escrow in a local directory: `<dir>/<cluster>[.<kind>]/{current,pending}.json`, 0600 in a
//! 0700 folder (istio-cacerts, the first kind, keeps the plain cluster name).
//!
//! The conditional write of a pending record is a hard link of a fully written temp file onto
//! `pending.json`: link(2) fails if the name exists, so exactly one of two racing runs wins and
//! nobody ever reads a half-written record.

use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use meshca_core::ClusterName;
use meshca_core::escrow::{Claim, Current, Escrow, EscrowError, EscrowKey, Escrowed, Pending};

const CURRENT: &str = "current.json";
const PENDING: &str = "pending.json";
const RETIRED: &str = ".retired";

/// Escrow as files: `<dir>/<key>/current.json` and `pending.json`, each written whole (a
/// temporary file, synced, then renamed) and readable by its owner only.
#[derive(Debug, Clone)]
pub struct LocalEscrow {
    dir: PathBuf,
}

impl LocalEscrow {
    /// Records under `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LocalEscrow { dir: dir.into() }
    }

    /// The clusters with an Istio intermediate escrowed here (a directory per cluster, the
    /// other kinds' directories carry a dot), sorted.
    pub fn clusters(&self) -> std::io::Result<Vec<ClusterName>> {
        let entries = match fs::read_dir(&self.dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            other => other?,
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry?;
            if entry.file_type()?.is_dir()
                && let Some(cluster) = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<ClusterName>().ok())
            {
                out.push(cluster);
            }
        }
        out.sort();
        Ok(out)
    }

    fn cluster_dir(&self, cluster: &EscrowKey) -> PathBuf {
        self.dir.join(cluster.name())
    }

    fn backend<'c>(
        operation: &'static str,
        cluster: &'c EscrowKey,
    ) -> impl Fn(std::io::Error) -> EscrowError + 'c {
        move |e| EscrowError::Backend {
            operation,
            cluster: cluster.to_string(),
            detail: e.to_string(),
        }
    }

    fn ensure_dir(&self, cluster: &EscrowKey) -> Result<PathBuf, EscrowError> {
        let dir = self.cluster_dir(cluster);
        fs::create_dir_all(&dir).map_err(Self::backend("create", cluster))?;
        let _ = fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700));
        let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o700));
        Ok(dir)
    }

    fn staged(dir: &Path, json: &[u8]) -> std::io::Result<tempfile::NamedTempFile> {
        let mut tmp = tempfile::Builder::new()
            .prefix(".record.")
            .permissions(fs::Permissions::from_mode(0o600))
            .tempfile_in(dir)?;
        tmp.write_all(json)?;
        tmp.as_file().sync_all()?;
        Ok(tmp)
    }

    fn read<T: serde::de::DeserializeOwned>(
        path: &Path,
        cluster: &EscrowKey,
    ) -> Result<Option<T>, EscrowError> {
        let text = match fs::read(path) {
            Ok(t) => zeroize::Zeroizing::new(t),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Self::backend("read", cluster)(e)),
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|e| EscrowError::Corrupt {
                cluster: cluster.to_string(),
                reason: format!("{}: {e}", path.display()),
            })
    }
}

#[allow(
    clippy::expect_used,
    reason = "records of strings and numbers always serialise"
)]
fn to_json<T: serde::Serialize>(v: &T) -> zeroize::Zeroizing<Vec<u8>> {
    zeroize::Zeroizing::new(serde_json::to_vec_pretty(v).expect("records serialise"))
}

#[async_trait::async_trait]
impl Escrow for LocalEscrow {
    async fn keys(&self) -> Result<Vec<EscrowKey>, EscrowError> {
        let failed = |e: std::io::Error| EscrowError::Backend {
            operation: "list",
            cluster: "*".into(),
            detail: format!("{}: {e}", self.dir.display()),
        };
        let entries = match fs::read_dir(&self.dir) {
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            other => other.map_err(failed)?,
        };
        let mut keys = Vec::new();
        for entry in entries {
            let entry = entry.map_err(failed)?;
            let key = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<EscrowKey>().ok());
            if let Some(key) = key.filter(|_| {
                entry.path().join(CURRENT).exists() || entry.path().join(PENDING).exists()
            }) {
                keys.push(key);
            }
        }
        keys.sort();
        Ok(keys)
    }

    async fn load(&self, cluster: &EscrowKey) -> Result<Escrowed, EscrowError> {
        let dir = self.cluster_dir(cluster);
        let current: Option<Current> = Self::read(&dir.join(CURRENT), cluster)?;
        let pending: Option<Pending> = Self::read(&dir.join(PENDING), cluster)?;
        let done = current.as_ref().map_or(0, |c| c.meta.generation);
        Ok(Escrowed {
            pending: pending.filter(|p| p.generation > done),
            current,
        })
    }

    async fn claim(&self, pending: &Pending) -> Result<Claim, EscrowError> {
        let cluster = &pending.key();
        let dir = self.ensure_dir(cluster)?;
        let tmp = Self::staged(&dir, &to_json(pending)).map_err(Self::backend("claim", cluster))?;
        let target = dir.join(PENDING);
        for _ in 0..2 {
            match fs::hard_link(tmp.path(), &target) {
                Ok(()) => {
                    // A rival may have promoted this generation (and cleared its pending record)
                    // between our load and our link: then ours is not wanted.
                    let done = Self::read::<Current>(&dir.join(CURRENT), cluster)?
                        .map_or(0, |c| c.meta.generation);
                    if done >= pending.generation {
                        let _ = fs::remove_file(&target);
                        return Err(EscrowError::Conflict {
                            cluster: cluster.to_string(),
                            generation: done,
                            token: "already promoted".into(),
                        });
                    }
                    return Ok(Claim::Won);
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Self::backend("claim", cluster)(e)),
            }
            let Some(existing) = Self::read::<Pending>(&target, cluster)? else {
                continue;
            };
            if existing.token == pending.token {
                return Ok(if existing == *pending {
                    Claim::Won
                } else {
                    Claim::Lost(Box::new(existing))
                });
            }
            let done = self
                .load(cluster)
                .await?
                .current
                .map_or(0, |c| c.meta.generation);
            if existing.generation <= done || existing.refused.is_some() {
                // Left over from a generation already promoted, or closed when its certificate
                // was refused: clear it and try again.
                let _ = fs::remove_file(&target);
                continue;
            }
            return Err(EscrowError::Conflict {
                cluster: cluster.to_string(),
                generation: existing.generation,
                token: existing.token.to_string(),
            });
        }
        Err(EscrowError::Backend {
            operation: "claim",
            cluster: cluster.to_string(),
            detail: "pending.json keeps changing".into(),
        })
    }

    async fn record_issued(&self, pending: &Pending) -> Result<(), EscrowError> {
        let cluster = &pending.key();
        let dir = self.ensure_dir(cluster)?;
        match Self::read::<Pending>(&dir.join(PENDING), cluster)? {
            Some(existing) if existing.token == pending.token => {}
            None if Self::read::<Current>(&dir.join(CURRENT), cluster)?
                .is_some_and(|c| c.token == pending.token) =>
            {
                // A rival run already finished this generation; nothing left to record.
                return Ok(());
            }
            other => {
                return Err(EscrowError::Conflict {
                    cluster: cluster.to_string(),
                    generation: other.as_ref().map_or(pending.generation, |p| p.generation),
                    token: other.map_or_else(|| "none".into(), |p| p.token.to_string()),
                });
            }
        }
        let tmp =
            Self::staged(&dir, &to_json(pending)).map_err(Self::backend("record", cluster))?;
        tmp.persist(dir.join(PENDING))
            .map_err(|e| Self::backend("record", cluster)(e.error))?;
        Ok(())
    }

    async fn promote(&self, current: &Current) -> Result<(), EscrowError> {
        let cluster = &current.key();
        let dir = self.ensure_dir(cluster)?;
        if let Some(existing) = Self::read::<Current>(&dir.join(CURRENT), cluster)?
            && existing.meta.generation >= current.meta.generation
        {
            // Same generation promoted by a rival run, or a newer one: keep what is there.
            if existing.token == current.token || existing.meta.generation > current.meta.generation
            {
                return Ok(());
            }
        }
        let tmp =
            Self::staged(&dir, &to_json(current)).map_err(Self::backend("promote", cluster))?;
        tmp.persist(dir.join(CURRENT))
            .map_err(|e| Self::backend("promote", cluster)(e.error))?;
        if let Some(p) = Self::read::<Pending>(&dir.join(PENDING), cluster)?
            && p.generation <= current.meta.generation
        {
            let _ = fs::remove_file(dir.join(PENDING));
        }
        Ok(())
    }

    async fn mark_revoked(&self, current: &Current) -> Result<(), EscrowError> {
        let cluster = &current.key();
        let dir = self.ensure_dir(cluster)?;
        let tmp = Self::staged(&dir, &to_json(current))
            .map_err(Self::backend("mark revoked", cluster))?;
        tmp.persist(dir.join(CURRENT))
            .map_err(|e| Self::backend("mark revoked", cluster)(e.error))?;
        Ok(())
    }

    async fn retire(&self, cluster: &EscrowKey) -> Result<(), EscrowError> {
        let dir = self.cluster_dir(cluster);
        if !dir.exists() {
            return Ok(());
        }
        let graveyard = self.dir.join(RETIRED);
        fs::create_dir_all(&graveyard).map_err(Self::backend("retire", cluster))?;
        let stamp = OffsetDateTime::now_utc().unix_timestamp();
        fs::rename(&dir, graveyard.join(format!("{cluster}-{stamp}")))
            .map_err(Self::backend("retire", cluster))
    }
}
