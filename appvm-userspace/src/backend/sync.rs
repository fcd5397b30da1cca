//! Making the kernel's VM table equal to the table file.
//!
//! The [`Syncer`] remembers what it last wrote, so a change costs one batch
//! syscall per map whatever the table's size; the kernel maps are read back
//! only when adopting them (start, restart after a crash).

use std::{collections::BTreeMap, time::Instant};

use appvm_common::backend::{MAX_VMS, VmEntry, VmTraffic};
use aya::maps::MapError;

use super::maps::BackendMaps;
use crate::{
    batch,
    table::Table,
    vm::{config::parse_mac, policy::ip_be},
};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("table has {count} VMs, the kernel map holds at most {max}")]
    TooLarge { count: usize, max: u32 },
    #[error("cannot read the VM map: {0}")]
    Read(#[from] MapError),
    #[error("cannot update the VM map: {0}")]
    Write(std::io::Error),
    #[error("invalid MAC '{0}' in the table")]
    Mac(String),
}

/// What a sync changed, and how long it took.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub entries: usize,
    pub added: usize,
    pub changed: usize,
    pub removed: usize,
    pub micros: u128,
}

/// The kernel view of the table: IP (network order) -> pinned MAC.
pub fn desired(table: &Table) -> Result<BTreeMap<u32, VmEntry>, SyncError> {
    table
        .vms
        .iter()
        .map(|e| {
            let mac = parse_mac(&e.mac).map_err(|_why| SyncError::Mac(e.mac.clone()))?;
            Ok((ip_be(e.ip), VmEntry { mac, _pad: [0; 2] }))
        })
        .collect()
}

/// Keeps the VM map (and the per-VM counter map, which has an entry for
/// exactly the same IPs) equal to the table.
#[derive(Debug, Default)]
pub struct Syncer {
    /// What the kernel's VM map holds.
    known: BTreeMap<u32, VmEntry>,
}

impl Syncer {
    /// Reads the kernel maps as they are (after a restart). A VM counts as
    /// known only where both maps agree on its MAC; per-VM slots without a
    /// VM entry (an interrupted sync) are removed: the next sync writes
    /// back whatever the table wants.
    pub fn adopt(maps: &BackendMaps) -> Result<Self, SyncError> {
        let mut entries = BTreeMap::new();
        for item in maps.vms.iter() {
            let (ip, entry) = item?;
            entries.insert(ip, entry);
        }
        let mut known = BTreeMap::new();
        let mut orphans = Vec::new();
        for ip in maps.traffic.keys() {
            let ip = ip?;
            let slot_mac = maps.traffic.get(&ip, 0)?.iter().next().map(|t| t.mac);
            match entries.get(&ip) {
                Some(entry) if slot_mac == Some(entry.mac) => {
                    known.insert(ip, *entry);
                }
                Some(_) => {}
                None => orphans.push(ip),
            }
        }
        batch::delete(maps.traffic_fd(), &orphans).map_err(SyncError::Write)?;
        Ok(Self { known })
    }

    /// Number of VMs in the kernel map.
    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// Updates the maps to `table`. The per-VM slots are what the program
    /// enforces: new and changed VMs get theirs first (a changed MAC keeps
    /// the VM's counters), then the VM entries; removals take the slot
    /// first. Each entry is replaced whole: a VM in both the old and the
    /// new table is never absent.
    pub fn sync(
        &mut self,
        maps: &BackendMaps,
        table: &Table,
        cpus: usize,
    ) -> Result<SyncReport, SyncError> {
        let started = Instant::now();
        if table.vms.len() > MAX_VMS as usize {
            return Err(SyncError::TooLarge {
                count: table.vms.len(),
                max: MAX_VMS,
            });
        }
        let want = desired(table)?;
        let mut report = SyncReport {
            entries: want.len(),
            ..SyncReport::default()
        };
        let (mut keys, mut values, mut slots) = (Vec::new(), Vec::new(), Vec::new());
        for (ip, entry) in &want {
            let counters = match self.known.get(ip) {
                Some(old) if old == entry => continue,
                Some(_) => {
                    report.changed += 1;
                    // Keep what the VM has counted so far.
                    maps.traffic.get(ip, 0).ok()
                }
                None => {
                    report.added += 1;
                    None
                }
            };
            let pinned = VmTraffic::pinned(entry.mac);
            match counters {
                Some(per_cpu) if per_cpu.len() == cpus => {
                    slots.extend(per_cpu.iter().map(|t| VmTraffic {
                        mac: entry.mac,
                        ..*t
                    }));
                }
                _ => slots.extend(std::iter::repeat_n(pinned, cpus)),
            }
            keys.push(*ip);
            values.push(*entry);
        }
        let gone: Vec<u32> = self
            .known
            .keys()
            .filter(|ip| !want.contains_key(ip))
            .copied()
            .collect();
        report.removed = gone.len();
        batch::update_percpu(maps.traffic_fd(), &keys, &slots, cpus).map_err(SyncError::Write)?;
        batch::update(maps.vms_fd(), &keys, &values).map_err(SyncError::Write)?;
        batch::delete(maps.traffic_fd(), &gone).map_err(SyncError::Write)?;
        batch::delete(maps.vms_fd(), &gone).map_err(SyncError::Write)?;
        self.known = want;
        report.micros = started.elapsed().as_micros();
        Ok(report)
    }
}
