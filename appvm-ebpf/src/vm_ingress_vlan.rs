//! VM guard, ingress second stage (tcx, after XDP).
//!
//! A VLAN tag can be lifted out of the frame into skb metadata before XDP
//! runs (NIC offload, or a bridge that untagged it on the way): XDP then sees
//! an untagged frame. This program sees the metadata and drops such frames.
//! It counts only what it drops; everything else was counted by XDP.

use appvm_common::VmReason;
use aya_ebpf::{
    bindings::{TC_ACT_SHOT, TC_ACT_UNSPEC},
    macros::classifier,
    programs::TcContext,
};

use appvm_common::event::EventProgram;

use crate::{count::count, events, frame::Frame};

#[classifier]
fn vm_ingress_vlan(ctx: TcContext) -> i32 {
    // SAFETY: `skb` is the context pointer the kernel passed in.
    let vlan_present = unsafe { (*ctx.skb.skb).vlan_present };
    if vlan_present != 0 {
        count(VmReason::InVlanOffloaded, u64::from(ctx.len()));
        // SAFETY: `skb` is the context pointer the kernel passed in.
        let ifindex = unsafe { (*ctx.skb.skb).ifindex };
        let frame = Frame::skb(ctx.data(), ctx.data_end(), ctx.len() as usize);
        events::dropped(
            EventProgram::VmIngressVlan,
            VmReason::InVlanOffloaded.index(),
            ifindex,
            &frame,
        );
        TC_ACT_SHOT
    } else {
        TC_ACT_UNSPEC
    }
}
