//! Faults: `kill -9` of the backend service in the middle of large syncs
//! and of its restarts, with the rogue and the public client probing all
//! along; a table larger than the kernel map; a pin root that is not
//! bpffs; attach/detach cycles.

use std::{
    fs,
    net::Ipv4Addr,
    path::Path,
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
    thread,
    time::{Duration, Instant},
};

use appvm_common::backend::MAX_VMS;
use appvm_lab::{
    Lab, enforced, frames,
    lab::bulk_table,
    lab::{BACKEND_PUBLIC_IP, PUB_IF, SEC_IF},
    probe::{Listener, Sniffer, send_frames, tcp_connects},
    service::BackendService,
    status::counter,
    sys::{ok, require_privileges, tree, wait_for},
};

/// Entries of the large table (each round replaces every MAC).
const BIG: usize = 10_000;
const ROUNDS: u64 = 6;
/// A port with a listener behind the public interface, never opened.
const CLOSED_PORT: u16 = 2222;

/// Replaces the table file the way an editor or `appvm table` would.
fn write_table(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).expect("write table");
    fs::rename(&tmp, path).expect("rename table");
}

#[test]
fn kill_9_during_large_syncs_never_opens_a_window() {
    require_privileges();
    let lab = Lab::new().expect("lab");
    let config = lab.backend_config_for("192.168.0.0/16", "192.168.0.0/17", "");
    let table = lab.files().join("table.toml");
    let first = Ipv4Addr::new(192, 168, 0, 1);
    write_table(&table, &bulk_table(BIG, first, 0));
    let mut svc = BackendService::start(&lab, &config).expect("service");
    enforced::wait_map_equals_table(lab.pin_root(), &table, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}"));

    // From here on, nothing may leak at any moment.
    let listener =
        Listener::start(&lab.backend.ns, CLOSED_PORT, Duration::from_secs(120)).expect("listener");
    let sec_sniffer =
        Sniffer::start(&lab.backend.ns, SEC_IF, Duration::from_secs(120)).expect("sniffer");
    let pub_sniffer =
        Sniffer::start(&lab.backend.ns, PUB_IF, Duration::from_secs(120)).expect("sniffer");
    let stop = AtomicBool::new(false);
    let (spoofed_sent, public_tries, public_connected) = (
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    );
    let mut kills = Vec::new();
    let mut full_change = Duration::ZERO;
    let svc = thread::scope(|scope| {
        scope.spawn(|| {
            // The rogue claims table IPs (every round's MAC is another).
            let started = Instant::now();
            let mut k: u32 = 0;
            while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(120) {
                let batch = (0..8)
                    .map(|j| {
                        let ip = Ipv4Addr::from(u32::from(first) + (k * 8 + j) % 10_000);
                        frames::tcp_syn(
                            lab.rogue.mac,
                            lab.backend.mac,
                            ip,
                            lab.backend.ip,
                            40_000,
                            22,
                        )
                    })
                    .collect();
                if send_frames(&lab.rogue.ns, SEC_IF, batch).is_ok() {
                    spoofed_sent.fetch_add(8, Ordering::Relaxed);
                }
                k += 1;
                thread::sleep(Duration::from_millis(5));
            }
        });
        scope.spawn(|| {
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(120) {
                public_tries.fetch_add(1, Ordering::Relaxed);
                if tcp_connects(
                    &lab.public.ns,
                    BACKEND_PUBLIC_IP,
                    CLOSED_PORT,
                    Duration::from_millis(100),
                )
                .unwrap_or(false)
                {
                    public_connected.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        // Calibration: how long a full change takes to be synced here.
        let synced_before = svc.log().matches("maps synced").count();
        let t0 = Instant::now();
        write_table(&table, &bulk_table(BIG, first, 3));
        wait_for("the calibration sync", Duration::from_secs(30), || {
            svc.log().matches("maps synced").count() > synced_before
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", svc.log()));
        full_change = t0.elapsed();
        for round in 0..ROUNDS {
            // Every MAC changes: a sync of BIG changed entries.
            write_table(
                &table,
                &bulk_table(BIG, first, u8::try_from(round % 2 + 1).expect("small")),
            );
            // Around the moment the calibration round's sync ended, so
            // some kills land while the maps are written.
            let delay = (full_change + Duration::from_millis(round * 12))
                .saturating_sub(Duration::from_millis(40));
            let synced_before = svc.log().matches("maps synced").count();
            thread::sleep(delay);
            let landed = if svc.log().matches("maps synced").count() > synced_before {
                "after the sync"
            } else {
                "before the sync ended"
            };
            svc.kill9();
            // Odd rounds also kill the restart part-way through its start.
            if round % 2 == 1 {
                let early = BackendService::spawn(&lab, &config, &[]).expect("spawn");
                thread::sleep(Duration::from_millis(30 + round * 40));
                early.kill9();
            }
            kills.push(format!("{}ms {landed}", delay.as_millis()));
            svc = BackendService::start(&lab, &config).expect("restart");
            enforced::wait_map_equals_table(lab.pin_root(), &table, Duration::from_secs(20))
                .unwrap_or_else(|e| panic!("round {round}: {e}\n{}", svc.log()));
        }
        stop.store(true, Ordering::Relaxed);
        svc
    });
    let leaked_sec: Vec<_> = sec_sniffer
        .finish()
        .into_iter()
        .filter(|f| f.len() > 12 && f[6..12] == lab.rogue.mac)
        .collect();
    let leaked_pub: Vec<_> = pub_sniffer
        .finish()
        .into_iter()
        .filter(|f| {
            f.len() >= 38
                && f[12..14] == [0x08, 0x00]
                && u16::from_be_bytes([f[36], f[37]]) == CLOSED_PORT
        })
        .collect();
    let status = lab.backend_status(&config);
    eprintln!(
        "a full change synced in {full_change:?}; {ROUNDS} kill -9 rounds of a {BIG}-entry sync (delay after the table write): {kills:?}; \
         rogue spoofed frames {}, public tries {}; sec_in_drop_spoofed_vm_ip {}, pub_in_drop_port_closed {}",
        spoofed_sent.load(Ordering::Relaxed),
        public_tries.load(Ordering::Relaxed),
        counter(&status, "sec_in_drop_spoofed_vm_ip"),
        counter(&status, "pub_in_drop_port_closed"),
    );
    assert!(
        leaked_sec.is_empty(),
        "{} spoofed frames passed XDP",
        leaked_sec.len()
    );
    assert!(
        leaked_pub.is_empty(),
        "{} frames to the closed port passed XDP",
        leaked_pub.len()
    );
    assert_eq!(listener.accepted(), 0);
    assert_eq!(public_connected.load(Ordering::Relaxed), 0);
    assert!(spoofed_sent.load(Ordering::Relaxed) > 0);
    assert!(counter(&status, "sec_in_drop_spoofed_vm_ip") > 0);
    assert!(counter(&status, "pub_in_drop_port_closed") > 0);
    drop(svc);
}

#[test]
fn a_table_larger_than_the_map_is_refused_whole() {
    require_privileges();
    let lab = Lab::new().expect("lab");
    // A /15 pool: room for more VMs than the map holds.
    let config = lab.backend_config_for("192.168.0.0/14", "192.170.0.0/15", "");
    let table = lab.files().join("table.toml");
    let first = Ipv4Addr::new(192, 170, 0, 1);
    let max = usize::try_from(MAX_VMS).expect("fits");
    write_table(&table, &bulk_table(3, first, 0));
    let svc = BackendService::start(&lab, &config).expect("service");
    let before = enforced::map_pairs(lab.pin_root()).expect("map");
    let full = bulk_table(max, first, 0);
    write_table(&table, &full);
    // The CLI refuses a full table's growth, leaving the file as it was.
    let out = lab.table(
        &config,
        &[
            "add",
            "--name",
            "onemore",
            "--mac",
            "02:ff:00:00:00:01",
            "--vm-config",
            "c",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!(
            "the table has {} VMs; the kernel map holds at most {max}",
            max + 1
        )),
        "{err}"
    );
    assert_eq!(fs::read_to_string(&table).expect("table"), full);
    // A hand-written oversized table: refused whole, the maps unchanged
    // (the full table before it was accepted and synced first).
    enforced::wait_map_equals_table(lab.pin_root(), &table, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}\n{}", svc.log()));
    let synced = enforced::map_pairs(lab.pin_root()).expect("map");
    assert_eq!(synced.len(), max);
    assert_ne!(synced, before);
    let over = bulk_table(max + 1, first, 0);
    write_table(&table, &over);
    assert!(
        svc.wait_log("the kernel map holds at most", Duration::from_secs(60)),
        "{}",
        svc.log()
    );
    assert_eq!(enforced::map_pairs(lab.pin_root()).expect("map"), synced);
    let out = lab.table(&config, &["list"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn pin_root_not_on_bpffs_is_refused_with_nothing_attached() {
    require_privileges();
    let lab = Lab::new().expect("lab");
    let not_bpffs = lab.files().join("not-bpffs");
    fs::create_dir_all(&not_bpffs).expect("dir");
    let out = lab.attach_guard_at(&not_bpffs);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("bpffs"), "{err}");
    assert!(tree(&not_bpffs).is_empty(), "{:?}", tree(&not_bpffs));
    let link = lab
        .vm
        .ns
        .exec(&["ip", "-d", "link", "show", SEC_IF])
        .expect("ip link");
    assert!(!link.contains("xdp"), "{link}");
    let config = lab.backend_config("");
    let out = lab
        .backend
        .ns
        .command(appvm_lab::sys::appvm_bin())
        .args(["backend", "run", "--config"])
        .arg(&config)
        .env("APPVM_PIN_ROOT", &not_bpffs)
        .output()
        .expect("run appvm");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("bpffs"), "{err}");
    assert!(tree(&not_bpffs).is_empty(), "{:?}", tree(&not_bpffs));
    let link = lab
        .backend
        .ns
        .exec(&["ip", "-d", "link", "show"])
        .expect("ip link");
    assert!(!link.contains("xdp"), "{link}");
}

#[test]
fn attach_detach_cycles_leave_no_pins() {
    require_privileges();
    let lab = Lab::new().expect("lab");
    let config = lab.backend_config("");
    for _ in 0..5 {
        let out = lab.attach_guard();
        ok(&out);
        let svc = BackendService::start(&lab, &config).expect("service");
        assert!(svc.terminate().is_some_and(|s| s.success()));
        let out = lab.appvm(&lab.vm, &["vm", "detach", "--iface", SEC_IF]);
        ok(&out);
        let out = lab.backend_cmd(&config, &["detach"]);
        ok(&out);
        let left = tree(lab.pin_root());
        assert!(left.is_empty(), "pins left behind: {left:?}");
    }
    for host in [&lab.vm, &lab.backend] {
        let link = host
            .ns
            .exec(&["ip", "-d", "link", "show"])
            .expect("ip link");
        assert!(!link.contains("xdp"), "{link}");
    }
}
