//! Counting a verdict: one per-CPU counter per reason, no atomics needed.

use appvm_common::VmReason;

use crate::maps::VM_COUNTERS;

#[inline(always)]
pub(crate) fn count(reason: VmReason, bytes: u64) {
    if let Some(counter) = VM_COUNTERS.get_ptr_mut(reason.index()) {
        // SAFETY: per-CPU map value; the program cannot be preempted on this
        // CPU while it runs, so nothing else writes it concurrently.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += bytes;
        }
    }
}
