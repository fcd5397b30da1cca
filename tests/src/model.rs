//! A reference model of the VM guard's decisions, written from the policy
//! (the README's tables), for differential fuzzing against the kernel.
//! It shares no code with `appvm-ebpf`: plain slices, plain Rust.

use std::net::Ipv4Addr;

use appvm_common::VmReason as R;

/// The policy, as the model reads it.
#[derive(Clone, Debug)]
pub struct Policy {
    pub backend: Ipv4Addr,
    pub backend_mac: Option<[u8; 6]>,
    pub app_ports: Vec<u16>,
    pub dhcp_server: Ipv4Addr,
    pub allow_egress: Vec<(Ipv4Addr, u16)>,
    pub allow_ipv6: bool,
}

fn be16(f: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([f[at], f[at + 1]])
}

fn ip(f: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(f[at], f[at + 1], f[at + 2], f[at + 3])
}

/// What an IPv4 packet looks like to the model, or why it is unusable.
struct V4 {
    ihl: usize,
    total: usize,
    more_fragments: bool,
    offset: u16,
    proto: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
}

fn v4(f: &[u8], wire_len: usize, truncated: R, malformed: R) -> Result<V4, R> {
    if f.len() < 14 + 20 {
        return Err(truncated);
    }
    let ihl = usize::from(f[14] & 0x0f) * 4;
    if f[14] >> 4 != 4 || ihl < 20 {
        return Err(malformed);
    }
    if f.len() < 14 + ihl {
        return Err(truncated);
    }
    let total = usize::from(be16(f, 16));
    let frag = be16(f, 20);
    if total < ihl || 14 + total > wire_len || frag & 0x8000 != 0 {
        return Err(malformed);
    }
    Ok(V4 {
        ihl,
        total,
        more_fragments: frag & 0x2000 != 0,
        offset: frag & 0x1fff,
        proto: f[23],
        src: ip(f, 26),
        dst: ip(f, 30),
    })
}

/// (source port, destination port) of TCP/UDP, `Ok(None)` for others,
/// `Err(())` when the header is not all there.
fn ports(f: &[u8], p: &V4) -> Result<Option<(u16, u16)>, ()> {
    let need = match p.proto {
        6 => 20,
        17 => 8,
        _ => return Ok(None),
    };
    let l4 = 14 + p.ihl;
    if p.ihl + need > p.total || f.len() < l4 + need {
        return Err(());
    }
    Ok(Some((be16(f, l4), be16(f, l4 + 2))))
}

fn is_vlan(t: u16) -> bool {
    matches!(t, 0x8100 | 0x88a8 | 0x9100)
}

/// The ingress (XDP) decision for frame `f`.
pub fn ingress(f: &[u8], p: &Policy) -> R {
    if f.len() < 14 {
        return R::InTruncatedEth;
    }
    let src_mac: [u8; 6] = f[6..12].try_into().unwrap_or_default();
    let mac_ok = |m: [u8; 6]| p.backend_mac.is_none_or(|b| b == m);
    match be16(f, 12) {
        0x0800 => {
            let h = match v4(f, f.len(), R::InTruncatedIpv4, R::InMalformedIpv4) {
                Ok(h) => h,
                Err(r) => return r,
            };
            let from_backend = h.src == p.backend;
            if from_backend && !mac_ok(src_mac) {
                return R::InBackendMacMismatch;
            }
            if (h.more_fragments || h.offset != 0) && !from_backend {
                return R::InFragment;
            }
            if h.offset != 0 {
                return R::InBackendOther;
            }
            let (sport, dport) = match ports(f, &h) {
                Err(()) => return R::InTruncatedL4,
                Ok(None) => {
                    return if from_backend {
                        R::InBackendOther
                    } else {
                        R::InForeignSource
                    };
                }
                Ok(Some(pp)) => pp,
            };
            if h.proto == 17 && sport == 67 && dport == 68 {
                return if h.src == p.dhcp_server {
                    R::InDhcpReply
                } else {
                    R::InDhcpRogue
                };
            }
            if from_backend {
                return if p.app_ports.contains(&dport) {
                    R::InAppFromBackend
                } else {
                    R::InBackendOther
                };
            }
            if p.allow_egress.contains(&(h.src, sport)) {
                return R::InAllowedReply;
            }
            R::InForeignSource
        }
        0x0806 => {
            if f.len() < 14 + 28 {
                return R::InTruncatedArp;
            }
            if be16(f, 14) != 1 || be16(f, 16) != 0x0800 || f[18] != 6 || f[19] != 4 {
                return R::InMalformedArp;
            }
            let sha: [u8; 6] = f[22..28].try_into().unwrap_or_default();
            if ip(f, 28) != p.backend {
                return R::InArpForeign;
            }
            if !mac_ok(src_mac) || !mac_ok(sha) {
                return R::InBackendMacMismatch;
            }
            R::InArpBackend
        }
        0x86dd => {
            if p.allow_ipv6 {
                R::InIpv6Allowed
            } else {
                R::InIpv6
            }
        }
        t if is_vlan(t) => R::InVlan,
        _ => R::InUnknownEthertype,
    }
}

/// The egress (tcx) decision for a linear skb `f` (as test-run gives it).
pub fn egress(f: &[u8], p: &Policy) -> R {
    if f.len() < 14 {
        return R::OutUnparseable;
    }
    match be16(f, 12) {
        0x0800 => {
            let h = match v4(f, f.len(), R::OutUnparseable, R::OutMalformedIpv4) {
                Ok(h) => h,
                Err(r) => return r,
            };
            if h.dst == p.backend {
                return R::OutBackend;
            }
            if h.offset != 0 {
                return R::OutFragment;
            }
            let (sport, dport) = match ports(f, &h) {
                Err(()) => return R::OutUnparseable,
                Ok(None) => return R::OutDenied,
                Ok(Some(pp)) => pp,
            };
            if h.proto == 17
                && sport == 68
                && dport == 67
                && (h.dst == Ipv4Addr::BROADCAST || h.dst == p.dhcp_server)
            {
                return R::OutDhcpRequest;
            }
            if p.allow_egress.contains(&(h.dst, dport)) {
                return R::OutAllowed;
            }
            R::OutDenied
        }
        0x0806 => {
            if f.len() < 14 + 28 {
                return R::OutUnparseable;
            }
            let (spa, tpa) = (ip(f, 28), ip(f, 38));
            let known = tpa == p.backend || p.allow_egress.iter().any(|(a, _)| *a == tpa);
            if known || spa == Ipv4Addr::UNSPECIFIED || spa == tpa {
                R::OutArp
            } else {
                R::OutArpDenied
            }
        }
        0x86dd => {
            if p.allow_ipv6 {
                R::OutIpv6Allowed
            } else {
                R::OutIpv6
            }
        }
        t if is_vlan(t) => R::OutVlan,
        _ => R::OutUnknownEthertype,
    }
}
