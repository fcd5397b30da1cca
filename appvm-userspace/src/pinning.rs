//! Loading, attaching and pinning programs; staged so that a failure leaves
//! nothing behind.
//!
//! A fresh attachment is built in a staging directory next to its final
//! place and renamed into place as the last step. On any error the staging
//! directory is removed, which drops every pin (and so every link) in it.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf,
    pin::PinError,
    programs::{
        LinkOrder, ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode,
        links::{FdLink, LinkError},
        tc::TcAttachOptions,
    },
};

#[derive(Debug, thiserror::Error)]
pub enum PinningError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("program {name}: {source}")]
    Program {
        name: &'static str,
        source: ProgramError,
    },
    #[error("program or map {name} missing from the eBPF object")]
    Missing { name: &'static str },
    #[error("cannot pin {path}: {source}")]
    Pin { path: PathBuf, source: PinError },
    #[error("link of {name}: {source}")]
    Link {
        name: &'static str,
        source: LinkError,
    },
}

/// Runs `build` on a fresh staging directory for `dir`, then renames it to
/// `dir` and returns what `build` returned. On error, removes the staging
/// directory and returns the error.
pub fn staged<T, E: From<PinningError>>(
    dir: &Path,
    build: impl FnOnce(&Path) -> Result<T, E>,
) -> Result<T, E> {
    let root = dir.parent().unwrap_or(Path::new("/"));
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    // No dots: bpffs reserves them.
    let staging = root.join(format!("_staging_{name}_{}", std::process::id()));
    let result = fs::create_dir(&staging)
        .map_err(|source| {
            E::from(PinningError::Io {
                what: "cannot create",
                path: staging.clone(),
                source,
            })
        })
        .and_then(|()| build(&staging))
        .and_then(|built| {
            fs::rename(&staging, dir).map(|()| built).map_err(|source| {
                E::from(PinningError::Io {
                    what: "cannot move pins into",
                    path: dir.to_path_buf(),
                    source,
                })
            })
        });
    if result.is_err()
        && staging.exists()
        && let Err(cleanup) = fs::remove_dir_all(&staging)
    {
        tracing::warn!(path = %staging.display(), %cleanup, "cannot remove staging pins");
    }
    result
}

/// Pins the named maps of `ebpf` as `dir/<pin>`.
pub fn pin_maps(
    ebpf: &Ebpf,
    dir: &Path,
    maps: &[(&'static str, &str)],
) -> Result<(), PinningError> {
    for &(name, pin) in maps {
        let map = ebpf.map(name).ok_or(PinningError::Missing { name })?;
        let path = dir.join(pin);
        map.pin(&path)
            .map_err(|source| PinningError::Pin { path, source })?;
    }
    Ok(())
}

/// Where and how one program is attached.
#[derive(Clone, Copy, Debug)]
pub struct Attachment<'a> {
    pub program: &'static str,
    pub iface: &'a str,
    pub pin_prog: &'a str,
    pub pin_link: &'a str,
}

fn program_err(name: &'static str) -> impl Fn(ProgramError) -> PinningError {
    move |source| PinningError::Program { name, source }
}

fn pin_link(link: FdLink, dir: &Path, pin: &str) -> Result<(), PinningError> {
    let path = dir.join(pin);
    link.pin(&path)
        .map(drop)
        .map_err(|source| PinningError::Pin { path, source })
}

/// Loads an XDP program, attaches it (driver mode where the NIC has it),
/// pins program and link into `dir`.
pub fn attach_xdp(ebpf: &mut Ebpf, dir: &Path, a: Attachment<'_>) -> Result<(), PinningError> {
    let name = a.program;
    let xdp: &mut Xdp = ebpf
        .program_mut(name)
        .ok_or(PinningError::Missing { name })?
        .try_into()
        .map_err(program_err(name))?;
    xdp.load().map_err(program_err(name))?;
    let path = dir.join(a.pin_prog);
    xdp.pin(&path)
        .map_err(|source| PinningError::Pin { path, source })?;
    let id = xdp
        .attach(a.iface, XdpMode::default())
        .map_err(program_err(name))?;
    let link: FdLink = xdp
        .take_link(id)
        .map_err(program_err(name))?
        .try_into()
        .map_err(|source| PinningError::Link { name, source })?;
    pin_link(link, dir, a.pin_link)
}

/// Loads a tc program, attaches it with tcx first in its chain (a program
/// before it that returned "pass" would bypass it), pins program and link.
pub fn attach_tcx(
    ebpf: &mut Ebpf,
    dir: &Path,
    a: Attachment<'_>,
    direction: TcAttachType,
) -> Result<(), PinningError> {
    let name = a.program;
    let tc: &mut SchedClassifier = ebpf
        .program_mut(name)
        .ok_or(PinningError::Missing { name })?
        .try_into()
        .map_err(program_err(name))?;
    tc.load().map_err(program_err(name))?;
    let path = dir.join(a.pin_prog);
    tc.pin(&path)
        .map_err(|source| PinningError::Pin { path, source })?;
    let id = tc
        .attach_with_options(
            a.iface,
            direction,
            TcAttachOptions::TcxOrder(LinkOrder::first()),
        )
        .map_err(program_err(name))?;
    let link: FdLink = tc
        .take_link(id)
        .map_err(program_err(name))?
        .try_into()
        .map_err(|source| PinningError::Link { name, source })?;
    pin_link(link, dir, a.pin_link)
}

/// Removes a pin directory: link pins first (that detaches), then the rest.
/// Returns the pins removed.
pub fn remove_pins(dir: &Path, link_pins: &[&str]) -> io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let rest: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    for path in link_pins.iter().map(|name| dir.join(name)).chain(rest) {
        match fs::remove_file(&path) {
            Ok(()) => removed.push(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        }
    }
    fs::remove_dir(dir)?;
    Ok(removed)
}
