//! Drop events: fields, the kernel's per-CPU rate limit (a flood yields at
//! most the burst, the rest counted as suppressed), and `appvm events`.

use std::{net::Ipv4Addr, time::Duration};

use appvm::vm::{GuardSettings, loaded::LoadedGuard};
use appvm_common::event::EventConfig;
use appvm_lab::{
    Lab, frames,
    lab::{APP_PORT, SEC_IF},
    probe::send_frames,
    sys::{ok, require_privileges},
};

const BACKEND: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const VM: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 20);
const ROGUE: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 66);
const VM_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x20];
const R_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x66];

fn guard() -> LoadedGuard {
    require_privileges();
    let mut g = LoadedGuard::load().expect("load");
    let policy = GuardSettings {
        iface: Some("eth0".into()),
        backend_ip: Some(BACKEND.to_string()),
        app_ports: vec![443],
        ..GuardSettings::default()
    }
    .validate()
    .expect("valid")
    .to_policy();
    g.install(&policy).expect("policy");
    g
}

#[test]
fn a_flood_yields_at_most_the_burst_and_counts_the_rest() {
    let mut g = guard();
    g.events
        .config
        .set(
            0,
            EventConfig {
                rate_per_sec: 10,
                burst: 5,
            },
            0,
        )
        .expect("config");
    let syn = frames::tcp_syn(R_MAC, VM_MAC, ROGUE, VM, 40000, 443);
    // One BPF_PROG_TEST_RUN call repeats on one CPU, far faster than 10/s.
    let r = g.run_ingress(&syn, 1000).expect("test run");
    assert_eq!(r.return_value, 1, "dropped");
    let events = g.events.drain();
    let stats = appvm::events::read_stats(&g.events.stats).expect("stats");
    assert_eq!(events.len() as u64, stats.sent);
    assert!(
        (5..=6).contains(&events.len()),
        "burst of 5 (+1 refill at most): {}",
        events.len()
    );
    assert_eq!(
        stats.sent + stats.suppressed + stats.lost,
        1000,
        "{stats:?}"
    );
    assert_eq!(stats.lost, 0);
    let e = &events[0];
    assert_eq!(
        (e.program, e.direction, e.reason),
        ("vm_ingress", "ingress", "in_drop_foreign_source")
    );
    assert_eq!((e.src_ip, e.dst_ip), (Some(ROGUE), Some(VM)));
    assert_eq!(
        (e.src_port, e.dst_port, e.protocol.as_str()),
        (Some(40000), Some(443), "tcp")
    );
    assert_eq!(e.src_mac, "02:00:00:00:00:66");
    assert!(
        e.time.ends_with('Z') && e.time.starts_with("20"),
        "{}",
        e.time
    );
}

#[test]
fn passes_send_nothing_and_egress_drops_are_reported() {
    let mut g = guard();
    g.run_ingress(&frames::tcp_syn(R_MAC, VM_MAC, BACKEND, VM, 1, 443), 10)
        .expect("run");
    assert!(g.events.drain().is_empty(), "passed packets are not events");
    let out = frames::udp_frame(VM_MAC, R_MAC, VM, ROGUE, 5000, 53, b"q");
    g.run_egress(&out, 1).expect("run");
    let events = g.events.drain();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (
            events[0].direction,
            events[0].reason,
            events[0].protocol.as_str()
        ),
        ("egress", "out_drop_denied", "udp")
    );
    let arp = frames::ethernet(
        frames::BROADCAST_MAC,
        R_MAC,
        frames::ETH_P_ARP,
        &frames::arp(1, R_MAC, ROGUE, [0; 6], VM),
    );
    g.run_ingress(&arp, 1).expect("run");
    let events = g.events.drain();
    assert_eq!(
        (events[0].l3.as_str(), events[0].src_ip, events[0].reason),
        ("arp", None, "in_drop_arp_foreign")
    );
}

#[test]
fn appvm_events_prints_what_the_guard_dropped() {
    require_privileges();
    let lab = Lab::new().expect("lab");
    let out = lab.attach_guard();
    ok(&out);
    let frames: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            frames::tcp_syn(
                lab.rogue.mac,
                lab.vm.mac,
                lab.rogue.ip,
                lab.vm.ip,
                45000 + i,
                APP_PORT,
            )
        })
        .collect();
    send_frames(&lab.rogue.ns, SEC_IF, frames).expect("send");
    std::thread::sleep(Duration::from_millis(100));
    let out = lab.appvm(&lab.vm, &["events", "--json"]);
    ok(&out);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .filter(|v: &serde_json::Value| v["reason"] == "in_drop_foreign_source")
        .collect();
    assert_eq!(lines.len(), 3, "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(lines[0]["src_ip"], lab.rogue.ip.to_string());
    assert_eq!(lines[0]["dst_port"], 443);
    assert_eq!(lines[0]["source"], "sec0");
    // Consumed: a second read has none of them.
    let again = lab.appvm(&lab.vm, &["events", "--json"]);
    assert!(!String::from_utf8_lossy(&again.stdout).contains("45000"));
}
