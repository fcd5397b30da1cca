//! `cargo xtask setup`: everything a fresh machine lacks, and nothing else.
//!
//! Checks first (one `dpkg-query`, a few stats), installs only what is
//! missing, so a second run takes well under 2 s.

use std::{path::Path, process::Command, time::Instant};

use anyhow::{Context as _, Result, bail};

use crate::{
    cmd::{self, output, succeeds},
    guest,
};

/// Compiler with a precompiled `core` for bpfel-unknown-none.
const DEBIAN_EBPF_TOOLCHAIN: &[&str] = &["rustc-web", "libstd-rust-web-dev-bpf"];
/// What `cargo install bpf-linker --features llvm-22` links against.
const BPF_LINKER_BUILD: &[&str] = &[
    "llvm-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "libpolly-22-dev",
];
/// Tools the lab and the tests run.
const LAB_TOOLS: &[&str] = &[
    "iproute2",
    "util-linux",
    "procps",
    "dnsmasq-base",
    "nginx-light",
    "busybox-static",
    "curl",
    "openssl",
];
const BPF_LINKER_VERSION: &str = "0.13.0";

pub(crate) fn run() -> Result<()> {
    let started = Instant::now();
    let upstream = nightly_has_rust_src();
    let linker_ok = bpf_linker_ok();
    let mut wanted: Vec<&str> = LAB_TOOLS.to_vec();
    wanted.extend(guest::HOST_TOOLS);
    if !upstream {
        wanted.extend(DEBIAN_EBPF_TOOLCHAIN);
    }
    if !linker_ok {
        wanted.extend(BPF_LINKER_BUILD);
    }
    let missing = missing_packages(&wanted)?;
    if !missing.is_empty() {
        require_root(&format!("install {}", missing.join(" ")))?;
        apt_install(&missing)?;
    }
    if !linker_ok {
        install_bpf_linker()?;
    }
    mount_bpffs()?;
    guest::ensure()?;
    eprintln!(
        "setup: ready ({} eBPF toolchain, bpf-linker {BPF_LINKER_VERSION}, bpffs, qemu and guest kernel) in {:.2} s",
        if upstream {
            "rustup nightly + rust-src"
        } else {
            "Debian rustc-web"
        },
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Installs `packages` that are missing (tools only some tasks need).
pub(crate) fn ensure_packages(packages: &[&str]) -> Result<()> {
    let missing = missing_packages(packages)?;
    if !missing.is_empty() {
        require_root(&format!("install {}", missing.join(" ")))?;
        apt_install(&missing)?;
    }
    Ok(())
}

fn is_root() -> bool {
    output(Command::new("id").arg("-u")).is_some_and(|s| s.trim() == "0")
}

fn require_root(what: &str) -> Result<()> {
    if !is_root() {
        bail!("setup: must run as root to {what}");
    }
    Ok(())
}

fn nightly_has_rust_src() -> bool {
    output(Command::new("rustup").args(["run", "nightly", "rustc", "--print", "sysroot"]))
        .is_some_and(|sysroot| {
            Path::new(sysroot.trim())
                .join("lib/rustlib/src/rust/library/core")
                .exists()
        })
}

fn cargo_bin(name: &str) -> std::path::PathBuf {
    let home = std::env::var_os("CARGO_HOME").map_or_else(
        || Path::new(&std::env::var_os("HOME").unwrap_or_default()).join(".cargo"),
        Into::into,
    );
    home.join("bin").join(name)
}

fn bpf_linker_ok() -> bool {
    output(Command::new(cargo_bin("bpf-linker")).arg("--version"))
        .is_some_and(|v| v.contains(BPF_LINKER_VERSION))
}

/// Packages of `wanted` that dpkg does not report as installed.
fn missing_packages<'a>(wanted: &[&'a str]) -> Result<Vec<&'a str>> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Package} ${Status}\n"])
        .args(wanted)
        .output()
        .context("setup: dpkg-query not found (a Debian-based machine is required)")?;
    let listing = String::from_utf8_lossy(&out.stdout);
    Ok(wanted
        .iter()
        .copied()
        .filter(|pkg| {
            !listing.lines().any(|l| {
                l.split_once(' ')
                    .is_some_and(|(name, status)| name == *pkg && status.ends_with(" installed"))
            })
        })
        .collect())
}

fn apt_install(packages: &[&str]) -> Result<()> {
    eprintln!("setup: installing {}", packages.join(" "));
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if install() {
        return Ok(());
    }
    // A fresh machine's package lists may be stale or empty.
    cmd::run({
        let mut c = Command::new("apt-get");
        c.args(["update", "-q"]);
        c
    })?;
    if !install() {
        bail!(
            "setup: cannot install {} (apt-get failed; see above)",
            packages.join(" ")
        );
    }
    Ok(())
}

fn install_bpf_linker() -> Result<()> {
    eprintln!("setup: installing bpf-linker {BPF_LINKER_VERSION} (about a minute)");
    let path = format!(
        "/usr/lib/llvm-22/bin:{}",
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.args([
        "install",
        &format!("bpf-linker@{BPF_LINKER_VERSION}"),
        "--locked",
        "--no-default-features",
        "--features",
        "llvm-22",
    ])
    .env("PATH", path);
    cmd::run(cmd).context("setup: cannot install bpf-linker")
}

fn mount_bpffs() -> Result<()> {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    if mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some("/sys/fs/bpf") && l.contains(" bpf "))
    {
        return Ok(());
    }
    require_root("mount bpffs on /sys/fs/bpf")?;
    if !succeeds(Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"])) {
        bail!("setup: cannot mount bpffs on /sys/fs/bpf");
    }
    Ok(())
}
