//! The measurement floor: what running any XDP program costs.

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

#[xdp]
fn xdp_pass_floor(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}
