//! The backend's pinned maps, opened by path (the service adopts them on
//! restart without touching the programs).

use std::{
    os::fd::{AsFd as _, OwnedFd},
    path::{Path, PathBuf},
};

use appvm_common::{
    BackendReason, Counter,
    backend::{BackendPolicy, VmEntry, VmTraffic},
    pins::backend as pins,
};
use aya::maps::{HashMap, Map, MapData, MapError, PerCpuArray, PerCpuHashMap};

use crate::{
    link_info::open_pinned,
    policy_slots::{PolicyMapError, PolicyMaps},
};

#[derive(Debug, thiserror::Error)]
pub enum BackendMapError {
    #[error("cannot open pinned map {path}: {source}")]
    Open { path: PathBuf, source: MapError },
    #[error("cannot open pinned map {path}: {source}")]
    OpenFd {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Policy(#[from] PolicyMapError),
}

/// Pin file of a backend map: `map_<name in lower case>`.
pub fn map_pin(name: &str) -> String {
    format!("map_{}", name.to_ascii_lowercase())
}

/// Every backend map, opened from `dir`.
pub struct BackendMaps {
    pub policy: PolicyMaps<MapData, BackendPolicy>,
    pub vms: HashMap<MapData, u32, VmEntry>,
    pub traffic: PerCpuHashMap<MapData, u32, VmTraffic>,
    pub counters: PerCpuArray<MapData, Counter>,
    /// Raw descriptors for batch updates.
    pub vms_fd: OwnedFd,
    pub traffic_fd: OwnedFd,
}

impl std::fmt::Debug for BackendMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendMaps").finish_non_exhaustive()
    }
}

fn data(dir: &Path, name: &str) -> Result<MapData, BackendMapError> {
    let path = dir.join(map_pin(name));
    MapData::from_pin(&path).map_err(|source| BackendMapError::Open { path, source })
}

fn fd(dir: &Path, name: &str) -> Result<OwnedFd, BackendMapError> {
    let path = dir.join(map_pin(name));
    open_pinned(&path).map_err(|source| BackendMapError::OpenFd { path, source })
}

impl BackendMaps {
    pub fn open(dir: &Path) -> Result<Self, BackendMapError> {
        let typed = |name: &str, source| BackendMapError::Open {
            path: dir.join(map_pin(name)),
            source,
        };
        Ok(Self {
            policy: PolicyMaps::open_pinned(
                dir,
                &map_pin(pins::MAP_POLICY),
                &map_pin(pins::MAP_POLICY_SLOT),
            )?,
            vms: HashMap::try_from(Map::HashMap(data(dir, pins::MAP_VMS)?))
                .map_err(|e| typed(pins::MAP_VMS, e))?,
            traffic: PerCpuHashMap::try_from(Map::PerCpuHashMap(data(dir, pins::MAP_VM_TRAFFIC)?))
                .map_err(|e| typed(pins::MAP_VM_TRAFFIC, e))?,
            counters: PerCpuArray::try_from(Map::PerCpuArray(data(dir, pins::MAP_COUNTERS)?))
                .map_err(|e| typed(pins::MAP_COUNTERS, e))?,
            vms_fd: fd(dir, pins::MAP_VMS)?,
            traffic_fd: fd(dir, pins::MAP_VM_TRAFFIC)?,
        })
    }

    /// Totals per reason over all CPUs.
    pub fn reason_counts(&self) -> Result<Vec<(BackendReason, Counter)>, MapError> {
        BackendReason::ALL
            .iter()
            .map(|&r| Ok((r, crate::counters::sum(&self.counters, r.index())?)))
            .collect()
    }

    /// One VM's traffic summed over CPUs (`None` if it has no entry).
    pub fn vm_traffic(&self, ip_be: u32) -> Result<Option<VmTraffic>, MapError> {
        match self.traffic.get(&ip_be, 0) {
            Ok(per_cpu) => Ok(Some(
                per_cpu.iter().fold(VmTraffic::default(), |a, &t| a.add(t)),
            )),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(crate) fn vms_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.vms_fd.as_fd()
    }

    pub(crate) fn traffic_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.traffic_fd.as_fd()
    }
}
