//! The control plane's speed, with the real service in the lab: how long a
//! table change takes to reach the kernel map while `appvm backend run`
//! follows the table, the service's memory, and `appvm stats`' wall time,
//! at a given table size.

use std::{
    fs,
    net::Ipv4Addr,
    process::Command,
    time::{Duration, Instant},
};

use appvm::{
    backend::{attach::pin_dir, config::BackendConfig, maps::BackendMaps},
    table::{AddRequest, store},
};

use crate::{Lab, enforced, lab::bulk_table, service::BackendService, sys::appvm_bin};

#[derive(Debug, Clone, Default)]
pub struct ControlResult {
    pub entries: usize,
    /// Table change (written by `appvm table`'s code path) to the entry
    /// being in or out of the kernel map, each change, ms, sorted.
    pub change_ms: Vec<f64>,
    /// Of that, the write itself (lock, validate, fsync'd table and hosts
    /// file), ms, sorted; the rest is the service's reaction.
    pub write_ms: Vec<f64>,
    /// The service's resident memory once it follows the table, KiB.
    pub service_rss_kib: u64,
    /// `appvm stats --json`, wall time, ms.
    pub stats_ms: f64,
}

fn rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Runs the control-plane measurements with an `entries`-VM table and
/// `changes` table changes (a VM removed and added back, alternating).
pub fn run(entries: usize, changes: usize) -> Result<ControlResult, String> {
    let lab = Lab::new()?;
    // A /15 pool: room for 65,536 VMs and one more.
    let config_path = lab.backend_config_for("192.168.0.0/14", "192.170.0.0/15", "");
    let table = lab.files().join("table.toml");
    fs::write(
        &table,
        bulk_table(entries, Ipv4Addr::new(192, 170, 0, 1), 0x42),
    )
    .map_err(|e| e.to_string())?;
    let svc = BackendService::start(&lab, &config_path)?;
    let service_rss_kib = rss_kib(svc.pid());
    let cfg = BackendConfig::load(&config_path).map_err(|e| e.to_string())?;
    let maps = BackendMaps::open(&pin_dir(lab.pin_root())).map_err(|e| e.to_string())?;
    let mut change_ms = Vec::with_capacity(changes);
    let mut write_ms = Vec::with_capacity(changes);
    // vm0 leaves the table and comes back: the table never exceeds its
    // size (65,536 is the map's capacity).
    let vm0 = Ipv4Addr::new(192, 170, 0, 1);
    for i in 0..changes {
        let started = Instant::now();
        let present = i % 2 == 1;
        if present {
            let req = AddRequest {
                name: "vm0".into(),
                mac: "02:42:00:00:00:01".into(),
                vm_config: "bench".into(),
                ip: Some(vm0.to_string()),
                ports: vec![443],
            };
            store::update(&cfg, |t| t.add(&req, &cfg)).map_err(|e| e.to_string())?;
        } else {
            store::update(&cfg, |t| t.remove("vm0")).map_err(|e| e.to_string())?;
        }
        write_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        enforced::wait_in_map(&maps, vm0, present, Duration::from_secs(20))?;
        change_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    change_ms.sort_by(f64::total_cmp);
    write_ms.sort_by(f64::total_cmp);
    let started = Instant::now();
    let out = Command::new(appvm_bin())
        .args(["stats", "--json"])
        .env("APPVM_CONFIG", &config_path)
        .env("APPVM_PIN_ROOT", lab.pin_root())
        .output()
        .map_err(|e| e.to_string())?;
    let stats_ms = started.elapsed().as_secs_f64() * 1000.0;
    if !out.status.success() {
        return Err(format!(
            "appvm stats: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    drop(svc);
    Ok(ControlResult {
        entries,
        change_ms,
        write_ms,
        service_rss_kib,
        stats_ms,
    })
}
