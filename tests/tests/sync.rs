//! The syncer against freshly pinned backend maps: the per-VM slot is what
//! the secure program enforces, so a MAC change must reach it (keeping the
//! VM's counters), and adopting maps left by a crash must trust only VMs on
//! which the slot and the entry agree.

use std::{net::Ipv4Addr, path::PathBuf};

use appvm::{
    backend::{
        maps::{BackendMaps, map_pin},
        sync::Syncer,
    },
    object, pinning,
    table::{Table, TableEntry},
    vm::policy::ip_be,
};
use appvm_common::{
    backend::{VmEntry, VmTraffic},
    pins::backend as pins,
};
use appvm_lab::sys::{RemoveOnDrop, require_privileges};
use aya::maps::PerCpuValues;

fn fresh_maps(tag: &str) -> (RemoveOnDrop, BackendMaps) {
    require_privileges();
    let dir = PathBuf::from(format!(
        "/sys/fs/bpf/appvm-sync-{tag}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("pin dir");
    let pins_guard = RemoveOnDrop(dir.clone());
    let ebpf = object::open().expect("object");
    let names: Vec<(&'static str, String)> = pins::MAPS.iter().map(|&m| (m, map_pin(m))).collect();
    let list: Vec<(&'static str, &str)> = names.iter().map(|(m, p)| (*m, p.as_str())).collect();
    pinning::pin_maps(&ebpf, &dir, &list).expect("pin maps");
    (pins_guard, BackendMaps::open(&dir).expect("open maps"))
}

fn entry(name: &str, mac: &str, ip: Ipv4Addr) -> TableEntry {
    TableEntry {
        name: name.into(),
        mac: mac.into(),
        vm_config: "c".into(),
        ip,
        ports: vec![443],
    }
}

fn cpus() -> usize {
    aya::util::nr_cpus().expect("cpus")
}

/// The slot's MAC on every CPU and its packets summed.
fn slot(maps: &BackendMaps, ip: Ipv4Addr) -> Option<(Vec<[u8; 6]>, u64)> {
    let per_cpu = maps.traffic.get(&ip_be(ip), 0).ok()?;
    Some((
        per_cpu.iter().map(|t| t.mac).collect(),
        per_cpu.iter().map(|t| t.packets).sum(),
    ))
}

const A: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
const C: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 3);
const MAC1: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC2: [u8; 6] = [2, 0, 0, 0, 0, 2];

#[test]
fn a_mac_change_reaches_the_slot_and_keeps_the_counters() {
    let (_pins, mut maps) = fresh_maps("mac");
    let mut syncer = Syncer::default();
    let mut table = Table {
        vms: vec![entry("a", "02:00:00:00:00:01", A)],
    };
    syncer.sync(&maps, &table, cpus()).expect("sync");
    assert_eq!(slot(&maps, A), Some((vec![MAC1; cpus()], 0)));
    // The VM has sent 5 packets on every CPU.
    let counted = VmTraffic {
        packets: 5,
        ..VmTraffic::pinned(MAC1)
    };
    maps.traffic
        .insert(
            ip_be(A),
            PerCpuValues::try_from(vec![counted; cpus()]).expect("values"),
            0,
        )
        .expect("count");
    table.vms[0].mac = "02:00:00:00:00:02".into();
    let report = syncer.sync(&maps, &table, cpus()).expect("sync");
    assert_eq!(report.changed, 1);
    assert_eq!(
        slot(&maps, A),
        Some((vec![MAC2; cpus()], 5 * cpus() as u64))
    );
    assert_eq!(maps.vms.get(&ip_be(A), 0).expect("entry").mac, MAC2);
    // Removal takes both.
    table.vms.clear();
    syncer.sync(&maps, &table, cpus()).expect("sync");
    assert_eq!(slot(&maps, A), None);
    assert!(maps.vms.get(&ip_be(A), 0).is_err());
}

#[test]
fn adopting_after_a_crash_trusts_only_agreeing_vms() {
    let (_pins, mut maps) = fresh_maps("adopt");
    let n = cpus();
    let put_slot = |maps: &mut BackendMaps, ip: Ipv4Addr, mac| {
        maps.traffic
            .insert(
                ip_be(ip),
                PerCpuValues::try_from(vec![VmTraffic::pinned(mac); n]).expect("v"),
                0,
            )
            .expect("slot");
    };
    let put_entry = |maps: &mut BackendMaps, ip: Ipv4Addr, mac| {
        maps.vms
            .insert(ip_be(ip), VmEntry { mac, _pad: [0; 2] }, 0)
            .expect("entry");
    };
    // A: consistent. B: the slot still has the old MAC (crash between the
    // two writes). C: a slot without an entry (crash after the slot write).
    put_slot(&mut maps, A, MAC1);
    put_entry(&mut maps, A, MAC1);
    put_slot(&mut maps, B, MAC1);
    put_entry(&mut maps, B, MAC2);
    put_slot(&mut maps, C, MAC1);
    let mut syncer = Syncer::adopt(&maps).expect("adopt");
    assert_eq!(syncer.len(), 1, "only A is trusted");
    assert_eq!(slot(&maps, C), None, "the orphan slot is removed at once");
    let table = Table {
        vms: vec![
            entry("a", "02:00:00:00:00:01", A),
            entry("b", "02:00:00:00:00:02", B),
        ],
    };
    let report = syncer.sync(&maps, &table, n).expect("sync");
    assert_eq!(
        (report.added, report.changed, report.removed),
        (1, 0, 0),
        "{report:?}"
    );
    assert_eq!(slot(&maps, B), Some((vec![MAC2; n], 0)));
    assert_eq!(slot(&maps, A), Some((vec![MAC1; n], 0)));
}
