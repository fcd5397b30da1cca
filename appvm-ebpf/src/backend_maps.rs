//! The backend programs' maps. Names match `appvm_common::pins::backend`.

use appvm_common::{
    BackendReason, Counter,
    backend::{
        BACKEND_POLICY_SLOTS, BackendPolicy, FlowKey, MAX_FLOWS, MAX_VMS, VmEntry, VmTraffic,
    },
};
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, PerCpuHashMap},
};

#[map]
pub(crate) static BACKEND_POLICY: Array<BackendPolicy> =
    Array::with_max_entries(BACKEND_POLICY_SLOTS, 0);

#[map]
pub(crate) static BACKEND_POLICY_SLOT: Array<u32> = Array::with_max_entries(1, 0);

/// The application-VM table as userspace reads it: IP (network order) ->
/// pinned MAC. No program reads it: they use [`BACKEND_VM_TRAFFIC`].
#[map]
#[expect(
    dead_code,
    reason = "created and pinned with the object; read by userspace"
)]
pub(crate) static BACKEND_VMS: HashMap<u32, VmEntry> = HashMap::with_max_entries(MAX_VMS, 0);

/// Per VM and per CPU: the pinned MAC and the VM's counters, created,
/// changed and removed by userspace with the table. The secure program's
/// one lookup.
#[map]
pub(crate) static BACKEND_VM_TRAFFIC: PerCpuHashMap<u32, VmTraffic> =
    PerCpuHashMap::with_max_entries(MAX_VMS, 0);

/// Outbound flows from the public interface -> last time seen (ns).
#[map]
pub(crate) static BACKEND_FLOWS: LruHashMap<FlowKey, u64> =
    LruHashMap::with_max_entries(MAX_FLOWS, 0);

#[map]
pub(crate) static BACKEND_COUNTERS: PerCpuArray<Counter> =
    PerCpuArray::with_max_entries(BackendReason::COUNT, 0);

/// The backend policy in force, or `None` (fail closed).
#[inline(always)]
pub(crate) fn active() -> Option<&'static BackendPolicy> {
    let slot = *BACKEND_POLICY_SLOT.get(0)?;
    let policy = BACKEND_POLICY.get(slot)?;
    policy
        .has(appvm_common::backend::BFLAG_ENABLED)
        .then_some(policy)
}
