//! Measurement only (`cargo xtask bench`): a drop-everything floor and a
//! frame generator for `BPF_PROG_TEST_RUN` in live-frames mode. Neither is
//! attached by appvm itself.

use appvm_common::bench::{
    GEN_IP_CSUM, GEN_IP_SRC, GEN_MIN_FRAME, GEN_TCP_CSUM, GenConfig, csum_replace4,
};
use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_redirect,
    macros::{map, xdp},
    maps::{Array, PerCpuArray},
    programs::XdpContext,
};

use crate::frame::Frame;

#[map]
static GEN_CONFIG: Array<GenConfig> = Array::with_max_entries(1, 0);

/// Frames generated on each CPU (the source-address sequence).
#[map]
static GEN_SEQ: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// The XDP floor of a filter that drops everything.
#[xdp]
fn xdp_drop_floor(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

/// Gives each frame the next source address and redirects it.
#[xdp]
fn xdp_bench_gen(ctx: XdpContext) -> u32 {
    try_gen(&ctx).unwrap_or(xdp_action::XDP_ABORTED)
}

#[inline(always)]
fn try_gen(ctx: &XdpContext) -> Option<u32> {
    let cfg = GEN_CONFIG.get(0)?;
    let seq = GEN_SEQ.get_ptr_mut(0)?;
    // SAFETY: a per-CPU slot; no other program runs on this CPU meanwhile.
    let n = unsafe {
        let n = *seq;
        *seq = n.wrapping_add(1);
        n
    };
    let frame = Frame::new(ctx.data(), ctx.data_end());
    if !frame.has(0, GEN_MIN_FRAME) {
        return None;
    }
    let old = u32::from_be_bytes(frame.read::<[u8; 4]>(GEN_IP_SRC)?);
    // `checked_rem`: a plain `%` would keep a divide-by-zero panic path.
    let new = cfg.src_base.wrapping_add(n.checked_rem(cfg.src_span)?);
    frame.write(GEN_IP_SRC, new.to_be_bytes())?;
    // The address is in the IPv4 header and in TCP's pseudo-header.
    for at in [GEN_IP_CSUM, GEN_TCP_CSUM] {
        let sum = csum_replace4(frame.be16(at)?, old, new);
        frame.write(at, sum.to_be_bytes())?;
    }
    // SAFETY: a plain helper call.
    Some(unsafe { bpf_redirect(cfg.ifindex, 0) } as u32)
}
