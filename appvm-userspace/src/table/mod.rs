//! The application-VM table (the seed's "Application Secure VM" table):
//! name, MAC, VM configuration, fixed IP and open ports of each VM.
//!
//! Stored as TOML, changed only under an exclusive lock and written
//! atomically; after every change the dnsmasq hosts file is rendered.

pub mod atomic;
pub mod entry;
pub mod hosts;
pub mod store;

use std::{collections::HashSet, net::Ipv4Addr};

use appvm_common::backend::MAX_VMS;

pub use entry::{TableEntry, TableError};
use serde::{Deserialize, Serialize};

use crate::backend::config::BackendConfig;

/// All application VMs.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Table {
    #[serde(default, rename = "vm")]
    pub vms: Vec<TableEntry>,
}

/// What `appvm table add` asks for.
#[derive(Clone, Debug, Default)]
pub struct AddRequest {
    pub name: String,
    pub mac: String,
    pub vm_config: String,
    pub ip: Option<String>,
    pub ports: Vec<i64>,
}

/// The smallest value that occurs more than once.
fn first_duplicate<T: Ord + Copy>(mut values: Vec<T>) -> Option<T> {
    values.sort_unstable();
    values.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
}

impl Table {
    /// Checks every entry and their uniqueness (a hand-edited file too).
    /// Sorts rather than hashes (n log n, cheap for 65,536 entries): it
    /// runs on every change.
    pub fn validate(&self, cfg: &BackendConfig) -> Result<(), TableError> {
        // Refused here, at the file: a sync would stop at the map's capacity.
        if self.vms.len() > MAX_VMS as usize {
            return Err(TableError::TooLarge {
                count: self.vms.len(),
                max: MAX_VMS,
            });
        }
        for e in &self.vms {
            e.validate(cfg)?;
        }
        // Duplicates by sorting: no hashing of 65,536 strings per change.
        let names: Vec<&str> = self.vms.iter().map(|e| e.name.as_str()).collect();
        let macs: Vec<&str> = self.vms.iter().map(|e| e.mac.as_str()).collect();
        let ips: Vec<Ipv4Addr> = self.vms.iter().map(|e| e.ip).collect();
        if let Some(name) = first_duplicate(names) {
            return Err(TableError::Duplicate {
                field: "name",
                value: name.to_owned(),
            });
        }
        if let Some(mac) = first_duplicate(macs) {
            return Err(TableError::Duplicate {
                field: "mac",
                value: mac.to_owned(),
            });
        }
        if let Some(ip) = first_duplicate(ips) {
            return Err(TableError::Duplicate {
                field: "ip",
                value: ip.to_string(),
            });
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&TableEntry> {
        self.vms.iter().find(|e| e.name == name)
    }

    /// The lowest allocatable pool address no entry holds.
    pub fn lowest_free_ip(&self, cfg: &BackendConfig) -> Option<Ipv4Addr> {
        let used: HashSet<Ipv4Addr> = self.vms.iter().map(|e| e.ip).collect();
        (u32::from(cfg.vm_pool.network())..=u32::from(cfg.vm_pool.broadcast()))
            .map(Ipv4Addr::from)
            .find(|ip| cfg.allocatable(*ip) && !used.contains(ip))
    }

    /// Adds an entry (allocating its IP unless given); returns it.
    pub fn add(&mut self, req: &AddRequest, cfg: &BackendConfig) -> Result<TableEntry, TableError> {
        let ip = match &req.ip {
            Some(text) => text.parse().map_err(|_e| TableError::Invalid {
                field: "ip",
                value: text.clone(),
                why: "not an IPv4 address",
            })?,
            None => self.lowest_free_ip(cfg).ok_or(TableError::PoolExhausted {
                pool: cfg.vm_pool.to_string(),
            })?,
        };
        let ports = if req.ports.is_empty() {
            cfg.default_ports.clone()
        } else {
            req.ports
                .iter()
                .map(|&p| {
                    u16::try_from(p)
                        .ok()
                        .filter(|&p| p != 0)
                        .ok_or(TableError::Invalid {
                            field: "port",
                            value: p.to_string(),
                            why: "port is not 1-65535",
                        })
                })
                .collect::<Result<_, _>>()?
        };
        let entry = TableEntry {
            name: req.name.clone(),
            mac: entry::normalize_mac(&req.mac)?,
            vm_config: req.vm_config.clone(),
            ip,
            ports,
        };
        self.vms.push(entry.clone());
        if let Err(e) = self.validate(cfg) {
            self.vms.pop();
            return Err(e);
        }
        Ok(entry)
    }

    /// Removes the entry named `name`.
    pub fn remove(&mut self, name: &str) -> Result<TableEntry, TableError> {
        let i = self
            .vms
            .iter()
            .position(|e| e.name == name)
            .ok_or_else(|| TableError::NotFound(name.to_owned()))?;
        Ok(self.vms.remove(i))
    }
}
