//! The full receive path without a user-space sender: in namespace `gen`
//! an XDP program run by `BPF_PROG_TEST_RUN` in live-frames mode gives
//! each frame the next source address of the VM pool (a /16) and
//! redirects it through a veth into namespace `recv`, where one filter
//! configuration at a time handles the flood of frames that claim pool
//! addresses from a MAC the table does not pin to them:
//!
//! - `appvm`: the backend's secure-interface program (native XDP), the
//!   table's entries in its VM map;
//! - `xdp-drop-floor`: an XDP program that drops everything;
//! - `nft-netdev`: the same policy in nftables `netdev ingress`;
//! - `nft-inet`: the same policy in nftables `inet input`;
//! - `no-filter`: nothing; the stack takes every frame (and its reply is
//!   routed to a blackhole, so no neighbour resolution is timed).
//!
//! nftables holds the table as a set of `ip . ether` pairs, as an operator
//! would write it. A first round checks that every configuration dropped
//! or passed exactly what it should; then rounds in random order time
//! them, and each round gives ratios measured side by side.

use std::{
    fmt::Write as _,
    fs,
    net::Ipv4Addr,
    path::Path,
    time::{Duration, Instant},
};

use appvm::{backend::config::BackendConfig, backend::loaded::LoadedBackend, vm::policy::ip_be};
use appvm_common::bench::{GenConfig, MAP_GEN_CONFIG, PROG_DROP_FLOOR, PROG_GEN};
use aya::{
    Ebpf, TestRun,
    maps::Array,
    programs::{TestRunAttrs, TestRunOptions, Xdp, XdpMode, xdp::XdpLinkId},
};

use crate::{frames, netns::Netns, summary::median, sys};

pub const CONFIGS: [&str; 5] = [
    "appvm",
    "xdp-drop-floor",
    "nft-netdev",
    "nft-inet",
    "no-filter",
];
const GEN_IF: &str = "a0";
const RECV_IF: &str = "b0";
const GEN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xaa, 0x01];
const POOL: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 0);
const POOL_SIZE: u32 = 65_536;
const RECV_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// Frames per `BPF_PROG_TEST_RUN` batch (the kernel's maximum is 256).
const BATCH: u32 = 64;

/// One table size's figures.
#[derive(Debug, Clone)]
pub struct NetResult {
    pub entries: usize,
    pub packets_per_run: u32,
    pub rounds: usize,
    /// (configuration, ns per packet of each round).
    pub per_round: Vec<(&'static str, Vec<f64>)>,
    /// (what, expected, actual) from the checking round.
    pub checks: Vec<(String, u64, u64)>,
}

impl NetResult {
    fn series(&self, config: &str) -> &[f64] {
        self.per_round
            .iter()
            .find(|(c, _)| *c == config)
            .map_or(&[], |(_, v)| v.as_slice())
    }

    /// Per-round ratios `a / b`, sorted.
    pub fn ratios(&self, a: &str, b: &str) -> Vec<f64> {
        let mut r: Vec<f64> = self
            .series(a)
            .iter()
            .zip(self.series(b))
            .map(|(x, y)| x / y)
            .collect();
        r.sort_by(f64::total_cmp);
        r
    }

    pub fn median(&self, config: &str) -> f64 {
        median(self.series(config))
    }
}

/// The ratios the report gives, as (label, JSON key, numerator,
/// denominator).
pub const RATIOS: [(&str, &str, &str, &str); 4] = [
    (
        "nft-netdev / appvm",
        "nft_netdev_over_appvm",
        "nft-netdev",
        "appvm",
    ),
    (
        "nft-inet / appvm",
        "nft_inet_over_appvm",
        "nft-inet",
        "appvm",
    ),
    (
        "no-filter / appvm",
        "no_filter_over_appvm",
        "no-filter",
        "appvm",
    ),
    (
        "appvm / xdp-drop-floor",
        "appvm_over_floor",
        "appvm",
        "xdp-drop-floor",
    ),
];

/// The two namespaces and everything loaded into them.
struct Rig {
    gen_ns: Netns,
    recv_ns: Netns,
    generator: Ebpf,
    backend: LoadedBackend,
    template: Vec<u8>,
    recv_ifindex: u32,
    nft_dir: std::path::PathBuf,
}

/// What is attached or loaded in `recv` for one configuration.
enum Active {
    Appvm(XdpLinkId),
    Floor(XdpLinkId),
    Nft(&'static str),
    Nothing,
}

/// `ip -o link show <iface>` in `ns`: "N: name@peer: <...> ... link/ether M ...".
fn link_line(ns: &Netns, iface: &str) -> Result<String, String> {
    let out = sys::run(std::process::Command::new("ip").args([
        "-n",
        ns.name(),
        "-o",
        "link",
        "show",
        iface,
    ]))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ifindex(ns: &Netns, iface: &str) -> Result<u32, String> {
    let text = link_line(ns, iface)?;
    text.split(':')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| format!("no ifindex in {text:?}"))
}

fn mac_of(ns: &Netns, iface: &str) -> Result<[u8; 6], String> {
    let text = link_line(ns, iface)?;
    let mac = text
        .split("link/ether ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .ok_or_else(|| format!("no MAC in {text:?}"))?;
    appvm::vm::config::parse_mac(mac).map_err(|e| e.to_string())
}

/// The loaded XDP program `name` of `ebpf`.
fn xdp<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp, String> {
    ebpf.program_mut(name)
        .ok_or(format!("{name} missing from the object"))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| e.to_string())
}

/// The MAC the table pins to pool address `i`.
fn table_mac(i: u32) -> [u8; 6] {
    let b = i.to_be_bytes();
    [0x02, 0x42, b[0], b[1], b[2], b[3]]
}

impl Rig {
    fn new(dir: &Path) -> Result<Self, String> {
        let gen_ns = Netns::new("gen")?;
        let recv_ns = Netns::new("recv")?;
        gen_ns.ip(&[
            "link",
            "add",
            GEN_IF,
            "type",
            "veth",
            "peer",
            "name",
            RECV_IF,
            "netns",
            recv_ns.name(),
        ])?;
        gen_ns.ip(&["link", "set", GEN_IF, "up"])?;
        recv_ns.ip(&["addr", "add", &format!("{RECV_IP}/8"), "dev", RECV_IF])?;
        recv_ns.ip(&["link", "set", RECV_IF, "up"])?;
        recv_ns.ip(&["route", "add", "blackhole", &format!("{POOL}/16")])?;
        // A veth accepts redirected frames without a program of its own
        // only with NAPI, which GRO turns on.
        recv_ns.exec(&["ethtool", "-K", RECV_IF, "gro", "on"])?;
        let recv_mac = mac_of(&recv_ns, RECV_IF)?;
        let template = frames::tcp_syn(GEN_MAC, recv_mac, POOL, RECV_IP, 40_000, 8080);
        let mut generator = appvm::object::open().map_err(|e| e.to_string())?;
        for name in [PROG_GEN, PROG_DROP_FLOOR] {
            xdp(&mut generator, name)?
                .load()
                .map_err(|e| format!("{name}: {e}"))?;
        }
        let mut cfg: Array<_, GenConfig> = Array::try_from(
            generator
                .map_mut(MAP_GEN_CONFIG)
                .ok_or(format!("{MAP_GEN_CONFIG} missing"))?,
        )
        .map_err(|e| e.to_string())?;
        cfg.set(
            0,
            GenConfig {
                ifindex: ifindex(&gen_ns, GEN_IF)?,
                src_base: u32::from(POOL),
                src_span: POOL_SIZE,
                _pad: 0,
            },
            0,
        )
        .map_err(|e| e.to_string())?;
        let mut backend = LoadedBackend::load().map_err(|e| e.to_string())?;
        let config: BackendConfig = toml::from_str(&format!(
            "secure_network = \"10.0.0.0/8\"\nvm_pool = \"{POOL}/16\"\nbackend_ip = \"{RECV_IP}\"\npublic_ip = \"203.0.113.10\"\npublic_port = 4443\n"
        ))
        .map_err(|e| e.to_string())?;
        backend
            .policy
            .install(&config.to_policy().map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        let recv_ifindex = ifindex(&recv_ns, RECV_IF)?;
        let nft_dir = dir.to_path_buf();
        Ok(Self {
            gen_ns,
            recv_ns,
            generator,
            backend,
            template,
            recv_ifindex,
            nft_dir,
        })
    }

    /// Fills the kernel map and the nftables sets with `entries` VMs.
    fn load_table(&mut self, entries: u32) -> Result<(), String> {
        let old: Vec<u32> = self.backend.vms.keys().filter_map(Result::ok).collect();
        for ip in old {
            self.backend.vms.remove(&ip).map_err(|e| e.to_string())?;
            drop(self.backend.traffic.remove(&ip));
        }
        for i in 0..entries {
            self.backend
                .add_vm(ip_be(Ipv4Addr::from(u32::from(POOL) + i)), table_mac(i))
                .map_err(|e| e.to_string())?;
        }
        let elements: String = (0..entries)
            .map(|i| {
                format!(
                    "{} . {}",
                    Ipv4Addr::from(u32::from(POOL) + i),
                    appvm::vm::config::format_mac(table_mac(i))
                )
            })
            .collect::<Vec<_>>()
            .join(",\n");
        // Declaring a table before deleting it makes the delete succeed on
        // the first size too: each size starts from empty sets.
        let mut script = String::from(
            "table netdev appvm_bench\ndelete table netdev appvm_bench\ntable inet appvm_bench\ndelete table inet appvm_bench\n",
        );
        for family in ["netdev", "inet"] {
            let _ = write!(
                script,
                "table {family} appvm_bench {{\n  set vms {{\n    type ipv4_addr . ether_addr\n    size 131072\n    elements = {{ {elements} }}\n  }}\n}}\n"
            );
        }
        self.nft(&script)
    }

    fn nft(&self, script: &str) -> Result<(), String> {
        let file = self.nft_dir.join("bench.nft");
        fs::write(&file, script).map_err(|e| e.to_string())?;
        self.recv_ns
            .exec(&["nft", "-f", &file.display().to_string()])
            .map(drop)
    }

    fn enable(&mut self, config: &'static str) -> Result<Active, String> {
        let rule = format!("ip saddr {POOL}/16 ip saddr . ether saddr != @vms counter drop");
        Ok(match config {
            "appvm" => {
                let (backend, idx) = (&mut self.backend, self.recv_ifindex);
                Active::Appvm(
                    self.recv_ns
                        .run_scoped(|| backend.attach_secure(idx))?
                        .map_err(|e| e.to_string())?,
                )
            }
            "xdp-drop-floor" => {
                let idx = self.recv_ifindex;
                let floor = xdp(&mut self.generator, PROG_DROP_FLOOR)?;
                Active::Floor(
                    self.recv_ns
                        .run_scoped(|| floor.attach_to_if_index(idx, XdpMode::Driver))?
                        .map_err(|e| e.to_string())?,
                )
            }
            "nft-netdev" => {
                self.nft(&format!(
                    "add chain netdev appvm_bench filter {{ type filter hook ingress device \"{RECV_IF}\" priority 0; policy accept; }}\nadd rule netdev appvm_bench filter {rule}\n"
                ))?;
                Active::Nft("netdev")
            }
            "nft-inet" => {
                self.nft(&format!(
                    "add chain inet appvm_bench filter {{ type filter hook input priority 0; policy accept; }}\nadd rule inet appvm_bench filter {rule}\n"
                ))?;
                Active::Nft("inet")
            }
            _ => Active::Nothing,
        })
    }

    fn disable(&mut self, active: Active) -> Result<(), String> {
        match active {
            Active::Appvm(link) => self.backend.detach_secure(link).map_err(|e| e.to_string()),
            Active::Floor(link) => {
                let floor = xdp(&mut self.generator, PROG_DROP_FLOOR)?;
                floor.detach(link).map_err(|e| e.to_string())
            }
            Active::Nft(family) => self.nft(&format!(
                "flush chain {family} appvm_bench filter\ndelete chain {family} appvm_bench filter\n"
            )),
            Active::Nothing => Ok(()),
        }
    }

    /// The nft rule's counter (packets) of the active chain.
    fn nft_counter(&self, family: &str) -> Result<u64, String> {
        let text = self
            .recv_ns
            .exec(&["nft", "list", "chain", family, "appvm_bench", "filter"])?;
        text.split("counter packets ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("no counter in {text}"))
    }

    /// IP datagrams the receiving stack took in.
    fn ip_in_receives(&self) -> Result<u64, String> {
        let snmp = self.recv_ns.exec(&["cat", "/proc/net/snmp"])?;
        let mut ip = snmp.lines().filter(|l| l.starts_with("Ip:"));
        let (names, values) = (ip.next().unwrap_or(""), ip.next().unwrap_or(""));
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(n, _)| *n == "InReceives")
            .and_then(|(_, v)| v.parse().ok())
            .ok_or_else(|| "no Ip InReceives".to_owned())
    }

    fn spoof_drops(&self) -> Result<u64, String> {
        Ok(self
            .backend
            .counters()
            .map_err(|e| e.to_string())?
            .into_iter()
            .find(|(r, _)| r.name() == "sec_in_drop_spoofed_vm_ip")
            .map_or(0, |(_, c)| c.packets))
    }

    /// Generates `packets` frames; returns the wall time of the run.
    fn generate(&mut self, packets: u32) -> Result<Duration, String> {
        let (generator, template) = (&mut self.generator, &self.template);
        self.gen_ns.run_scoped(|| -> Result<Duration, String> {
            let p = xdp(generator, PROG_GEN)?;
            let mut opts = TestRunOptions::new();
            opts.data_in = Some(template);
            opts.repeat = packets;
            opts.attrs = TestRunAttrs::new().xdp_live_frames(BATCH);
            let started = Instant::now();
            p.test_run(opts).map_err(|e| e.to_string())?;
            Ok(started.elapsed())
        })?
    }
}

/// The checking round: every configuration with `packets` frames.
fn check(rig: &mut Rig, packets: u32) -> Result<Vec<(String, u64, u64)>, String> {
    let n = u64::from(packets);
    let mut checks = Vec::new();
    for config in CONFIGS {
        let active = rig.enable(config)?;
        let (drops, ip_in) = (rig.spoof_drops()?, rig.ip_in_receives()?);
        let generated = rig.generate(packets);
        // Let the receiving NAPI finish before reading counters.
        std::thread::sleep(Duration::from_millis(50));
        let (drops, ip_in) = (rig.spoof_drops()? - drops, rig.ip_in_receives()? - ip_in);
        let counted = match &active {
            Active::Nft(family) => Some(rig.nft_counter(family)?),
            _ => None,
        };
        rig.disable(active)?;
        generated?;
        let reaching_ip = if matches!(config, "nft-inet" | "no-filter") {
            n
        } else {
            0
        };
        checks.push((
            format!("{config}: datagrams reaching IP"),
            reaching_ip,
            ip_in,
        ));
        match config {
            "appvm" => checks.push(("appvm: sec_in_drop_spoofed_vm_ip".into(), n, drops)),
            "nft-netdev" | "nft-inet" => {
                checks.push((format!("{config}: rule counter"), n, counted.unwrap_or(0)));
            }
            _ => {}
        }
    }
    Ok(checks)
}

/// A small deterministic shuffle (xorshift), so runs are repeatable.
fn shuffled(seed: &mut u64) -> [&'static str; 5] {
    let mut order = CONFIGS;
    for i in (1..order.len()).rev() {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        let j = usize::try_from(*seed % (i as u64 + 1)).unwrap_or(0);
        order.swap(i, j);
    }
    order
}

/// Runs the benchmark for each table size.
pub fn run(
    sizes: &[u32],
    packets: u32,
    rounds: usize,
    dir: &Path,
) -> Result<Vec<NetResult>, String> {
    let mut rig = Rig::new(dir)?;
    let mut results = Vec::new();
    let mut seed = 0x5eed_u64;
    for &entries in sizes {
        rig.load_table(entries)?;
        let checks = check(&mut rig, 10_000)?;
        let mut per_round: Vec<(&'static str, Vec<f64>)> =
            CONFIGS.iter().map(|&c| (c, Vec::new())).collect();
        for _ in 0..rounds {
            for config in shuffled(&mut seed) {
                let active = rig.enable(config)?;
                let took = rig.generate(packets);
                rig.disable(active)?;
                let ns = took?.as_nanos() as f64 / f64::from(packets);
                if let Some((_, v)) = per_round.iter_mut().find(|(c, _)| *c == config) {
                    v.push(ns);
                }
            }
        }
        results.push(NetResult {
            entries: usize::try_from(entries).unwrap_or(0),
            packets_per_run: packets,
            rounds,
            per_round,
            checks,
        });
    }
    Ok(results)
}
