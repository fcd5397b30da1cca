//! Backend, public interface ingress (XDP).
//!
//! From outside, only TCP to the public IP and port (where the proxy
//! listens) gets in, plus replies to flows the backend opened, ARP for the
//! public IP and the ICMP/ICMPv6 messages PMTU discovery and neighbour
//! discovery need. Everything else is dropped under a counted reason.

use appvm_common::{
    BackendReason,
    backend::{BFLAG_PUBLIC_IPV6, BackendPolicy, FlowKey},
};
use aya_ebpf::{
    bindings::xdp_action, helpers::bpf_ktime_get_ns, macros::xdp, programs::XdpContext,
};

use appvm_common::event::EventProgram;

use crate::{
    backend_maps::{BACKEND_FLOWS, active},
    count::count_backend,
    events,
    flow::{key_v4, key_v6},
    frame::Frame,
    headers::*,
    ipv4::{Ipv4, Ipv4Error},
    ipv6::{IPPROTO_ICMPV6, IPV6_HLEN, Ipv6, Ipv6Error},
};

const IPPROTO_ICMP: u8 = 1;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_FRAG_NEEDED: u8 = 4;
const ICMPV6_PACKET_TOO_BIG: u8 = 2;
const ICMPV6_ND_FIRST: u8 = 133;
const ICMPV6_ND_LAST: u8 = 137;

#[xdp]
fn backend_public(ctx: XdpContext) -> u32 {
    let frame = Frame::new(ctx.data(), ctx.data_end());
    let reason = match active() {
        Some(policy) => classify(&frame, policy),
        None => BackendReason::PubNoPolicy,
    };
    count_backend(reason, frame.len() as u64);
    crate::debug_log::verdict!(&ctx, "backend_public", reason);
    if reason.passes() {
        xdp_action::XDP_PASS
    } else {
        events::dropped(
            EventProgram::BackendPublic,
            reason.index(),
            ctx.ingress_ifindex() as u32,
            &frame,
        );
        xdp_action::XDP_DROP
    }
}

#[inline(always)]
fn classify(frame: &Frame, policy: &BackendPolicy) -> BackendReason {
    let Some(ethertype) = frame.be16(ETH_TYPE) else {
        return BackendReason::PubTruncated;
    };
    match ethertype {
        ETH_P_IP => ipv4(frame, policy),
        ETH_P_ARP => arp(frame, policy),
        ETH_P_IPV6 if policy.has(BFLAG_PUBLIC_IPV6) => ipv6(frame, policy),
        ETH_P_IPV6 => BackendReason::PubIpv6,
        ETH_P_8021Q | ETH_P_8021AD | ETH_P_QINQ_9100 => BackendReason::PubVlan,
        _ => BackendReason::PubUnknownEthertype,
    }
}

/// Whether the TCP segment at `l4` (its 20 bytes checked present) is a
/// bare SYN: it opens a connection, so it is never a reply, and it is what
/// a flood is made of. No flow lookup for it.
#[inline(always)]
fn bare_syn(frame: &Frame, l4: usize) -> bool {
    frame
        .read::<u8>(l4 + TCP_FLAGS)
        .is_some_and(|f| f & (TCP_SYN | TCP_ACK) == TCP_SYN)
}

/// Whether `key` is a flow the backend opened, seen recently enough.
#[inline(always)]
fn is_reply(key: &FlowKey, policy: &BackendPolicy) -> bool {
    // SAFETY: the value is a plain u64 read once; a concurrent update by the
    // egress program only makes it newer.
    let Some(&seen) = (unsafe { BACKEND_FLOWS.get(key) }) else {
        return false;
    };
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    now.wrapping_sub(seen) < policy.flow_timeout_ns
}

#[inline(always)]
fn ipv4(frame: &Frame, policy: &BackendPolicy) -> BackendReason {
    let ip = match Ipv4::parse(frame) {
        Ok(ip) => ip,
        Err(Ipv4Error::Truncated) => return BackendReason::PubTruncated,
        Err(Ipv4Error::Malformed) => return BackendReason::PubMalformed,
    };
    if ip.dst_be != policy.public_ip_be {
        return BackendReason::PubNotForUs;
    }
    if ip.is_fragment() {
        return BackendReason::PubFragment;
    }
    if ip.proto == IPPROTO_ICMP {
        let l4 = ETH_HLEN + ip.hdr_len;
        let (Some(kind), Some(code)) = (frame.read::<u8>(l4), frame.read::<u8>(l4 + 1)) else {
            return BackendReason::PubTruncated;
        };
        return if kind == ICMP_DEST_UNREACH && code == ICMP_FRAG_NEEDED {
            BackendReason::PubPmtu
        } else {
            BackendReason::PubIcmpDenied
        };
    }
    let ports = match ip.ports(frame) {
        Ok(Some(ports)) => ports,
        Ok(None) => return BackendReason::PubProtoDenied,
        Err(()) => return BackendReason::PubTruncated,
    };
    if ip.proto == IPPROTO_TCP && ports.dst_be == policy.public_port_be {
        return BackendReason::PubPort;
    }
    if ip.proto == IPPROTO_TCP && bare_syn(frame, ETH_HLEN + ip.hdr_len) {
        return BackendReason::PubPortClosed;
    }
    let key = key_v4(ip.proto, ip.src_be, ports.src_be, ip.dst_be, ports.dst_be);
    if is_reply(&key, policy) {
        BackendReason::PubReply
    } else if ip.proto == IPPROTO_TCP {
        BackendReason::PubPortClosed
    } else {
        BackendReason::PubProtoDenied
    }
}

#[inline(always)]
fn ipv6(frame: &Frame, policy: &BackendPolicy) -> BackendReason {
    let ip = match Ipv6::parse(frame) {
        Ok(ip) => ip,
        Err(Ipv6Error::Truncated) => return BackendReason::PubTruncated,
        Err(Ipv6Error::Malformed) => return BackendReason::PubMalformed,
    };
    let l4 = ETH_HLEN + IPV6_HLEN;
    if ip.next_header == IPPROTO_ICMPV6 {
        let Some(kind) = frame.read::<u8>(l4) else {
            return BackendReason::PubTruncated;
        };
        // Neighbour discovery goes to multicast too; RFC 4861 requires hop
        // limit 255, which no routed (off-link) packet can have.
        if (ICMPV6_ND_FIRST..=ICMPV6_ND_LAST).contains(&kind) && ip.hop_limit == 255 {
            return BackendReason::PubNd;
        }
        if ip.dst != policy.public_ipv6 {
            return BackendReason::PubNotForUs;
        }
        return if kind == ICMPV6_PACKET_TOO_BIG {
            BackendReason::PubPmtu
        } else {
            BackendReason::PubIcmpDenied
        };
    }
    if ip.dst != policy.public_ipv6 {
        return BackendReason::PubNotForUs;
    }
    let proto = ip.next_header;
    let hdr = match proto {
        IPPROTO_TCP => TCP_MIN_HLEN,
        IPPROTO_UDP => UDP_HLEN,
        // Extension headers (fragments included) and anything else.
        _ => return BackendReason::PubProtoDenied,
    };
    if !frame.has(l4, hdr) {
        return BackendReason::PubTruncated;
    }
    let (Some(sport), Some(dport)) = (frame.read::<u16>(l4), frame.read::<u16>(l4 + 2)) else {
        return BackendReason::PubTruncated;
    };
    if proto == IPPROTO_TCP && dport == policy.public_port_be {
        return BackendReason::PubPort;
    }
    if proto == IPPROTO_TCP && bare_syn(frame, l4) {
        return BackendReason::PubPortClosed;
    }
    if is_reply(&key_v6(proto, ip.src, sport, ip.dst, dport), policy) {
        BackendReason::PubReply
    } else if proto == IPPROTO_TCP {
        BackendReason::PubPortClosed
    } else {
        BackendReason::PubProtoDenied
    }
}

#[inline(always)]
fn arp(frame: &Frame, policy: &BackendPolicy) -> BackendReason {
    if !frame.has(ETH_HLEN, ARP_LEN) {
        return BackendReason::PubTruncated;
    }
    let (Some(htype), Some(ptype), Some(hlen), Some(plen), Some(tpa)) = (
        frame.be16(ETH_HLEN + ARP_HTYPE),
        frame.be16(ETH_HLEN + ARP_PTYPE),
        frame.read::<u8>(ETH_HLEN + ARP_HLEN),
        frame.read::<u8>(ETH_HLEN + ARP_PLEN),
        frame.read::<u32>(ETH_HLEN + ARP_TPA),
    ) else {
        return BackendReason::PubTruncated;
    };
    if htype != ARPHRD_ETHER || ptype != ETH_P_IP || hlen != 6 || plen != 4 {
        return BackendReason::PubMalformed;
    }
    if tpa == policy.public_ip_be {
        BackendReason::PubArp
    } else {
        BackendReason::PubArpDenied
    }
}
