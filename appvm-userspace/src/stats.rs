//! A snapshot of every counter under a pin root: the VM guards, the
//! backend programs, per-VM traffic and drop-event statistics. Backs
//! `appvm stats`, `/metrics` and `appvm doctor`.

use std::{net::Ipv4Addr, path::Path};

use appvm_common::{
    BackendReason,
    backend_reason::BackendProgram,
    pins::{backend as bpins, events::PIN_EVENTS},
};
use serde::Serialize;

use crate::{
    backend::{attach::pin_dir as backend_dir, maps::BackendMaps},
    events::{EventStats, PinnedEvents, read_stats},
    table::Table,
    vm::{self, status::CounterView},
};

/// One VM guard.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct GuardStats {
    pub iface: String,
    pub attached: bool,
    pub counters: Vec<CounterView>,
    pub events: Option<EventStats>,
}

/// One backend reason.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct BackendCounter {
    pub program: &'static str,
    pub reason: &'static str,
    pub verdict: &'static str,
    pub packets: u64,
    pub bytes: u64,
}

/// One application VM seen from the backend.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct VmTrafficStats {
    /// The table name, or the IP when the table does not know it.
    pub name: String,
    pub ip: Ipv4Addr,
    pub packets: u64,
    pub bytes: u64,
    pub spoofed_packets: u64,
    pub spoofed_bytes: u64,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct BackendStats {
    pub counters: Vec<BackendCounter>,
    pub vms: Vec<VmTrafficStats>,
    /// Entries in the kernel's VM table.
    pub table_size: usize,
    pub events: Option<EventStats>,
}

/// Everything pinned under one root.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Snapshot {
    pub guards: Vec<GuardStats>,
    pub backend: Option<BackendStats>,
}

fn events(dir: &Path) -> Option<EventStats> {
    if !dir.join(PIN_EVENTS).exists() {
        return None;
    }
    PinnedEvents::open(dir)
        .ok()
        .and_then(|e| read_stats(&e.stats).ok())
}

const fn program_name(p: BackendProgram) -> &'static str {
    match p {
        BackendProgram::PublicIngress => "backend_public",
        BackendProgram::PublicEgress => "backend_public_egress",
        BackendProgram::SecureIngress => "backend_secure",
    }
}

/// Reads every counter under `root`; `table` names the VMs.
pub fn snapshot(root: &Path, table: Option<&Table>) -> Result<Snapshot, String> {
    let guards = vm::status(root, None)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|s| GuardStats {
            events: events(&s.pin_dir),
            iface: s.iface,
            attached: s.attached,
            counters: s.counters,
        })
        .collect();
    let dir = backend_dir(root);
    let backend = if dir
        .join(format!("map_{}", bpins::MAP_COUNTERS.to_ascii_lowercase()))
        .exists()
    {
        let maps = BackendMaps::open(&dir).map_err(|e| e.to_string())?;
        let counters = maps
            .reason_counts()
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(r, c): (BackendReason, _)| BackendCounter {
                program: program_name(r.program()),
                reason: r.name(),
                verdict: if r.passes() { "pass" } else { "drop" },
                packets: c.packets,
                bytes: c.bytes,
            })
            .collect();
        // IP -> name once: a search per VM would be quadratic.
        let names: std::collections::BTreeMap<Ipv4Addr, &str> = table
            .map(|t| t.vms.iter().map(|e| (e.ip, e.name.as_str())).collect())
            .unwrap_or_default();
        let mut vms = Vec::new();
        let mut table_size = 0;
        for item in maps.vms.keys() {
            let ip_be = item.map_err(|e| e.to_string())?;
            table_size += 1;
            let ip = Ipv4Addr::from(ip_be.to_ne_bytes());
            let t = maps
                .vm_traffic(ip_be)
                .map_err(|e| e.to_string())?
                .unwrap_or_default();
            let name = names
                .get(&ip)
                .map_or_else(|| ip.to_string(), |n| (*n).to_owned());
            vms.push(VmTrafficStats {
                name,
                ip,
                packets: t.packets,
                bytes: t.bytes,
                spoofed_packets: t.spoofed_packets,
                spoofed_bytes: t.spoofed_bytes,
            });
        }
        vms.sort_by(|a, b| a.name.cmp(&b.name));
        Some(BackendStats {
            counters,
            vms,
            table_size,
            events: events(&dir),
        })
    } else {
        None
    };
    Ok(Snapshot { guards, backend })
}
