//! The backend programs loaded but not attached, with their maps at hand:
//! for `BPF_PROG_TEST_RUN` (verdict tests, fuzzing, benchmarks).

use appvm_common::{
    BackendReason, Counter,
    backend::{BackendPolicy, VmEntry, VmTraffic},
    pins::backend as pins,
};
use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData, MapError, PerCpuArray, PerCpuHashMap, PerCpuValues},
    programs::{Xdp, XdpMode, xdp::XdpLinkId},
};

use crate::{
    counters, object,
    policy_slots::PolicyMaps,
    vm::loaded::{LoadedError, RunResult, load_tc, load_xdp, test_run},
};

/// Loaded backend programs and their maps.
pub struct LoadedBackend {
    ebpf: Ebpf,
    pub policy: PolicyMaps<MapData, BackendPolicy>,
    pub vms: HashMap<MapData, u32, VmEntry>,
    pub traffic: PerCpuHashMap<MapData, u32, VmTraffic>,
    counters: PerCpuArray<MapData, Counter>,
}

impl std::fmt::Debug for LoadedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedBackend").finish_non_exhaustive()
    }
}

impl LoadedBackend {
    pub fn load() -> Result<Self, LoadedError> {
        let mut ebpf = object::open()?;
        let mut take = |name: &'static str| ebpf.take_map(name).ok_or(LoadedError::Missing(name));
        let policy = PolicyMaps {
            policy: Array::try_from(take(pins::MAP_POLICY)?)?,
            slot: Array::try_from(take(pins::MAP_POLICY_SLOT)?)?,
        };
        let vms = HashMap::try_from(take(pins::MAP_VMS)?)?;
        let traffic = PerCpuHashMap::try_from(take(pins::MAP_VM_TRAFFIC)?)?;
        let counters = PerCpuArray::try_from(take(pins::MAP_COUNTERS)?)?;
        load_xdp(&mut ebpf, &[pins::PROG_PUBLIC, pins::PROG_SECURE])?;
        load_tc(&mut ebpf, &[pins::PROG_PUBLIC_EGRESS])?;
        Ok(Self {
            ebpf,
            policy,
            vms,
            traffic,
            counters,
        })
    }

    /// Adds a VM to the kernel table: its slot (the pinned MAC, zeroed
    /// counters), then its entry.
    pub fn add_vm(&mut self, ip_be: u32, mac: [u8; 6]) -> Result<(), MapError> {
        let cpus = counters::cpus()?;
        self.traffic.insert(
            ip_be,
            PerCpuValues::try_from(vec![VmTraffic::pinned(mac); cpus])?,
            0,
        )?;
        self.vms.insert(ip_be, VmEntry { mac, _pad: [0; 2] }, 0)
    }

    /// One VM's traffic over all CPUs.
    pub fn vm_traffic(&self, ip_be: u32) -> Result<VmTraffic, MapError> {
        Ok(self
            .traffic
            .get(&ip_be, 0)?
            .iter()
            .fold(VmTraffic::default(), |a, &t| a.add(t)))
    }

    pub fn counters(&self) -> Result<Vec<(BackendReason, Counter)>, MapError> {
        BackendReason::ALL
            .iter()
            .map(|&r| Ok((r, counters::sum(&self.counters, r.index())?)))
            .collect()
    }

    pub fn reset_counters(&mut self) -> Result<(), MapError> {
        counters::zero(&mut self.counters, BackendReason::COUNT)
    }

    pub fn run_public(&mut self, frame: &[u8], repeat: u32) -> Result<RunResult, LoadedError> {
        self.run(pins::PROG_PUBLIC, frame, repeat)
    }

    pub fn run_public_egress(
        &mut self,
        frame: &[u8],
        repeat: u32,
    ) -> Result<RunResult, LoadedError> {
        self.run(pins::PROG_PUBLIC_EGRESS, frame, repeat)
    }

    pub fn run_secure(&mut self, frame: &[u8], repeat: u32) -> Result<RunResult, LoadedError> {
        self.run(pins::PROG_SECURE, frame, repeat)
    }

    /// Attaches the secure-interface program in driver mode to `ifindex`
    /// (an interface of the calling thread's namespace), unpinned: the
    /// network benchmark's receiver. `appvm backend run` attaches with pins.
    pub fn attach_secure(&mut self, ifindex: u32) -> Result<XdpLinkId, LoadedError> {
        self.secure_program()?
            .attach_to_if_index(ifindex, XdpMode::Driver)
            .map_err(|source| LoadedError::Program {
                name: pins::PROG_SECURE,
                source,
            })
    }

    pub fn detach_secure(&mut self, link: XdpLinkId) -> Result<(), LoadedError> {
        self.secure_program()?
            .detach(link)
            .map_err(|source| LoadedError::Program {
                name: pins::PROG_SECURE,
                source,
            })
    }

    fn secure_program(&mut self) -> Result<&mut Xdp, LoadedError> {
        let name = pins::PROG_SECURE;
        self.ebpf
            .program_mut(name)
            .ok_or(LoadedError::Missing(name))?
            .try_into()
            .map_err(|source| LoadedError::Program { name, source })
    }

    fn run(
        &mut self,
        name: &'static str,
        frame: &[u8],
        repeat: u32,
    ) -> Result<RunResult, LoadedError> {
        test_run(&mut self.ebpf, name, frame, repeat)
    }
}
