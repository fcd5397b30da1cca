//! Atomic file replacement and the table lock.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write as _},
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
};

/// Replaces `path` with `content`: a temporary file in the same directory,
/// fsync, rename over the target, fsync the directory. A crash at any point
/// leaves the old file or the new one, never a mix.
pub fn write_atomic(path: &Path, content: &[u8]) -> io::Result<()> {
    stage(path, content)?.commit()
}

/// A file written and synced beside its target, not yet in place. Two
/// files changed together are both staged before either is committed, so
/// a failure to write one leaves both as they were. Dropped uncommitted,
/// the temporary file is removed.
#[derive(Debug)]
pub struct Staged {
    tmp: PathBuf,
    path: PathBuf,
    dir: PathBuf,
    committed: bool,
}

/// Writes `content` next to `path`. Fails before writing anything if
/// `path` exists and a rename could not replace it (a directory).
pub fn stage(path: &Path, content: &[u8]) -> io::Result<Staged> {
    if fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        return Err(io::Error::new(
            io::ErrorKind::IsADirectory,
            "is a directory",
        ));
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    fs::create_dir_all(&dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let staged = Staged {
        tmp: dir.join(format!(".{name}.tmp.{}", std::process::id())),
        path: path.to_path_buf(),
        dir,
        committed: false,
    };
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&staged.tmp)?;
    f.write_all(content)?;
    f.sync_all()?;
    Ok(staged)
}

impl Staged {
    /// Renames the staged file over its target and syncs the directory.
    pub fn commit(mut self) -> io::Result<()> {
        fs::rename(&self.tmp, &self.path)?;
        self.committed = true;
        File::open(&self.dir)?.sync_all()
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            drop(fs::remove_file(&self.tmp));
        }
    }
}

/// [`write_atomic`] unless `path` already holds `content`; returns whether
/// it wrote (callers signal daemons only on a real change).
pub fn write_if_changed(path: &Path, content: &str) -> io::Result<bool> {
    if fs::read_to_string(path).is_ok_and(|old| old == content) {
        return Ok(false);
    }
    write_atomic(path, content.as_bytes())?;
    Ok(true)
}

/// An exclusive `flock` on `<path>.lock`, released on drop.
#[derive(Debug)]
pub struct Lock {
    _file: File,
    pub path: PathBuf,
}

impl Lock {
    pub fn exclusive(target: &Path) -> io::Result<Self> {
        let mut name = target.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        // SAFETY: valid open fd; flock has no memory effects.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { _file: file, path })
    }
}
