//! What the qemu guest test needs: `qemu-system-x86_64` and a Debian
//! kernel unpacked into a cache, both fetched once.
//!
//! Debian bookworm's own qemu-system-x86 conflicts with the qemu-utils this
//! machine kind carries (10.0, from bookworm-backports), so qemu comes from
//! backports too. The backports source lives in a private apt directory:
//! the machine's own sources and package lists are never changed. The
//! kernel is backports' too (6.12): its tc programs attach with tcx, as on
//! the host.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::cmd::{self, output, succeeds};

/// The cache the guest test reads (`APPVM_GUEST_CACHE` overrides it; the
/// test crate uses the same default).
pub(crate) fn cache_dir() -> PathBuf {
    std::env::var_os("APPVM_GUEST_CACHE")
        .map_or_else(|| PathBuf::from("/var/cache/appvm/guest"), PathBuf::from)
}

/// Packages the guest test runs on the host besides qemu.
pub(crate) const HOST_TOOLS: &[&str] = &["binutils", "xz-utils"];

/// Installs qemu and unpacks the kernel unless already there.
pub(crate) fn ensure() -> Result<()> {
    let cache = cache_dir();
    let qemu_ok = succeeds(Command::new("qemu-system-x86_64").arg("--version"));
    let kernel_ok = kernel_image(&cache).is_some();
    if qemu_ok && kernel_ok {
        return Ok(());
    }
    let apt = PrivateApt::new(&cache.join("apt"))?;
    apt.update()?;
    if !qemu_ok {
        eprintln!("setup: installing qemu-system-x86 from {}", apt.backports);
        apt.run(
            "install",
            &[
                "-y",
                "-q",
                "--no-install-recommends",
                "-t",
                &apt.backports,
                "qemu-system-x86",
            ],
        )?;
    }
    if !kernel_ok {
        unpack_kernel(&apt, &cache)?;
    }
    Ok(())
}

/// `boot/vmlinuz-*` in the unpacked kernel, if any.
pub(crate) fn kernel_image(cache: &Path) -> Option<PathBuf> {
    fs::read_dir(cache.join("kernel/boot"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
}

fn unpack_kernel(apt: &PrivateApt, cache: &Path) -> Result<()> {
    // The meta package names the current backports kernel.
    let depends = output(Command::new("apt-cache").args(apt.options()).args([
        "depends",
        "-t",
        &apt.backports,
        "linux-image-amd64",
    ]))
    .context("setup: apt-cache depends linux-image-amd64")?;
    let Some(image) = depends
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-"))
    else {
        bail!(
            "setup: no kernel package behind linux-image-amd64 in {}",
            apt.backports
        );
    };
    eprintln!("setup: fetching the guest kernel {image}");
    let debs = cache.join("debs");
    fs::create_dir_all(&debs)?;
    let mut download = Command::new("apt-get");
    download
        .args(apt.options())
        .args(["download", "-q", image])
        .current_dir(&debs);
    cmd::run(download)?;
    let deb = fs::read_dir(&debs)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{image}_")))
        })
        .with_context(|| format!("setup: {image} was not downloaded"))?;
    // Unpack beside, then rename: a half-unpacked kernel is never found.
    let staging = cache.join("kernel.partial");
    drop(fs::remove_dir_all(&staging));
    let mut unpack = Command::new("dpkg");
    unpack.arg("-x").arg(&deb).arg(&staging);
    cmd::run(unpack)?;
    let kernel = cache.join("kernel");
    drop(fs::remove_dir_all(&kernel));
    fs::rename(&staging, &kernel)?;
    fs::remove_file(&deb)?;
    Ok(())
}

/// apt with the machine's sources plus `<codename>-backports`, and package
/// lists of its own.
struct PrivateApt {
    dir: PathBuf,
    backports: String,
}

impl PrivateApt {
    fn new(dir: &Path) -> Result<Self> {
        let release = fs::read_to_string("/etc/os-release").unwrap_or_default();
        let Some(codename) = release
            .lines()
            .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
            .map(|c| c.trim_matches('"').to_owned())
        else {
            bail!("setup: /etc/os-release names no Debian release (VERSION_CODENAME)");
        };
        let backports = format!("{codename}-backports");
        let parts = dir.join("sources.list.d");
        fs::create_dir_all(dir.join("lists/partial"))?;
        fs::create_dir_all(&parts)?;
        for entry in fs::read_dir("/etc/apt/sources.list.d")? {
            let path = entry?.path();
            if let Some(name) = path.file_name() {
                fs::copy(&path, parts.join(name))?;
            }
        }
        if Path::new("/etc/apt/sources.list").exists() {
            fs::copy("/etc/apt/sources.list", parts.join("machine.list"))?;
        }
        fs::write(
            parts.join("appvm-backports.sources"),
            format!(
                "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: {backports}\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
            ),
        )?;
        Ok(Self {
            dir: dir.to_path_buf(),
            backports,
        })
    }

    fn options(&self) -> Vec<String> {
        vec![
            "-o".into(),
            format!(
                "Dir::Etc::SourceParts={}",
                self.dir.join("sources.list.d").display()
            ),
            "-o".into(),
            "Dir::Etc::SourceList=/dev/null".into(),
            "-o".into(),
            format!("Dir::State::Lists={}", self.dir.join("lists").display()),
        ]
    }

    fn update(&self) -> Result<()> {
        self.run("update", &["-q"])
    }

    fn run(&self, verb: &str, args: &[&str]) -> Result<()> {
        let mut apt = Command::new("apt-get");
        apt.args(self.options())
            .arg(verb)
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive");
        cmd::run(apt).with_context(|| format!("setup: apt-get {verb} (private backports lists)"))
    }
}
