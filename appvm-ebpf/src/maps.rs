//! The VM guard's maps. Names match `appvm_common::pins::vm`.

use appvm_common::{Counter, VmPolicy, VmReason, policy::POLICY_SLOTS};
use aya_ebpf::{
    macros::map,
    maps::{Array, PerCpuArray},
};

/// Two policy slots; [`VM_POLICY_SLOT`] names the active one.
#[map]
pub(crate) static VM_POLICY: Array<VmPolicy> = Array::with_max_entries(POLICY_SLOTS, 0);

/// One entry: index of the active slot in [`VM_POLICY`].
#[map]
pub(crate) static VM_POLICY_SLOT: Array<u32> = Array::with_max_entries(1, 0);

/// Packets and bytes per verdict reason, per CPU.
#[map]
pub(crate) static VM_COUNTERS: PerCpuArray<Counter> =
    PerCpuArray::with_max_entries(VmReason::COUNT, 0);
