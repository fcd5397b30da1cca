//! `appvm vm attach`: load, pin and attach the guard, or update the policy of
//! a guard already attached without ever leaving the interface unfiltered.
//!
//! A fresh attach is staged in a hidden directory and renamed into place as
//! the last step: a failure at any point removes the staging directory, which
//! drops every pin and link it holds, so nothing is left half-applied.

use std::{
    io,
    path::{Path, PathBuf},
};

use appvm_common::{VmPolicy, pins::vm};
use aya::{EbpfError, maps::MapError, programs::TcAttachType};

use super::{VmGuardConfig, open_policy, pin_dir};
use crate::policy_slots::PolicyMapError;
use crate::{
    bpffs::{self, BpffsError},
    link_info::pinned_link_info,
    netdev::{self, NetdevError},
    object,
    pinning::{self, Attachment, PinningError},
};

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error(transparent)]
    Netdev(#[from] NetdevError),
    #[error(transparent)]
    Bpffs(#[from] BpffsError),
    #[error(transparent)]
    Pinning(#[from] PinningError),
    #[error("cannot read link {path}: {source}")]
    LinkInfo { path: PathBuf, source: io::Error },
    #[error("cannot open the eBPF object: {0}")]
    Object(#[from] EbpfError),
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

/// Attaches the guard described by `cfg`, pinning under `root`. A fresh
/// attach is staged (see [`pinning::staged`]): nothing is left half-applied.
pub fn attach(cfg: &VmGuardConfig, root: &Path) -> Result<AttachOutcome, AttachError> {
    let ifindex = netdev::ifindex(&cfg.iface)?;
    let policy = cfg.to_policy();
    let dir = pin_dir(root, &cfg.iface);
    if dir.exists() {
        let slot = update(&dir, &cfg.iface, ifindex, &policy)?;
        return Ok(AttachOutcome::Updated { dir, slot });
    }
    bpffs::ensure_root(root)?;
    pinning::staged(&dir, |staging| attach_fresh(staging, cfg, &policy))?;
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
        let info = pinned_link_info(&path).map_err(|source| AttachError::LinkInfo {
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
    let mut maps = open_policy(dir)?;
    Ok(maps.install(policy)?)
}

fn attach_fresh(staging: &Path, cfg: &VmGuardConfig, policy: &VmPolicy) -> Result<(), AttachError> {
    let mut ebpf = object::open()?;
    pinning::pin_maps(
        &ebpf,
        staging,
        &[
            (vm::MAP_POLICY, vm::PIN_MAP_POLICY),
            (vm::MAP_POLICY_SLOT, vm::PIN_MAP_POLICY_SLOT),
            (vm::MAP_COUNTERS, vm::PIN_MAP_COUNTERS),
        ],
    )?;
    pinning::pin_maps(&ebpf, staging, appvm_common::pins::events::MAPS)?;
    // The policy is in force before any program sees a packet.
    open_policy(staging)?.install(policy)?;
    let iface = cfg.iface.as_str();
    pinning::attach_xdp(
        &mut ebpf,
        staging,
        Attachment {
            program: vm::PROG_INGRESS,
            iface,
            pin_prog: vm::PIN_PROG_INGRESS,
            pin_link: vm::PIN_LINK_INGRESS,
        },
    )?;
    pinning::attach_tcx(
        &mut ebpf,
        staging,
        Attachment {
            program: vm::PROG_INGRESS_VLAN,
            iface,
            pin_prog: vm::PIN_PROG_INGRESS_VLAN,
            pin_link: vm::PIN_LINK_INGRESS_VLAN,
        },
        TcAttachType::Ingress,
    )?;
    pinning::attach_tcx(
        &mut ebpf,
        staging,
        Attachment {
            program: vm::PROG_EGRESS,
            iface,
            pin_prog: vm::PIN_PROG_EGRESS,
            pin_link: vm::PIN_LINK_EGRESS,
        },
        TcAttachType::Egress,
    )?;
    Ok(())
}
