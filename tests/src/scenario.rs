//! The lab scenario: the VM guard and the backend enforcer together; every
//! flow the lab tries, what it expects, what happened and which counter
//! moved. Shared by the end-to-end test and `cargo xtask demo`.

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use appvm::{
    backend::{attach::pin_dir, maps::BackendMaps},
    counters::read_vm_pinned,
};

use std::net::Ipv4Addr;

use crate::{
    frames::{self, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, IP_MF, IPPROTO_TCP},
    lab::{APP_PORT, Host, Lab, SEC_IF},
    lab::{BACKEND_PUBLIC_IP, PUBLIC_PORT},
    probe::{Listener, Sniffer, send_frames, tcp_connects},
    service::BackendService,
};

/// Whether traffic got to its destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    Reaches,
    Blocked,
}

impl std::fmt::Display for Reach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Reaches => "reaches",
            Self::Blocked => "blocked",
        })
    }
}

/// One row of the flow table.
#[derive(Clone, Debug)]
pub struct FlowRow {
    pub flow: String,
    pub expected: Reach,
    pub actual: Reach,
    /// The guard counter this flow must move ("-" when no guard is attached).
    pub counter: &'static str,
    /// How much it moved.
    pub counted: u64,
    /// Least it must have moved (exact for raw frames, >= 1 for TCP).
    pub min_count: u64,
    pub exact: bool,
    /// Every counter that moved during the flow (shown on a mismatch).
    pub moved: Vec<(&'static str, u64)>,
}

impl FlowRow {
    pub fn ok(&self) -> bool {
        let count_ok = if self.exact {
            self.counted == self.min_count
        } else {
            self.counted >= self.min_count
        };
        self.expected == self.actual && count_ok
    }
}

const BLOCKED_TIMEOUT: Duration = Duration::from_millis(800);
const REACH_TIMEOUT: Duration = Duration::from_secs(3);
const RAW_FRAMES: u64 = 3;

/// Every counter of the VM guard and the backend programs that are pinned
/// (their reason names are distinct).
fn counters(lab: &Lab) -> Result<BTreeMap<&'static str, u64>, String> {
    let mut all = BTreeMap::new();
    if lab.vm_counters_path().exists() {
        for rc in read_vm_pinned(&lab.vm_counters_path()).map_err(|e| e.to_string())? {
            all.insert(rc.reason.name(), rc.counter.packets);
        }
    }
    let backend = pin_dir(lab.pin_root());
    if backend.exists() {
        let maps = BackendMaps::open(&backend).map_err(|e| e.to_string())?;
        for (reason, c) in maps.reason_counts().map_err(|e| e.to_string())? {
            all.insert(reason.name(), c.packets);
        }
    }
    Ok(all)
}

pub(crate) struct Recorder<'a> {
    pub(crate) lab: &'a Lab,
    rows: Vec<FlowRow>,
}

impl Recorder<'_> {
    /// Runs `probe`, then records the row with the counter delta.
    fn flow(
        &mut self,
        flow: String,
        expected: Reach,
        counter: &'static str,
        exact_count: Option<u64>,
        probe: impl FnOnce() -> Result<Reach, String>,
    ) -> Result<(), String> {
        let before = counters(self.lab)?;
        let actual = probe()?;
        let after = counters(self.lab)?;
        let counted =
            after.get(counter).copied().unwrap_or(0) - before.get(counter).copied().unwrap_or(0);
        self.rows.push(FlowRow {
            flow,
            expected,
            actual,
            counter,
            counted,
            min_count: exact_count.unwrap_or(1),
            exact: exact_count.is_some(),
            moved: after
                .iter()
                .filter_map(|(name, &n)| {
                    let delta = n - before.get(name).copied().unwrap_or(0);
                    (delta > 0).then_some((*name, delta))
                })
                .collect(),
        });
        Ok(())
    }

    fn tcp(
        &mut self,
        from: &Host,
        to: &Host,
        port: u16,
        expected: Reach,
        counter: &'static str,
    ) -> Result<(), String> {
        self.tcp_to(from, to.role, to.ip, port, expected, counter)
    }

    fn tcp_to(
        &mut self,
        from: &Host,
        to_role: &str,
        to_ip: Ipv4Addr,
        port: u16,
        expected: Reach,
        counter: &'static str,
    ) -> Result<(), String> {
        let timeout = if expected == Reach::Reaches {
            REACH_TIMEOUT
        } else {
            BLOCKED_TIMEOUT
        };
        let (ns, ip) = (&from.ns, to_ip);
        self.flow(
            format!("{} -> {to_role}:{port}/tcp", from.role),
            expected,
            counter,
            None,
            || {
                Ok(if tcp_connects(ns, ip, port, timeout)? {
                    Reach::Reaches
                } else {
                    Reach::Blocked
                })
            },
        )
    }

    /// Sends raw frames from the rogue; "reaches" if the VM's packet socket
    /// saw any of them (it sees only what XDP passed).
    pub(crate) fn raw(
        &mut self,
        what: &str,
        frames: Vec<Vec<u8>>,
        counter: &'static str,
    ) -> Result<(), String> {
        self.raw_to(&self.lab.vm, what, frames, counter)
    }

    /// Raw frames from the rogue on the secure network, watched for at `to`.
    pub(crate) fn raw_to(
        &mut self,
        to: &Host,
        what: &str,
        frames: Vec<Vec<u8>>,
        counter: &'static str,
    ) -> Result<(), String> {
        self.raw_from(&self.lab.rogue, to, SEC_IF, what, frames, counter)
    }

    /// Raw frames from `from` out of its `iface`, watched for on `to`'s
    /// interface of the same name: blocked if none passed XDP there, and
    /// `counter` must move by exactly the number of frames.
    pub(crate) fn raw_from(
        &mut self,
        from: &Host,
        to: &Host,
        iface: &str,
        what: &str,
        frames: Vec<Vec<u8>>,
        counter: &'static str,
    ) -> Result<(), String> {
        let sent = frames.clone();
        self.flow(
            format!("{} -> {}: {what}", from.role, to.role),
            Reach::Blocked,
            counter,
            Some(sent.len() as u64),
            || {
                let sniffer = Sniffer::start(&to.ns, iface, Duration::from_secs(5))?;
                send_frames(&from.ns, iface, frames)?;
                std::thread::sleep(Duration::from_millis(150));
                let seen = sniffer.finish();
                let leaked = seen
                    .iter()
                    .any(|f| sent.iter().any(|s| f.starts_with(s) || s.starts_with(f)));
                Ok(if leaked {
                    Reach::Reaches
                } else {
                    Reach::Blocked
                })
            },
        )
    }
}

/// What the lab scenario saw.
#[derive(Debug)]
pub struct LabRun {
    pub rows: Vec<FlowRow>,
    /// `appvm vm status` just before detach, as printed.
    pub status_text: String,
    /// `appvm vm status --json` just before detach.
    pub status_json: serde_json::Value,
    /// `appvm backend status` before the backend is detached.
    pub backend_status_text: String,
    pub backend_status_json: serde_json::Value,
}

fn backend_ok(lab: &Lab, config: &std::path::Path, args: &[&str]) -> Result<String, String> {
    let out = lab.backend_cmd(config, args);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "appvm backend {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn appvm_ok(lab: &Lab, host: &Host, args: &[&str]) -> Result<String, String> {
    let out = lab.appvm(host, args);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "appvm {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Attaches the guard in the VM with the `appvm` binary, puts the VM in the
/// backend's table and starts `appvm backend run`, tries every flow, then
/// detaches both and proves the rogue gets in once the guard is gone.
pub fn run_lab(lab: &Lab) -> Result<LabRun, String> {
    let (backend, vm, rogue) = (&lab.backend, &lab.vm, &lab.rogue);
    let backend_ip = backend.ip.to_string();
    let backend_mac = appvm::vm::config::format_mac(backend.mac);
    appvm_ok(
        lab,
        vm,
        &[
            "vm",
            "attach",
            "--iface",
            SEC_IF,
            "--backend-ip",
            &backend_ip,
            "--backend-mac",
            &backend_mac,
            "--app-port",
            &APP_PORT.to_string(),
        ],
    )?;
    // Static neighbours: the guard also drops the ARP that would resolve
    // these, and the flows must reach the IP layer to test it.
    lab.pin_neighbour(rogue, vm)?;
    lab.pin_neighbour(vm, rogue)?;
    let life = Duration::from_secs(60);
    let app = Listener::start(&vm.ns, APP_PORT, life)?;
    let _backend_svc = Listener::start(&backend.ns, 8080, life)?;
    let _rogue_svc = Listener::start(&rogue.ns, 8080, life)?;

    // The backend: the VM in the table, the service running.
    let config = lab.backend_config("");
    let out = lab.table_add_vm(&config);
    if !out.status.success() {
        return Err(format!(
            "appvm table add: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let service = BackendService::start(lab, &config)?;
    let _proxy = Listener::start(&backend.ns, PUBLIC_PORT, life)?;
    let _backend_other = Listener::start(&backend.ns, 2222, life)?;
    let _client_svc = Listener::start(&lab.public.ns, 8080, life)?;

    let mut r = Recorder {
        lab,
        rows: Vec::new(),
    };
    r.tcp(
        backend,
        vm,
        APP_PORT,
        Reach::Reaches,
        "in_pass_app_from_backend",
    )?;
    r.tcp(vm, backend, 8080, Reach::Reaches, "out_pass_backend")?;
    r.tcp(
        rogue,
        vm,
        APP_PORT,
        Reach::Blocked,
        "in_drop_foreign_source",
    )?;
    r.tcp(vm, rogue, 8080, Reach::Blocked, "out_drop_denied")?;

    r.tcp_to(
        &lab.public,
        "backend",
        BACKEND_PUBLIC_IP,
        PUBLIC_PORT,
        Reach::Reaches,
        "pub_in_pass_public_port",
    )?;
    r.tcp_to(
        &lab.public,
        "backend",
        BACKEND_PUBLIC_IP,
        2222,
        Reach::Blocked,
        "pub_in_drop_port_closed",
    )?;
    r.tcp(
        backend,
        &lab.public,
        8080,
        Reach::Reaches,
        "pub_in_pass_reply",
    )?;
    let n = RAW_FRAMES as usize;
    let to_backend =
        |src_ip, sport| frames::tcp_syn(rogue.mac, backend.mac, src_ip, backend.ip, sport, 8080);
    r.raw_to(
        backend,
        "SYN spoofing the vm's IP",
        (0..n)
            .map(|i| to_backend(vm.ip, 43000 + i as u16))
            .collect(),
        "sec_in_drop_spoofed_vm_ip",
    )?;
    r.raw_to(
        backend,
        "SYN spoofing the backend's IP",
        (0..n)
            .map(|i| to_backend(backend.ip, 44000 + i as u16))
            .collect(),
        "sec_in_drop_spoofed_backend_ip",
    )?;
    // Unicast to the backend, so the bridge does not flood it to the VM too.
    let claim = frames::ethernet(
        backend.mac,
        rogue.mac,
        frames::ETH_P_ARP,
        &frames::arp(2, rogue.mac, vm.ip, backend.mac, backend.ip),
    );
    r.raw_to(
        backend,
        "ARP claiming the vm's IP",
        vec![claim; n],
        "sec_in_drop_arp_spoof",
    )?;
    crate::attacks::secure_evasions(&mut r, n)?;

    let syn = |src_ip, sport| frames::tcp_syn(rogue.mac, vm.mac, src_ip, vm.ip, sport, APP_PORT);
    let arp = frames::arp(1, rogue.mac, rogue.ip, [0; 6], vm.ip);
    r.raw(
        "ARP who-has vm",
        vec![frames::ethernet(frames::BROADCAST_MAC, rogue.mac, frames::ETH_P_ARP, &arp); n],
        "in_drop_arp_foreign",
    )?;
    r.raw(
        "SYN spoofing the backend's IP",
        (0..n).map(|i| syn(backend.ip, 40000 + i as u16)).collect(),
        "in_drop_backend_mac_mismatch",
    )?;
    let udp = frames::udp_frame(
        rogue.mac, vm.mac, rogue.ip, vm.ip, 40000, APP_PORT, b"probe",
    );
    r.raw("UDP to :443", vec![udp; n], "in_drop_foreign_source")?;
    let inner = frames::Ipv4::new(rogue.ip, vm.ip, IPPROTO_TCP).to_bytes(&frames::tcp(
        rogue.ip,
        vm.ip,
        40001,
        APP_PORT,
        frames::TCP_SYN,
        1,
    ));
    r.raw(
        "802.1Q-tagged SYN to :443",
        vec![frames::vlan_tagged(vm.mac, rogue.mac, ETH_P_8021Q, 7, ETH_P_IP, &inner); n],
        "in_drop_foreign_source",
    )?;
    r.raw(
        "802.1ad-tagged SYN to :443",
        vec![frames::vlan_tagged(vm.mac, rogue.mac, frames::ETH_P_8021AD, 7, ETH_P_IP, &inner); n],
        "in_drop_foreign_source",
    )?;
    for (what, flags) in [
        ("TCP with no flags to :443", 0x00_u8),
        ("TCP FIN/PSH/URG to :443", 0x29),
    ] {
        let seg = frames::tcp(rogue.ip, vm.ip, 40004, APP_PORT, flags, 1);
        let pkt = frames::Ipv4::new(rogue.ip, vm.ip, IPPROTO_TCP).to_bytes(&seg);
        r.raw(
            what,
            vec![frames::ethernet(vm.mac, rogue.mac, ETH_P_IP, &pkt); n],
            "in_drop_foreign_source",
        )?;
    }
    let echo = frames::Ipv4::new(rogue.ip, vm.ip, frames::IPPROTO_ICMP)
        .to_bytes(&[8, 0, 0xf7, 0xff, 0, 0, 0, 0]);
    r.raw(
        "ICMP echo",
        vec![frames::ethernet(vm.mac, rogue.mac, ETH_P_IP, &echo); n],
        "in_drop_foreign_source",
    )?;
    let bcast = frames::udp_frame(
        rogue.mac,
        frames::BROADCAST_MAC,
        rogue.ip,
        Ipv4Addr::BROADCAST,
        40005,
        APP_PORT,
        b"x",
    );
    r.raw(
        "broadcast UDP to :443",
        vec![bcast; n],
        "in_drop_foreign_source",
    )?;
    let mdns = Ipv4Addr::new(224, 0, 0, 251);
    let mcast = frames::udp_frame(
        rogue.mac,
        [0x01, 0x00, 0x5e, 0, 0, 0xfb],
        rogue.ip,
        mdns,
        5353,
        5353,
        b"x",
    );
    r.raw(
        "multicast UDP (mDNS)",
        vec![mcast; n],
        "in_drop_foreign_source",
    )?;
    let mut v6tcp = frames::ipv6_no_next_header();
    v6tcp[6] = IPPROTO_TCP;
    v6tcp[4..6].copy_from_slice(&20_u16.to_be_bytes());
    v6tcp.extend_from_slice(&frames::tcp(
        rogue.ip,
        vm.ip,
        40006,
        APP_PORT,
        frames::TCP_SYN,
        1,
    ));
    r.raw(
        "IPv6 link-local SYN to :443",
        vec![frames::ethernet(vm.mac, rogue.mac, ETH_P_IPV6, &v6tcp); n],
        "in_drop_ipv6",
    )?;
    // Unicast to the VM: broadcast, the backend would count it as well.
    let garp = frames::arp(1, rogue.mac, backend.ip, [0; 6], backend.ip);
    r.raw(
        "gratuitous ARP claiming the backend's IP",
        vec![frames::ethernet(vm.mac, rogue.mac, frames::ETH_P_ARP, &garp); n],
        "in_drop_backend_mac_mismatch",
    )?;
    // The bridge lifts the tag into metadata: XDP sees an untagged frame
    // from the backend (IP and MAC spoofed), the tcx stage drops it.
    let spoofed = frames::Ipv4::new(backend.ip, vm.ip, IPPROTO_TCP).to_bytes(&frames::tcp(
        backend.ip,
        vm.ip,
        40003,
        APP_PORT,
        frames::TCP_SYN,
        1,
    ));
    r.raw(
        "802.1Q-tagged SYN as the backend",
        vec![frames::vlan_tagged(vm.mac, backend.mac, ETH_P_8021Q, 7, ETH_P_IP, &spoofed); n],
        "in_drop_vlan_offloaded",
    )?;
    r.raw(
        "IPv6 frame",
        vec![
            frames::ethernet(
                vm.mac,
                rogue.mac,
                ETH_P_IPV6,
                &frames::ipv6_no_next_header()
            );
            n
        ],
        "in_drop_ipv6",
    )?;
    let mut frag = frames::Ipv4::new(rogue.ip, vm.ip, IPPROTO_TCP);
    frag.flags_frag = 185; // offset 1480 bytes, no MF: a non-first fragment
    r.raw(
        "non-first fragment to :443",
        vec![frames::ethernet(vm.mac, rogue.mac, ETH_P_IP, &frag.to_bytes(&[0; 64])); n],
        "in_drop_fragment",
    )?;
    let mut first = frames::Ipv4::new(rogue.ip, vm.ip, IPPROTO_TCP);
    first.flags_frag = IP_MF;
    r.raw(
        "first fragment to :443",
        vec![
            frames::ethernet(
                vm.mac,
                rogue.mac,
                ETH_P_IP,
                &first.to_bytes(&frames::tcp(
                    rogue.ip,
                    vm.ip,
                    40002,
                    APP_PORT,
                    frames::TCP_SYN,
                    1
                ))
            );
            n
        ],
        "in_drop_fragment",
    )?;
    let offer = frames::udp_frame(
        rogue.mac,
        frames::BROADCAST_MAC,
        rogue.ip,
        Ipv4Addr::BROADCAST,
        67,
        68,
        &[0; 240],
    );
    r.raw("rogue DHCP offer", vec![offer; n], "in_drop_dhcp_rogue")?;
    crate::attacks::evasions(&mut r, n)?;

    let status_text = appvm_ok(lab, vm, &["vm", "status", "--iface", SEC_IF])?;
    let status_json = serde_json::from_str(&appvm_ok(
        lab,
        vm,
        &["vm", "status", "--iface", SEC_IF, "--json"],
    )?)
    .map_err(|e| format!("appvm vm status --json: {e}"))?;
    let backend_status_text = backend_ok(lab, &config, &["status"])?;
    let backend_status_json =
        serde_json::from_str(&backend_ok(lab, &config, &["status", "--json"])?)
            .map_err(|e| format!("appvm backend status --json: {e}"))?;
    if !service.terminate().is_some_and(|s| s.success()) {
        return Err("appvm backend run did not exit cleanly on SIGTERM".into());
    }
    backend_ok(lab, &config, &["detach"])?;
    appvm_ok(lab, vm, &["vm", "detach", "--iface", SEC_IF])?;
    let connected = tcp_connects(&rogue.ns, vm.ip, APP_PORT, REACH_TIMEOUT)?;
    r.rows.push(FlowRow {
        flow: format!("rogue -> vm:{APP_PORT}/tcp after detach"),
        expected: Reach::Reaches,
        actual: if connected {
            Reach::Reaches
        } else {
            Reach::Blocked
        },
        counter: "-",
        counted: 0,
        min_count: 0,
        exact: true,
        moved: Vec::new(),
    });
    drop(app);
    Ok(LabRun {
        rows: r.rows,
        status_text,
        status_json,
        backend_status_text,
        backend_status_json,
    })
}

/// The flow table as aligned text.
pub fn format_table(rows: &[FlowRow]) -> String {
    let width = rows.iter().map(|r| r.flow.len()).max().unwrap_or(4).max(4);
    let mut out = format!(
        "{:<width$}  {:<8} {:<8} {:<30} {:>7}  {}\n",
        "flow", "expected", "actual", "reason counter", "counted", "ok"
    );
    for r in rows {
        let counted = if r.counter == "-" {
            "-".to_owned()
        } else {
            format!("+{}", r.counted)
        };
        let _ = writeln!(
            out,
            "{:<width$}  {:<8} {:<8} {:<30} {:>7}  {}",
            r.flow,
            r.expected.to_string(),
            r.actual.to_string(),
            r.counter,
            counted,
            if r.ok() { "ok" } else { "MISMATCH" }
        );
        if !r.ok() && !r.moved.is_empty() {
            let moved: Vec<String> = r.moved.iter().map(|(n, d)| format!("{n} +{d}")).collect();
            let _ = writeln!(
                out,
                "{:<width$}  counters that moved: {}",
                "",
                moved.join(", ")
            );
        }
    }
    out
}
