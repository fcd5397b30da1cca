//! The guard's programs loaded but not attached, with its maps at hand: for
//! `BPF_PROG_TEST_RUN` (verdict tests, fuzzing, benchmarks).

use appvm_common::{
    Counter, VmPolicy, VmReason,
    pins::{events as ev, vm},
};
use aya::{
    Ebpf, EbpfError,
    maps::{Array, MapData, MapError, PerCpuArray, RingBuf},
    programs::{Program, ProgramError, SchedClassifier, TestRun as _, TestRunOptions, Xdp},
};

use crate::policy_slots::PolicyMaps;
use crate::{counters, events::PinnedEvents, object};

#[derive(Debug, thiserror::Error)]
pub enum LoadedError {
    #[error("cannot open the eBPF object: {0}")]
    Object(#[from] EbpfError),
    #[error("{0} missing from the eBPF object")]
    Missing(&'static str),
    #[error("program {name}: {source}")]
    Program {
        name: &'static str,
        source: ProgramError,
    },
    #[error("map: {0}")]
    Map(#[from] MapError),
}

/// What one `BPF_PROG_TEST_RUN` returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunResult {
    pub return_value: u32,
    /// Kernel-measured time per run (divided over `repeat`).
    pub duration_ns: u64,
}

/// Loaded VM-guard programs and their maps.
pub struct LoadedGuard {
    ebpf: Ebpf,
    pub policy: PolicyMaps<MapData>,
    counters: PerCpuArray<MapData, Counter>,
    /// The drop-event maps.
    pub events: PinnedEvents,
}

impl std::fmt::Debug for LoadedGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedGuard").finish_non_exhaustive()
    }
}

fn program_err(name: &'static str) -> impl Fn(ProgramError) -> LoadedError {
    move |source| LoadedError::Program { name, source }
}

/// Loads (verifies) the XDP programs `names` of `ebpf`, without attaching.
pub(crate) fn load_xdp(ebpf: &mut Ebpf, names: &[&'static str]) -> Result<(), LoadedError> {
    for &name in names {
        let xdp: &mut Xdp = ebpf
            .program_mut(name)
            .ok_or(LoadedError::Missing(name))?
            .try_into()
            .map_err(program_err(name))?;
        xdp.load().map_err(program_err(name))?;
    }
    Ok(())
}

/// Loads (verifies) the tc programs `names` of `ebpf`, without attaching.
pub(crate) fn load_tc(ebpf: &mut Ebpf, names: &[&'static str]) -> Result<(), LoadedError> {
    for &name in names {
        let tc: &mut SchedClassifier = ebpf
            .program_mut(name)
            .ok_or(LoadedError::Missing(name))?
            .try_into()
            .map_err(program_err(name))?;
        tc.load().map_err(program_err(name))?;
    }
    Ok(())
}

impl LoadedGuard {
    /// Loads every program of the object; no policy installed yet (drops all).
    pub fn load() -> Result<Self, LoadedError> {
        let mut ebpf = object::open()?;
        let mut take = |name: &'static str| ebpf.take_map(name).ok_or(LoadedError::Missing(name));
        let policy = PolicyMaps {
            policy: Array::try_from(take(vm::MAP_POLICY)?)?,
            slot: Array::try_from(take(vm::MAP_POLICY_SLOT)?)?,
        };
        let counters = PerCpuArray::try_from(take(vm::MAP_COUNTERS)?)?;
        let events = PinnedEvents {
            ring: RingBuf::try_from(take(ev::MAP_EVENTS)?)?,
            stats: PerCpuArray::try_from(take(ev::MAP_EVENT_STATS)?)?,
            config: Array::try_from(take(ev::MAP_EVENT_CONFIG)?)?,
        };
        load_xdp(&mut ebpf, &[vm::PROG_INGRESS, object::PROG_XDP_PASS_FLOOR])?;
        load_tc(&mut ebpf, &[vm::PROG_INGRESS_VLAN, vm::PROG_EGRESS])?;
        Ok(Self {
            ebpf,
            policy,
            counters,
            events,
        })
    }

    /// A logger for the kernel side's aya-log records; `None` unless the
    /// object was built with `APPVM_EBPF_DEBUG_LOG=1`.
    pub fn kernel_logger<T: log::Log>(&mut self, logger: T) -> Option<aya_log::EbpfLogger<T>> {
        crate::debug_log::init_with(&mut self.ebpf, logger)
    }

    /// Installs `policy` (double-buffered, as on an attached guard).
    pub fn install(&mut self, policy: &VmPolicy) -> Result<(), MapError> {
        self.policy.install(policy).map(drop)
    }

    /// Totals per reason over all CPUs.
    pub fn counters(&self) -> Result<Vec<counters::ReasonCount>, MapError> {
        counters::read_vm(&self.counters)
    }

    /// Zeroes every counter.
    pub fn reset_counters(&mut self) -> Result<(), MapError> {
        counters::zero(&mut self.counters, VmReason::COUNT)
    }

    /// Runs the ingress XDP program on `frame`.
    pub fn run_ingress(&mut self, frame: &[u8], repeat: u32) -> Result<RunResult, LoadedError> {
        self.run(vm::PROG_INGRESS, frame, repeat)
    }

    /// Runs the XDP_PASS floor program (the cost of running any XDP program).
    pub fn run_floor(&mut self, frame: &[u8], repeat: u32) -> Result<RunResult, LoadedError> {
        self.run(object::PROG_XDP_PASS_FLOOR, frame, repeat)
    }

    /// Runs the egress tcx program on `frame`.
    pub fn run_egress(&mut self, frame: &[u8], repeat: u32) -> Result<RunResult, LoadedError> {
        self.run(vm::PROG_EGRESS, frame, repeat)
    }

    /// Runs the ingress VLAN stage on `frame`.
    pub fn run_ingress_vlan(
        &mut self,
        frame: &[u8],
        repeat: u32,
    ) -> Result<RunResult, LoadedError> {
        self.run(vm::PROG_INGRESS_VLAN, frame, repeat)
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

/// `BPF_PROG_TEST_RUN` of the loaded program `name` (XDP or tc) on `frame`.
pub(crate) fn test_run(
    ebpf: &mut Ebpf,
    name: &'static str,
    frame: &[u8],
    repeat: u32,
) -> Result<RunResult, LoadedError> {
    let opts = options(frame, repeat);
    let r = match ebpf.program_mut(name).ok_or(LoadedError::Missing(name))? {
        Program::Xdp(p) => p.test_run(opts),
        Program::SchedClassifier(p) => p.test_run(opts),
        _ => return Err(LoadedError::Missing(name)),
    }
    .map_err(program_err(name))?;
    Ok(result(&r))
}

fn options(frame: &[u8], repeat: u32) -> TestRunOptions<'_> {
    let mut o = TestRunOptions::new();
    o.data_in = Some(frame);
    o.repeat = repeat.max(1);
    o
}

fn result(r: &aya::programs::TestRunResult) -> RunResult {
    RunResult {
        return_value: r.return_value,
        duration_ns: r.duration.as_nanos() as u64,
    }
}
