//! `appvm vm detach`: remove everything `attach` pinned for an interface.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use appvm_common::pins::vm;

use super::pin_dir;

#[derive(Debug, thiserror::Error)]
pub enum DetachError {
    #[error("no guard attached on {iface} (nothing pinned at {dir})")]
    NotAttached { iface: String, dir: PathBuf },
    #[error("cannot remove {path}: {source}")]
    Remove { path: PathBuf, source: io::Error },
}

/// Unpins the links first (that detaches the programs), then the rest.
/// Returns the pins removed.
pub fn detach(iface: &str, root: &Path) -> Result<Vec<PathBuf>, DetachError> {
    let dir = pin_dir(root, iface);
    if !dir.is_dir() {
        return Err(DetachError::NotAttached {
            iface: iface.to_owned(),
            dir,
        });
    }
    let mut removed = Vec::new();
    let ordered = vm::LINK_PINS.iter().map(|name| dir.join(name));
    let rest = fs::read_dir(&dir)
        .map_err(|source| DetachError::Remove {
            path: dir.clone(),
            source,
        })?
        .filter_map(|entry| entry.ok().map(|e| e.path()));
    for path in ordered.chain(rest.collect::<Vec<_>>()) {
        match fs::remove_file(&path) {
            Ok(()) => removed.push(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(DetachError::Remove { path, source }),
        }
    }
    fs::remove_dir(&dir).map_err(|source| DetachError::Remove {
        path: dir.clone(),
        source,
    })?;
    Ok(removed)
}
