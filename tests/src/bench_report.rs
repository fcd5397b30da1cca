//! `cargo xtask bench`: every figure in one aligned table on stdout and,
//! with `--json FILE`, in one JSON document whose field names are stable
//! (documented in the README), each set against the project's targets.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::{
    control_bench::ControlResult,
    micro::Case,
    net_bench::{NetResult, RATIOS},
    summary::{median, min, percentile},
};

/// What a run measured.
#[derive(Debug)]
pub struct Report {
    pub date: String,
    pub machine: String,
    pub repeat: u32,
    pub guard: Vec<Case>,
    pub backend: Vec<Case>,
    pub net: Vec<NetResult>,
    /// (entries, full sync µs, one change µs) through the batch syscalls.
    pub sync: Vec<(usize, u128, u128)>,
    pub control: Vec<ControlResult>,
}

fn case_json(c: &Case) -> Value {
    json!({
        "name": c.name,
        "min_ns": min(&c.ns),
        "median_ns": median(&c.ns),
        "net_median_ns": median(&c.net),
    })
}

impl Report {
    pub fn to_json(&self) -> Value {
        json!({
            "date": self.date,
            "machine": self.machine,
            "micro": {
                "repeat": self.repeat,
                "guard": self.guard.iter().map(case_json).collect::<Vec<_>>(),
                "backend": self.backend.iter().map(case_json).collect::<Vec<_>>(),
            },
            "net": self.net.iter().map(|r| json!({
                "entries": r.entries,
                "rounds": r.rounds,
                "packets_per_run": r.packets_per_run,
                "median_ns_per_packet": r.per_round.iter()
                    .map(|(c, _)| ((*c).to_owned(), json!(r.median(c))))
                    .collect::<serde_json::Map<_, _>>(),
                "ratios": RATIOS.iter().map(|(_, key, a, b)| {
                    let v = r.ratios(a, b);
                    ((*key).to_owned(), json!({
                        "median": median(&v),
                        "min": v.first(),
                        "max": v.last(),
                    }))
                }).collect::<serde_json::Map<_, _>>(),
                "checks": r.checks.iter().map(|(what, expected, actual)| json!({
                    "what": what, "expected": expected, "actual": actual,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "sync": self.sync.iter().map(|(n, full, one)| json!({
                "entries": n,
                "full_sync_ms": *full as f64 / 1000.0,
                "one_change_ms": *one as f64 / 1000.0,
            })).collect::<Vec<_>>(),
            "control": self.control.iter().map(|c| json!({
                "entries": c.entries,
                "changes": c.change_ms.len(),
                "change_to_map_ms_p50": percentile(&c.change_ms, 0.5),
                "change_to_map_ms_p99": percentile(&c.change_ms, 0.99),
                "change_to_map_ms_max": percentile(&c.change_ms, 1.0),
                "write_ms_p50": percentile(&c.write_ms, 0.5),
                "write_ms_p99": percentile(&c.write_ms, 0.99),
                "service_rss_kib": c.service_rss_kib,
                "stats_wall_ms": c.stats_ms,
            })).collect::<Vec<_>>(),
        })
    }

    /// The aligned table.
    pub fn format(&self) -> String {
        let mut out = format!("appvm bench, {} on {}\n", self.date, self.machine);
        let _ = writeln!(
            out,
            "\n[micro] BPF_PROG_TEST_RUN, repeat {}, kernel-reported ns/packet (net = program - XDP_PASS floor of the same run)",
            self.repeat
        );
        let _ = writeln!(
            out,
            "{:<56} {:>7} {:>7} {:>7}",
            "program / path", "min", "median", "net"
        );
        for c in self.guard.iter().chain(&self.backend) {
            let _ = writeln!(
                out,
                "{:<56} {:>7.1} {:>7.1} {:>7.1}",
                c.name,
                min(&c.ns),
                median(&c.ns),
                median(&c.net)
            );
        }
        for r in &self.net {
            let _ = writeln!(
                out,
                "\n[net] {} VMs in the table, {} rounds of {} generated frames, ns/packet (whole path: generator, veth, receive)",
                r.entries, r.rounds, r.packets_per_run
            );
            for (c, _) in &r.per_round {
                let _ = writeln!(out, "  {c:<22} {:>8.1}", r.median(c));
            }
            for (label, _, a, b) in RATIOS {
                let v = r.ratios(a, b);
                let _ = writeln!(
                    out,
                    "  {label:<22} median {:>5.2}  min {:>5.2}  max {:>5.2}",
                    median(&v),
                    v.first().copied().unwrap_or(f64::NAN),
                    v.last().copied().unwrap_or(f64::NAN)
                );
            }
            let bad: Vec<_> = r.checks.iter().filter(|(_, e, a)| e != a).collect();
            let _ = writeln!(
                out,
                "  checks: {} of {} as expected{}",
                r.checks.len() - bad.len(),
                r.checks.len(),
                if bad.is_empty() {
                    String::new()
                } else {
                    format!(" (wrong: {bad:?})")
                }
            );
        }
        let _ = writeln!(
            out,
            "\n[sync] BPF_MAP_UPDATE_BATCH into freshly pinned maps"
        );
        for (n, full, one) in &self.sync {
            let _ = writeln!(
                out,
                "  {n:>6} VMs: full sync {:>7.2} ms, one change {:>6.3} ms",
                *full as f64 / 1000.0,
                *one as f64 / 1000.0
            );
        }
        for c in &self.control {
            let _ = writeln!(
                out,
                "\n[control] appvm backend run following a {}-VM table, {} changes",
                c.entries,
                c.change_ms.len()
            );
            let _ = writeln!(
                out,
                "  table change -> kernel map: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                percentile(&c.change_ms, 0.5),
                percentile(&c.change_ms, 0.99),
                percentile(&c.change_ms, 1.0)
            );
            let _ = writeln!(
                out,
                "    of which the write (lock, validate, fsync'd table and hosts file): p50 {:.2} ms, p99 {:.2} ms",
                percentile(&c.write_ms, 0.5),
                percentile(&c.write_ms, 0.99)
            );
            let _ = writeln!(
                out,
                "  service RSS {:.1} MiB; appvm stats --json {:.1} ms",
                c.service_rss_kib as f64 / 1024.0,
                c.stats_ms
            );
        }
        out
    }

    /// Whether every checking-round count was exact.
    pub fn checks_ok(&self) -> bool {
        self.net
            .iter()
            .all(|r| r.checks.iter().all(|(_, e, a)| e == a))
    }
}
