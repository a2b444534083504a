//! A bundle as files: the four `*.pem` istiod reads, plus the Secret manifest beside them.
//! Written all or nothing, key material 0600 from the moment it exists.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use meshca_core::bundle::{Bundle, CA_CERT, CA_KEY, CERT_CHAIN, ROOT_CERT};
use meshca_core::pem::PemError;
use zeroize::Zeroizing;

/// The manifest's file name beside the four PEM files.
pub const MANIFEST: &str = "cacerts.yaml";

/// A bundle directory that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// One of the four PEM files is not there.
    #[error("{0} is missing")]
    Missing(String),
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file holds no usable PEM.
    #[error(transparent)]
    Pem(#[from] PemError),
}

/// Reads the four files from a directory.
pub fn read_dir(dir: &Path) -> Result<Bundle, FilesError> {
    let read = |name: &str| -> Result<Zeroizing<String>, FilesError> {
        let path = dir.join(name);
        match fs::read_to_string(&path) {
            Ok(s) => Ok(Zeroizing::new(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(FilesError::Missing(name.to_string()))
            }
            Err(source) => Err(FilesError::Read { path, source }),
        }
    };
    let (c, k, ch, r) = (
        read(CA_CERT)?,
        read(CA_KEY)?,
        read(CERT_CHAIN)?,
        read(ROOT_CERT)?,
    );
    Ok(Bundle::from_pems(&c, &k, &ch, &r)?)
}

/// Writes the four files, and `manifest` if given (as `cacerts.yaml`, which holds the key), into
/// `dir`, all or nothing (see [`write_all_or_nothing`]).
pub fn write_dir(
    dir: &Path,
    bundle: &Bundle,
    manifest: Option<&Zeroizing<String>>,
) -> Result<(), FilesError> {
    let mut entries: Vec<(&str, &str, bool)> = bundle
        .files()
        .iter()
        .map(|(n, t)| (*n, *t, *n == CA_KEY))
        .collect();
    if let Some(manifest) = manifest {
        entries.push((MANIFEST, manifest, true));
    }
    write_all_or_nothing(dir, &entries)
}

/// Writes `(name, contents, secret)` files into `dir` atomically as a set: every file is first
/// written beside its target under a temporary name, and only when all are on disk are they
/// renamed into place.
pub fn write_all_or_nothing(dir: &Path, entries: &[(&str, &str, bool)]) -> Result<(), FilesError> {
    let werr = |path: &Path| {
        let path = path.to_path_buf();
        move |source| FilesError::Write { path, source }
    };
    fs::create_dir_all(dir).map_err(werr(dir))?;
    let mut staged = Vec::with_capacity(entries.len());
    for (name, contents, secret) in entries {
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .permissions(mode(*secret))
            .tempfile_in(dir)
            .map_err(werr(dir))?;
        tmp.write_all(contents.as_bytes())
            .map_err(werr(tmp.path()))?;
        tmp.as_file().sync_all().map_err(werr(tmp.path()))?;
        staged.push((tmp, dir.join(name)));
    }
    // Every temp file is on disk; from here on only renames, which do not half-write.
    for (tmp, target) in staged {
        tmp.persist(&target).map_err(|e| FilesError::Write {
            path: target.clone(),
            source: e.error,
        })?;
    }
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// 0600 for anything holding key material, 0644 for the rest.
fn mode(secret: bool) -> fs::Permissions {
    use std::os::unix::fs::PermissionsExt;
    fs::Permissions::from_mode(if secret { 0o600 } else { 0o644 })
}
