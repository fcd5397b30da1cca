//! Per-packet debug logging, compiled in only with the `debug-log` feature
//! (`APPVM_EBPF_DEBUG_LOG=1`): the default object has no log map and no
//! logging on any packet path.

/// Logs a verdict: program, reason index and whether it passed.
#[cfg(feature = "debug-log")]
macro_rules! verdict {
    ($ctx:expr, $program:literal, $reason:expr) => {
        aya_log_ebpf::debug!(
            $ctx,
            "{}: reason {} passes {}",
            $program,
            $reason.index(),
            u8::from($reason.passes())
        )
    };
}

#[cfg(not(feature = "debug-log"))]
macro_rules! verdict {
    ($ctx:expr, $program:literal, $reason:expr) => {{
        let _ = (&$ctx, &$reason);
    }};
}

pub(crate) use verdict;
