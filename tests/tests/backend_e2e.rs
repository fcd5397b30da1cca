//! The backend enforcer end to end: the service (`appvm backend run`) in
//! the lab's backend namespace, real TCP from the public side, raw spoofed
//! frames from the rogue, table changes while it runs, kill -9 and restart.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use appvm::{
    backend::{attach::pin_dir, maps::BackendMaps},
    link_info::pinned_link_info,
    vm::policy::ip_be,
};
use appvm_common::pins::backend as pins;
use appvm_lab::{
    Lab, enforced, frames,
    lab::{BACKEND_PUBLIC_IP, PUB_IF, PUBLIC_PORT, SEC_IF},
    probe::{Listener, Sniffer, send_frames, tcp_connects},
    service::BackendService,
    status::counter,
    sys::{ok, require_privileges},
};

const SHORT: Duration = Duration::from_millis(800);
const LONG: Duration = Duration::from_secs(3);

struct Setup {
    lab: Lab,
    config: PathBuf,
}

fn setup(extra: &str) -> Setup {
    require_privileges();
    let lab = Lab::new().expect("lab");
    let config = lab.backend_config(extra);
    let out = lab.table_add_vm(&config);
    ok(&out);
    Setup { lab, config }
}

fn link_ids(s: &Setup) -> Vec<u32> {
    pins::LINK_PINS
        .iter()
        .map(|p| {
            pinned_link_info(&pin_dir(s.lab.pin_root()).join(p))
                .expect("link")
                .id
        })
        .collect()
}

#[test]
fn public_side_reaches_only_the_public_port() {
    let s = setup("");
    let _svc = BackendService::start(&s.lab, &s.config).expect("service");
    let life = Duration::from_secs(30);
    let _proxy = Listener::start(&s.lab.backend.ns, PUBLIC_PORT, life).expect("listen");
    let _other = Listener::start(&s.lab.backend.ns, 2222, life).expect("listen");
    let _client_svc = Listener::start(&s.lab.public.ns, 8080, life).expect("listen");
    let public = &s.lab.public.ns;
    assert!(
        tcp_connects(public, BACKEND_PUBLIC_IP, PUBLIC_PORT, LONG).expect("probe"),
        "public port"
    );
    assert!(
        !tcp_connects(public, BACKEND_PUBLIC_IP, 2222, SHORT).expect("probe"),
        "another port with a listener must be dropped"
    );
    // A connection the backend opens gets its replies.
    assert!(
        tcp_connects(&s.lab.backend.ns, s.lab.public.ip, 8080, LONG).expect("probe"),
        "backend's own connection"
    );
    // UDP from outside never reaches the backend's stack.
    let sniffer = Sniffer::start(&s.lab.backend.ns, PUB_IF, Duration::from_secs(5)).expect("sniff");
    let backend_mac = [2, 0, 0, 0, 1, 0x10];
    let udp = frames::udp_frame(
        s.lab.public.mac,
        backend_mac,
        s.lab.public.ip,
        BACKEND_PUBLIC_IP,
        5000,
        53,
        b"q",
    );
    send_frames(public, PUB_IF, vec![udp.clone(); 3]).expect("send");
    std::thread::sleep(Duration::from_millis(150));
    assert!(
        !sniffer.finish().iter().any(|f| f.starts_with(&udp)),
        "UDP leaked"
    );
    let st = s.lab.backend_status(&s.config);
    assert!(counter(&st, "pub_in_pass_public_port") >= 1);
    assert!(counter(&st, "pub_in_drop_port_closed") >= 1);
    assert!(counter(&st, "pub_in_pass_reply") >= 1);
    assert!(counter(&st, "pub_out_pass_tracked") >= 1);
    assert_eq!(counter(&st, "pub_in_drop_proto_denied"), 3);
}

#[test]
fn spoofing_an_application_vm_or_the_backend_is_dropped() {
    let s = setup("");
    let _svc = BackendService::start(&s.lab, &s.config).expect("service");
    let (lab, rogue) = (&s.lab, &s.lab.rogue);
    let _svc8080 = Listener::start(&lab.backend.ns, 8080, Duration::from_secs(30)).expect("listen");
    assert!(
        tcp_connects(&lab.vm.ns, lab.backend.ip, 8080, LONG).expect("probe"),
        "the VM itself"
    );
    assert!(
        tcp_connects(&rogue.ns, lab.backend.ip, 8080, LONG).expect("probe"),
        "a host outside the pool with its own IP"
    );
    let sniffer = Sniffer::start(&lab.backend.ns, SEC_IF, Duration::from_secs(5)).expect("sniff");
    let spoof_vm: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            frames::tcp_syn(
                rogue.mac,
                lab.backend.mac,
                lab.vm.ip,
                lab.backend.ip,
                41000 + i,
                8080,
            )
        })
        .collect();
    let spoof_backend: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            frames::tcp_syn(
                rogue.mac,
                lab.backend.mac,
                lab.backend.ip,
                lab.backend.ip,
                42000 + i,
                8080,
            )
        })
        .collect();
    let arp = frames::ethernet(
        frames::BROADCAST_MAC,
        rogue.mac,
        frames::ETH_P_ARP,
        &frames::arp(2, rogue.mac, lab.vm.ip, lab.backend.mac, lab.backend.ip),
    );
    let all: Vec<Vec<u8>> = spoof_vm
        .iter()
        .chain(&spoof_backend)
        .cloned()
        .chain(std::iter::repeat_n(arp, 3))
        .collect();
    let before = s.lab.backend_status(&s.config);
    send_frames(&rogue.ns, SEC_IF, all.clone()).expect("send");
    std::thread::sleep(Duration::from_millis(150));
    let seen = sniffer.finish();
    assert!(
        !seen.iter().any(|f| all.iter().any(|a| f.starts_with(a))),
        "spoofed frames reached the backend"
    );
    let after = s.lab.backend_status(&s.config);
    let delta = |r| counter(&after, r) - counter(&before, r);
    assert_eq!(delta("sec_in_drop_spoofed_vm_ip"), 3);
    assert_eq!(delta("sec_in_drop_spoofed_backend_ip"), 3);
    assert_eq!(delta("sec_in_drop_arp_spoof"), 3);
    let vm = &after["vms"][0];
    assert_eq!(vm["name"], "redcap");
    assert_eq!(vm["in_kernel"], true);
    assert_eq!(
        vm["spoofed_packets"], 6,
        "3 SYNs + 3 ARPs claimed the VM's IP: {vm}"
    );
    assert!(vm["packets"].as_u64().expect("packets") > 0, "{vm}");
}

/// Polls the pinned maps until `ip` is present (or absent).
fn wait_in_map(s: &Setup, ip: std::net::Ipv4Addr, present: bool) -> Duration {
    let maps = BackendMaps::open(&pin_dir(s.lab.pin_root())).expect("maps");
    enforced::wait_in_map(&maps, ip, present, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn table_changes_reach_the_kernel_while_the_service_runs() {
    let s = setup("");
    let svc = BackendService::start(&s.lab, &s.config).expect("service");
    let mut delays = Vec::new();
    for i in 0..10_u8 {
        let ip = std::net::Ipv4Addr::new(192, 168, 128, 21 + (i % 5));
        let mac = format!("02:00:00:00:01:{:02x}", 0x30 + i);
        let name = format!("vm{i}");
        let started = Instant::now();
        let out = s.lab.table(
            &s.config,
            &[
                "add",
                "--name",
                &name,
                "--mac",
                &mac,
                "--vm-config",
                "c",
                "--ip",
                &ip.to_string(),
            ],
        );
        ok(&out);
        let _ = wait_in_map(&s, ip, true);
        delays.push(started.elapsed());
        let started = Instant::now();
        let out = s.lab.table(&s.config, &["remove", &name]);
        assert!(out.status.success());
        let _ = wait_in_map(&s, ip, false);
        delays.push(started.elapsed());
    }
    delays.sort();
    eprintln!(
        "table change -> kernel map (incl. the appvm table process): median {:?}, max {:?}, over {} changes",
        delays[delays.len() / 2],
        delays[delays.len() - 1],
        delays.len()
    );
    // The hosts file follows the table.
    let hosts = std::fs::read_to_string(s.lab.files().join("secure-hosts")).expect("hosts file");
    assert_eq!(
        hosts,
        format!(
            "# MAC address, IP address\n{}, 192.168.128.20\n",
            appvm::vm::config::format_mac(s.lab.vm.mac)
        )
    );
    // An invalid table is refused and the maps keep the last valid one.
    let table = s.lab.files().join("table.toml");
    let valid = std::fs::read_to_string(&table).expect("table");
    std::fs::write(&table, format!("{valid}\n[[vm]]\nname = \"Bad Name\"\nmac = \"x\"\nvm_config = \"c\"\nip = \"192.168.128.22\"\nports = [443]\n")).expect("write");
    assert!(
        svc.wait_log("table refused", Duration::from_secs(5)),
        "{}",
        svc.log()
    );
    let maps = BackendMaps::open(&pin_dir(s.lab.pin_root())).expect("maps");
    assert!(
        maps.vms.get(&ip_be(s.lab.vm.ip), 0).is_ok(),
        "last valid table still enforced"
    );
}

#[test]
fn kill_9_keeps_enforcement_and_a_restart_adopts_it() {
    let s = setup("");
    let svc = BackendService::start(&s.lab, &s.config).expect("service");
    let ids = link_ids(&s);
    let life = Duration::from_secs(60);
    let _proxy = Listener::start(&s.lab.backend.ns, PUBLIC_PORT, life).expect("listen");
    let _other = Listener::start(&s.lab.backend.ns, 2222, life).expect("listen");
    svc.kill9();
    let public = &s.lab.public.ns;
    assert!(
        !tcp_connects(public, BACKEND_PUBLIC_IP, 2222, SHORT).expect("probe"),
        "enforcement gone after kill -9"
    );
    assert!(tcp_connects(public, BACKEND_PUBLIC_IP, PUBLIC_PORT, LONG).expect("probe"));
    // A change while the service is down is picked up by the restart.
    let out = s.lab.table(
        &s.config,
        &[
            "add",
            "--name",
            "late",
            "--mac",
            "02:00:00:00:02:01",
            "--vm-config",
            "c",
            "--ip",
            "192.168.128.25",
        ],
    );
    assert!(out.status.success());
    let svc = BackendService::start(&s.lab, &s.config).expect("restart");
    assert!(svc.log().contains("Adopted"), "{}", svc.log());
    assert_eq!(
        link_ids(&s),
        ids,
        "restart must adopt the links, not replace them"
    );
    let _ = wait_in_map(&s, std::net::Ipv4Addr::new(192, 168, 128, 25), true);
    // SIGTERM: exits 0 and leaves the programs attached.
    let status = svc.terminate().expect("service exits on SIGTERM");
    assert!(status.success(), "{status}");
    assert!(!tcp_connects(public, BACKEND_PUBLIC_IP, 2222, SHORT).expect("probe"));
    let out = s.lab.backend_cmd(&s.config, &["detach"]);
    ok(&out);
    assert!(!pin_dir(s.lab.pin_root()).exists());
    assert!(
        tcp_connects(public, BACKEND_PUBLIC_IP, 2222, LONG).expect("probe"),
        "after detach the listener is reachable: the drop was the program's"
    );
}

#[test]
fn dnsmasq_rereads_the_hosts_file_after_a_change() {
    require_privileges();
    assert!(
        appvm_lab::sys::which("dnsmasq").is_some(),
        "dnsmasq not installed (cargo xtask setup installs dnsmasq-base)"
    );
    let pre = setup("");
    let pid_file = pre.lab.files().join("dnsmasq.pid");
    let log = pre.lab.files().join("dnsmasq.log");
    let hosts = pre.lab.files().join("secure-hosts");
    let config = pre
        .lab
        .backend_config(&format!("dnsmasq_pid_file = \"{}\"\n", pid_file.display()));
    let s = Setup {
        lab: pre.lab,
        config,
    };
    let mut dnsmasq = s
        .lab
        .backend
        .ns
        .command("dnsmasq")
        .args([
            "--keep-in-foreground",
            "--port=0",
            "--bind-interfaces",
            "--interface",
            SEC_IF,
            "--dhcp-range=192.168.128.100,192.168.128.150,1h",
        ])
        .arg(format!("--dhcp-hostsfile={}", hosts.display()))
        .arg(format!("--pid-file={}", pid_file.display()))
        .arg(format!("--log-facility={}", log.display()))
        .spawn()
        .expect("dnsmasq");
    let read_count = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("read ")
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !pid_file.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let svc = BackendService::start(&s.lab, &s.config).expect("service");
    assert!(
        svc.wait_log("sent SIGHUP to dnsmasq", Duration::from_secs(5)),
        "{}",
        svc.log()
    );
    let before = read_count();
    let out = s.lab.table(
        &s.config,
        &[
            "add",
            "--name",
            "second",
            "--mac",
            "02:00:00:00:02:02",
            "--vm-config",
            "c",
        ],
    );
    assert!(out.status.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    while read_count() <= before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(dnsmasq.kill());
    drop(dnsmasq.wait());
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        read_count() > before,
        "dnsmasq did not re-read the hosts file: {text}"
    );
}

/// Parses the Prometheus text format strictly enough to catch mistakes:
/// every sample is `name{labels} value` with a numeric value, and every
/// metric has HELP and TYPE lines.
fn parse_metrics(text: &str) -> std::collections::BTreeMap<String, f64> {
    let mut samples = std::collections::BTreeMap::new();
    let mut typed = std::collections::BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let name = parts.next().expect("name");
            assert!(matches!(parts.next(), Some("counter" | "gauge")), "{line}");
            typed.insert(name.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let name = series.split('{').next().expect("name");
        assert!(typed.contains(name), "{name} has no TYPE line");
        if let Some(labels) = series.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "{line}"
            );
        }
        samples.insert(series.to_owned(), value);
    }
    samples
}

#[test]
fn metrics_stats_and_the_audit_log() {
    let pre = setup("");
    let audit = pre.lab.files().join("audit.jsonl");
    let config = pre
        .lab
        .backend_config(&format!("audit_log = \"{}\"\n", audit.display()));
    let s = Setup {
        lab: pre.lab,
        config,
    };
    let _svc =
        BackendService::start_with(&s.lab, &s.config, &["--metrics-listen", "127.0.0.1:9100"])
            .expect("service");
    let (lab, rogue) = (&s.lab, &s.lab.rogue);
    let spoof: Vec<Vec<u8>> = (0..4)
        .map(|i| {
            frames::tcp_syn(
                rogue.mac,
                lab.backend.mac,
                lab.vm.ip,
                lab.backend.ip,
                46000 + i,
                8080,
            )
        })
        .collect();
    send_frames(&rogue.ns, SEC_IF, spoof).expect("send");
    std::thread::sleep(Duration::from_millis(600));
    // A real HTTP scrape inside the backend's namespace.
    let out = lab
        .backend
        .ns
        .command("curl")
        .args(["-sS", "--max-time", "5", "http://127.0.0.1:9100/metrics"])
        .output()
        .expect("curl");
    ok(&out);
    let m = parse_metrics(&String::from_utf8_lossy(&out.stdout));
    let key = "appvm_packets_total{source=\"backend\",program=\"backend_secure\",reason=\"sec_in_drop_spoofed_vm_ip\",verdict=\"drop\"}";
    assert_eq!(m.get(key), Some(&4.0), "{m:#?}");
    assert_eq!(
        m.get("appvm_vm_spoofed_packets_total{vm=\"redcap\",ip=\"192.168.128.20\"}"),
        Some(&4.0)
    );
    assert_eq!(m.get("appvm_table_size"), Some(&1.0));
    assert!(
        m.get("appvm_last_sync_timestamp_seconds")
            .is_some_and(|t| *t > 1.7e9)
    );
    assert!(m.contains_key("appvm_events_total{source=\"backend\",outcome=\"suppressed\"}"));
    let out = lab
        .backend
        .ns
        .command("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "http://127.0.0.1:9100/other",
        ])
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "404");
    // The audit log: one JSON line per dropped frame (well under the rate limit).
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&audit)
        .expect("audit log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .filter(|v: &serde_json::Value| v["reason"] == "sec_in_drop_spoofed_vm_ip")
        .collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(lines[0]["src_ip"], "192.168.128.20");
    assert_eq!(
        lines[0]["src_mac"],
        appvm::vm::config::format_mac(rogue.mac)
    );
    assert_eq!(lines[0]["program"], "backend_secure");
    // appvm stats --json reads the same pins.
    let mut cmd = lab.backend.ns.command(appvm_lab::sys::appvm_bin());
    cmd.args(["stats", "--json"])
        .env("APPVM_PIN_ROOT", lab.pin_root())
        .env("APPVM_CONFIG", &s.config);
    let out = cmd.output().expect("stats");
    ok(&out);
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(st["backend"]["vms"][0]["name"], "redcap");
    assert_eq!(st["backend"]["vms"][0]["spoofed_packets"], 4);
    assert_eq!(st["backend"]["table_size"], 1);
    let mut cmd = lab.backend.ns.command(appvm_lab::sys::appvm_bin());
    cmd.args(["stats", "--watch", "1", "--count", "1", "--json"])
        .env("APPVM_PIN_ROOT", lab.pin_root());
    let out = cmd.output().expect("watch");
    assert!(out.status.success());
    let _: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON rates object");
}
