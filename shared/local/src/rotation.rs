//! The rotation record beside the local escrow: one JSON file, replaced atomically under an
//! advisory lock, so two `meshca rotate-root` runs on one machine cannot both move it.

use std::fs;
use std::path::{Path, PathBuf};

use meshca_core::rotation::{RootRotation, RotationStore, RotationStoreError};

const RECORD: &str = "rotation.json";
const LOCK: &str = "rotation.lock";

/// The fleet's root-rotation record as a file beside the escrow, changed under a lock file.
pub struct LocalRotationStore {
    dir: PathBuf,
}

impl LocalRotationStore {
    /// The record lives in `dir` (the escrow directory).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LocalRotationStore { dir: dir.into() }
    }

    /// Where the record is kept.
    pub fn path(&self) -> PathBuf {
        self.dir.join(RECORD)
    }

    fn read(path: &Path) -> Result<Option<RootRotation>, RotationStoreError> {
        match fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| RotationStoreError::Corrupt(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(backend("read", e)),
        }
    }
}

fn backend(operation: &'static str, e: impl std::fmt::Display) -> RotationStoreError {
    RotationStoreError::Backend {
        operation,
        detail: e.to_string(),
    }
}

#[async_trait::async_trait]
impl RotationStore for LocalRotationStore {
    async fn load(&self) -> Result<Option<RootRotation>, RotationStoreError> {
        Self::read(&self.path())
    }

    async fn save(&self, rotation: &RootRotation) -> Result<RootRotation, RotationStoreError> {
        fs::create_dir_all(&self.dir).map_err(|e| backend("save", e))?;
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(LOCK))
            .map_err(|e| backend("lock", e))?;
        lock.lock().map_err(|e| backend("lock", e))?;
        let stored = Self::read(&self.path())?;
        let saved = RootRotation {
            revision: rotation.next_revision(stored.as_ref())?,
            ..rotation.clone()
        };
        let json = serde_json::to_vec_pretty(&saved).map_err(|e| backend("save", e))?;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(|e| backend("save", e))?;
        std::io::Write::write_all(&mut tmp, &json).map_err(|e| backend("save", e))?;
        tmp.persist(self.path())
            .map_err(|e| backend("save", e.error))?;
        Ok(saved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshca_core::rotation::Anchor;
    use time::{Duration, OffsetDateTime};

    fn anchor(id: &str) -> Anchor {
        Anchor {
            authority_id: id.into(),
            locator: id.into(),
            root_bundle: format!("{id}\n"),
        }
    }

    #[tokio::test]
    async fn a_stale_writer_loses_and_a_second_start_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalRotationStore::new(dir.path());
        assert!(store.load().await.unwrap().is_none());
        let r = RootRotation::start(
            anchor("a"),
            anchor("b"),
            Duration::ZERO,
            OffsetDateTime::now_utc(),
        )
        .unwrap();
        let saved = store.save(&r).await.unwrap();
        assert_eq!(saved.revision, 1);
        assert!(
            matches!(store.save(&r).await, Err(RotationStoreError::Conflict)),
            "a second start while one is active"
        );
        let mut moved = saved.clone();
        moved
            .advance(Vec::new(), false, OffsetDateTime::now_utc())
            .unwrap();
        assert_eq!(store.save(&moved).await.unwrap().revision, 2);
        assert!(
            matches!(store.save(&saved).await, Err(RotationStoreError::Conflict)),
            "written over revision 1, now 2"
        );
        assert_eq!(store.load().await.unwrap().unwrap().phase, moved.phase);
    }
}
