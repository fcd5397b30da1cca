//! Making the kernel's VM table equal to the table file.

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

/// Updates the maps to `table`: new and changed entries in one batch, then
/// removals. Entries are replaced one by one atomically, so a VM in both
/// the old and the new table is never absent.
pub fn sync(maps: &mut BackendMaps, table: &Table, cpus: usize) -> Result<SyncReport, SyncError> {
    let started = Instant::now();
    if table.vms.len() > MAX_VMS as usize {
        return Err(SyncError::TooLarge {
            count: table.vms.len(),
            max: MAX_VMS,
        });
    }
    let want = desired(table)?;
    let mut have = BTreeMap::new();
    for item in maps.vms.iter() {
        let (ip, entry) = item?;
        have.insert(ip, entry);
    }
    let (mut keys, mut values) = (Vec::new(), Vec::new());
    let mut report = SyncReport {
        entries: want.len(),
        ..SyncReport::default()
    };
    for (ip, entry) in &want {
        match have.get(ip) {
            Some(old) if old == entry => {}
            Some(_) => {
                report.changed += 1;
                keys.push(*ip);
                values.push(*entry);
            }
            None => {
                report.added += 1;
                keys.push(*ip);
                values.push(*entry);
            }
        }
    }
    let gone: Vec<u32> = have
        .keys()
        .filter(|ip| !want.contains_key(ip))
        .copied()
        .collect();
    report.removed = gone.len();
    // Per-VM counters exist before the VM's first frame can be counted.
    let new_traffic: Vec<u32> = keys
        .iter()
        .copied()
        .filter(|ip| maps.traffic.get(ip, 0).is_err())
        .collect();
    batch::insert_zeroed_percpu::<u32, VmTraffic>(maps.traffic_fd(), &new_traffic, cpus)
        .map_err(SyncError::Write)?;
    batch::update(maps.vms_fd(), &keys, &values).map_err(SyncError::Write)?;
    batch::delete(maps.vms_fd(), &gone).map_err(SyncError::Write)?;
    let stale_traffic: Vec<u32> = gone
        .iter()
        .copied()
        .filter(|ip| maps.traffic.get(ip, 0).is_ok())
        .collect();
    batch::delete(maps.traffic_fd(), &stale_traffic).map_err(SyncError::Write)?;
    report.micros = started.elapsed().as_micros();
    Ok(report)
}
