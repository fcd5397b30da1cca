//! `appvm vm status`: what is attached, the policy in force, the counters.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use appvm_common::pins::vm;
use aya::maps::MapError;
use serde::Serialize;

use super::{open_policy, pin_dir, policy::PolicyView};
use crate::policy_slots::PolicyMapError;
use crate::{
    counters::{CountersError, read_vm_pinned},
    link_info::{PinnedLinkInfo, pinned_link_info},
    netdev,
};

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("no guard attached on {iface} (nothing pinned at {dir})")]
    NotAttached { iface: String, dir: PathBuf },
    #[error("cannot list {path}: {source}")]
    List { path: PathBuf, source: io::Error },
    #[error(transparent)]
    PolicyMap(#[from] PolicyMapError),
    #[error("cannot read policy: {0}")]
    Policy(#[from] MapError),
    #[error(transparent)]
    Counters(#[from] CountersError),
}

/// One reason's counter, as printed and as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CounterView {
    pub reason: &'static str,
    pub direction: &'static str,
    pub verdict: &'static str,
    pub packets: u64,
    pub bytes: u64,
}

/// The state of one interface's guard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VmStatus {
    pub iface: String,
    pub pin_dir: PathBuf,
    /// Both links are attached to the interface of that name right now.
    pub attached: bool,
    pub ifindex: Option<u32>,
    pub ingress_link: Option<PinnedLinkInfo>,
    pub ingress_vlan_link: Option<PinnedLinkInfo>,
    pub egress_link: Option<PinnedLinkInfo>,
    pub policy_slot: u32,
    pub policy: PolicyView,
    pub counters: Vec<CounterView>,
}

/// Status of `iface`, or of every guard under `root` when `iface` is `None`.
pub fn status(root: &Path, iface: Option<&str>) -> Result<Vec<VmStatus>, StatusError> {
    if let Some(iface) = iface {
        let dir = pin_dir(root, iface);
        if !dir.is_dir() {
            return Err(StatusError::NotAttached {
                iface: iface.to_owned(),
                dir,
            });
        }
        return Ok(vec![one(iface, &dir)?]);
    }
    let entries = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(StatusError::List {
                path: root.to_path_buf(),
                source,
            });
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        // Guard directories only (the backend's pins may share the root).
        .filter(|e| e.path().join(vm::PIN_MAP_POLICY).exists())
        .filter_map(|e| super::iface_of_pin_dir(&e.file_name().to_string_lossy()))
        .collect();
    names.sort();
    names
        .iter()
        .map(|name| one(name, &pin_dir(root, name)))
        .collect()
}

fn one(iface: &str, dir: &Path) -> Result<VmStatus, StatusError> {
    let ifindex = netdev::ifindex(iface).ok();
    let ingress_link = pinned_link_info(&dir.join(vm::PIN_LINK_INGRESS)).ok();
    let ingress_vlan_link = pinned_link_info(&dir.join(vm::PIN_LINK_INGRESS_VLAN)).ok();
    let egress_link = pinned_link_info(&dir.join(vm::PIN_LINK_EGRESS)).ok();
    let attached = ifindex.is_some_and(|index| {
        [ingress_link, ingress_vlan_link, egress_link]
            .iter()
            .all(|l| l.is_some_and(|l| l.ifindex == index))
    });
    let maps = open_policy(dir)?;
    let policy_slot = maps.active_slot()?;
    let policy = PolicyView::from(&maps.active()?);
    let counters = read_vm_pinned(&dir.join(vm::PIN_MAP_COUNTERS))?
        .into_iter()
        .map(|rc| CounterView {
            reason: rc.reason.name(),
            direction: if rc.reason.is_ingress() {
                "ingress"
            } else {
                "egress"
            },
            verdict: if rc.reason.passes() { "pass" } else { "drop" },
            packets: rc.counter.packets,
            bytes: rc.counter.bytes,
        })
        .collect();
    Ok(VmStatus {
        iface: iface.to_owned(),
        pin_dir: dir.to_path_buf(),
        attached,
        ifindex,
        ingress_link,
        ingress_vlan_link,
        egress_link,
        policy_slot,
        policy,
        counters,
    })
}
