//! The bpffs pin root: where it is, and checking it really is bpffs.

use std::{
    ffi::CString,
    io,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

use appvm_common::pins::{DEFAULT_PIN_ROOT, PIN_ROOT_ENV};

/// `BPF_FS_MAGIC` from `linux/magic.h`.
const BPF_FS_MAGIC: libc::__fsword_t = 0xcafe_4a11;

#[derive(Debug, thiserror::Error)]
pub enum BpffsError {
    #[error("{path} is not on a bpf filesystem (mount one: mount -t bpf bpf /sys/fs/bpf)")]
    NotBpffs { path: PathBuf },
    #[error("cannot create pin directory {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
}

/// The pin root: `$APPVM_PIN_ROOT` if set, else the default.
pub fn default_root() -> PathBuf {
    std::env::var_os(PIN_ROOT_ENV).map_or_else(|| PathBuf::from(DEFAULT_PIN_ROOT), PathBuf::from)
}

/// Whether `path` (which must exist) lies on bpffs.
pub fn is_bpffs(path: &Path) -> bool {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `statfs` is plain data; zeroed is a valid initial value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid NUL-terminated path and a valid out pointer.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), &raw mut st) };
    rc == 0 && st.f_type == BPF_FS_MAGIC
}

/// Creates `root` (and parents) and checks that it is on bpffs.
pub fn ensure_root(root: &Path) -> Result<(), BpffsError> {
    let mut probe = root;
    // The nearest existing ancestor must already be bpffs: never create pin
    // directories on an ordinary filesystem where pins cannot live.
    while !probe.exists() {
        probe = probe.parent().unwrap_or(Path::new("/"));
    }
    if !is_bpffs(probe) {
        return Err(BpffsError::NotBpffs {
            path: probe.to_path_buf(),
        });
    }
    std::fs::create_dir_all(root).map_err(|source| BpffsError::Create {
        path: root.to_path_buf(),
        source,
    })
}
