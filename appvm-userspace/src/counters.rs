//! Reading per-CPU verdict counters from a pinned map.

use std::path::Path;

use appvm_common::{Counter, VmReason};
use aya::maps::{Map, MapData, MapError, PerCpuArray, PerCpuValues};

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

/// One index of a per-CPU counter map, summed over CPUs.
pub fn sum<T: std::borrow::Borrow<MapData>>(
    map: &PerCpuArray<T, Counter>,
    index: u32,
) -> Result<Counter, MapError> {
    Ok(map
        .get(&index, 0)?
        .iter()
        .fold(Counter::default(), |a, &c| a.add(c)))
}

/// Zeroes indices `0..count` of a per-CPU counter map (test runs).
pub fn zero<T: std::borrow::BorrowMut<MapData>>(
    map: &mut PerCpuArray<T, Counter>,
    count: u32,
) -> Result<(), MapError> {
    let cpus = cpus()?;
    for index in 0..count {
        map.set(
            index,
            PerCpuValues::try_from(vec![Counter::default(); cpus])?,
            0,
        )?;
    }
    Ok(())
}

/// Possible CPUs: the length of every per-CPU value.
pub fn cpus() -> Result<usize, MapError> {
    aya::util::nr_cpus().map_err(|(_, io_error)| {
        MapError::SyscallError(aya::sys::SyscallError {
            call: "nr_cpus",
            io_error,
        })
    })
}

/// Sums every reason's per-CPU counters from a `PerCpuArray<Counter>`.
pub fn read_vm(map: &PerCpuArray<MapData, Counter>) -> Result<Vec<ReasonCount>, MapError> {
    VmReason::ALL
        .iter()
        .map(|&reason| {
            Ok(ReasonCount {
                reason,
                counter: sum(map, reason.index())?,
            })
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
