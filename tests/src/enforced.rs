//! What the backend enforces compared with what the table says.

use std::{
    collections::BTreeSet,
    net::Ipv4Addr,
    path::Path,
    time::{Duration, Instant},
};

use appvm::{
    backend::{attach::pin_dir, maps::BackendMaps},
    vm::policy::ip_be,
};

/// (IP, MAC) pairs the secure program enforces (its per-VM slots, which
/// must agree on every CPU) under `pin_root`.
pub fn map_pairs(pin_root: &Path) -> Result<BTreeSet<(Ipv4Addr, String)>, String> {
    let maps = BackendMaps::open(&pin_dir(pin_root)).map_err(|e| e.to_string())?;
    let mut pairs = BTreeSet::new();
    for ip in maps.traffic.keys() {
        let ip = ip.map_err(|e| e.to_string())?;
        let per_cpu = maps.traffic.get(&ip, 0).map_err(|e| e.to_string())?;
        let macs: BTreeSet<[u8; 6]> = per_cpu.iter().map(|t| t.mac).collect();
        let [mac] = macs.into_iter().collect::<Vec<_>>()[..] else {
            return Err(format!(
                "VM slot {:?}: CPUs disagree on the MAC",
                Ipv4Addr::from(u32::from_be(ip))
            ));
        };
        pairs.insert((
            Ipv4Addr::from(u32::from_be(ip)),
            appvm::vm::config::format_mac(mac),
        ));
    }
    Ok(pairs)
}

/// (IP, MAC) pairs in the VM map userspace reads.
pub fn entry_pairs(pin_root: &Path) -> Result<BTreeSet<(Ipv4Addr, String)>, String> {
    let maps = BackendMaps::open(&pin_dir(pin_root)).map_err(|e| e.to_string())?;
    maps.vms
        .iter()
        .map(|kv| {
            kv.map(|(ip, entry)| {
                (
                    Ipv4Addr::from(u32::from_be(ip)),
                    appvm::vm::config::format_mac(entry.mac),
                )
            })
            .map_err(|e| e.to_string())
        })
        .collect()
}

/// (IP, MAC) pairs in the table file.
pub fn table_pairs(table: &Path) -> Result<BTreeSet<(Ipv4Addr, String)>, String> {
    let t = appvm::table::store::load(table).map_err(|e| e.to_string())?;
    Ok(t.vms.into_iter().map(|e| (e.ip, e.mac)).collect())
}

/// Waits until both maps hold exactly the table's pairs; the difference
/// when they do not within `timeout`.
pub fn wait_map_equals_table(
    pin_root: &Path,
    table: &Path,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let (map, want) = (map_pairs(pin_root)?, table_pairs(table)?);
        if map == want && entry_pairs(pin_root)? == want {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "after {timeout:?} the map differs from the table: only in the map {:?}, only in the table {:?}",
                map.difference(&want).take(5).collect::<Vec<_>>(),
                want.difference(&map).take(5).collect::<Vec<_>>()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls until `ip` is in both maps, the enforced slot and the entry (or
/// in neither); how long that took.
pub fn wait_in_map(
    maps: &BackendMaps,
    ip: Ipv4Addr,
    present: bool,
    timeout: Duration,
) -> Result<Duration, String> {
    let started = Instant::now();
    let key = ip_be(ip);
    while started.elapsed() < timeout {
        if maps.traffic.get(&key, 0).is_ok() == present && maps.vms.get(&key, 0).is_ok() == present
        {
            return Ok(started.elapsed());
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    Err(format!(
        "{ip} not {} the kernel maps after {timeout:?}",
        if present { "in" } else { "out of" }
    ))
}
