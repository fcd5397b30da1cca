//! The kernel side's aya-log records, forwarded to tracing.
//!
//! Only an object built with `APPVM_EBPF_DEBUG_LOG=1` logs (every verdict,
//! for debugging); the default object has no log map and no logging on any
//! packet path, and [`init`] returns `None` for it.

use aya::Ebpf;
use aya_log::EbpfLogger;

/// Whether the embedded object was built with per-packet logging.
pub const COMPILED_IN: bool = matches!(env!("APPVM_EBPF_DEBUG_LOG_BUILT").as_bytes(), b"1");

/// Forwards `log` records from the kernel to tracing (target `appvm::ebpf`).
#[derive(Clone, Copy, Debug, Default)]
pub struct ToTracing;

impl log::Log for ToTracing {
    fn enabled(&self, _metadata: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        tracing::debug!(target: "appvm::ebpf", "{}", record.args());
    }

    fn flush(&self) {}
}

/// A logger for `ebpf`'s programs, or `None` when the object does not log
/// (it has no aya-log map).
pub fn init_with<T: log::Log>(ebpf: &mut Ebpf, logger: T) -> Option<EbpfLogger<T>> {
    EbpfLogger::init_with_logger(ebpf, logger).ok()
}

/// [`init_with`] forwarding to tracing.
pub fn init(ebpf: &mut Ebpf) -> Option<EbpfLogger<ToTracing>> {
    init_with(ebpf, ToTracing)
}

/// A logger for a loaded program by id (e.g. a pinned one the service
/// adopted), or `None` when the object does not log.
pub fn init_from_program(id: u32) -> Option<EbpfLogger<ToTracing>> {
    EbpfLogger::init_from_id_with_logger(id, ToTracing).ok()
}
