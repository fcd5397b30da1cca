//! Counting a verdict: one per-CPU counter per reason, no atomics needed.

use appvm_common::{BackendReason, Counter, VmReason};
use aya_ebpf::maps::PerCpuArray;

use crate::{backend_maps::BACKEND_COUNTERS, maps::VM_COUNTERS};

#[inline(always)]
fn bump(map: &PerCpuArray<Counter>, index: u32, bytes: u64) {
    if let Some(counter) = map.get_ptr_mut(index) {
        // SAFETY: per-CPU map value; the program cannot be preempted on this
        // CPU while it runs, so nothing else writes it concurrently.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += bytes;
        }
    }
}

#[inline(always)]
pub(crate) fn count(reason: VmReason, bytes: u64) {
    bump(&VM_COUNTERS, reason.index(), bytes);
}

#[inline(always)]
pub(crate) fn count_backend(reason: BackendReason, bytes: u64) {
    bump(&BACKEND_COUNTERS, reason.index(), bytes);
}
