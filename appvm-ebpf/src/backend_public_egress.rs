//! Backend, public interface egress (tcx): records the flows the backend
//! opens, so the ingress program accepts their replies. Passes everything:
//! what the backend itself sends is not restricted here.

use appvm_common::{
    BackendReason,
    backend::{BFLAG_PUBLIC_IPV6, BackendPolicy, FlowKey},
};
use aya_ebpf::{
    bindings::TC_ACT_UNSPEC, helpers::bpf_ktime_get_ns, macros::classifier, programs::TcContext,
};

use crate::{
    backend_maps::{BACKEND_FLOWS, active},
    count::count_backend,
    flow::{key_v4, key_v6},
    frame::Frame,
    headers::*,
    ipv4::Ipv4,
    ipv6::{IPV6_HLEN, Ipv6},
};

const MAX_HEADERS: u32 = (ETH_HLEN + 60 + TCP_MIN_HLEN) as u32;

#[classifier]
fn backend_public_egress(ctx: TcContext) -> i32 {
    let want = ctx.len().min(MAX_HEADERS);
    if ((ctx.data_end() - ctx.data()) as u32) < want {
        // Best effort: an unreadable packet is simply not tracked.
        let _ = ctx.pull_data(want);
    }
    let frame = Frame::skb(ctx.data(), ctx.data_end(), ctx.len() as usize);
    let key = active().and_then(|policy| outbound_flow(&frame, policy));
    let reason = match key {
        Some(key) => {
            // SAFETY: helper without preconditions.
            let now = unsafe { bpf_ktime_get_ns() };
            // A known flow's time is refreshed in place: an insert into an
            // LRU map takes a free element on every packet (~10x dearer).
            match BACKEND_FLOWS.get_ptr_mut(key) {
                // SAFETY: a map value; a concurrent refresh writes a time
                // as recent, and the ingress side reads it whole.
                Some(seen) => unsafe { *seen = now },
                // LRU: the oldest flows make room; a failed insert only
                // means a reply will be refused, never that something
                // extra is let in.
                None => {
                    let _ = BACKEND_FLOWS.insert(key, now, 0);
                }
            }
            BackendReason::PubOutTracked
        }
        None => BackendReason::PubOutOther,
    };
    count_backend(reason, u64::from(ctx.len()));
    TC_ACT_UNSPEC
}

/// The key replies to this packet will carry, if it is a TCP/UDP packet
/// from the public address that is not the proxy answering on its port.
#[inline(always)]
fn outbound_flow(frame: &Frame, policy: &BackendPolicy) -> Option<FlowKey> {
    match frame.be16(ETH_TYPE)? {
        ETH_P_IP => {
            let ip = Ipv4::parse(frame).ok()?;
            if ip.src_be != policy.public_ip_be || ip.is_later_fragment() {
                return None;
            }
            let ports = ip.ports(frame).ok()??;
            if ip.proto == IPPROTO_TCP && ports.src_be == policy.public_port_be {
                return None;
            }
            Some(key_v4(
                ip.proto,
                ip.dst_be,
                ports.dst_be,
                ip.src_be,
                ports.src_be,
            ))
        }
        ETH_P_IPV6 if policy.has(BFLAG_PUBLIC_IPV6) => {
            let ip = Ipv6::parse(frame).ok()?;
            if ip.src != policy.public_ipv6 || !matches!(ip.next_header, IPPROTO_TCP | IPPROTO_UDP)
            {
                return None;
            }
            let l4 = ETH_HLEN + IPV6_HLEN;
            let sport = frame.read::<u16>(l4)?;
            let dport = frame.read::<u16>(l4 + 2)?;
            if ip.next_header == IPPROTO_TCP && sport == policy.public_port_be {
                return None;
            }
            Some(key_v6(ip.next_header, ip.dst, dport, ip.src, sport))
        }
        _ => None,
    }
}
