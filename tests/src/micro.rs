//! Per-packet cost through `BPF_PROG_TEST_RUN`: the kernel's own timing,
//! programs interleaved within each run so they share the machine's noise.
//! Prints figures; never asserts a timing.

use std::{fmt::Write as _, net::Ipv4Addr};

use appvm::vm::{GuardSettings, loaded::LoadedGuard};

use crate::{
    frames::tcp_syn,
    summary::{median, min},
};

/// One measured case: per-run nanoseconds per packet.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub ns: Vec<f64>,
    /// Program minus floor, per run.
    pub net: Vec<f64>,
}

/// Runs `runs` interleaved rounds of `repeat` packets per case.
pub fn run(repeat: u32, runs: usize) -> Result<Vec<Case>, String> {
    let backend = Ipv4Addr::new(192, 168, 128, 1);
    let (vm, rogue) = (
        Ipv4Addr::new(192, 168, 128, 20),
        Ipv4Addr::new(192, 168, 128, 66),
    );
    let (b_mac, vm_mac, r_mac) = (
        [2, 0, 0, 0, 0, 1],
        [2, 0, 0, 0, 0, 0x20],
        [2, 0, 0, 0, 0, 0x66],
    );
    let policy = GuardSettings {
        iface: Some("eth0".into()),
        backend_ip: Some(backend.to_string()),
        backend_mac: Some("02:00:00:00:00:01".into()),
        app_ports: vec![443],
        ..GuardSettings::default()
    }
    .validate()
    .map_err(|e| e.to_string())?
    .to_policy();
    let mut guard = LoadedGuard::load().map_err(|e| e.to_string())?;
    guard.install(&policy).map_err(|e| e.to_string())?;
    let allow = tcp_syn(b_mac, vm_mac, backend, vm, 40000, 443);
    let deny = tcp_syn(r_mac, vm_mac, rogue, vm, 40000, 443);
    let mut floor = Vec::new();
    let mut cases = [
        ("ingress allow (backend -> :443)", Vec::new()),
        ("ingress drop (rogue -> :443)", Vec::new()),
        ("egress allow (-> backend)", Vec::new()),
        ("egress drop (-> rogue)", Vec::new()),
    ];
    let to_ns = |r: appvm::vm::loaded::RunResult| r.duration_ns as f64;
    let out_frame = tcp_syn(vm_mac, b_mac, vm, backend, 40000, 443);
    let to_rogue = tcp_syn(vm_mac, r_mac, vm, rogue, 40000, 8080);
    for _ in 0..runs {
        floor.push(to_ns(
            guard.run_floor(&allow, repeat).map_err(|e| e.to_string())?,
        ));
        cases[0].1.push(to_ns(
            guard
                .run_ingress(&allow, repeat)
                .map_err(|e| e.to_string())?,
        ));
        cases[1].1.push(to_ns(
            guard
                .run_ingress(&deny, repeat)
                .map_err(|e| e.to_string())?,
        ));
        cases[2].1.push(to_ns(
            guard
                .run_egress(&out_frame, repeat)
                .map_err(|e| e.to_string())?,
        ));
        cases[3].1.push(to_ns(
            guard
                .run_egress(&to_rogue, repeat)
                .map_err(|e| e.to_string())?,
        ));
    }
    let mut result = vec![Case {
        name: "XDP_PASS floor".to_owned(),
        net: vec![0.0; floor.len()],
        ns: floor.clone(),
    }];
    for (name, ns) in cases {
        let net = ns.iter().zip(&floor).map(|(p, f)| p - f).collect();
        result.push(Case {
            name: name.to_owned(),
            ns,
            net,
        });
    }
    Ok(result)
}

/// Keys a rotating case spreads over the table.
const ROTATING_KEYS: u32 = 64;

/// The backend programs: the secure interface's program on its allow and
/// drop paths with `sizes` VMs in its map (one repeated key, and
/// [`ROTATING_KEYS`] keys spread over the table), and the public
/// program's two paths; each run interleaved with the XDP_PASS floor.
pub fn backend(repeat: u32, runs: usize, sizes: &[u32]) -> Result<Vec<Case>, String> {
    use appvm::{
        backend::config::BackendConfig, backend::loaded::LoadedBackend, vm::policy::ip_be,
    };

    let pool = u32::from(Ipv4Addr::new(10, 1, 0, 0));
    let public = Ipv4Addr::new(203, 0, 113, 10);
    let client = Ipv4Addr::new(198, 51, 100, 7);
    let (b_mac, other_mac) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 0x66]);
    let mac_of = |i: u32| {
        let b = i.to_be_bytes();
        [0x02, 0x42, b[0], b[1], b[2], b[3]]
    };
    let config: BackendConfig = toml::from_str(&format!(
        "secure_network = \"10.0.0.0/8\"\nvm_pool = \"10.1.0.0/16\"\nbackend_ip = \"10.0.0.1\"\npublic_ip = \"{public}\"\npublic_port = 4443\n"
    ))
    .map_err(|e| e.to_string())?;
    let mut b = LoadedBackend::load().map_err(|e| e.to_string())?;
    b.policy
        .install(&config.to_policy().map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let mut guard = LoadedGuard::load().map_err(|e| e.to_string())?;
    let backend_ip = Ipv4Addr::new(10, 0, 0, 1);
    let from_vm = |i: u32, mac| {
        tcp_syn(
            mac,
            b_mac,
            Ipv4Addr::from(pool + i),
            backend_ip,
            40000,
            8080,
        )
    };
    let mut cases: Vec<Case> = Vec::new();
    let mut floor = Vec::new();
    let push = |cases: &mut Vec<Case>, name: String, ns: f64| match cases
        .iter_mut()
        .find(|c| c.name == name)
    {
        Some(c) => c.ns.push(ns),
        None => cases.push(Case {
            name,
            ns: vec![ns],
            net: Vec::new(),
        }),
    };
    let mut added = 0;
    for &size in sizes {
        while added < size {
            b.add_vm(ip_be(Ipv4Addr::from(pool + added)), mac_of(added))
                .map_err(|e| e.to_string())?;
            added += 1;
        }
        let keys: Vec<u32> = (0..ROTATING_KEYS)
            .map(|k| (u64::from(k) * u64::from(size) / u64::from(ROTATING_KEYS)) as u32)
            .collect();
        for _ in 0..runs {
            floor.push(
                guard
                    .run_floor(&from_vm(0, mac_of(0)), repeat)
                    .map_err(|e| e.to_string())?
                    .duration_ns as f64,
            );
            for (path, pinned) in [
                ("allow (vm, pinned MAC)", true),
                ("drop (pool IP, other MAC)", false),
            ] {
                let mac = |i| if pinned { mac_of(i) } else { other_mac };
                let one = b
                    .run_secure(&from_vm(size / 2, mac(size / 2)), repeat)
                    .map_err(|e| e.to_string())?
                    .duration_ns as f64;
                push(&mut cases, format!("secure {path}, {size} VMs"), one);
                let mut sum = 0.0;
                for &k in &keys {
                    sum += b
                        .run_secure(&from_vm(k, mac(k)), (repeat / ROTATING_KEYS).max(1))
                        .map_err(|e| e.to_string())?
                        .duration_ns as f64;
                }
                push(
                    &mut cases,
                    format!("secure {path}, {size} VMs, {ROTATING_KEYS} keys"),
                    sum / f64::from(ROTATING_KEYS),
                );
            }
        }
    }
    for _ in 0..runs {
        for (name, port) in [
            ("public allow (SYN to :4443)", 4443),
            ("public drop (SYN to :2222)", 2222),
        ] {
            let frame = tcp_syn(other_mac, b_mac, client, public, 40000, port);
            let ns = b
                .run_public(&frame, repeat)
                .map_err(|e| e.to_string())?
                .duration_ns as f64;
            push(&mut cases, name.to_owned(), ns);
        }
        // tc: its own floor is higher than XDP's.
        let out = tcp_syn(b_mac, other_mac, public, client, 40000, 443);
        let ns = b
            .run_public_egress(&out, repeat)
            .map_err(|e| e.to_string())?
            .duration_ns as f64;
        push(
            &mut cases,
            "public egress (SYN out, flow recorded)".to_owned(),
            ns,
        );
        floor.push(
            guard
                .run_floor(&from_vm(0, mac_of(0)), repeat)
                .map_err(|e| e.to_string())?
                .duration_ns as f64,
        );
    }
    // Net cost against the floor runs of the same size (or the public runs).
    for c in &mut cases {
        let floors: &[f64] = if c.name.starts_with("public") {
            &floor[floor.len() - runs..]
        } else {
            let at = sizes
                .iter()
                .position(|s| c.name.contains(&format!(", {s} VMs")))
                .unwrap_or(0);
            &floor[at * runs..(at + 1) * runs]
        };
        c.net = c.ns.iter().zip(floors).map(|(p, f)| p - f).collect();
    }
    let mut result = vec![Case {
        name: "XDP_PASS floor".to_owned(),
        net: vec![0.0; floor.len()],
        ns: floor,
    }];
    result.extend(cases);
    Ok(result)
}

/// The figures as an aligned table.
pub fn format(cases: &[Case], repeat: u32) -> String {
    let mut out = format!(
        "BPF_PROG_TEST_RUN, repeat {repeat}, {} interleaved runs, kernel-reported ns/packet\n",
        cases.first().map_or(0, |c| c.ns.len())
    );
    let _ = writeln!(
        out,
        "{:<34} {:>8} {:>8} {:>12}",
        "program", "min", "median", "net median"
    );
    for c in cases {
        let _ = writeln!(
            out,
            "{:<34} {:>8.1} {:>8.1} {:>12.1}",
            c.name,
            min(&c.ns),
            median(&c.ns),
            median(&c.net)
        );
    }
    out.push_str(
        "(egress is a tc program: its floor is higher than XDP's; net is against the XDP floor)\n",
    );
    out
}

/// Full sync of an `n`-entry table into freshly pinned backend maps, then
/// one change; returns (full sync, one change) in microseconds.
pub fn sync(n: usize) -> Result<(u128, u128), String> {
    use appvm::{
        backend::{
            maps::{BackendMaps, map_pin},
            sync::Syncer,
        },
        object, pinning,
        table::{Table, TableEntry},
    };
    use appvm_common::pins::backend as pins;

    let dir = std::path::PathBuf::from(format!("/sys/fs/bpf/appvm-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let result = (|| {
        let ebpf = object::open().map_err(|e| e.to_string())?;
        let names: Vec<(&'static str, String)> =
            pins::MAPS.iter().map(|&m| (m, map_pin(m))).collect();
        let list: Vec<(&'static str, &str)> = names.iter().map(|(m, p)| (*m, p.as_str())).collect();
        pinning::pin_maps(&ebpf, &dir, &list).map_err(|e| e.to_string())?;
        let maps = BackendMaps::open(&dir).map_err(|e| e.to_string())?;
        let mut syncer = Syncer::default();
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| e.to_string())?;
        let mut table = Table {
            vms: (0..n)
                .map(|i| TableEntry {
                    name: format!("vm{i}"),
                    mac: format!(
                        "02:00:00:{:02x}:{:02x}:{:02x}",
                        (i >> 16) & 0xff,
                        (i >> 8) & 0xff,
                        i & 0xff
                    ),
                    vm_config: "bench".into(),
                    ip: Ipv4Addr::from(0x0a00_0000_u32 + i as u32 + 1),
                    ports: vec![443],
                })
                .collect(),
        };
        let full = syncer
            .sync(&maps, &table, cpus)
            .map_err(|e| e.to_string())?;
        table.vms.pop();
        let one = syncer
            .sync(&maps, &table, cpus)
            .map_err(|e| e.to_string())?;
        Ok((full.micros, one.micros))
    })();
    drop(std::fs::remove_dir_all(&dir));
    result
}
