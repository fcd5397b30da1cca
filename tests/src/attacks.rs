//! Evasions beyond the lab's basic flows, as real frames from raw sockets:
//! IP options, tiny and overlapping fragments, full-size frames, lengths
//! that lie, IPv6 extension headers, odd TCP flags, VLAN tags, against the
//! VM guard and both backend programs. Each must pass nothing (the
//! receiver's AF_PACKET socket sees only what XDP passed) and move its
//! reason counter by exactly the number of frames.

use std::net::Ipv4Addr;

use crate::{
    frames::{
        self, ETH_P_8021Q, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, IP_MF, IPPROTO_ICMP, IPPROTO_TCP,
        TCP_SYN,
    },
    lab::{APP_PORT, BACKEND_PUBLIC_IP, BACKEND_PUBLIC_MAC, PUB_IF, PUBLIC_PORT},
    scenario::Recorder,
};

/// Record route, padded to 4 bytes: an option routers act on.
const RECORD_ROUTE: [u8; 12] = [7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const TCP_FIN: u8 = 0x01;

/// A TCP SYN datagram with `ip`'s header fields.
fn syn_with(ip: &frames::Ipv4, sport: u16, dport: u16) -> Vec<u8> {
    ip.to_bytes(&frames::tcp(ip.src, ip.dst, sport, dport, TCP_SYN, 1))
}

/// Two fragments of one datagram whose second overlaps the first (offset
/// 8 bytes into a 16-byte first fragment): the classic overlap rewrite of
/// the TCP header.
fn overlapping(src: Ipv4Addr, dst: Ipv4Addr, dport: u16) -> [Vec<u8>; 2] {
    let tcp = frames::tcp(src, dst, 40100, dport, TCP_SYN, 1);
    let mut first = frames::Ipv4::new(src, dst, IPPROTO_TCP);
    first.id = 0x4242;
    first.flags_frag = IP_MF;
    let mut second = first.clone();
    second.flags_frag = 1; // offset 8 bytes, last fragment
    [first.to_bytes(&tcp[..16]), second.to_bytes(&tcp[8..20])]
}

/// An IPv4 datagram whose total length claims 65535 bytes.
fn lying_length(src: Ipv4Addr, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    let mut d = syn_with(&frames::Ipv4::new(src, dst, IPPROTO_TCP), 40200, dport);
    d[2..4].copy_from_slice(&u16::MAX.to_be_bytes());
    d
}

/// IPv6 SYN behind a hop-by-hop and a routing header.
fn ipv6_extension_headers(dport: u16) -> Vec<u8> {
    let mut p = frames::ipv6_no_next_header();
    p[6] = 0; // hop-by-hop
    p[4..6].copy_from_slice(&(8_u16 + 8 + 20).to_be_bytes());
    p.extend_from_slice(&[43, 0, 1, 4, 0, 0, 0, 0]); // -> routing, PadN
    p.extend_from_slice(&[IPPROTO_TCP, 0, 0, 0, 0, 0, 0, 0]); // type 0, 0 left
    let mut tcp = frames::tcp(
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        40300,
        dport,
        TCP_SYN,
        1,
    );
    tcp[16..18].copy_from_slice(&[0, 0]);
    p.extend_from_slice(&tcp);
    p
}

/// Evasions at the backend's secure interface, from the rogue. Run before
/// any frame forges the backend's MAC: that moves the backend's MAC to the
/// rogue's bridge port until the backend sends again.
pub(crate) fn secure_evasions(r: &mut Recorder<'_>, n: usize) -> Result<(), String> {
    let lab = r.lab;
    let (vm, rogue, backend) = (&lab.vm, &lab.rogue, &lab.backend);
    let times = |frame: Vec<u8>| vec![frame; n];
    // The backend's secure interface, from the rogue.
    let spoof = syn_with(
        &frames::Ipv4::new(vm.ip, backend.ip, IPPROTO_TCP),
        40030,
        8080,
    );
    r.raw_to(
        backend,
        "802.1Q-tagged SYN spoofing the vm's IP",
        times(frames::vlan_tagged(
            backend.mac,
            rogue.mac,
            ETH_P_8021Q,
            7,
            ETH_P_IP,
            &spoof,
        )),
        // The bridge lifts the tag into metadata: XDP sees the spoof.
        "sec_in_drop_spoofed_vm_ip",
    )?;
    r.raw_to(
        backend,
        "IPv4 length beyond the frame (65535)",
        times(frames::ethernet(
            backend.mac,
            rogue.mac,
            ETH_P_IP,
            &lying_length(rogue.ip, backend.ip, 8080),
        )),
        "sec_in_drop_malformed",
    )?;
    Ok(())
}

/// Adds the evasion rows, `n` frames each (pairs for overlaps).
pub(crate) fn evasions(r: &mut Recorder<'_>, n: usize) -> Result<(), String> {
    let lab = r.lab;
    let (vm, rogue, backend, public) = (&lab.vm, &lab.rogue, &lab.backend, &lab.public);
    let to_vm = |payload: &[u8]| frames::ethernet(vm.mac, rogue.mac, ETH_P_IP, payload);
    let times = |frame: Vec<u8>| vec![frame; n];

    // The VM guard.
    let mut opts = frames::Ipv4::new(rogue.ip, vm.ip, IPPROTO_TCP);
    opts.options = RECORD_ROUTE.to_vec();
    r.raw(
        "SYN with IP options (record route) to :443",
        times(to_vm(&syn_with(&opts, 40010, APP_PORT))),
        "in_drop_foreign_source",
    )?;
    let mut tiny = frames::Ipv4::new(rogue.ip, vm.ip, IPPROTO_TCP);
    tiny.flags_frag = IP_MF;
    let tcp = frames::tcp(rogue.ip, vm.ip, 40011, APP_PORT, TCP_SYN, 1);
    r.raw(
        "tiny first fragment (8 bytes of TCP) to :443",
        times(to_vm(&tiny.to_bytes(&tcp[..8]))),
        "in_drop_fragment",
    )?;
    r.raw(
        "overlapping fragments to :443",
        (0..n)
            .flat_map(|_| overlapping(rogue.ip, vm.ip, APP_PORT).map(|d| to_vm(&d)))
            .collect(),
        "in_drop_fragment",
    )?;
    let full = frames::udp_frame(
        rogue.mac,
        vm.mac,
        rogue.ip,
        vm.ip,
        40012,
        APP_PORT,
        &[0x5a; 1472],
    );
    r.raw(
        "full-size 1514-byte frame to :443",
        times(full),
        "in_drop_foreign_source",
    )?;
    r.raw(
        "IPv4 length beyond the frame (65535)",
        times(to_vm(&lying_length(rogue.ip, vm.ip, APP_PORT))),
        "in_drop_malformed_ipv4",
    )?;
    r.raw(
        "IPv6 hop-by-hop + routing headers, SYN to :443",
        times(frames::ethernet(
            vm.mac,
            rogue.mac,
            ETH_P_IPV6,
            &ipv6_extension_headers(APP_PORT),
        )),
        "in_drop_ipv6",
    )?;
    let synfin = frames::tcp(rogue.ip, vm.ip, 40013, APP_PORT, TCP_SYN | TCP_FIN, 1);
    r.raw(
        "TCP SYN+FIN to :443",
        times(to_vm(
            &frames::Ipv4::new(rogue.ip, vm.ip, IPPROTO_TCP).to_bytes(&synfin),
        )),
        "in_drop_foreign_source",
    )?;

    // The backend's public interface, from the internet side.
    let ip = BACKEND_PUBLIC_IP;
    let to_pub =
        |payload: &[u8]| frames::ethernet(BACKEND_PUBLIC_MAC, public.mac, ETH_P_IP, payload);
    let mut r_pub = |what: &str, frames: Vec<Vec<u8>>, counter: &'static str| {
        r.raw_from(public, backend, PUB_IF, what, frames, counter)
    };
    let mut first = frames::Ipv4::new(public.ip, ip, IPPROTO_TCP);
    first.flags_frag = IP_MF;
    r_pub(
        "first fragment to :4443",
        times(to_pub(&syn_with(&first, 40020, PUBLIC_PORT))),
        "pub_in_drop_fragment",
    )?;
    let mut later = frames::Ipv4::new(public.ip, ip, IPPROTO_TCP);
    later.flags_frag = 185;
    r_pub(
        "non-first fragment to :4443",
        times(to_pub(&later.to_bytes(&[0; 64]))),
        "pub_in_drop_fragment",
    )?;
    r_pub(
        "overlapping fragments to :4443",
        (0..n)
            .flat_map(|_| overlapping(public.ip, ip, PUBLIC_PORT).map(|d| to_pub(&d)))
            .collect(),
        "pub_in_drop_fragment",
    )?;
    let inner = syn_with(
        &frames::Ipv4::new(public.ip, ip, IPPROTO_TCP),
        40021,
        PUBLIC_PORT,
    );
    r_pub(
        "802.1Q-tagged SYN to :4443",
        times(frames::vlan_tagged(
            BACKEND_PUBLIC_MAC,
            public.mac,
            ETH_P_8021Q,
            7,
            ETH_P_IP,
            &inner,
        )),
        "pub_in_drop_vlan",
    )?;
    r_pub(
        "UDP to :4443",
        times(frames::udp_frame(
            public.mac,
            BACKEND_PUBLIC_MAC,
            public.ip,
            ip,
            40022,
            PUBLIC_PORT,
            b"x",
        )),
        "pub_in_drop_proto_denied",
    )?;
    let echo =
        frames::Ipv4::new(public.ip, ip, IPPROTO_ICMP).to_bytes(&[8, 0, 0xf7, 0xff, 0, 0, 0, 0]);
    r_pub("ICMP echo", times(to_pub(&echo)), "pub_in_drop_icmp_denied")?;
    r_pub(
        "IPv6 hop-by-hop + routing headers, SYN to :4443",
        times(frames::ethernet(
            BACKEND_PUBLIC_MAC,
            public.mac,
            ETH_P_IPV6,
            &ipv6_extension_headers(PUBLIC_PORT),
        )),
        "pub_in_drop_ipv6",
    )?;
    let mut opts = frames::Ipv4::new(public.ip, ip, IPPROTO_TCP);
    opts.options = RECORD_ROUTE.to_vec();
    r_pub(
        "SYN with IP options to :2222",
        times(to_pub(&syn_with(&opts, 40023, 2222))),
        "pub_in_drop_port_closed",
    )?;
    r_pub(
        "IPv4 length beyond the frame (65535)",
        times(to_pub(&lying_length(public.ip, ip, PUBLIC_PORT))),
        "pub_in_drop_malformed",
    )?;
    let elsewhere = Ipv4Addr::new(203, 0, 113, 99);
    r_pub(
        "SYN to another IP through the backend's MAC",
        times(to_pub(&syn_with(
            &frames::Ipv4::new(public.ip, elsewhere, IPPROTO_TCP),
            40024,
            PUBLIC_PORT,
        ))),
        "pub_in_drop_not_public_ip",
    )?;
    r_pub(
        "ARP about another address",
        times(frames::ethernet(
            BACKEND_PUBLIC_MAC,
            public.mac,
            ETH_P_ARP,
            &frames::arp(1, public.mac, public.ip, [0; 6], elsewhere),
        )),
        "pub_in_drop_arp_denied",
    )?;
    let cut = frames::Ipv4::new(public.ip, ip, IPPROTO_TCP).to_bytes(&tcp[..10]);
    r_pub(
        "TCP cut to 10 bytes, to :4443",
        times(to_pub(&cut)),
        "pub_in_drop_truncated",
    )?;

    Ok(())
}
