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
        toml::from_str(text).map_err(|e| crate::toml_error::one_line(text, &e))
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
            let parsed =
                EgressTarget::from_str(rule).map_err(|why| invalid("allow_egress", rule, why))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> GuardSettings {
        GuardSettings {
            iface: Some("eth0".into()),
            backend_ip: Some("192.168.128.1".into()),
            app_ports: vec![443],
            ..GuardSettings::default()
        }
    }

    fn err(s: GuardSettings) -> String {
        s.validate().expect_err("must be rejected").to_string()
    }

    #[test]
    fn minimal_config_defaults() {
        let c = base().validate().expect("valid");
        assert_eq!(
            c.dhcp_server, c.backend_ip,
            "DHCP server defaults to the backend"
        );
        assert_eq!(c.backend_mac, None);
        assert!(!c.allow_ipv6);
        assert!(c.allow_egress.is_empty());
    }

    #[test]
    fn every_validation_error_names_field_and_value() {
        let cases: Vec<(GuardSettings, &str)> = vec![
            (
                GuardSettings {
                    iface: None,
                    ..base()
                },
                "missing iface",
            ),
            (
                GuardSettings {
                    iface: Some(String::new()),
                    ..base()
                },
                "invalid iface ''",
            ),
            (
                GuardSettings {
                    iface: Some("a/b".into()),
                    ..base()
                },
                "invalid iface 'a/b'",
            ),
            (
                GuardSettings {
                    iface: Some("x".repeat(16)),
                    ..base()
                },
                "invalid iface",
            ),
            (
                GuardSettings {
                    backend_ip: None,
                    ..base()
                },
                "missing backend_ip",
            ),
            (
                GuardSettings {
                    backend_ip: Some("10.0.0".into()),
                    ..base()
                },
                "invalid backend_ip '10.0.0'",
            ),
            (
                GuardSettings {
                    backend_ip: Some("0.0.0.0".into()),
                    ..base()
                },
                "invalid backend_ip '0.0.0.0'",
            ),
            (
                GuardSettings {
                    backend_ip: Some("224.0.0.1".into()),
                    ..base()
                },
                "invalid backend_ip '224.0.0.1'",
            ),
            (
                GuardSettings {
                    backend_ip: Some("255.255.255.255".into()),
                    ..base()
                },
                "not a unicast",
            ),
            (
                GuardSettings {
                    backend_mac: Some("00:00:00:00:00:00".into()),
                    ..base()
                },
                "invalid backend_mac '00:00:00:00:00:00': all-zero",
            ),
            (
                GuardSettings {
                    backend_mac: Some("ff:ff:ff:ff:ff:ff".into()),
                    ..base()
                },
                "invalid backend_mac 'ff:ff:ff:ff:ff:ff': multicast",
            ),
            (
                GuardSettings {
                    backend_mac: Some("02:00:00:00:00".into()),
                    ..base()
                },
                "invalid backend_mac '02:00:00:00:00'",
            ),
            (
                GuardSettings {
                    backend_mac: Some("02:00:00:00:00:0g".into()),
                    ..base()
                },
                "invalid backend_mac",
            ),
            (
                GuardSettings {
                    app_ports: vec![],
                    ..base()
                },
                "missing app_ports",
            ),
            (
                GuardSettings {
                    app_ports: vec![0],
                    ..base()
                },
                "invalid app_ports '0'",
            ),
            (
                GuardSettings {
                    app_ports: vec![65536],
                    ..base()
                },
                "invalid app_ports '65536'",
            ),
            (
                GuardSettings {
                    app_ports: vec![-5],
                    ..base()
                },
                "invalid app_ports '-5'",
            ),
            (
                GuardSettings {
                    app_ports: vec![443, 443],
                    ..base()
                },
                "invalid app_ports '443': given twice",
            ),
            (
                GuardSettings {
                    app_ports: (1..=9).collect(),
                    ..base()
                },
                "too many app_ports: 9 given, at most 8",
            ),
            (
                GuardSettings {
                    dhcp_server: Some("x".into()),
                    ..base()
                },
                "invalid dhcp_server 'x'",
            ),
            (
                GuardSettings {
                    allow_egress: vec!["10.0.0.1".into()],
                    ..base()
                },
                "invalid allow_egress '10.0.0.1': expected IP:PORT",
            ),
            (
                GuardSettings {
                    allow_egress: vec!["10.0.0.1:0".into()],
                    ..base()
                },
                "invalid allow_egress '10.0.0.1:0'",
            ),
            (
                GuardSettings {
                    allow_egress: vec!["10.0.0.256:25".into()],
                    ..base()
                },
                "invalid allow_egress '10.0.0.256:25'",
            ),
            (
                GuardSettings {
                    allow_egress: vec!["255.255.255.255:25".into()],
                    ..base()
                },
                "not a unicast",
            ),
            (
                GuardSettings {
                    allow_egress: vec!["10.0.0.1:25".into(), "10.0.0.1:25".into()],
                    ..base()
                },
                "given twice",
            ),
            (
                GuardSettings {
                    allow_egress: (1..=17).map(|i| format!("10.0.0.{i}:25")).collect(),
                    ..base()
                },
                "too many allow_egress: 17 given, at most 16",
            ),
        ];
        for (settings, expected) in cases {
            let msg = err(settings);
            assert!(
                msg.contains(expected),
                "{msg:?} does not contain {expected:?}"
            );
            assert!(!msg.contains('\n'), "{msg:?} is not one line");
        }
    }

    #[test]
    fn toml_parses_and_rejects_unknown_keys() {
        let s = GuardSettings::from_toml(
            "iface = \"eth1\"\nbackend_ip = \"10.0.0.1\"\nbackend_mac = \"02:00:00:00:00:01\"\napp_ports = [443, 8443]\ndhcp_server = \"10.0.0.2\"\nallow_egress = [\"10.0.0.9:25\"]\nallow_ipv6 = true\n",
        )
        .expect("parses");
        let c = s.validate().expect("valid");
        assert_eq!(c.app_ports, vec![443, 8443]);
        assert_eq!(c.backend_mac, Some([2, 0, 0, 0, 0, 1]));
        assert!(c.allow_ipv6);
        let e = GuardSettings::from_toml("iface = \"eth0\"\nbackend = \"x\"\n")
            .expect_err("unknown key");
        assert!(e.contains("line 2") && e.contains("backend"), "{e}");
        let e = GuardSettings::from_toml("app_ports = 443\n").expect_err("wrong type");
        assert!(e.starts_with("line 1"), "{e}");
        let e =
            GuardSettings::from_toml("iface = \"a\"\niface = \"b\"\n").expect_err("duplicate key");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn flags_override_file_and_lists_replace() {
        let file = GuardSettings {
            allow_egress: vec!["10.0.0.9:25".into()],
            app_ports: vec![443],
            ..base()
        };
        let flags = GuardSettings {
            backend_ip: Some("10.9.9.9".into()),
            app_ports: vec![8443],
            ..GuardSettings::default()
        };
        let merged = file.overridden_by(flags);
        assert_eq!(merged.backend_ip.as_deref(), Some("10.9.9.9"));
        assert_eq!(merged.app_ports, vec![8443]);
        assert_eq!(merged.allow_egress, vec!["10.0.0.9:25".to_owned()]);
        assert_eq!(merged.iface.as_deref(), Some("eth0"));
    }

    #[test]
    fn config_file_errors_are_one_line() {
        let dir = std::env::temp_dir().join(format!("appvm-config-test-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("tmp dir");
        let missing = GuardSettings::from_file(&dir.join("none.toml")).expect_err("missing");
        assert!(
            missing.to_string().starts_with("cannot read config"),
            "{missing}"
        );
        let binary = dir.join("binary.toml");
        fs::write(&binary, [0xff, 0xfe, 0x00]).expect("write");
        let e = GuardSettings::from_file(&binary).expect_err("not UTF-8");
        assert!(e.to_string().contains("not UTF-8"), "{e}");
        let huge = dir.join("huge.toml");
        fs::write(&huge, "#".repeat(70 * 1024)).expect("write");
        let e = GuardSettings::from_file(&huge).expect_err("too large");
        assert!(e.to_string().contains("larger than"), "{e}");
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn mac_round_trip() {
        let mac = parse_mac("02-AB-cd-00-00-01").expect("valid");
        assert_eq!(format_mac(mac), "02:ab:cd:00:00:01");
    }
}
