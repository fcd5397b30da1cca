//! Backend, secure-network interface ingress (XDP): anti-spoofing by the
//! application-VM table. A pool IP must come from the MAC pinned to it; the
//! backend's own IP never comes from outside. Per-VM counters by IP.

use appvm_common::{
    BackendReason,
    backend::{BackendPolicy, VmTraffic},
};
use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

use appvm_common::event::EventProgram;

use crate::{
    backend_maps::{BACKEND_VM_TRAFFIC, active},
    count::count_backend,
    events,
    frame::Frame,
    headers::*,
    ipv4::{Ipv4, Ipv4Error},
};

#[xdp]
fn backend_secure(ctx: XdpContext) -> u32 {
    let frame = Frame::new(ctx.data(), ctx.data_end());
    let bytes = frame.len() as u64;
    let (reason, slot) = match active() {
        Some(policy) => classify(&frame, policy),
        None => (BackendReason::SecNoPolicy, None),
    };
    count_backend(reason, bytes);
    crate::debug_log::verdict!(&ctx, "backend_secure", reason);
    account(slot, reason.passes(), bytes);
    if reason.passes() {
        xdp_action::XDP_PASS
    } else {
        events::dropped(
            EventProgram::BackendSecure,
            reason.index(),
            ctx.ingress_ifindex() as u32,
            &frame,
        );
        xdp_action::XDP_DROP
    }
}

/// Adds to the counters of the VM whose IP the frame carried.
#[inline(always)]
fn account(slot: Option<*mut VmTraffic>, passed: bool, bytes: u64) {
    if let Some(t) = slot {
        // SAFETY: per-CPU map value, written only by this CPU.
        unsafe {
            if passed {
                (*t).packets += 1;
                (*t).bytes += bytes;
            } else {
                (*t).spoofed_packets += 1;
                (*t).spoofed_bytes += bytes;
            }
        }
    }
}

/// This CPU's slot of the VM at `ip_be`: its pinned MAC and its counters,
/// in one lookup.
#[inline(always)]
fn vm_slot(ip_be: u32) -> Option<*mut VmTraffic> {
    BACKEND_VM_TRAFFIC.get_ptr_mut(ip_be)
}

/// Whether `slot` exists and pins `mac`.
#[inline(always)]
fn pins(slot: Option<*mut VmTraffic>, mac: [u8; 6]) -> bool {
    // SAFETY: a map value of this CPU; userspace replaces the MAC only
    // with a whole new value (a torn read fails the compare: a drop).
    slot.is_some_and(|s| unsafe { (*s).mac } == mac)
}

#[inline(always)]
fn classify(frame: &Frame, policy: &BackendPolicy) -> (BackendReason, Option<*mut VmTraffic>) {
    let (Some(ethertype), Some(src_mac)) = (frame.be16(ETH_TYPE), frame.read::<[u8; 6]>(ETH_SRC))
    else {
        return (BackendReason::SecTruncated, None);
    };
    match ethertype {
        ETH_P_IP => {
            let ip = match Ipv4::parse(frame) {
                Ok(ip) => ip,
                Err(Ipv4Error::Truncated) => return (BackendReason::SecTruncated, None),
                Err(Ipv4Error::Malformed) => return (BackendReason::SecMalformed, None),
            };
            if ip.src_be == policy.secure_ip_be {
                (BackendReason::SecSpoofedBackendIp, None)
            } else if !policy.in_pool(ip.src_be) {
                (BackendReason::SecOther, None)
            } else {
                let slot = vm_slot(ip.src_be);
                if pins(slot, src_mac) {
                    (BackendReason::SecVm, slot)
                } else {
                    (BackendReason::SecSpoofedVmIp, slot)
                }
            }
        }
        ETH_P_ARP => {
            if !frame.has(ETH_HLEN, ARP_LEN) {
                return (BackendReason::SecTruncated, None);
            }
            let (Some(htype), Some(ptype), Some(sha), Some(spa)) = (
                frame.be16(ETH_HLEN + ARP_HTYPE),
                frame.be16(ETH_HLEN + ARP_PTYPE),
                frame.read::<[u8; 6]>(ETH_HLEN + ARP_SHA),
                frame.read::<u32>(ETH_HLEN + ARP_SPA),
            ) else {
                return (BackendReason::SecTruncated, None);
            };
            if htype != ARPHRD_ETHER || ptype != ETH_P_IP {
                return (BackendReason::SecMalformed, None);
            }
            if spa == policy.secure_ip_be {
                (BackendReason::SecArpSpoof, None)
            } else if !policy.in_pool(spa) {
                (BackendReason::SecOther, None)
            } else {
                let slot = vm_slot(spa);
                if sha == src_mac && pins(slot, sha) {
                    (BackendReason::SecArpVm, slot)
                } else {
                    (BackendReason::SecArpSpoof, slot)
                }
            }
        }
        ETH_P_8021Q | ETH_P_8021AD | ETH_P_QINQ_9100 => (BackendReason::SecVlan, None),
        _ => (BackendReason::SecOther, None),
    }
}
