//! `appvm stats`: packets and bytes by reason for every attached program,
//! per-VM traffic on the backend; `--watch` prints rates.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use appvm::{
    backend::config::BackendConfig,
    stats::{Snapshot, snapshot},
    table::store,
};
use clap::Args;

use crate::exit::CliError;

#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// Machine-readable output (stable field names; see the README).
    #[arg(long)]
    json: bool,
    /// Print rates (per second) every SECS seconds until interrupted.
    #[arg(long, value_name = "SECS")]
    watch: Option<u64>,
    /// With --watch: stop after N intervals.
    #[arg(long, value_name = "N", requires = "watch")]
    count: Option<u64>,
    /// Backend configuration, to name the VMs (optional).
    #[arg(long, env = "APPVM_CONFIG", default_value = appvm::backend::config::DEFAULT_CONFIG)]
    config: PathBuf,
}

fn take(root: &Path, config: &Path) -> anyhow::Result<Snapshot> {
    let table = BackendConfig::load(config)
        .ok()
        .and_then(|c| store::load(&c.table).ok());
    snapshot(root, table.as_ref())
        .map_err(anyhow::Error::msg)
        .context("cannot read the pinned maps")
}

/// Flat (name -> (packets, bytes)) view, for rates.
fn flat(s: &Snapshot) -> BTreeMap<String, (u64, u64)> {
    let mut m = BTreeMap::new();
    for g in &s.guards {
        for c in &g.counters {
            m.insert(format!("{} {}", g.iface, c.reason), (c.packets, c.bytes));
        }
    }
    if let Some(b) = &s.backend {
        for c in &b.counters {
            m.insert(format!("backend {}", c.reason), (c.packets, c.bytes));
        }
        for v in &b.vms {
            m.insert(format!("vm {} ({})", v.name, v.ip), (v.packets, v.bytes));
            m.insert(
                format!("vm {} ({}) spoofed", v.name, v.ip),
                (v.spoofed_packets, v.spoofed_bytes),
            );
        }
    }
    m
}

fn print(s: &Snapshot) {
    let row = |a: &str, b: &str, c: &str, p: u64, by: u64| {
        println!("  {a:<24} {b:<34} {c:<7} {p:>12} {by:>14}")
    };
    for g in &s.guards {
        println!(
            "guard on {} ({})",
            g.iface,
            if g.attached {
                "attached"
            } else {
                "NOT ATTACHED"
            }
        );
        println!(
            "  {:<24} {:<34} {:<7} {:>12} {:>14}",
            "program", "reason", "verdict", "packets", "bytes"
        );
        for c in &g.counters {
            let program = if c.direction == "ingress" {
                "vm_ingress"
            } else {
                "vm_egress"
            };
            row(program, c.reason, c.verdict, c.packets, c.bytes);
        }
        if let Some(e) = g.events {
            println!(
                "  drop events: {} sent, {} suppressed by the rate limit, {} lost",
                e.sent, e.suppressed, e.lost
            );
        }
    }
    if let Some(b) = &s.backend {
        println!("backend ({} VMs in the kernel table)", b.table_size);
        println!(
            "  {:<24} {:<34} {:<7} {:>12} {:>14}",
            "program", "reason", "verdict", "packets", "bytes"
        );
        for c in &b.counters {
            row(c.program, c.reason, c.verdict, c.packets, c.bytes);
        }
        println!(
            "  {:<24} {:<15} {:>12} {:>14} {:>10}",
            "vm", "ip", "packets", "bytes", "spoofed"
        );
        for v in &b.vms {
            println!(
                "  {:<24} {:<15} {:>12} {:>14} {:>10}",
                v.name,
                v.ip.to_string(),
                v.packets,
                v.bytes,
                v.spoofed_packets
            );
        }
        if let Some(e) = b.events {
            println!(
                "  drop events: {} sent, {} suppressed by the rate limit, {} lost",
                e.sent, e.suppressed, e.lost
            );
        }
    }
    if s.guards.is_empty() && s.backend.is_none() {
        println!("nothing attached");
    }
}

pub(crate) fn run(args: StatsArgs, root: &Path) -> Result<(), CliError> {
    let first = take(root, &args.config)?;
    let Some(secs) = args.watch else {
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&first).context("encode")?
            );
        } else {
            print(&first);
        }
        return Ok(());
    };
    let interval = Duration::from_secs(secs.max(1));
    let (mut prev, mut at) = (flat(&first), Instant::now());
    let mut n = 0;
    while args.count.is_none_or(|c| n < c) {
        std::thread::sleep(interval);
        let now = flat(&take(root, &args.config)?);
        let dt = at.elapsed().as_secs_f64();
        let rates: BTreeMap<&String, (f64, f64)> = now
            .iter()
            .filter_map(|(k, &(p, b))| {
                let (pp, pb) = prev.get(k).copied().unwrap_or((0, 0));
                let dp = p.saturating_sub(pp);
                (dp > 0).then(|| (k, (dp as f64 / dt, b.saturating_sub(pb) as f64 / dt)))
            })
            .collect();
        if args.json {
            let v: BTreeMap<&String, serde_json::Value> = rates
                .iter()
                .map(|(k, (pps, bps))| {
                    (
                        *k,
                        serde_json::json!({ "packets_per_sec": pps, "bytes_per_sec": bps }),
                    )
                })
                .collect();
            println!("{}", serde_json::to_string(&v).context("encode")?);
        } else {
            println!("-- rates over {dt:.1} s");
            for (k, (pps, bps)) in &rates {
                println!("  {k:<60} {pps:>12.1} pkt/s {bps:>14.1} B/s");
            }
        }
        (prev, at) = (now, Instant::now());
        n += 1;
    }
    Ok(())
}
