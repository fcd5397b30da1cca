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

impl Table {
    /// Checks every entry and their uniqueness (a hand-edited file too).
    /// Linear in the table's size: it runs on every change.
    pub fn validate(&self, cfg: &BackendConfig) -> Result<(), TableError> {
        // Refused here, at the file: a sync would stop at the map's capacity.
        if self.vms.len() > MAX_VMS as usize {
            return Err(TableError::TooLarge {
                count: self.vms.len(),
                max: MAX_VMS,
            });
        }
        let (mut names, mut macs, mut ips) = (HashSet::new(), HashSet::new(), HashSet::new());
        for e in &self.vms {
            e.validate(cfg)?;
            let duplicate = if !names.insert(e.name.as_str()) {
                Some(("name", e.name.clone()))
            } else if !macs.insert(e.mac.as_str()) {
                Some(("mac", e.mac.clone()))
            } else if !ips.insert(e.ip) {
                Some(("ip", e.ip.to_string()))
            } else {
                None
            };
            if let Some((field, value)) = duplicate {
                return Err(TableError::Duplicate { field, value });
            }
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
