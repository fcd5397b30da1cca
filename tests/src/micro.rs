//! Per-packet cost through `BPF_PROG_TEST_RUN`: the kernel's own timing,
//! programs interleaved within each run so they share the machine's noise.
//! Prints figures; never asserts a timing.

use std::{fmt::Write as _, net::Ipv4Addr};

use appvm::vm::{GuardSettings, loaded::LoadedGuard};

use crate::frames::tcp_syn;

/// One measured case: per-run nanoseconds per packet.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: &'static str,
    pub ns: Vec<f64>,
    /// Program minus floor, per run.
    pub net: Vec<f64>,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
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
    ];
    let to_ns = |r: appvm::vm::loaded::RunResult| r.duration_ns as f64;
    let out_frame = tcp_syn(vm_mac, b_mac, vm, backend, 40000, 443);
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
    }
    let mut result = vec![Case {
        name: "XDP_PASS floor",
        net: vec![0.0; floor.len()],
        ns: floor.clone(),
    }];
    for (name, ns) in cases {
        let net = ns.iter().zip(&floor).map(|(p, f)| p - f).collect();
        result.push(Case { name, ns, net });
    }
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
