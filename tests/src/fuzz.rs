//! Differential fuzzing of the VM guard: random and mutated frames through
//! `BPF_PROG_TEST_RUN`, each verdict compared with the reference model
//! ([`crate::model`]); every 512 frames the per-reason counters are
//! compared with the model's reasons too.

use std::{collections::BTreeMap, fmt::Write as _, net::Ipv4Addr, path::Path, time::Instant};

use appvm::vm::{GuardSettings, loaded::LoadedGuard};
use appvm_common::VmReason;

use crate::{frames::*, model};

const BACKEND: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const DHCP2: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const VM: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 20);
const RELAY: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 50);
const ROGUE: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 66);
const B_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const VM_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x20];
const R_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x66];
const CHUNK: usize = 512;

/// xorshift64*: fast, seedable, good enough to pick mutations.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

/// The policies the fuzzer runs under: (model policy, guard settings).
pub fn policies() -> Vec<(model::Policy, GuardSettings)> {
    let base = |mac: Option<[u8; 6]>, dhcp: Ipv4Addr, v6: bool| {
        let m = model::Policy {
            backend: BACKEND,
            backend_mac: mac,
            app_ports: vec![443, 8443],
            dhcp_server: dhcp,
            allow_egress: vec![(RELAY, 25)],
            allow_ipv6: v6,
        };
        let g = GuardSettings {
            iface: Some("eth0".into()),
            backend_ip: Some(BACKEND.to_string()),
            backend_mac: mac.map(appvm::vm::config::format_mac),
            app_ports: vec![443, 8443],
            dhcp_server: Some(dhcp.to_string()),
            allow_egress: vec![format!("{RELAY}:25")],
            allow_ipv6: Some(v6),
        };
        (m, g)
    };
    vec![base(Some(B_MAC), BACKEND, false), base(None, DHCP2, true)]
}

/// A plausible frame, then mutated.
pub fn frame(rng: &mut Rng) -> Vec<u8> {
    let hosts = [
        BACKEND,
        ROGUE,
        RELAY,
        VM,
        DHCP2,
        Ipv4Addr::BROADCAST,
        Ipv4Addr::UNSPECIFIED,
    ];
    let macs = [B_MAC, R_MAC, VM_MAC, BROADCAST_MAC];
    let ports = [443, 8443, 25, 67, 68, 22, 0, 65535];
    let (src, dst) = (rng.pick(&hosts), rng.pick(&hosts));
    let (smac, dmac) = (rng.pick(&macs), rng.pick(&macs));
    let (sport, dport) = (rng.pick(&ports), rng.pick(&ports));
    let mut ipv4 = Ipv4::new(src, dst, IPPROTO_TCP);
    if rng.below(6) == 0 {
        let words = rng.below(11) as usize;
        ipv4.options = (0..words * 4).map(|_| rng.next_u64() as u8).collect();
    }
    if rng.below(5) == 0 {
        ipv4.flags_frag = rng.pick(&[IP_MF, 3, IP_MF | 5, 0x8000, 0x1fff]);
    }
    let f = match rng.below(9) {
        0 | 1 => ethernet(
            dmac,
            smac,
            ETH_P_IP,
            &ipv4.to_bytes(&tcp(src, dst, sport, dport, TCP_SYN, 1)),
        ),
        2 | 3 => {
            ipv4.proto = IPPROTO_UDP;
            ethernet(
                dmac,
                smac,
                ETH_P_IP,
                &ipv4.to_bytes(&udp(src, dst, sport, dport, &[0; 16])),
            )
        }
        4 => {
            ipv4.proto = rng.pick(&[IPPROTO_ICMP, 47, 0, 255]);
            ethernet(
                dmac,
                smac,
                ETH_P_IP,
                &ipv4.to_bytes(&[8, 0, 0, 0, 0, 0, 0, 0]),
            )
        }
        5 => ethernet(
            dmac,
            smac,
            ETH_P_ARP,
            &arp(rng.pick(&[1, 2]), rng.pick(&macs), src, [0; 6], dst),
        ),
        6 => ethernet(dmac, smac, ETH_P_IPV6, &ipv6_no_next_header()),
        7 => vlan_tagged(
            dmac,
            smac,
            rng.pick(&[ETH_P_8021Q, ETH_P_8021AD, 0x9100]),
            5,
            ETH_P_IP,
            &ipv4.to_bytes(&tcp(src, dst, sport, dport, TCP_SYN, 1)),
        ),
        _ => ethernet(
            dmac,
            smac,
            rng.pick(&[0x88cc, 0x0040, 0x8847, 0x0800]),
            &[0; 46],
        ),
    };
    mutate(rng, f)
}

/// Mutations biased to the fields the programs decide by.
fn mutate(rng: &mut Rng, mut f: Vec<u8>) -> Vec<u8> {
    let hot = [
        12, 13, 14, 16, 17, 20, 21, 23, 26, 29, 30, 33, 34, 35, 36, 37, 38, 39, 18, 19, 28, 31,
    ];
    for _ in 0..rng.below(4) {
        if f.is_empty() {
            break;
        }
        let at = if rng.below(3) == 0 {
            rng.below(f.len() as u64) as usize
        } else {
            rng.pick(&hot)
        };
        if at < f.len() {
            f[at] = if rng.below(2) == 0 {
                rng.next_u64() as u8
            } else {
                rng.pick(&[0, 1, 4, 5, 6, 15, 17, 0x45, 0x46, 0x4f, 0x80, 0xff])
            };
        }
    }
    // A total length that cuts into the transport header while the frame
    // still holds it (tiny-fragment style).
    if f.len() > 17 && rng.below(8) == 0 {
        let ihl = u16::from(f[14] & 0x0f) * 4;
        let total = ihl + rng.below(28) as u16;
        f[16..18].copy_from_slice(&total.to_be_bytes());
    }
    match rng.below(8) {
        0 => f.truncate(rng.below(f.len() as u64 + 1) as usize),
        1 => f.extend((0..rng.below(40)).map(|_| rng.next_u64() as u8)),
        _ => {}
    }
    f
}

/// Where the kernel and the model disagreed.
#[derive(Clone, Debug)]
pub struct Disagreement {
    pub program: &'static str,
    pub policy: usize,
    pub frame: Vec<u8>,
    /// The model's reason.
    pub model: &'static str,
    pub kernel: String,
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub tried: u64,
    /// Frames the kernel's test-run refused (shorter than it accepts).
    pub refused: u64,
    pub disagreements: Vec<Disagreement>,
    pub seconds: f64,
    /// Frames per model reason, over all programs.
    pub reasons: BTreeMap<&'static str, u64>,
    /// Frames run (not refused) per program.
    pub programs: BTreeMap<&'static str, u64>,
}

impl Report {
    pub fn frames_per_sec(&self) -> f64 {
        self.tried as f64 / self.seconds.max(1e-9)
    }
}

#[derive(Clone, Copy)]
enum Prog {
    Ingress,
    Egress,
}

fn kernel_verdict_ok(prog: Prog, ret: u32, model: VmReason) -> bool {
    match prog {
        Prog::Ingress => ret == if model.passes() { 2 } else { 1 },
        Prog::Egress => ret == if model.passes() { u32::MAX } else { 2 },
    }
}

fn run_one(g: &mut LoadedGuard, prog: Prog, f: &[u8]) -> Option<u32> {
    let r = match prog {
        Prog::Ingress => g.run_ingress(f, 1),
        Prog::Egress => g.run_egress(f, 1),
    };
    r.ok().map(|r| r.return_value)
}

fn histogram(g: &LoadedGuard) -> Result<BTreeMap<VmReason, u64>, String> {
    Ok(g.counters()
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|c| (c.reason, c.counter.packets))
        .collect())
}

/// `count` frames per program per policy.
pub fn run(count: u64, seed: u64) -> Result<Report, String> {
    let started = Instant::now();
    let mut report = Report::default();
    let mut rng = Rng::new(seed);
    for (pi, (policy, settings)) in policies().into_iter().enumerate() {
        let mut g = LoadedGuard::load().map_err(|e| e.to_string())?;
        g.install(&settings.validate().map_err(|e| e.to_string())?.to_policy())
            .map_err(|e| e.to_string())?;
        for prog in [Prog::Ingress, Prog::Egress] {
            let name = match prog {
                Prog::Ingress => "vm_ingress",
                Prog::Egress => "vm_egress",
            };
            let model_of = |f: &[u8]| match prog {
                Prog::Ingress => model::ingress(f, &policy),
                Prog::Egress => model::egress(f, &policy),
            };
            let mut done = 0;
            while done < count {
                g.reset_counters().map_err(|e| e.to_string())?;
                let mut chunk = Vec::with_capacity(CHUNK);
                let mut want: BTreeMap<VmReason, u64> = BTreeMap::new();
                while chunk.len() < CHUNK && done < count {
                    let f = frame(&mut rng);
                    done += 1;
                    report.tried += 1;
                    let m = model_of(&f);
                    let Some(ret) = run_one(&mut g, prog, &f) else {
                        report.refused += 1;
                        continue;
                    };
                    *report.reasons.entry(m.name()).or_default() += 1;
                    *report.programs.entry(name).or_default() += 1;
                    *want.entry(m).or_default() += 1;
                    if !kernel_verdict_ok(prog, ret, m) {
                        report.disagreements.push(Disagreement {
                            program: name,
                            policy: pi,
                            frame: f.clone(),
                            model: m.name(),
                            kernel: format!("return value {ret}"),
                        });
                    }
                    chunk.push(f);
                }
                let have: BTreeMap<VmReason, u64> =
                    histogram(&g)?.into_iter().filter(|(_, n)| *n > 0).collect();
                if have != want {
                    // Find the frames whose counted reason differs.
                    for f in chunk {
                        g.reset_counters().map_err(|e| e.to_string())?;
                        run_one(&mut g, prog, &f);
                        let m = model_of(&f);
                        let got: Vec<VmReason> = histogram(&g)?
                            .into_iter()
                            .filter(|(_, n)| *n > 0)
                            .map(|(r, _)| r)
                            .collect();
                        if got != [m] {
                            report.disagreements.push(Disagreement {
                                program: name,
                                policy: pi,
                                frame: f,
                                model: m.name(),
                                kernel: format!("counted {got:?}"),
                            });
                        }
                    }
                }
            }
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Saves disagreements as `<program>-<policy>-<n>.hex` for the regression corpus.
pub fn save(dir: &Path, found: &[Disagreement]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (i, d) in found.iter().enumerate() {
        let hex: String = d.frame.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        });
        std::fs::write(
            dir.join(format!("{}-{}-{i}.hex", d.program, d.policy)),
            format!("{hex}\n"),
        )?;
    }
    Ok(())
}

/// Replays every corpus file through both programs under every policy;
/// returns the disagreements.
pub fn replay(dir: &Path) -> Result<(usize, Vec<Disagreement>), String> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "hex"))
        .collect();
    files.sort();
    let frames: Vec<Vec<u8>> = files
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).map_err(|e| e.to_string())?;
            let t = text.trim();
            (0..t.len() / 2)
                .map(|i| {
                    u8::from_str_radix(&t[2 * i..2 * i + 2], 16)
                        .map_err(|e| format!("{}: {e}", p.display()))
                })
                .collect()
        })
        .collect::<Result<_, String>>()?;
    let mut found = Vec::new();
    for (pi, (policy, settings)) in policies().into_iter().enumerate() {
        let mut g = LoadedGuard::load().map_err(|e| e.to_string())?;
        g.install(&settings.validate().map_err(|e| e.to_string())?.to_policy())
            .map_err(|e| e.to_string())?;
        for f in &frames {
            for (prog, name, m) in [
                (Prog::Ingress, "vm_ingress", model::ingress(f, &policy)),
                (Prog::Egress, "vm_egress", model::egress(f, &policy)),
            ] {
                g.reset_counters().map_err(|e| e.to_string())?;
                let Some(ret) = run_one(&mut g, prog, f) else {
                    continue;
                };
                let got: Vec<VmReason> = histogram(&g)?
                    .into_iter()
                    .filter(|(_, n)| *n > 0)
                    .map(|(r, _)| r)
                    .collect();
                if !kernel_verdict_ok(prog, ret, m) || got != [m] {
                    found.push(Disagreement {
                        program: name,
                        policy: pi,
                        frame: f.clone(),
                        model: m.name(),
                        kernel: format!("return {ret}, counted {got:?}"),
                    });
                }
            }
        }
    }
    Ok((frames.len(), found))
}

/// The backend programs' fuzzing: public ingress and egress interleaved
/// (so replies meet flows the egress program recorded), and the secure
/// interface, under a policy with and without a public IPv6.
pub mod backend {
    use std::{
        collections::{BTreeMap, BTreeSet},
        net::{Ipv4Addr, Ipv6Addr},
        time::Instant,
    };

    use appvm::backend::{config::BackendConfig, loaded::LoadedBackend};
    use appvm_common::BackendReason as R;

    use super::{Disagreement, Report, Rng};
    use crate::{frames::*, model_backend as model};

    const PUBLIC: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
    const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
    const OTHER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 11);
    const SECURE: Ipv4Addr = Ipv4Addr::new(192, 168, 128, 1);
    const VM1: Ipv4Addr = Ipv4Addr::new(192, 168, 128, 20);
    const VM2: Ipv4Addr = Ipv4Addr::new(192, 168, 128, 21);
    const FREE: Ipv4Addr = Ipv4Addr::new(192, 168, 128, 22);
    const OUTSIDE: Ipv4Addr = Ipv4Addr::new(192, 168, 128, 66);
    const PUBLIC6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
    const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 7);
    const M1: [u8; 6] = [2, 0, 0, 0, 0, 0x20];
    const M2: [u8; 6] = [2, 0, 0, 0, 0, 0x21];
    const MR: [u8; 6] = [2, 0, 0, 0, 0, 0x66];

    fn policies() -> Vec<(model::Policy, BackendConfig)> {
        [None, Some(PUBLIC6)]
            .into_iter()
            .map(|v6| {
                let extra = v6.map(|a| format!("public_ipv6 = \"{a}\"\n")).unwrap_or_default();
                let cfg: BackendConfig = toml::from_str(&format!(
                    "secure_network = \"192.168.128.0/24\"\nvm_pool = \"192.168.128.16/28\"\nbackend_ip = \"{SECURE}\"\npublic_ip = \"{PUBLIC}\"\npublic_port = 4443\n{extra}"
                ))
                .expect("config");
                let m = model::Policy {
                    public_ip: PUBLIC,
                    public_ipv6: v6,
                    public_port: 4443,
                    secure_ip: SECURE,
                    pool: (Ipv4Addr::new(192, 168, 128, 16), 28),
                    vms: BTreeMap::from([(VM1, M1), (VM2, M2)]),
                };
                (m, cfg)
            })
            .collect()
    }

    fn v6_frame(rng: &mut Rng, src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
        let next = rng.pick(&[6_u8, 17, 58, 0, 44]);
        let mut payload = vec![0_u8; 20];
        payload[0..2].copy_from_slice(&rng.pick(&[4443_u16, 40000, 53, 443]).to_be_bytes());
        payload[2..4].copy_from_slice(&rng.pick(&[4443_u16, 40000, 53, 443]).to_be_bytes());
        if next == 58 {
            payload[0] = rng.pick(&[2, 128, 133, 135, 136, 137, 1]);
        }
        let mut h = vec![0x60, 0, 0, 0];
        h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        h.push(next);
        h.push(rng.pick(&[255, 64, 1]));
        h.extend_from_slice(&src.octets());
        h.extend_from_slice(&dst.octets());
        h.extend_from_slice(&payload);
        ethernet([2, 0, 0, 0, 1, 0x10], MR, ETH_P_IPV6, &h)
    }

    /// A frame for the public side (`outbound`: sent by the backend).
    fn public_frame(rng: &mut Rng, outbound: bool) -> Vec<u8> {
        let ports = [4443, 22, 53, 40000, 40001, 8080];
        if rng.below(5) == 0 {
            let (a, b) = if outbound {
                (PUBLIC6, CLIENT6)
            } else {
                (CLIENT6, rng.pick(&[PUBLIC6, CLIENT6]))
            };
            let f = v6_frame(rng, a, b);
            return super::mutate(rng, f);
        }
        let (src, dst) = if outbound {
            (rng.pick(&[PUBLIC, OTHER]), CLIENT)
        } else {
            (
                rng.pick(&[CLIENT, OTHER]),
                rng.pick(&[PUBLIC, PUBLIC, OTHER]),
            )
        };
        let (sport, dport) = (rng.pick(&ports), rng.pick(&ports));
        let mut ip = Ipv4::new(src, dst, IPPROTO_TCP);
        if rng.below(8) == 0 {
            ip.flags_frag = rng.pick(&[IP_MF, 3, 0x8000]);
        }
        let f = match rng.below(6) {
            0 | 1 => ethernet(
                MR,
                M1,
                ETH_P_IP,
                &ip.to_bytes(&tcp(src, dst, sport, dport, TCP_SYN, 1)),
            ),
            2 => {
                ip.proto = IPPROTO_UDP;
                ethernet(
                    MR,
                    M1,
                    ETH_P_IP,
                    &ip.to_bytes(&udp(src, dst, sport, dport, b"q")),
                )
            }
            3 => {
                ip.proto = IPPROTO_ICMP;
                ethernet(
                    MR,
                    M1,
                    ETH_P_IP,
                    &ip.to_bytes(&[
                        rng.pick(&[3, 8, 0]),
                        rng.pick(&[4, 3, 0]),
                        0,
                        0,
                        0,
                        0,
                        5,
                        0xdc,
                    ]),
                )
            }
            4 => ethernet(
                BROADCAST_MAC,
                MR,
                ETH_P_ARP,
                &arp(1, MR, CLIENT, [0; 6], rng.pick(&[PUBLIC, OTHER])),
            ),
            _ => ethernet(MR, M1, rng.pick(&[ETH_P_8021Q, 0x88cc]), &[0; 46]),
        };
        super::mutate(rng, f)
    }

    fn secure_frame(rng: &mut Rng) -> Vec<u8> {
        let ips = [SECURE, VM1, VM2, FREE, OUTSIDE, Ipv4Addr::UNSPECIFIED];
        let macs = [M1, M2, MR];
        let (src, mac) = (rng.pick(&ips), rng.pick(&macs));
        let f = match rng.below(4) {
            0 | 1 => tcp_syn(mac, [2, 0, 0, 0, 0, 1], src, SECURE, 40000, 443),
            2 => ethernet(
                BROADCAST_MAC,
                mac,
                ETH_P_ARP,
                &arp(rng.pick(&[1, 2]), rng.pick(&macs), src, [0; 6], SECURE),
            ),
            _ => ethernet(
                [2, 0, 0, 0, 0, 1],
                mac,
                rng.pick(&[ETH_P_IPV6, ETH_P_8021AD, 0x88cc]),
                &[0x60; 46],
            ),
        };
        super::mutate(rng, f)
    }

    fn counted(b: &LoadedBackend) -> Result<Vec<R>, String> {
        Ok(b.counters()
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|(_, c)| c.packets > 0)
            .map(|(r, _)| r)
            .collect())
    }

    /// `count` frames per program and policy; every frame's reason is
    /// checked (the backend has fewer frames to run than the VM guard).
    pub fn run(count: u64, seed: u64) -> Result<Report, String> {
        let started = Instant::now();
        let mut report = Report::default();
        let mut rng = Rng::new(seed);
        for (pi, (policy, cfg)) in policies().into_iter().enumerate() {
            let mut b = LoadedBackend::load().map_err(|e| e.to_string())?;
            b.policy
                .install(&cfg.to_policy().map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
            for (ip, mac) in &policy.vms {
                b.add_vm(appvm::vm::policy::ip_be(*ip), *mac)
                    .map_err(|e| e.to_string())?;
            }
            let mut flows = BTreeSet::new();
            let check = |b: &mut LoadedBackend,
                         name: &'static str,
                         f: Vec<u8>,
                         m: R,
                         ret: Option<u32>,
                         report: &mut Report|
             -> Result<(), String> {
                report.tried += 1;
                let Some(ret) = ret else {
                    report.refused += 1;
                    return Ok(());
                };
                *report.reasons.entry(m.name()).or_default() += 1;
                *report.programs.entry(name).or_default() += 1;
                let verdict_ok = match name {
                    "backend_public_egress" => ret == u32::MAX,
                    _ => ret == if m.passes() { 2 } else { 1 },
                };
                let got = counted(b)?;
                if !verdict_ok || got != [m] {
                    report.disagreements.push(Disagreement {
                        program: name,
                        policy: pi,
                        frame: f,
                        model: m.name(),
                        kernel: format!("return {ret}, counted {got:?}"),
                    });
                }
                Ok(())
            };
            for _ in 0..count {
                // Public side: egress first sometimes, so flows exist.
                let outbound = rng.below(3) == 0;
                let f = public_frame(&mut rng, outbound);
                b.reset_counters().map_err(|e| e.to_string())?;
                if outbound {
                    let ret = b.run_public_egress(&f, 1).ok().map(|r| r.return_value);
                    let flow = model::public_egress(&f, &policy);
                    let m = if flow.is_some() {
                        R::PubOutTracked
                    } else {
                        R::PubOutOther
                    };
                    if ret.is_some() {
                        flows.extend(flow);
                    }
                    check(&mut b, "backend_public_egress", f, m, ret, &mut report)?;
                } else {
                    let ret = b.run_public(&f, 1).ok().map(|r| r.return_value);
                    let m = model::public_ingress(&f, &policy, &flows);
                    check(&mut b, "backend_public", f, m, ret, &mut report)?;
                }
                let f = secure_frame(&mut rng);
                b.reset_counters().map_err(|e| e.to_string())?;
                let ret = b.run_secure(&f, 1).ok().map(|r| r.return_value);
                let m = model::secure_ingress(&f, &policy);
                check(&mut b, "backend_secure", f, m, ret, &mut report)?;
            }
        }
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }
}
