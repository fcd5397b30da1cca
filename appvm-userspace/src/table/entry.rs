//! One table entry and its validation.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::{backend::config::BackendConfig, vm::config::format_mac, vm::config::parse_mac};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TableError {
    #[error("invalid {field} '{value}': {why}")]
    Invalid {
        field: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("{field} '{value}' is already in the table")]
    Duplicate { field: &'static str, value: String },
    #[error("the table has {count} VMs; the kernel map holds at most {max}")]
    TooLarge { count: usize, max: u32 },
    #[error("the VM pool {pool} is exhausted: no free address")]
    PoolExhausted { pool: String },
    #[error("no VM named '{0}' in the table")]
    NotFound(String),
    #[error("{0}")]
    Io(String),
    #[error("invalid table {path}: {why}")]
    Parse { path: String, why: String },
}

/// One application VM.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TableEntry {
    /// DNS label: used for DNS and the VM's certificate.
    pub name: String,
    /// The VM's MAC, lower case `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// The platform's VM configuration id.
    pub vm_config: String,
    /// Fixed IP from the pool, pinned to `mac`.
    pub ip: Ipv4Addr,
    /// Ports opened for external access (the application ports).
    pub ports: Vec<u16>,
}

/// A valid unicast MAC in canonical form.
pub fn normalize_mac(mac: &str) -> Result<String, TableError> {
    parse_mac(mac)
        .map(format_mac)
        .map_err(|why| TableError::Invalid {
            field: "mac",
            value: mac.to_owned(),
            why,
        })
}

/// RFC 1123 label: 1-63 of `a-z0-9-`, not starting or ending with `-`.
pub fn is_dns_label(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

impl TableEntry {
    pub fn validate(&self, cfg: &BackendConfig) -> Result<(), TableError> {
        let invalid = |field, value: String, why| TableError::Invalid { field, value, why };
        if !is_dns_label(&self.name) {
            return Err(invalid(
                "name",
                self.name.clone(),
                "not a DNS label (1-63 of a-z, 0-9, '-', not starting or ending with '-')",
            ));
        }
        if normalize_mac(&self.mac)? != self.mac {
            return Err(invalid(
                "mac",
                self.mac.clone(),
                "not in canonical form aa:bb:cc:dd:ee:ff",
            ));
        }
        if self.vm_config.is_empty()
            || self.vm_config.len() > 128
            || self.vm_config.chars().any(char::is_control)
        {
            return Err(invalid(
                "vm_config",
                self.vm_config.clone(),
                "empty, too long or with control characters",
            ));
        }
        if !cfg.vm_pool.contains(&self.ip) {
            return Err(invalid("ip", self.ip.to_string(), "outside the VM pool"));
        }
        if !cfg.allocatable(self.ip) {
            return Err(invalid(
                "ip",
                self.ip.to_string(),
                "reserved (network, broadcast or the backend's address)",
            ));
        }
        if self.ports.is_empty() {
            return Err(invalid(
                "port",
                String::new(),
                "at least one port is needed",
            ));
        }
        if let Some(p) = self.ports.iter().find(|&&p| p == 0) {
            return Err(invalid("port", p.to_string(), "port is not 1-65535"));
        }
        Ok(())
    }
}
