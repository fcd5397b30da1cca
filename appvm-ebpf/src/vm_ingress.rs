//! VM guard, ingress (XDP on the VM's secure-network interface).
//!
//! The application ports accept only the backend; everything else that may
//! come in is named here, and the rest is dropped under a counted reason.

use appvm_common::{
    VmPolicy, VmReason,
    policy::{FLAG_ALLOW_IPV6, FLAG_BACKEND_MAC},
};
use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

use appvm_common::event::EventProgram;

use crate::{
    count::count,
    events,
    frame::Frame,
    headers::*,
    ipv4::{Ipv4, Ipv4Error, port_be},
    policy::{active, is_app_port, is_egress_allowed},
};

#[xdp]
fn vm_ingress(ctx: XdpContext) -> u32 {
    let frame = Frame::new(ctx.data(), ctx.data_end());
    let reason = match active() {
        Some(policy) => classify(&frame, policy),
        None => VmReason::InNoPolicy,
    };
    count(reason, frame.len() as u64);
    crate::debug_log::verdict!(&ctx, "vm_ingress", reason);
    if reason.passes() {
        xdp_action::XDP_PASS
    } else {
        events::dropped(
            EventProgram::VmIngress,
            reason.index(),
            ctx.ingress_ifindex() as u32,
            &frame,
        );
        xdp_action::XDP_DROP
    }
}

#[inline(always)]
fn classify(frame: &Frame, policy: &VmPolicy) -> VmReason {
    let Some(ethertype) = frame.be16(ETH_TYPE) else {
        return VmReason::InTruncatedEth;
    };
    let Some(src_mac) = frame.read::<[u8; 6]>(ETH_SRC) else {
        return VmReason::InTruncatedEth;
    };
    match ethertype {
        ETH_P_IP => ipv4(frame, policy, src_mac),
        ETH_P_ARP => arp(frame, policy, src_mac),
        ETH_P_IPV6 if policy.has(FLAG_ALLOW_IPV6) => VmReason::InIpv6Allowed,
        ETH_P_IPV6 => VmReason::InIpv6,
        ETH_P_8021Q | ETH_P_8021AD | ETH_P_QINQ_9100 => VmReason::InVlan,
        _ => VmReason::InUnknownEthertype,
    }
}

/// Whether a frame from the backend's IP also came from its MAC (when pinned).
#[inline(always)]
fn backend_mac_ok(policy: &VmPolicy, mac: [u8; 6]) -> bool {
    !policy.has(FLAG_BACKEND_MAC) || mac == policy.backend_mac
}

#[inline(always)]
fn ipv4(frame: &Frame, policy: &VmPolicy, src_mac: [u8; 6]) -> VmReason {
    let ip = match Ipv4::parse(frame) {
        Ok(ip) => ip,
        Err(Ipv4Error::Truncated) => return VmReason::InTruncatedIpv4,
        Err(Ipv4Error::Malformed) => return VmReason::InMalformedIpv4,
    };
    let from_backend = ip.src_be == policy.backend_ip_be;
    if from_backend && !backend_mac_ok(policy, src_mac) {
        return VmReason::InBackendMacMismatch;
    }
    if ip.is_fragment() && !from_backend {
        return VmReason::InFragment;
    }
    if ip.is_later_fragment() {
        // From the backend; no transport header to look at.
        return VmReason::InBackendOther;
    }
    let ports = match ip.ports(frame) {
        Ok(ports) => ports,
        Err(()) => return VmReason::InTruncatedL4,
    };
    let Some(ports) = ports else {
        return if from_backend {
            VmReason::InBackendOther
        } else {
            VmReason::InForeignSource
        };
    };
    let dhcp_reply = ip.proto == IPPROTO_UDP
        && ports.src_be == port_be(DHCP_SERVER_PORT)
        && ports.dst_be == port_be(DHCP_CLIENT_PORT);
    if dhcp_reply {
        return if ip.src_be == policy.dhcp_server_be {
            VmReason::InDhcpReply
        } else {
            VmReason::InDhcpRogue
        };
    }
    if from_backend {
        return if is_app_port(policy, ports.dst_be) {
            VmReason::InAppFromBackend
        } else {
            VmReason::InBackendOther
        };
    }
    if is_egress_allowed(policy, ip.src_be, ports.src_be) {
        return VmReason::InAllowedReply;
    }
    VmReason::InForeignSource
}

#[inline(always)]
fn arp(frame: &Frame, policy: &VmPolicy, src_mac: [u8; 6]) -> VmReason {
    if !frame.has(ETH_HLEN, ARP_LEN) {
        return VmReason::InTruncatedArp;
    }
    let (Some(htype), Some(ptype), Some(hlen), Some(plen)) = (
        frame.be16(ETH_HLEN + ARP_HTYPE),
        frame.be16(ETH_HLEN + ARP_PTYPE),
        frame.read::<u8>(ETH_HLEN + ARP_HLEN),
        frame.read::<u8>(ETH_HLEN + ARP_PLEN),
    ) else {
        return VmReason::InTruncatedArp;
    };
    if htype != ARPHRD_ETHER || ptype != ETH_P_IP || hlen != 6 || plen != 4 {
        return VmReason::InMalformedArp;
    }
    let (Some(sha), Some(spa)) = (
        frame.read::<[u8; 6]>(ETH_HLEN + ARP_SHA),
        frame.read::<u32>(ETH_HLEN + ARP_SPA),
    ) else {
        return VmReason::InTruncatedArp;
    };
    if spa != policy.backend_ip_be {
        return VmReason::InArpForeign;
    }
    if !backend_mac_ok(policy, src_mac) || !backend_mac_ok(policy, sha) {
        return VmReason::InBackendMacMismatch;
    }
    VmReason::InArpBackend
}
