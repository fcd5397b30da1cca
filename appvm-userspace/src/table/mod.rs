//! The application-VM table (the seed's "Application Secure VM" table):
//! name, MAC, VM configuration, fixed IP and open ports of each VM.
//!
//! Stored as TOML, changed only under an exclusive lock and written
//! atomically; after every change the dnsmasq hosts file is rendered.

pub mod atomic;
pub mod entry;
pub mod hosts;
pub mod store;

use std::net::Ipv4Addr;

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
    pub fn validate(&self, cfg: &BackendConfig) -> Result<(), TableError> {
        for (i, e) in self.vms.iter().enumerate() {
            e.validate(cfg)?;
            for other in &self.vms[..i] {
                if other.name == e.name {
                    return Err(TableError::Duplicate {
                        field: "name",
                        value: e.name.clone(),
                    });
                }
                if other.mac == e.mac {
                    return Err(TableError::Duplicate {
                        field: "mac",
                        value: e.mac.clone(),
                    });
                }
                if other.ip == e.ip {
                    return Err(TableError::Duplicate {
                        field: "ip",
                        value: e.ip.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&TableEntry> {
        self.vms.iter().find(|e| e.name == name)
    }

    /// The lowest allocatable pool address no entry holds.
    pub fn lowest_free_ip(&self, cfg: &BackendConfig) -> Option<Ipv4Addr> {
        cfg.vm_pool
            .hosts()
            .chain([cfg.vm_pool.network(), cfg.vm_pool.broadcast()])
            .filter(|ip| cfg.allocatable(*ip) && !self.vms.iter().any(|e| e.ip == *ip))
            .min()
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
