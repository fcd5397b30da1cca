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
    /// Reads the kernel maps as they are (after a restart), and drops
    /// per-VM counters left without a VM by an interrupted sync.
    pub fn adopt(maps: &BackendMaps) -> Result<Self, SyncError> {
        let mut known = BTreeMap::new();
        for item in maps.vms.iter() {
            let (ip, entry) = item?;
            known.insert(ip, entry);
        }
        let orphans: Vec<u32> = maps
            .traffic
            .keys()
            .filter_map(Result::ok)
            .filter(|ip| !known.contains_key(ip))
            .collect();
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

    /// Updates the maps to `table`: counters for new VMs, then new and
    /// changed entries in one batch, then removals (VM entry first, its
    /// counters after). Each entry is replaced atomically: a VM in both
    /// the old and the new table is never absent.
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
        let (mut keys, mut values, mut new) = (Vec::new(), Vec::new(), Vec::new());
        for (ip, entry) in &want {
            match self.known.get(ip) {
                Some(old) if old == entry => continue,
                Some(_) => report.changed += 1,
                None => {
                    report.added += 1;
                    new.push(*ip);
                }
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
        batch::insert_zeroed_percpu::<u32, VmTraffic>(maps.traffic_fd(), &new, cpus)
            .map_err(SyncError::Write)?;
        batch::update(maps.vms_fd(), &keys, &values).map_err(SyncError::Write)?;
        batch::delete(maps.vms_fd(), &gone).map_err(SyncError::Write)?;
        batch::delete(maps.traffic_fd(), &gone).map_err(SyncError::Write)?;
        self.known = want;
        report.micros = started.elapsed().as_micros();
        Ok(report)
    }
}
