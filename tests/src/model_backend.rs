//! A reference model of the backend programs' decisions (the README's
//! backend table), for differential fuzzing. Written from the policy; it
//! shares no code with `appvm-ebpf`.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{Ipv4Addr, Ipv6Addr},
};

use appvm_common::BackendReason as R;

#[derive(Clone, Debug)]
pub struct Policy {
    pub public_ip: Ipv4Addr,
    pub public_ipv6: Option<Ipv6Addr>,
    pub public_port: u16,
    pub secure_ip: Ipv4Addr,
    /// (network, prefix length) of the VM pool.
    pub pool: (Ipv4Addr, u8),
    /// The table: IP -> pinned MAC.
    pub vms: BTreeMap<Ipv4Addr, [u8; 6]>,
}

/// A flow as replies carry it: (proto, remote, remote port, local, local port).
pub type Flow = (u8, Vec<u8>, u16, Vec<u8>, u16);

fn be16(f: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([f[at], f[at + 1]])
}

fn ip4(f: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(f[at], f[at + 1], f[at + 2], f[at + 3])
}

fn in_pool(p: &Policy, ip: Ipv4Addr) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(p.pool.1)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(p.pool.0) & mask
}

enum V4 {
    Ok {
        ihl: usize,
        total: usize,
        fragment: bool,
        later: bool,
        proto: u8,
        src: Ipv4Addr,
        dst: Ipv4Addr,
    },
    Truncated,
    Malformed,
}

fn v4(f: &[u8]) -> V4 {
    if f.len() < 34 {
        return V4::Truncated;
    }
    let ihl = usize::from(f[14] & 15) * 4;
    if f[14] >> 4 != 4 || ihl < 20 {
        return V4::Malformed;
    }
    if f.len() < 14 + ihl {
        return V4::Truncated;
    }
    let total = usize::from(be16(f, 16));
    let frag = be16(f, 20);
    if total < ihl || 14 + total > f.len() || frag & 0x8000 != 0 {
        return V4::Malformed;
    }
    V4::Ok {
        ihl,
        total,
        fragment: frag & 0x3fff != 0,
        later: frag & 0x1fff != 0,
        proto: f[23],
        src: ip4(f, 26),
        dst: ip4(f, 30),
    }
}

/// TCP/UDP ports of an IPv4 packet: `None` when the header is cut short.
fn v4_ports(f: &[u8], ihl: usize, total: usize, proto: u8) -> Option<(u16, u16)> {
    let need = if proto == 6 { 20 } else { 8 };
    let l4 = 14 + ihl;
    (ihl + need <= total && f.len() >= l4 + need).then(|| (be16(f, l4), be16(f, l4 + 2)))
}

fn v6_addr(f: &[u8], at: usize) -> Ipv6Addr {
    let b: [u8; 16] = f[at..at + 16].try_into().unwrap_or_default();
    Ipv6Addr::from(b)
}

fn v4_key(a: Ipv4Addr) -> Vec<u8> {
    let mut v = a.octets().to_vec();
    v.resize(16, 0);
    v
}

/// Public interface, ingress.
pub fn public_ingress(f: &[u8], p: &Policy, flows: &BTreeSet<Flow>) -> R {
    if f.len() < 14 {
        return R::PubTruncated;
    }
    match be16(f, 12) {
        0x0800 => match v4(f) {
            V4::Truncated => R::PubTruncated,
            V4::Malformed => R::PubMalformed,
            V4::Ok {
                ihl,
                total,
                fragment,
                proto,
                src,
                dst,
                ..
            } => {
                if dst != p.public_ip {
                    return R::PubNotForUs;
                }
                if fragment {
                    return R::PubFragment;
                }
                if proto == 1 {
                    if f.len() < 14 + ihl + 2 {
                        return R::PubTruncated;
                    }
                    return if f[14 + ihl] == 3 && f[14 + ihl + 1] == 4 {
                        R::PubPmtu
                    } else {
                        R::PubIcmpDenied
                    };
                }
                if proto != 6 && proto != 17 {
                    return R::PubProtoDenied;
                }
                let Some((sport, dport)) = v4_ports(f, ihl, total, proto) else {
                    return R::PubTruncated;
                };
                if proto == 6 && dport == p.public_port {
                    return R::PubPort;
                }
                // A bare SYN (SYN without ACK) is never a reply.
                if proto == 6 && f[14 + ihl + 13] & 0x12 == 0x02 {
                    return R::PubPortClosed;
                }
                if flows.contains(&(proto, v4_key(src), sport, v4_key(dst), dport)) {
                    R::PubReply
                } else if proto == 6 {
                    R::PubPortClosed
                } else {
                    R::PubProtoDenied
                }
            }
        },
        0x0806 => {
            if f.len() < 42 {
                return R::PubTruncated;
            }
            if be16(f, 14) != 1 || be16(f, 16) != 0x0800 || f[18] != 6 || f[19] != 4 {
                return R::PubMalformed;
            }
            if ip4(f, 38) == p.public_ip {
                R::PubArp
            } else {
                R::PubArpDenied
            }
        }
        0x86dd => {
            let Some(me) = p.public_ipv6 else {
                return R::PubIpv6;
            };
            if f.len() < 54 {
                return R::PubTruncated;
            }
            if f[14] >> 4 != 6 || 54 + usize::from(be16(f, 18)) > f.len() {
                return R::PubMalformed;
            }
            let (next, hop, src, dst) = (f[20], f[21], v6_addr(f, 22), v6_addr(f, 38));
            if next == 58 {
                if f.len() < 55 {
                    return R::PubTruncated;
                }
                let kind = f[54];
                if (133..=137).contains(&kind) && hop == 255 {
                    return R::PubNd;
                }
                if dst != me {
                    return R::PubNotForUs;
                }
                return if kind == 2 {
                    R::PubPmtu
                } else {
                    R::PubIcmpDenied
                };
            }
            if dst != me {
                return R::PubNotForUs;
            }
            let need = match next {
                6 => 20,
                17 => 8,
                _ => return R::PubProtoDenied,
            };
            if f.len() < 54 + need {
                return R::PubTruncated;
            }
            let (sport, dport) = (be16(f, 54), be16(f, 56));
            if next == 6 && dport == p.public_port {
                return R::PubPort;
            }
            if next == 6 && f[54 + 13] & 0x12 == 0x02 {
                return R::PubPortClosed;
            }
            if flows.contains(&(
                next,
                src.octets().to_vec(),
                sport,
                dst.octets().to_vec(),
                dport,
            )) {
                R::PubReply
            } else if next == 6 {
                R::PubPortClosed
            } else {
                R::PubProtoDenied
            }
        }
        0x8100 | 0x88a8 | 0x9100 => R::PubVlan,
        _ => R::PubUnknownEthertype,
    }
}

/// Public interface, egress: the flow it records, if any.
pub fn public_egress(f: &[u8], p: &Policy) -> Option<Flow> {
    if f.len() < 14 {
        return None;
    }
    match be16(f, 12) {
        0x0800 => {
            let V4::Ok {
                ihl,
                total,
                later,
                proto,
                src,
                dst,
                ..
            } = v4(f)
            else {
                return None;
            };
            if src != p.public_ip || later || (proto != 6 && proto != 17) {
                return None;
            }
            let (sport, dport) = v4_ports(f, ihl, total, proto)?;
            if proto == 6 && sport == p.public_port {
                return None;
            }
            Some((proto, v4_key(dst), dport, v4_key(src), sport))
        }
        0x86dd => {
            let me = p.public_ipv6?;
            if f.len() < 54 || f[14] >> 4 != 6 || 54 + usize::from(be16(f, 18)) > f.len() {
                return None;
            }
            let (next, src, dst) = (f[20], v6_addr(f, 22), v6_addr(f, 38));
            if src != me || (next != 6 && next != 17) || f.len() < 58 {
                return None;
            }
            let (sport, dport) = (be16(f, 54), be16(f, 56));
            if next == 6 && sport == p.public_port {
                return None;
            }
            Some((
                next,
                dst.octets().to_vec(),
                dport,
                src.octets().to_vec(),
                sport,
            ))
        }
        _ => None,
    }
}

/// Secure interface, ingress.
pub fn secure_ingress(f: &[u8], p: &Policy) -> R {
    if f.len() < 14 {
        return R::SecTruncated;
    }
    let mac: [u8; 6] = f[6..12].try_into().unwrap_or_default();
    let pinned = |ip: Ipv4Addr, m: [u8; 6]| p.vms.get(&ip) == Some(&m);
    match be16(f, 12) {
        0x0800 => match v4(f) {
            V4::Truncated => R::SecTruncated,
            V4::Malformed => R::SecMalformed,
            V4::Ok { src, .. } => {
                if src == p.secure_ip {
                    R::SecSpoofedBackendIp
                } else if !in_pool(p, src) {
                    R::SecOther
                } else if pinned(src, mac) {
                    R::SecVm
                } else {
                    R::SecSpoofedVmIp
                }
            }
        },
        0x0806 => {
            if f.len() < 42 {
                return R::SecTruncated;
            }
            if be16(f, 14) != 1 || be16(f, 16) != 0x0800 {
                return R::SecMalformed;
            }
            let sha: [u8; 6] = f[22..28].try_into().unwrap_or_default();
            let spa = ip4(f, 28);
            if spa == p.secure_ip {
                R::SecArpSpoof
            } else if !in_pool(p, spa) {
                R::SecOther
            } else if sha == mac && pinned(spa, sha) {
                R::SecArpVm
            } else {
                R::SecArpSpoof
            }
        }
        0x8100 | 0x88a8 | 0x9100 => R::SecVlan,
        _ => R::SecOther,
    }
}
