//! The backend's configuration file (`/etc/appvm/backend.toml`): the secure
//! network and its application-VM pool, the public side, and file paths.

use std::{
    fs,
    net::{Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// Default location of the backend configuration.
pub const DEFAULT_CONFIG: &str = "/etc/appvm/backend.toml";
const MAX_CONFIG_BYTES: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BackendConfigError {
    #[error("cannot read config {path}: {why}")]
    Read { path: String, why: String },
    #[error("invalid config {path}: {why}")]
    Parse { path: String, why: String },
    #[error("invalid {field} '{value}': {why}")]
    Invalid {
        field: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("missing {0} in the backend config (needed by `appvm backend run`)")]
    Missing(&'static str),
}

fn invalid(field: &'static str, value: impl ToString, why: &'static str) -> BackendConfigError {
    BackendConfigError::Invalid {
        field,
        value: value.to_string(),
        why,
    }
}

fn default_public_port() -> u16 {
    4443
}
fn default_table() -> PathBuf {
    PathBuf::from("/etc/appvm/table.toml")
}
fn default_hosts_file() -> PathBuf {
    PathBuf::from("/etc/ticrypt/secure-hosts")
}
const fn default_flow_timeout() -> u64 {
    300
}
fn default_ports() -> Vec<u16> {
    vec![443]
}
fn default_vm_domain() -> String {
    "app.internal".into()
}
fn default_trust_dir() -> PathBuf {
    PathBuf::from("/etc/appvm/trust")
}
fn default_public_paths() -> Vec<String> {
    vec!["/surveys/".into(), "/redcap_v*/Resources/".into()]
}

/// The external pathway: the public name Nginx serves and the VM behind it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExternalConfig {
    /// The external DNS name (its certificate is `cert`/`key`).
    pub name: String,
    /// The table entry of the application VM behind it.
    pub vm: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// URL path prefixes the public internet may reach (`*` matches within
    /// one path segment). The secure network reaches everything.
    #[serde(default = "default_public_paths")]
    pub public_paths: Vec<String>,
}

/// Where Nginx's files are, and how to reload it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NginxConfig {
    /// The file appvm renders (included by the main config).
    pub site: PathBuf,
    /// The main config, for `nginx -t -c` and reloads.
    pub main: PathBuf,
    /// The running master's pid file.
    pub pid_file: PathBuf,
    /// Its error log: a reload with a broken config logs `[emerg]` there.
    pub error_log: Option<PathBuf>,
}

/// Where dnsmasq's files are.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DnsmasqConfig {
    /// The configuration appvm renders.
    pub conf: PathBuf,
    /// Extra hosts file (`addn-hosts`): re-read on SIGHUP, unlike
    /// `host-record=`. Holds the external name -> backend IP and VM names.
    pub addn_hosts: PathBuf,
    /// DHCP range outside the pool, `first,last`; default: from the
    /// address after the pool to the end of the secure network.
    pub dhcp_range: Option<String>,
    pub lease_file: Option<PathBuf>,
}

/// The backend configuration, as written in TOML.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// The secure network's range.
    pub secure_network: Ipv4Net,
    /// The reserved application-VM pool at the start of that range.
    pub vm_pool: Ipv4Net,
    /// The backend's own IP on the secure network.
    pub backend_ip: Ipv4Addr,
    /// Interfaces for the backend programs (`appvm backend run`).
    pub secure_iface: Option<String>,
    pub public_iface: Option<String>,
    /// Public address(es) and port the proxy listens on.
    pub public_ip: Option<Ipv4Addr>,
    pub public_ipv6: Option<Ipv6Addr>,
    #[serde(default = "default_public_port")]
    pub public_port: u16,
    /// The application-VM table.
    #[serde(default = "default_table")]
    pub table: PathBuf,
    /// The dnsmasq hosts file rendered from the table.
    #[serde(default = "default_hosts_file")]
    pub hosts_file: PathBuf,
    /// dnsmasq's pid file: SIGHUP after the hosts file changes.
    pub dnsmasq_pid_file: Option<PathBuf>,
    /// Seconds a tracked outbound flow accepts replies without traffic.
    #[serde(default = "default_flow_timeout")]
    pub flow_timeout_secs: u64,
    /// Ports a table entry opens when `appvm table add` names none.
    #[serde(default = "default_ports")]
    pub default_ports: Vec<u16>,
    /// VMs' DNS names are `<name>.<vm_domain>` (their certificates name it).
    #[serde(default = "default_vm_domain")]
    pub vm_domain: String,
    /// Registered VM certificates, `<name>.crt`.
    #[serde(default = "default_trust_dir")]
    pub trust_dir: PathBuf,
    /// Drop events of the backend programs as JSON lines (`-`: stdout).
    pub audit_log: Option<PathBuf>,
    pub external: Option<ExternalConfig>,
    pub nginx: Option<NginxConfig>,
    pub dnsmasq: Option<DnsmasqConfig>,
}

impl BackendConfig {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, BackendConfigError> {
        let shown = path.display().to_string();
        let read_err = |why: String| BackendConfigError::Read {
            path: shown.clone(),
            why,
        };
        let meta = fs::metadata(path).map_err(|e| read_err(e.to_string()))?;
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(read_err(format!("larger than {MAX_CONFIG_BYTES} bytes")));
        }
        let text = String::from_utf8(fs::read(path).map_err(|e| read_err(e.to_string()))?)
            .map_err(|_utf8| read_err("not UTF-8".into()))?;
        let cfg: Self = toml::from_str(&text).map_err(|e| BackendConfigError::Parse {
            path: shown.clone(),
            why: crate::toml_error::one_line(&text, &e),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Consistency of the addresses; every error one line.
    pub fn validate(&self) -> Result<(), BackendConfigError> {
        let net = self.secure_network;
        if net.prefix_len() > 30 {
            return Err(invalid("secure_network", net, "smaller than a /30"));
        }
        if self.vm_pool.trunc() != self.vm_pool {
            return Err(invalid(
                "vm_pool",
                self.vm_pool,
                "host bits set; write the network address",
            ));
        }
        if !net.contains(&self.vm_pool) {
            return Err(invalid(
                "vm_pool",
                self.vm_pool,
                "not inside secure_network",
            ));
        }
        if !net.contains(&self.backend_ip)
            || self.backend_ip == net.network()
            || self.backend_ip == net.broadcast()
        {
            return Err(invalid(
                "backend_ip",
                self.backend_ip,
                "not a host address of secure_network",
            ));
        }
        if self.vm_pool.contains(&self.backend_ip) {
            return Err(invalid("backend_ip", self.backend_ip, "inside vm_pool"));
        }
        if self.public_port == 0 {
            return Err(invalid("public_port", 0, "port is not 1-65535"));
        }
        if let Some(ip) = self.public_ip
            && (ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast())
        {
            return Err(invalid("public_ip", ip, "not a unicast IPv4 address"));
        }
        if self.default_ports.contains(&0) {
            return Err(invalid("default_ports", 0, "port is not 1-65535"));
        }
        let dns_ok = |n: &str| {
            !n.is_empty() && n.len() <= 253 && n.split('.').all(crate::table::entry::is_dns_label)
        };
        if !dns_ok(&self.vm_domain) {
            return Err(invalid("vm_domain", &self.vm_domain, "not a DNS name"));
        }
        if let Some(ext) = &self.external {
            if !dns_ok(&ext.name) {
                return Err(invalid("external.name", &ext.name, "not a DNS name"));
            }
            if let Some(p) = ext
                .public_paths
                .iter()
                .find(|p| !crate::render::nginx::valid_public_path(p))
            {
                return Err(invalid(
                    "external.public_paths",
                    p,
                    "not a path prefix like /surveys/ (letters, digits, . _ - / and *)",
                ));
            }
        }
        Ok(())
    }

    /// The DNS name of the application VM `name`.
    pub fn vm_dns_name(&self, name: &str) -> String {
        format!("{name}.{}", self.vm_domain)
    }

    /// Whether `ip` may be given to an application VM: in the pool, and not
    /// the secure network's network/broadcast address or the backend's IP.
    pub fn allocatable(&self, ip: Ipv4Addr) -> bool {
        self.vm_pool.contains(&ip)
            && ip != self.secure_network.network()
            && ip != self.secure_network.broadcast()
            && ip != self.backend_ip
    }
}
