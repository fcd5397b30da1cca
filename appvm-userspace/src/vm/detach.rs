//! `appvm vm detach`: remove everything `attach` pinned for an interface.

use std::{
    io,
    path::{Path, PathBuf},
};

use appvm_common::pins::vm;

use super::pin_dir;
use crate::pinning;

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
    pinning::remove_pins(&dir, vm::LINK_PINS).map_err(|source| DetachError::Remove {
        path: dir.clone(),
        source,
    })
}
