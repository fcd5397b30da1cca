//! `appvm backend status`: policy, counters by reason, per-VM traffic.

use std::{net::Ipv4Addr, path::Path};

use serde::Serialize;

use super::{attach::pin_dir, maps::BackendMaps};
use crate::{table::Table, vm::policy::ip_be};

/// One reason's totals.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ReasonView {
    pub reason: &'static str,
    pub verdict: &'static str,
    pub packets: u64,
    pub bytes: u64,
}

/// One application VM's traffic on the secure interface.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct VmView {
    pub name: String,
    pub ip: Ipv4Addr,
    pub mac: String,
    /// Whether the kernel map holds the VM (the table is synced).
    pub in_kernel: bool,
    pub packets: u64,
    pub bytes: u64,
    pub spoofed_packets: u64,
    pub spoofed_bytes: u64,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct BackendStatus {
    pub pin_dir: String,
    pub policy_slot: u32,
    pub counters: Vec<ReasonView>,
    pub vms: Vec<VmView>,
}

pub fn status(
    root: &Path,
    table: &Table,
) -> Result<BackendStatus, Box<dyn std::error::Error + Send + Sync>> {
    let dir = pin_dir(root);
    let maps = BackendMaps::open(&dir)?;
    let counters = maps
        .reason_counts()?
        .into_iter()
        .map(|(r, c)| ReasonView {
            reason: r.name(),
            verdict: if r.passes() { "pass" } else { "drop" },
            packets: c.packets,
            bytes: c.bytes,
        })
        .collect();
    let mut vms = Vec::new();
    for e in &table.vms {
        let key = ip_be(e.ip);
        let t = maps.vm_traffic(key)?.unwrap_or_default();
        vms.push(VmView {
            name: e.name.clone(),
            ip: e.ip,
            mac: e.mac.clone(),
            in_kernel: maps.vms.get(&key, 0).is_ok(),
            packets: t.packets,
            bytes: t.bytes,
            spoofed_packets: t.spoofed_packets,
            spoofed_bytes: t.spoofed_bytes,
        });
    }
    Ok(BackendStatus {
        pin_dir: dir.display().to_string(),
        policy_slot: maps.policy.active_slot()?,
        counters,
        vms,
    })
}
