//! VM guard, egress (tcx on the VM's secure-network interface).
//!
//! The VM talks to the backend, asks for DHCP, resolves the backend by ARP,
//! and reaches only the destinations the platform configured.

use appvm_common::{VmPolicy, VmReason, policy::FLAG_ALLOW_IPV6};
use aya_ebpf::{
    bindings::{TC_ACT_SHOT, TC_ACT_UNSPEC},
    macros::classifier,
    programs::TcContext,
};

use appvm_common::event::EventProgram;

use crate::{
    count::count,
    events,
    frame::Frame,
    headers::*,
    ipv4::{Ipv4, Ipv4Error, port_be},
    policy::{active, is_egress_allowed, is_egress_ip},
};

/// Headers the program may read: Ethernet, IPv4 with options, a TCP header.
const MAX_HEADERS: u32 = (ETH_HLEN + 60 + TCP_MIN_HLEN) as u32;
const BROADCAST_BE: u32 = u32::MAX;

#[classifier]
fn vm_egress(ctx: TcContext) -> i32 {
    // SAFETY: `skb` is the context pointer the kernel passed in.
    let vlan_present = unsafe { (*ctx.skb.skb).vlan_present } != 0;
    let reason = match active() {
        // A tag in skb metadata (a VLAN device on top of this interface with
        // tx offload) never appears in the bytes below.
        Some(_) if vlan_present => VmReason::OutVlan,
        Some(policy) => match linear_frame(&ctx) {
            Some(frame) => classify(&frame, policy),
            None => VmReason::OutUnparseable,
        },
        None => VmReason::OutNoPolicy,
    };
    count(reason, u64::from(ctx.len()));
    crate::debug_log::verdict!(&ctx, "vm_egress", reason);
    if reason.passes() {
        // Let later tcx programs decide too; this one runs first.
        TC_ACT_UNSPEC
    } else {
        // SAFETY: `skb` is the context pointer the kernel passed in.
        let ifindex = unsafe { (*ctx.skb.skb).ifindex };
        let frame = Frame::skb(ctx.data(), ctx.data_end(), ctx.len() as usize);
        events::dropped(EventProgram::VmEgress, reason.index(), ifindex, &frame);
        TC_ACT_SHOT
    }
}

/// The headers as linear data. A raw-socket skb may hold them in fragments,
/// where a direct read sees nothing: pull them in, or give up (and drop).
#[inline(always)]
fn linear_frame(ctx: &TcContext) -> Option<Frame> {
    let want = ctx.len().min(MAX_HEADERS);
    let have = ctx.data_end() - ctx.data();
    if have < want as usize && ctx.pull_data(want).is_err() {
        return None;
    }
    Some(Frame::skb(ctx.data(), ctx.data_end(), ctx.len() as usize))
}

#[inline(always)]
fn classify(frame: &Frame, policy: &VmPolicy) -> VmReason {
    let Some(ethertype) = frame.be16(ETH_TYPE) else {
        return VmReason::OutUnparseable;
    };
    match ethertype {
        ETH_P_IP => ipv4(frame, policy),
        ETH_P_ARP => arp(frame, policy),
        ETH_P_IPV6 if policy.has(FLAG_ALLOW_IPV6) => VmReason::OutIpv6Allowed,
        ETH_P_IPV6 => VmReason::OutIpv6,
        ETH_P_8021Q | ETH_P_8021AD | ETH_P_QINQ_9100 => VmReason::OutVlan,
        _ => VmReason::OutUnknownEthertype,
    }
}

#[inline(always)]
fn ipv4(frame: &Frame, policy: &VmPolicy) -> VmReason {
    let ip = match Ipv4::parse(frame) {
        Ok(ip) => ip,
        Err(Ipv4Error::Truncated) => return VmReason::OutUnparseable,
        Err(Ipv4Error::Malformed) => return VmReason::OutMalformedIpv4,
    };
    if ip.dst_be == policy.backend_ip_be {
        return VmReason::OutBackend;
    }
    if ip.is_later_fragment() {
        return VmReason::OutFragment;
    }
    let Ok(ports) = ip.ports(frame) else {
        return VmReason::OutUnparseable;
    };
    let Some(ports) = ports else {
        return VmReason::OutDenied;
    };
    let dhcp_request = ip.proto == IPPROTO_UDP
        && ports.src_be == port_be(DHCP_CLIENT_PORT)
        && ports.dst_be == port_be(DHCP_SERVER_PORT)
        && (ip.dst_be == BROADCAST_BE || ip.dst_be == policy.dhcp_server_be);
    if dhcp_request {
        return VmReason::OutDhcpRequest;
    }
    if is_egress_allowed(policy, ip.dst_be, ports.dst_be) {
        return VmReason::OutAllowed;
    }
    VmReason::OutDenied
}

#[inline(always)]
fn arp(frame: &Frame, policy: &VmPolicy) -> VmReason {
    let (Some(spa), Some(tpa)) = (
        frame.read::<u32>(ETH_HLEN + ARP_SPA),
        frame.read::<u32>(ETH_HLEN + ARP_TPA),
    ) else {
        return VmReason::OutUnparseable;
    };
    // Probes (sender 0.0.0.0) and announcements (sender == target) carry only
    // the VM's own address; anything else must be about an allowed peer.
    if tpa == policy.backend_ip_be || is_egress_ip(policy, tpa) || spa == 0 || spa == tpa {
        VmReason::OutArp
    } else {
        VmReason::OutArpDenied
    }
}
