//! The compiled eBPF object, embedded at build time by `build.rs`.

use aya::{Ebpf, EbpfError, EbpfLoader};

/// Bytes of the `appvm-ebpf` object (all programs and maps).
pub static APPVM_EBPF: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/appvm-ebpf"));

/// Parses the embedded object and creates its maps (programs not yet loaded).
pub fn open() -> Result<Ebpf, EbpfError> {
    EbpfLoader::new().load(APPVM_EBPF)
}

/// An XDP program that only returns `XDP_PASS`: the floor every verdict
/// cost is measured against.
pub const PROG_XDP_PASS_FLOOR: &str = "xdp_pass_floor";
