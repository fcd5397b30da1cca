//! Preconditions and external commands, failing loudly.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

/// Panics unless this process can run the privileged tests: root, bpffs
/// mounted, `ip` and `nsenter` present. In CI a missing privilege must fail
/// the run, never skip a test.
pub fn require_privileges() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "privileged test: run as root (cargo xtask test does the set-up)"
    );
    assert!(
        appvm::bpffs::is_bpffs(Path::new("/sys/fs/bpf")),
        "privileged test: bpffs is not mounted on /sys/fs/bpf (cargo xtask setup mounts it)"
    );
    for tool in ["ip", "nsenter"] {
        assert!(
            which(tool).is_some(),
            "privileged test: `{tool}` not found (install iproute2 / util-linux)"
        );
    }
}

/// The first `name` on `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Runs `cmd`, returning its output, or an error with its stderr.
pub fn run(cmd: &mut Command) -> Result<Output, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The `appvm` binary under test: `$APPVM_BIN`, else next to this test
/// binary's `deps/` directory (where `cargo build` puts it).
pub fn appvm_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("APPVM_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("appvm");
    assert!(
        bin.is_file(),
        "{} not built: run `cargo xtask test` (it builds appvm first) or set APPVM_BIN",
        bin.display()
    );
    bin
}

/// Polls `ready` every 2 ms until it holds; an error naming `what` after
/// `timeout`.
pub fn wait_for(
    what: &str,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Err(format!("{what}: not ready after {timeout:?}"))
}

/// Every path below `dir` (files, directories, pins), depth first.
pub fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            out.push(e.path());
            out.extend(tree(&e.path()));
        }
    }
    out
}

/// A directory removed, with everything in it, when this is dropped.
#[derive(Debug)]
pub struct RemoveOnDrop(pub PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        drop(std::fs::remove_dir_all(&self.0));
    }
}

/// A command that must have succeeded: its stdout (its stderr otherwise).
#[track_caller]
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A command refused as bad input: exit 2, one line naming `expect`.
#[track_caller]
pub fn rejected(out: &Output, expect: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "not one line: {stderr}"
    );
    assert!(stderr.contains(expect), "{stderr:?} lacks {expect:?}");
}
