//! `appvm vm attach`: load, pin and attach the guard, or update the policy of
//! a guard already attached without ever leaving the interface unfiltered.
//!
//! A fresh attach is staged in a hidden directory and renamed into place as
//! the last step: a failure at any point removes the staging directory, which
//! drops every pin and link it holds, so nothing is left half-applied.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use appvm_common::{VmPolicy, pins::vm};
use aya::{
    Ebpf, EbpfError,
    maps::MapError,
    pin::PinError,
    programs::{
        LinkOrder, ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode,
        links::{FdLink, LinkError},
        tc::TcAttachOptions,
    },
};

use super::{VmGuardConfig, maps::PolicyMapError, maps::PolicyMaps, pin_dir, staging_dir};
use crate::{
    bpffs::{self, BpffsError},
    link_info::pinned_link_info,
    netdev::{self, NetdevError},
    object,
};

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error(transparent)]
    Netdev(#[from] NetdevError),
    #[error(transparent)]
    Bpffs(#[from] BpffsError),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("cannot open the eBPF object: {0}")]
    Object(#[from] EbpfError),
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
    #[error(transparent)]
    PolicyMap(#[from] PolicyMapError),
    #[error("cannot write policy: {0}")]
    PolicyWrite(#[from] MapError),
    #[error(
        "incomplete guard pins in {dir} (missing {missing}); run `appvm vm detach --iface {iface}` first"
    )]
    Partial {
        dir: PathBuf,
        iface: String,
        missing: &'static str,
    },
    #[error(
        "guard pinned in {dir} is not attached to {iface} (link on ifindex {pinned}, interface is {current}); run `appvm vm detach --iface {iface}` then attach again"
    )]
    Stale {
        dir: PathBuf,
        iface: String,
        pinned: u32,
        current: u32,
    },
}

/// What `attach` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttachOutcome {
    /// Programs loaded, attached and pinned in `dir`.
    Attached { dir: PathBuf },
    /// A guard was already attached: its policy was replaced in place.
    Updated { dir: PathBuf, slot: u32 },
}

/// Attaches the guard described by `cfg`, pinning under `root`.
pub fn attach(cfg: &VmGuardConfig, root: &Path) -> Result<AttachOutcome, AttachError> {
    let ifindex = netdev::ifindex(&cfg.iface)?;
    let policy = cfg.to_policy();
    let dir = pin_dir(root, &cfg.iface);
    if dir.exists() {
        let slot = update(&dir, &cfg.iface, ifindex, &policy)?;
        return Ok(AttachOutcome::Updated { dir, slot });
    }
    bpffs::ensure_root(root)?;
    let staging = staging_dir(root, &cfg.iface);
    let result = attach_fresh(&staging, cfg, &policy).and_then(|()| {
        fs::rename(&staging, &dir).map_err(|source| AttachError::Io {
            what: "cannot move guard pins into",
            path: dir.clone(),
            source,
        })
    });
    if let Err(e) = result {
        // Removing the pins detaches the links; our own fds close on return.
        if let Err(cleanup) = fs::remove_dir_all(&staging) {
            tracing::warn!(path = %staging.display(), %cleanup, "cannot remove staging pins");
        }
        return Err(e);
    }
    Ok(AttachOutcome::Attached { dir })
}

/// Replaces the policy of an attached guard (double-buffered, no gap).
fn update(dir: &Path, iface: &str, ifindex: u32, policy: &VmPolicy) -> Result<u32, AttachError> {
    if let Some(missing) = vm::ALL_PINS.iter().find(|p| !dir.join(p).exists()) {
        return Err(AttachError::Partial {
            dir: dir.to_path_buf(),
            iface: iface.to_owned(),
            missing,
        });
    }
    for &link in vm::LINK_PINS {
        let path = dir.join(link);
        let info = pinned_link_info(&path).map_err(|source| AttachError::Io {
            what: "cannot read link",
            path: path.clone(),
            source,
        })?;
        if info.ifindex != ifindex {
            return Err(AttachError::Stale {
                dir: dir.to_path_buf(),
                iface: iface.to_owned(),
                pinned: info.ifindex,
                current: ifindex,
            });
        }
    }
    let mut maps = PolicyMaps::open_pinned(dir)?;
    Ok(maps.install(policy)?)
}

fn attach_fresh(staging: &Path, cfg: &VmGuardConfig, policy: &VmPolicy) -> Result<(), AttachError> {
    fs::create_dir(staging).map_err(|source| AttachError::Io {
        what: "cannot create",
        path: staging.to_path_buf(),
        source,
    })?;
    let mut ebpf = object::open()?;
    for (name, pin) in [
        (vm::MAP_POLICY, vm::PIN_MAP_POLICY),
        (vm::MAP_POLICY_SLOT, vm::PIN_MAP_POLICY_SLOT),
        (vm::MAP_COUNTERS, vm::PIN_MAP_COUNTERS),
    ] {
        let map = ebpf.map(name).ok_or(AttachError::Missing { name })?;
        let path = staging.join(pin);
        map.pin(&path)
            .map_err(|source| AttachError::Pin { path, source })?;
    }
    // The policy is in force before any program sees a packet.
    PolicyMaps::open_pinned(staging)?.install(policy)?;

    attach_xdp(&mut ebpf, staging, &cfg.iface)?;
    // tcx programs go first in their chain: one before them that returns
    // "pass" would otherwise bypass the guard.
    attach_tcx(
        &mut ebpf,
        staging,
        &cfg.iface,
        TcxProgram {
            name: vm::PROG_INGRESS_VLAN,
            pin_prog: vm::PIN_PROG_INGRESS_VLAN,
            pin_link: vm::PIN_LINK_INGRESS_VLAN,
            attach_type: TcAttachType::Ingress,
        },
    )?;
    attach_tcx(
        &mut ebpf,
        staging,
        &cfg.iface,
        TcxProgram {
            name: vm::PROG_EGRESS,
            pin_prog: vm::PIN_PROG_EGRESS,
            pin_link: vm::PIN_LINK_EGRESS,
            attach_type: TcAttachType::Egress,
        },
    )
}

fn attach_xdp(ebpf: &mut Ebpf, staging: &Path, iface: &str) -> Result<(), AttachError> {
    let name = vm::PROG_INGRESS;
    let program = |source| AttachError::Program { name, source };
    let xdp: &mut Xdp = ebpf
        .program_mut(name)
        .ok_or(AttachError::Missing { name })?
        .try_into()
        .map_err(program)?;
    xdp.load().map_err(program)?;
    pin_program(
        xdp.pin(staging.join(vm::PIN_PROG_INGRESS)),
        staging,
        vm::PIN_PROG_INGRESS,
    )?;
    let id = xdp.attach(iface, XdpMode::default()).map_err(program)?;
    let link: FdLink = xdp
        .take_link(id)
        .map_err(program)?
        .try_into()
        .map_err(|source| AttachError::Link { name, source })?;
    pin_link(link, staging, vm::PIN_LINK_INGRESS)
}

struct TcxProgram {
    name: &'static str,
    pin_prog: &'static str,
    pin_link: &'static str,
    attach_type: TcAttachType,
}

fn attach_tcx(
    ebpf: &mut Ebpf,
    staging: &Path,
    iface: &str,
    p: TcxProgram,
) -> Result<(), AttachError> {
    let name = p.name;
    let program = |source| AttachError::Program { name, source };
    let tc: &mut SchedClassifier = ebpf
        .program_mut(name)
        .ok_or(AttachError::Missing { name })?
        .try_into()
        .map_err(program)?;
    tc.load().map_err(program)?;
    pin_program(tc.pin(staging.join(p.pin_prog)), staging, p.pin_prog)?;
    let id = tc
        .attach_with_options(
            iface,
            p.attach_type,
            TcAttachOptions::TcxOrder(LinkOrder::first()),
        )
        .map_err(program)?;
    let link: FdLink = tc
        .take_link(id)
        .map_err(program)?
        .try_into()
        .map_err(|source| AttachError::Link { name, source })?;
    pin_link(link, staging, p.pin_link)
}

fn pin_program(result: Result<(), PinError>, dir: &Path, name: &str) -> Result<(), AttachError> {
    result.map_err(|source| AttachError::Pin {
        path: dir.join(name),
        source,
    })
}

fn pin_link(link: FdLink, dir: &Path, name: &str) -> Result<(), AttachError> {
    let path = dir.join(name);
    link.pin(&path)
        .map(drop)
        .map_err(|source| AttachError::Pin { path, source })
}
