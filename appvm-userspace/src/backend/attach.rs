//! Attaching the backend programs, or adopting them after a restart.
//!
//! The service loads and pins once; when it restarts (or is killed) the
//! pins keep enforcing, and the next start adopts the pinned maps and links
//! as they are: there is no moment without the programs.

use std::{
    io,
    path::{Path, PathBuf},
};

use appvm_common::{backend::BackendPolicy, pins::backend as pins};
use aya::{EbpfError, maps::MapError, programs::TcAttachType};

use super::{
    config::{BackendConfig, BackendConfigError},
    maps::{BackendMapError, BackendMaps, map_pin},
    sync::{SyncError, SyncReport, Syncer},
};
use crate::{
    bpffs::{self, BpffsError},
    link_info::pinned_link_info,
    netdev::{self, NetdevError},
    object,
    pinning::{self, Attachment, PinningError},
    table::Table,
};

#[derive(Debug, thiserror::Error)]
pub enum BackendAttachError {
    #[error(transparent)]
    Config(#[from] BackendConfigError),
    #[error(transparent)]
    Netdev(#[from] NetdevError),
    #[error(transparent)]
    Bpffs(#[from] BpffsError),
    #[error(transparent)]
    Pinning(#[from] PinningError),
    #[error("cannot open the eBPF object: {0}")]
    Object(#[from] EbpfError),
    #[error(transparent)]
    Maps(#[from] BackendMapError),
    #[error("cannot write policy: {0}")]
    Policy(#[from] MapError),
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error("public_iface and secure_iface are both {0}")]
    SameIface(String),
    #[error(
        "incomplete backend pins in {dir} (missing {missing}); run `appvm backend detach` first"
    )]
    Partial { dir: PathBuf, missing: String },
    #[error("cannot read link {path}: {source}")]
    LinkInfo { path: PathBuf, source: io::Error },
    #[error(
        "backend link {pin} is on ifindex {pinned}, but {iface} is {current}; run `appvm backend detach` then start again"
    )]
    Stale {
        pin: &'static str,
        iface: String,
        pinned: u32,
        current: u32,
    },
}

/// Where the backend's pins live under `root`.
pub fn pin_dir(root: &Path) -> PathBuf {
    root.join(pins::DIR)
}

/// Whether the programs were attached now or found attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attached {
    Fresh,
    Adopted,
}

fn ifaces(cfg: &BackendConfig) -> Result<(String, String), BackendAttachError> {
    let public = cfg
        .public_iface
        .clone()
        .ok_or(BackendConfigError::Missing("public_iface"))?;
    let secure = cfg
        .secure_iface
        .clone()
        .ok_or(BackendConfigError::Missing("secure_iface"))?;
    if public == secure {
        return Err(BackendAttachError::SameIface(public));
    }
    Ok((public, secure))
}

/// Attaches the backend programs with `table` already in their maps, or
/// adopts a running attachment (installing the configured policy and
/// syncing the table into it). Returns the pinned maps.
pub fn ensure_attached(
    cfg: &BackendConfig,
    root: &Path,
    table: &Table,
    cpus: usize,
) -> Result<(Attached, BackendMaps, Syncer, SyncReport), BackendAttachError> {
    let policy = cfg.to_policy()?;
    let (public, secure) = ifaces(cfg)?;
    let public_index = netdev::ifindex(&public)?;
    let secure_index = netdev::ifindex(&secure)?;
    let dir = pin_dir(root);
    if dir.exists() {
        check_pins(&dir, &public, public_index, &secure, secure_index)?;
        let mut maps = BackendMaps::open(&dir)?;
        if maps.policy.active()? != policy {
            maps.policy.install(&policy)?;
        }
        let mut syncer = Syncer::adopt(&maps)?;
        let report = syncer.sync(&maps, table, cpus)?;
        return Ok((Attached::Adopted, maps, syncer, report));
    }
    bpffs::ensure_root(root)?;
    // The fresh maps were filled in the staging directory: the syncer that
    // filled them knows their content, nothing needs reading back.
    let (syncer, report) = pinning::staged(&dir, |staging| {
        attach_fresh(staging, &policy, table, cpus, &public, &secure)
    })?;
    Ok((Attached::Fresh, BackendMaps::open(&dir)?, syncer, report))
}

fn check_pins(
    dir: &Path,
    public: &str,
    public_index: u32,
    secure: &str,
    secure_index: u32,
) -> Result<(), BackendAttachError> {
    let expected = [
        (pins::PIN_LINK_PUBLIC, public, public_index),
        (pins::PIN_LINK_PUBLIC_EGRESS, public, public_index),
        (pins::PIN_LINK_SECURE, secure, secure_index),
    ];
    let mut required: Vec<String> = pins::MAPS.iter().map(|m| map_pin(m)).collect();
    required.extend(expected.iter().map(|(pin, _, _)| (*pin).to_owned()));
    if let Some(missing) = required.into_iter().find(|p| !dir.join(p).exists()) {
        return Err(BackendAttachError::Partial {
            dir: dir.to_path_buf(),
            missing,
        });
    }
    for (pin, iface, current) in expected {
        let path = dir.join(pin);
        let info = pinned_link_info(&path).map_err(|source| BackendAttachError::LinkInfo {
            path: path.clone(),
            source,
        })?;
        if info.ifindex != current {
            return Err(BackendAttachError::Stale {
                pin,
                iface: iface.to_owned(),
                pinned: info.ifindex,
                current,
            });
        }
    }
    Ok(())
}

fn attach_fresh(
    staging: &Path,
    policy: &BackendPolicy,
    table: &Table,
    cpus: usize,
    public: &str,
    secure: &str,
) -> Result<(Syncer, SyncReport), BackendAttachError> {
    let mut ebpf = object::open()?;
    let names: Vec<(&'static str, String)> = pins::MAPS.iter().map(|&m| (m, map_pin(m))).collect();
    let map_pins: Vec<(&'static str, &str)> = names.iter().map(|(m, p)| (*m, p.as_str())).collect();
    pinning::pin_maps(&ebpf, staging, &map_pins)?;
    pinning::pin_maps(&ebpf, staging, appvm_common::pins::events::MAPS)?;
    // Policy and table are in the maps before any program sees a packet.
    let mut maps = BackendMaps::open(staging)?;
    maps.policy.install(policy)?;
    let mut syncer = Syncer::default();
    let report = syncer.sync(&maps, table, cpus)?;
    pinning::attach_tcx(
        &mut ebpf,
        staging,
        Attachment {
            program: pins::PROG_PUBLIC_EGRESS,
            iface: public,
            pin_prog: pins::PIN_PROG_PUBLIC_EGRESS,
            pin_link: pins::PIN_LINK_PUBLIC_EGRESS,
        },
        TcAttachType::Egress,
    )?;
    pinning::attach_xdp(
        &mut ebpf,
        staging,
        Attachment {
            program: pins::PROG_PUBLIC,
            iface: public,
            pin_prog: pins::PIN_PROG_PUBLIC,
            pin_link: pins::PIN_LINK_PUBLIC,
        },
    )?;
    pinning::attach_xdp(
        &mut ebpf,
        staging,
        Attachment {
            program: pins::PROG_SECURE,
            iface: secure,
            pin_prog: pins::PIN_PROG_SECURE,
            pin_link: pins::PIN_LINK_SECURE,
        },
    )?;
    Ok((syncer, report))
}

/// Removes every backend pin (links first: that detaches the programs).
pub fn detach(root: &Path) -> io::Result<Vec<PathBuf>> {
    let dir = pin_dir(root);
    if !dir.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no backend programs pinned at {}", dir.display()),
        ));
    }
    pinning::remove_pins(&dir, pins::LINK_PINS)
}
