//! The dnsmasq hosts file (`dhcp-hostsfile`): the seed's `MAC, IP` format.

use super::Table;

/// The file's content: a header, then one `MAC, IP` line per VM, by IP.
pub fn render(table: &Table) -> String {
    let mut entries: Vec<_> = table.vms.iter().collect();
    entries.sort_by_key(|e| e.ip);
    let mut out = String::from("# MAC address, IP address\n");
    for e in entries {
        out.push_str(&format!("{}, {}\n", e.mac, e.ip));
    }
    out
}
