//! `appvm vm attach` settings: from a TOML file and flags, validated into a
//! [`VmGuardConfig`]. Every error is one line naming the field and the value.

use std::{collections::BTreeSet, fs, net::Ipv4Addr, path::Path, str::FromStr};

use appvm_common::policy::{MAX_APP_PORTS, MAX_EGRESS_RULES};
use serde::{Deserialize, Serialize};

/// Largest config file read; anything bigger is not a guard config.
const MAX_CONFIG_BYTES: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("missing {0}: give it as a flag or in the config file")]
    Missing(&'static str),
    #[error("invalid {field} '{value}': {why}")]
    Invalid {
        field: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("too many {field}: {count} given, at most {max}")]
    TooMany {
        field: &'static str,
        count: usize,
        max: usize,
    },
    #[error("cannot read config {path}: {why}")]
    Read { path: String, why: String },
    #[error("invalid config {path}: {why}")]
    Parse { path: String, why: String },
}

fn invalid(field: &'static str, value: impl ToString, why: &'static str) -> ConfigError {
    ConfigError::Invalid {
        field,
        value: value.to_string(),
        why,
    }
}

/// Unvalidated settings: the TOML file's shape, and what flags fill in.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GuardSettings {
    pub iface: Option<String>,
    pub backend_ip: Option<String>,
    pub backend_mac: Option<String>,
    #[serde(default)]
    pub app_ports: Vec<i64>,
    pub dhcp_server: Option<String>,
    #[serde(default)]
    pub allow_egress: Vec<String>,
    pub allow_ipv6: Option<bool>,
}

impl GuardSettings {
    /// Reads a TOML config file (unknown keys are errors).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let read_err = |why: String| ConfigError::Read {
            path: shown.clone(),
            why,
        };
        let meta = fs::metadata(path).map_err(|e| read_err(e.to_string()))?;
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(read_err(format!(
                "{} bytes, larger than {MAX_CONFIG_BYTES}",
                meta.len()
            )));
        }
        let bytes = fs::read(path).map_err(|e| read_err(e.to_string()))?;
        let text = String::from_utf8(bytes).map_err(|_utf8| read_err("not UTF-8".into()))?;
        Self::from_toml(&text).map_err(|why| ConfigError::Parse { path: shown, why })
    }

    /// Parses TOML text; the error is one line with the line number.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
            let msg = e.message().replace('\n', " ");
            match line {
                Some(line) => format!("line {line}: {msg}"),
                None => msg,
            }
        })
    }

    /// `self` with every field that `flags` sets replaced (flags win).
    #[must_use]
    pub fn overridden_by(self, flags: Self) -> Self {
        Self {
            iface: flags.iface.or(self.iface),
            backend_ip: flags.backend_ip.or(self.backend_ip),
            backend_mac: flags.backend_mac.or(self.backend_mac),
            app_ports: if flags.app_ports.is_empty() {
                self.app_ports
            } else {
                flags.app_ports
            },
            dhcp_server: flags.dhcp_server.or(self.dhcp_server),
            allow_egress: if flags.allow_egress.is_empty() {
                self.allow_egress
            } else {
                flags.allow_egress
            },
            allow_ipv6: flags.allow_ipv6.or(self.allow_ipv6),
        }
    }

    /// Validates into a config. The interface name is checked for shape
    /// here; whether it exists is checked at attach time.
    pub fn validate(&self) -> Result<VmGuardConfig, ConfigError> {
        let iface = self.iface.clone().ok_or(ConfigError::Missing("iface"))?;
        if iface.is_empty() || iface.len() >= 16 || iface.contains(['/', ' ', '\0']) {
            return Err(invalid("iface", &iface, "not an interface name"));
        }
        let backend_ip = unicast_ip(
            "backend_ip",
            self.backend_ip
                .as_deref()
                .ok_or(ConfigError::Missing("backend_ip"))?,
        )?;
        let backend_mac = self
            .backend_mac
            .as_deref()
            .map(|m| parse_mac(m).map_err(|why| invalid("backend_mac", m, why)))
            .transpose()?;
        if self.app_ports.is_empty() {
            return Err(ConfigError::Missing("app_ports"));
        }
        if self.app_ports.len() > MAX_APP_PORTS {
            return Err(ConfigError::TooMany {
                field: "app_ports",
                count: self.app_ports.len(),
                max: MAX_APP_PORTS,
            });
        }
        let mut app_ports = BTreeSet::new();
        for &p in &self.app_ports {
            let port = port("app_ports", p)?;
            if !app_ports.insert(port) {
                return Err(invalid("app_ports", p, "given twice"));
            }
        }
        let dhcp_server = self
            .dhcp_server
            .as_deref()
            .map(|s| unicast_ip("dhcp_server", s))
            .transpose()?
            .unwrap_or(backend_ip);
        if self.allow_egress.len() > MAX_EGRESS_RULES {
            return Err(ConfigError::TooMany {
                field: "allow_egress",
                count: self.allow_egress.len(),
                max: MAX_EGRESS_RULES,
            });
        }
        let mut allow_egress = BTreeSet::new();
        for rule in &self.allow_egress {
            let parsed = EgressTarget::from_str(rule)
                .map_err(|why| invalid("allow_egress", rule, why))?;
            if !allow_egress.insert(parsed) {
                return Err(invalid("allow_egress", rule, "given twice"));
            }
        }
        Ok(VmGuardConfig {
            iface,
            backend_ip,
            backend_mac,
            app_ports: app_ports.into_iter().collect(),
            dhcp_server,
            allow_egress: allow_egress.into_iter().collect(),
            allow_ipv6: self.allow_ipv6.unwrap_or(false),
        })
    }
}

/// A validated guard configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VmGuardConfig {
    pub iface: String,
    pub backend_ip: Ipv4Addr,
    #[serde(serialize_with = "ser_mac")]
    pub backend_mac: Option<[u8; 6]>,
    pub app_ports: Vec<u16>,
    pub dhcp_server: Ipv4Addr,
    pub allow_egress: Vec<EgressTarget>,
    pub allow_ipv6: bool,
}

/// An allowed egress destination, `IP:PORT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct EgressTarget {
    pub ip: Ipv4Addr,
    pub port: u16,
}

impl FromStr for EgressTarget {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ip, port) = s.rsplit_once(':').ok_or("expected IP:PORT")?;
        let ip = Ipv4Addr::from_str(ip).map_err(|_e| "not an IPv4 address")?;
        if !is_unicast(ip) {
            return Err("not a unicast IPv4 address");
        }
        let port: u16 = port.parse().map_err(|_e| "port is not 1-65535")?;
        if port == 0 {
            return Err("port is not 1-65535");
        }
        Ok(Self { ip, port })
    }
}

impl std::fmt::Display for EgressTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.ip, self.port)
    }
}

impl Serialize for EgressTarget {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

fn ser_mac<S: serde::Serializer>(mac: &Option<[u8; 6]>, s: S) -> Result<S::Ok, S::Error> {
    match mac {
        Some(mac) => s.collect_str(&format_mac(*mac)),
        None => s.serialize_none(),
    }
}

const fn is_unicast(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast())
}

fn unicast_ip(field: &'static str, s: &str) -> Result<Ipv4Addr, ConfigError> {
    let ip = Ipv4Addr::from_str(s).map_err(|_e| invalid(field, s, "not an IPv4 address"))?;
    if is_unicast(ip) {
        Ok(ip)
    } else {
        Err(invalid(field, s, "not a unicast IPv4 address"))
    }
}

fn port(field: &'static str, p: i64) -> Result<u16, ConfigError> {
    u16::try_from(p)
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| invalid(field, p, "port is not 1-65535"))
}

/// Parses `aa:bb:cc:dd:ee:ff` (or with `-`); must be unicast and non-zero.
pub fn parse_mac(s: &str) -> Result<[u8; 6], &'static str> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return Err("expected six hex octets like 02:00:00:00:00:01");
    }
    let mut mac = [0_u8; 6];
    for (octet, part) in mac.iter_mut().zip(&parts) {
        if part.len() != 2 {
            return Err("expected six hex octets like 02:00:00:00:00:01");
        }
        *octet = u8::from_str_radix(part, 16)
            .map_err(|_e| "expected six hex octets like 02:00:00:00:00:01")?;
    }
    if mac == [0; 6] {
        return Err("all-zero MAC");
    }
    if mac[0] & 1 != 0 {
        return Err("multicast/broadcast MAC, not a host's");
    }
    Ok(mac)
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
