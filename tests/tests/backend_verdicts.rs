//! Backend verdicts through `BPF_PROG_TEST_RUN`: public ingress, public
//! egress (flow tracking) and the secure interface's anti-spoofing, a
//! crafted frame for every reason, exactly one counter moving each time.

use std::{
    collections::BTreeSet,
    net::{Ipv4Addr, Ipv6Addr},
    sync::{Mutex, MutexGuard, PoisonError},
};

use appvm::{
    backend::{config::BackendConfig, loaded::LoadedBackend},
    vm::policy::ip_be,
};
use appvm_common::{BackendReason as R, backend::BackendPolicy};
use appvm_lab::{frames::*, sys::require_privileges};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const TC_NEXT: u32 = u32::MAX;

const PUBLIC: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const PUBLIC6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 7);
const BACKEND: Ipv4Addr = Ipv4Addr::new(192, 168, 128, 1);
const VM: Ipv4Addr = Ipv4Addr::new(192, 168, 128, 20);
const FREE: Ipv4Addr = Ipv4Addr::new(192, 168, 128, 21);
const OTHER: Ipv4Addr = Ipv4Addr::new(192, 168, 128, 66);
const GW_MAC: [u8; 6] = [2, 0, 0, 0, 9, 9];
const B_MAC: [u8; 6] = [2, 0, 0, 0, 1, 0x10];
const VM_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x20];
const R_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x66];

static SEEN: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());
static SERIAL: Mutex<()> = Mutex::new(());

fn config(extra: &str) -> BackendConfig {
    toml::from_str(&format!(
        "secure_network = \"192.168.128.0/24\"\nvm_pool = \"192.168.128.16/28\"\nbackend_ip = \"{BACKEND}\"\npublic_ip = \"{PUBLIC}\"\npublic_port = 4443\n{extra}"
    ))
    .expect("test config")
}

fn policy(extra: &str) -> BackendPolicy {
    config(extra).to_policy().expect("policy")
}

struct H {
    b: LoadedBackend,
    _serial: MutexGuard<'static, ()>,
}

fn harness(p: &BackendPolicy) -> H {
    require_privileges();
    let serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let mut b = LoadedBackend::load().expect("load backend programs");
    b.policy.install(p).expect("policy");
    b.add_vm(ip_be(VM), VM_MAC).expect("vm");
    H { b, _serial: serial }
}

#[derive(Clone, Copy)]
enum P {
    Public,
    Egress,
    Secure,
}

impl H {
    #[track_caller]
    fn expect(&mut self, p: P, frame: &[u8], reason: R) {
        self.b.reset_counters().expect("reset");
        let r = match p {
            P::Public => self.b.run_public(frame, 1),
            P::Egress => self.b.run_public_egress(frame, 1),
            P::Secure => self.b.run_secure(frame, 1),
        }
        .expect("test run");
        let moved: Vec<_> = self
            .b
            .counters()
            .expect("counters")
            .into_iter()
            .filter(|(_, c)| c.packets != 0)
            .collect();
        let verdict = match (p, reason.passes()) {
            (P::Egress, _) => TC_NEXT,
            (_, true) => XDP_PASS,
            (_, false) => XDP_DROP,
        };
        assert_eq!(
            r.return_value,
            verdict,
            "verdict for {}: moved {moved:?}",
            reason.name()
        );
        assert_eq!(moved.len(), 1, "exactly one counter must move: {moved:?}");
        assert_eq!(moved[0].0, reason, "moved: {moved:?}");
        assert_eq!(moved[0].1.bytes, frame.len() as u64);
        SEEN.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(reason.index());
    }
}

fn to_public(proto: u8, payload: &[u8]) -> Vec<u8> {
    ethernet(
        B_MAC,
        GW_MAC,
        ETH_P_IP,
        &Ipv4::new(CLIENT, PUBLIC, proto).to_bytes(payload),
    )
}

fn v6(next: u8, hop: u8, src: Ipv6Addr, dst: Ipv6Addr, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.push(next);
    h.push(hop);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(payload);
    ethernet(B_MAC, GW_MAC, ETH_P_IPV6, &h)
}

const TCP_ACK: u8 = 0x10;

fn tcp6(sport: u16, dport: u16) -> Vec<u8> {
    let mut t = vec![0; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = TCP_SYN;
    t
}

#[test]
fn public_accepts_only_the_public_port() {
    let mut h = harness(&policy(""));
    h.expect(
        P::Public,
        &to_public(IPPROTO_TCP, &tcp(CLIENT, PUBLIC, 50000, 4443, TCP_SYN, 1)),
        R::PubPort,
    );
    h.expect(
        P::Public,
        &to_public(IPPROTO_TCP, &tcp(CLIENT, PUBLIC, 50000, 22, TCP_SYN, 1)),
        R::PubPortClosed,
    );
    h.expect(
        P::Public,
        &to_public(IPPROTO_UDP, &udp(CLIENT, PUBLIC, 5000, 53, b"q")),
        R::PubProtoDenied,
    );
    h.expect(P::Public, &to_public(47, &[0; 24]), R::PubProtoDenied);
    let other = Ipv4::new(CLIENT, Ipv4Addr::new(203, 0, 113, 11), IPPROTO_TCP);
    h.expect(
        P::Public,
        &ethernet(
            B_MAC,
            GW_MAC,
            ETH_P_IP,
            &other.to_bytes(&tcp(CLIENT, PUBLIC, 1, 4443, TCP_SYN, 1)),
        ),
        R::PubNotForUs,
    );
    h.expect(
        P::Public,
        &to_public(IPPROTO_ICMP, &[8, 0, 0, 0, 0, 0, 0, 0]),
        R::PubIcmpDenied,
    );
    h.expect(
        P::Public,
        &to_public(IPPROTO_ICMP, &[3, 4, 0, 0, 0, 0, 5, 0xdc]),
        R::PubPmtu,
    );
    h.expect(
        P::Public,
        &to_public(IPPROTO_ICMP, &[3, 3, 0, 0, 0, 0, 0, 0]),
        R::PubIcmpDenied,
    );
    let mut frag = Ipv4::new(CLIENT, PUBLIC, IPPROTO_TCP);
    frag.flags_frag = IP_MF;
    h.expect(
        P::Public,
        &ethernet(
            B_MAC,
            GW_MAC,
            ETH_P_IP,
            &frag.to_bytes(&tcp(CLIENT, PUBLIC, 1, 4443, TCP_SYN, 1)),
        ),
        R::PubFragment,
    );
    let seg = tcp(CLIENT, PUBLIC, 1, 4443, TCP_SYN, 1);
    h.expect(
        P::Public,
        &to_public(IPPROTO_TCP, &seg[..12]),
        R::PubTruncated,
    );
    let mut bad = to_public(IPPROTO_TCP, &seg);
    bad[14] = 0x44;
    h.expect(P::Public, &bad, R::PubMalformed);
}

#[test]
fn public_arp_vlan_and_other_ethertypes() {
    let mut h = harness(&policy(""));
    h.expect(
        P::Public,
        &ethernet(
            BROADCAST_MAC,
            GW_MAC,
            ETH_P_ARP,
            &arp(1, GW_MAC, CLIENT, [0; 6], PUBLIC),
        ),
        R::PubArp,
    );
    h.expect(
        P::Public,
        &ethernet(
            BROADCAST_MAC,
            GW_MAC,
            ETH_P_ARP,
            &arp(1, GW_MAC, CLIENT, [0; 6], CLIENT),
        ),
        R::PubArpDenied,
    );
    let mut odd = arp(1, GW_MAC, CLIENT, [0; 6], PUBLIC);
    odd[5] = 16;
    h.expect(
        P::Public,
        &ethernet(BROADCAST_MAC, GW_MAC, ETH_P_ARP, &odd),
        R::PubMalformed,
    );
    let inner =
        Ipv4::new(CLIENT, PUBLIC, IPPROTO_TCP).to_bytes(&tcp(CLIENT, PUBLIC, 1, 4443, TCP_SYN, 1));
    h.expect(
        P::Public,
        &vlan_tagged(B_MAC, GW_MAC, ETH_P_8021Q, 3, ETH_P_IP, &inner),
        R::PubVlan,
    );
    h.expect(
        P::Public,
        &ethernet(B_MAC, GW_MAC, 0x88cc, &[0; 46]),
        R::PubUnknownEthertype,
    );
    h.expect(
        P::Public,
        &v6(6, 64, CLIENT6, PUBLIC6, &tcp6(1, 4443)),
        R::PubIpv6,
    );
}

#[test]
fn public_ipv6_when_configured() {
    let mut h = harness(&policy(&format!("public_ipv6 = \"{PUBLIC6}\"")));
    h.expect(
        P::Public,
        &v6(6, 64, CLIENT6, PUBLIC6, &tcp6(50000, 4443)),
        R::PubPort,
    );
    h.expect(
        P::Public,
        &v6(6, 64, CLIENT6, PUBLIC6, &tcp6(50000, 22)),
        R::PubPortClosed,
    );
    h.expect(
        P::Public,
        &v6(6, 64, CLIENT6, CLIENT6, &tcp6(50000, 4443)),
        R::PubNotForUs,
    );
    // Neighbour solicitation to the solicited-node address, hop limit 255.
    let sn: Ipv6Addr = "ff02::1:ff00:10".parse().expect("addr");
    h.expect(
        P::Public,
        &v6(58, 255, CLIENT6, sn, &[135, 0, 0, 0, 0, 0, 0, 0]),
        R::PubNd,
    );
    // The same with a routed hop limit is not neighbour discovery.
    h.expect(
        P::Public,
        &v6(58, 64, CLIENT6, sn, &[135, 0, 0, 0, 0, 0, 0, 0]),
        R::PubNotForUs,
    );
    h.expect(
        P::Public,
        &v6(58, 64, CLIENT6, PUBLIC6, &[2, 0, 0, 0, 0, 0, 5, 0]),
        R::PubPmtu,
    );
    h.expect(
        P::Public,
        &v6(58, 64, CLIENT6, PUBLIC6, &[128, 0, 0, 0, 0, 0, 0, 0]),
        R::PubIcmpDenied,
    );
    // Extension headers (hop-by-hop, fragment) are not walked: denied.
    h.expect(
        P::Public,
        &v6(0, 64, CLIENT6, PUBLIC6, &[6, 0, 1, 4, 0, 0, 0, 0]),
        R::PubProtoDenied,
    );
    h.expect(
        P::Public,
        &v6(44, 64, CLIENT6, PUBLIC6, &[6, 0, 0, 1, 0, 0, 0, 9]),
        R::PubProtoDenied,
    );
    let mut short = v6(6, 64, CLIENT6, PUBLIC6, &tcp6(1, 4443));
    short.truncate(14 + 40 + 2);
    short[18..20].copy_from_slice(&2_u16.to_be_bytes());
    h.expect(P::Public, &short, R::PubTruncated);
    // An IPv6 flow the backend opened gets its reply.
    let out = {
        let mut f = v6(6, 64, PUBLIC6, CLIENT6, &tcp6(40001, 443));
        f[0..6].copy_from_slice(&GW_MAC);
        f
    };
    h.expect(P::Egress, &out, R::PubOutTracked);
    let mut syn_ack = tcp6(443, 40001);
    syn_ack[13] |= TCP_ACK;
    h.expect(
        P::Public,
        &v6(6, 64, CLIENT6, PUBLIC6, &syn_ack),
        R::PubReply,
    );
    // A bare SYN opens a connection: never a reply, even on a known flow.
    h.expect(
        P::Public,
        &v6(6, 64, CLIENT6, PUBLIC6, &tcp6(443, 40001)),
        R::PubPortClosed,
    );
}

#[test]
fn replies_to_flows_the_backend_opened() {
    let mut h = harness(&policy(""));
    let out = |proto, payload: &[u8]| {
        ethernet(
            GW_MAC,
            B_MAC,
            ETH_P_IP,
            &Ipv4::new(PUBLIC, CLIENT, proto).to_bytes(payload),
        )
    };
    h.expect(
        P::Public,
        &to_public(IPPROTO_TCP, &tcp(CLIENT, PUBLIC, 8080, 40000, 0x12, 1)),
        R::PubPortClosed,
    );
    h.expect(
        P::Egress,
        &out(IPPROTO_TCP, &tcp(PUBLIC, CLIENT, 40000, 8080, TCP_SYN, 1)),
        R::PubOutTracked,
    );
    h.expect(
        P::Public,
        &to_public(IPPROTO_TCP, &tcp(CLIENT, PUBLIC, 8080, 40000, 0x12, 1)),
        R::PubReply,
    );
    // Same host, another port: not a reply.
    h.expect(
        P::Public,
        &to_public(IPPROTO_TCP, &tcp(CLIENT, PUBLIC, 8081, 40000, 0x12, 1)),
        R::PubPortClosed,
    );
    // A bare SYN opens a connection: never a reply, even on a known flow.
    h.expect(
        P::Public,
        &to_public(IPPROTO_TCP, &tcp(CLIENT, PUBLIC, 8080, 40000, TCP_SYN, 1)),
        R::PubPortClosed,
    );
    h.expect(
        P::Egress,
        &out(IPPROTO_UDP, &udp(PUBLIC, CLIENT, 5353, 53, b"q")),
        R::PubOutTracked,
    );
    h.expect(
        P::Public,
        &to_public(IPPROTO_UDP, &udp(CLIENT, PUBLIC, 53, 5353, b"a")),
        R::PubReply,
    );
    // The proxy's own answers from the public port are not new flows.
    h.expect(
        P::Egress,
        &out(IPPROTO_TCP, &tcp(PUBLIC, CLIENT, 4443, 50000, 0x12, 1)),
        R::PubOutOther,
    );
    h.expect(
        P::Public,
        &to_public(IPPROTO_TCP, &tcp(CLIENT, PUBLIC, 50000, 4442, 0x10, 1)),
        R::PubPortClosed,
    );
    h.expect(
        P::Egress,
        &ethernet(
            BROADCAST_MAC,
            B_MAC,
            ETH_P_ARP,
            &arp(1, B_MAC, PUBLIC, [0; 6], CLIENT),
        ),
        R::PubOutOther,
    );
}

#[test]
fn tracked_flows_expire() {
    let mut h = harness(&policy("flow_timeout_secs = 0"));
    let out = ethernet(
        GW_MAC,
        B_MAC,
        ETH_P_IP,
        &Ipv4::new(PUBLIC, CLIENT, IPPROTO_TCP)
            .to_bytes(&tcp(PUBLIC, CLIENT, 40000, 8080, TCP_SYN, 1)),
    );
    h.expect(P::Egress, &out, R::PubOutTracked);
    h.expect(
        P::Public,
        &to_public(IPPROTO_TCP, &tcp(CLIENT, PUBLIC, 8080, 40000, 0x12, 1)),
        R::PubPortClosed,
    );
}

#[test]
fn public_fails_closed_without_policy() {
    let mut h = harness(&BackendPolicy::DISABLED);
    h.expect(
        P::Public,
        &to_public(IPPROTO_TCP, &tcp(CLIENT, PUBLIC, 1, 4443, TCP_SYN, 1)),
        R::PubNoPolicy,
    );
    h.expect(
        P::Secure,
        &tcp_syn(VM_MAC, B_MAC, VM, BACKEND, 1, 443),
        R::SecNoPolicy,
    );
}

#[test]
fn secure_interface_pins_pool_ips_to_macs() {
    let mut h = harness(&policy(""));
    let from = |mac, ip| tcp_syn(mac, B_MAC, ip, BACKEND, 40000, 443);
    h.expect(P::Secure, &from(VM_MAC, VM), R::SecVm);
    h.expect(P::Secure, &from(R_MAC, VM), R::SecSpoofedVmIp);
    let t = h.b.vm_traffic(ip_be(VM)).expect("traffic");
    assert_eq!((t.packets, t.spoofed_packets), (1, 1), "{t:?}");
    h.expect(P::Secure, &from(R_MAC, FREE), R::SecSpoofedVmIp);
    h.expect(P::Secure, &from(VM_MAC, BACKEND), R::SecSpoofedBackendIp);
    h.expect(P::Secure, &from(R_MAC, OTHER), R::SecOther);
    let arp_from = |eth, sha, spa| {
        ethernet(
            BROADCAST_MAC,
            eth,
            ETH_P_ARP,
            &arp(1, sha, spa, [0; 6], BACKEND),
        )
    };
    h.expect(P::Secure, &arp_from(VM_MAC, VM_MAC, VM), R::SecArpVm);
    h.expect(P::Secure, &arp_from(R_MAC, R_MAC, VM), R::SecArpSpoof);
    h.expect(P::Secure, &arp_from(VM_MAC, R_MAC, VM), R::SecArpSpoof);
    h.expect(P::Secure, &arp_from(R_MAC, R_MAC, BACKEND), R::SecArpSpoof);
    h.expect(P::Secure, &arp_from(R_MAC, R_MAC, OTHER), R::SecOther);
    // DHCP clients have no address yet: not a pool IP.
    h.expect(
        P::Secure,
        &udp_frame(
            R_MAC,
            BROADCAST_MAC,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
            68,
            67,
            &[0; 240],
        ),
        R::SecOther,
    );
    let inner = Ipv4::new(VM, BACKEND, IPPROTO_TCP).to_bytes(&tcp(VM, BACKEND, 1, 443, TCP_SYN, 1));
    h.expect(
        P::Secure,
        &vlan_tagged(B_MAC, VM_MAC, ETH_P_8021Q, 9, ETH_P_IP, &inner),
        R::SecVlan,
    );
    let syn = from(VM_MAC, VM);
    h.expect(P::Secure, &syn[..14 + 8], R::SecTruncated);
    let mut bad = syn.clone();
    bad[14] = 0x44;
    h.expect(P::Secure, &bad, R::SecMalformed);
    let mut bad_arp = arp(1, VM_MAC, VM, [0; 6], BACKEND);
    bad_arp[1] = 6;
    h.expect(
        P::Secure,
        &ethernet(BROADCAST_MAC, VM_MAC, ETH_P_ARP, &bad_arp),
        R::SecMalformed,
    );
}

#[test]
fn every_backend_reason_has_a_frame() {
    for t in [
        public_accepts_only_the_public_port as fn(),
        public_arp_vlan_and_other_ethertypes,
        public_ipv6_when_configured,
        replies_to_flows_the_backend_opened,
        tracked_flows_expire,
        public_fails_closed_without_policy,
        secure_interface_pins_pool_ips_to_macs,
    ] {
        t();
    }
    let seen = SEEN.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let missing: Vec<&str> = R::ALL
        .iter()
        .filter(|r| !seen.contains(&r.index()))
        .map(|r| r.name())
        .collect();
    assert!(
        missing.is_empty(),
        "reasons without a verdict test: {missing:?}"
    );
}
