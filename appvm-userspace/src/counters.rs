//! Reading per-CPU verdict counters from a pinned map.

use std::path::Path;

use appvm_common::{Counter, VmReason};
use aya::maps::{Map, MapData, MapError, PerCpuArray};

#[derive(Debug, thiserror::Error)]
pub enum CountersError {
    #[error("cannot open counter map {path}: {source}")]
    Open { path: String, source: MapError },
    #[error("cannot read counter map {path}: {source}")]
    Read { path: String, source: MapError },
}

/// One reason's totals over all CPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReasonCount {
    pub reason: VmReason,
    pub counter: Counter,
}

/// Sums every reason's per-CPU counters from a `PerCpuArray<Counter>`.
pub fn read_vm(map: &PerCpuArray<MapData, Counter>) -> Result<Vec<ReasonCount>, MapError> {
    VmReason::ALL
        .iter()
        .map(|&reason| {
            let per_cpu = map.get(&reason.index(), 0)?;
            let counter = per_cpu.iter().fold(Counter::default(), |a, &c| a.add(c));
            Ok(ReasonCount { reason, counter })
        })
        .collect()
}

/// Opens a pinned VM counter map and sums it.
pub fn read_vm_pinned(path: &Path) -> Result<Vec<ReasonCount>, CountersError> {
    let name = path.display().to_string();
    let open = |source| CountersError::Open {
        path: name.clone(),
        source,
    };
    let data = MapData::from_pin(path).map_err(open)?;
    let map = PerCpuArray::try_from(Map::PerCpuArray(data)).map_err(open)?;
    read_vm(&map).map_err(|source| CountersError::Read {
        path: name.clone(),
        source,
    })
}
