//! What the backend enforces compared with what the table says.

use std::{
    collections::BTreeSet,
    net::Ipv4Addr,
    path::Path,
    time::{Duration, Instant},
};

use appvm::backend::{attach::pin_dir, maps::BackendMaps};

/// (IP, MAC) pairs in the pinned VM map under `pin_root`.
pub fn map_pairs(pin_root: &Path) -> Result<BTreeSet<(Ipv4Addr, String)>, String> {
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

/// Waits until the map holds exactly the table's pairs; the difference
/// when it does not within `timeout`.
pub fn wait_map_equals_table(
    pin_root: &Path,
    table: &Path,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let (map, want) = (map_pairs(pin_root)?, table_pairs(table)?);
        if map == want {
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
