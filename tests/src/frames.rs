//! Frames built byte by byte, for `BPF_PROG_TEST_RUN` and raw sockets.
//! The builders are checked against golden bytes below.

use std::net::Ipv4Addr;

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const TCP_SYN: u8 = 0x02;
pub const IP_DF: u16 = 0x4000;
pub const IP_MF: u16 = 0x2000;
pub const BROADCAST_MAC: [u8; 6] = [0xff; 6];

/// Ethernet II frame.
pub fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An 802.1Q/802.1ad tag (`tpid`, VLAN `vid`) in front of `inner_type`.
pub fn vlan_tagged(
    dst: [u8; 6],
    src: [u8; 6],
    tpid: u16,
    vid: u16,
    inner_type: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut tag = Vec::with_capacity(4 + payload.len());
    tag.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    tag.extend_from_slice(&inner_type.to_be_bytes());
    tag.extend_from_slice(payload);
    ethernet(dst, src, tpid, &tag)
}

/// Internet checksum (RFC 1071).
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 header; `to_bytes` fills in lengths and the checksum.
#[derive(Clone, Debug)]
pub struct Ipv4 {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub ttl: u8,
    pub id: u16,
    /// Flags and fragment offset (in 8-byte units), as on the wire.
    pub flags_frag: u16,
    /// Options, padded by the caller to a multiple of 4 bytes.
    pub options: Vec<u8>,
}

impl Ipv4 {
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, proto: u8) -> Self {
        Self {
            src,
            dst,
            proto,
            ttl: 64,
            id: 0,
            flags_frag: IP_DF,
            options: Vec::new(),
        }
    }

    pub fn to_bytes(&self, payload: &[u8]) -> Vec<u8> {
        let hdr_len = 20 + self.options.len();
        assert!(
            hdr_len.is_multiple_of(4) && hdr_len <= 60,
            "bad IPv4 options length"
        );
        let total = u16::try_from(hdr_len + payload.len()).expect("datagram too long");
        let mut h = Vec::with_capacity(usize::from(total));
        h.push(0x40 | (hdr_len / 4) as u8);
        h.push(0);
        h.extend_from_slice(&total.to_be_bytes());
        h.extend_from_slice(&self.id.to_be_bytes());
        h.extend_from_slice(&self.flags_frag.to_be_bytes());
        h.push(self.ttl);
        h.push(self.proto);
        h.extend_from_slice(&[0, 0]);
        h.extend_from_slice(&self.src.octets());
        h.extend_from_slice(&self.dst.octets());
        h.extend_from_slice(&self.options);
        let sum = checksum(&h);
        h[10..12].copy_from_slice(&sum.to_be_bytes());
        h.extend_from_slice(payload);
        h
    }
}

fn pseudo_sum(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, segment: &[u8]) -> u16 {
    let mut p = Vec::with_capacity(12 + segment.len());
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.push(0);
    p.push(proto);
    p.extend_from_slice(&(segment.len() as u16).to_be_bytes());
    p.extend_from_slice(segment);
    checksum(&p)
}

/// A 20-byte TCP header (no options, no payload) with a valid checksum.
pub fn tcp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, flags: u8, seq: u32) -> Vec<u8> {
    let mut t = Vec::with_capacity(20);
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&0_u32.to_be_bytes());
    t.push(5 << 4);
    t.push(flags);
    t.extend_from_slice(&64240_u16.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0]);
    let sum = pseudo_sum(src, dst, IPPROTO_TCP, &t);
    t[16..18].copy_from_slice(&sum.to_be_bytes());
    t
}

/// A UDP datagram with a valid checksum.
pub fn udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(8 + payload.len()).expect("datagram too long");
    let mut u = Vec::with_capacity(usize::from(len));
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&len.to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    let sum = pseudo_sum(src, dst, IPPROTO_UDP, &u);
    u[6..8].copy_from_slice(&sum.to_be_bytes());
    u
}

/// ARP for Ethernet/IPv4 (`op` 1 = request, 2 = reply).
pub fn arp(op: u16, sha: [u8; 6], spa: Ipv4Addr, tha: [u8; 6], tpa: Ipv4Addr) -> Vec<u8> {
    let mut a = Vec::with_capacity(28);
    a.extend_from_slice(&1_u16.to_be_bytes());
    a.extend_from_slice(&ETH_P_IP.to_be_bytes());
    a.push(6);
    a.push(4);
    a.extend_from_slice(&op.to_be_bytes());
    a.extend_from_slice(&sha);
    a.extend_from_slice(&spa.octets());
    a.extend_from_slice(&tha);
    a.extend_from_slice(&tpa.octets());
    a
}

/// A minimal valid IPv6 packet: link-local to link-local, "no next header".
pub fn ipv6_no_next_header() -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0, 0, 0, 59, 64];
    for last in [1_u8, 2] {
        p.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last]);
    }
    p
}

/// A complete Ethernet + IPv4 + TCP SYN frame.
pub fn tcp_syn(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
) -> Vec<u8> {
    let seg = tcp(src, dst, sport, dport, TCP_SYN, 1);
    ethernet(
        dst_mac,
        src_mac,
        ETH_P_IP,
        &Ipv4::new(src, dst, IPPROTO_TCP).to_bytes(&seg),
    )
}

/// A complete Ethernet + IPv4 + UDP frame.
pub fn udp_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let dgram = udp(src, dst, sport, dport, payload);
    ethernet(
        dst_mac,
        src_mac,
        ETH_P_IP,
        &Ipv4::new(src, dst, IPPROTO_UDP).to_bytes(&dgram),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn ipv4_header_matches_golden_bytes() {
        // The classic RFC 1071 worked example: checksum 0xb861.
        let ip = Ipv4 {
            src: Ipv4Addr::new(192, 168, 0, 1),
            dst: Ipv4Addr::new(192, 168, 0, 199),
            proto: IPPROTO_UDP,
            ttl: 64,
            id: 0,
            flags_frag: IP_DF,
            options: Vec::new(),
        };
        let bytes = ip.to_bytes(&[0; 95]);
        assert_eq!(
            hex(&bytes[..20]),
            "450000730000400040 11b861c0a80001c0a800c7".replace(' ', "")
        );
        assert_eq!(checksum(&bytes[..20]), 0);
    }

    #[test]
    fn ipv4_options_set_ihl() {
        let mut ip = Ipv4::new(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, IPPROTO_TCP);
        ip.options = vec![1, 1, 1, 0]; // NOP NOP NOP EOL
        let bytes = ip.to_bytes(&[]);
        assert_eq!(bytes[0], 0x46);
        assert_eq!(u16::from_be_bytes([bytes[2], bytes[3]]), 24);
    }

    #[test]
    fn arp_request_matches_golden_bytes() {
        let a = arp(
            1,
            [2, 0, 0, 0, 0, 1],
            Ipv4Addr::new(10, 0, 0, 1),
            [0; 6],
            Ipv4Addr::new(10, 0, 0, 2),
        );
        assert_eq!(
            hex(&a),
            "00010800060400010200000000010a0000010000000000000a000002"
        );
    }

    #[test]
    fn tcp_and_udp_checksums_verify() {
        let (s, d) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let t = tcp(s, d, 1234, 443, TCP_SYN, 7);
        assert_eq!(pseudo_sum(s, d, IPPROTO_TCP, &t), 0);
        let u = udp(s, d, 67, 68, b"hello");
        assert_eq!(pseudo_sum(s, d, IPPROTO_UDP, &u), 0);
        assert_eq!(&u[4..6], &13_u16.to_be_bytes());
    }

    #[test]
    fn vlan_tag_layout() {
        let f = vlan_tagged(BROADCAST_MAC, [2; 6], ETH_P_8021Q, 100, ETH_P_IP, &[0xaa]);
        assert_eq!(hex(&f[12..19]), "81000064080 0aa".replace(' ', ""));
    }
}
