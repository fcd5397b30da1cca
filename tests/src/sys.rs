//! Preconditions and external commands, failing loudly.

use std::{
    path::PathBuf,
    process::{Command, Output},
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
        appvm::bpffs::is_bpffs(std::path::Path::new("/sys/fs/bpf")),
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
