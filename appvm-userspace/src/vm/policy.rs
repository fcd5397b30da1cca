//! A validated config as the kernel's [`VmPolicy`], and back for `status`.

use std::net::Ipv4Addr;

use appvm_common::{
    EgressRule, VmPolicy,
    policy::{FLAG_ALLOW_IPV6, FLAG_BACKEND_MAC, FLAG_ENABLED, MAX_APP_PORTS, MAX_EGRESS_RULES},
};
use serde::Serialize;

use super::config::{EgressTarget, VmGuardConfig, format_mac};

/// Network byte order, as the kernel reads it from packets.
pub const fn ip_be(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

pub const fn port_be(port: u16) -> u16 {
    u16::from_ne_bytes(port.to_be_bytes())
}

const fn ip_from_be(raw: u32) -> Ipv4Addr {
    let [a, b, c, d] = raw.to_ne_bytes();
    Ipv4Addr::new(a, b, c, d)
}

const fn port_from_be(raw: u16) -> u16 {
    u16::from_be_bytes(raw.to_ne_bytes())
}

impl VmGuardConfig {
    /// The enabled policy the programs enforce. Validation already bounded
    /// the list lengths by the policy's capacity.
    pub fn to_policy(&self) -> VmPolicy {
        let mut p = VmPolicy::DISABLED;
        p.flags = FLAG_ENABLED;
        p.backend_ip_be = ip_be(self.backend_ip);
        p.dhcp_server_be = ip_be(self.dhcp_server);
        if let Some(mac) = self.backend_mac {
            p.flags |= FLAG_BACKEND_MAC;
            p.backend_mac = mac;
        }
        if self.allow_ipv6 {
            p.flags |= FLAG_ALLOW_IPV6;
        }
        for (slot, &port) in p.app_ports_be.iter_mut().zip(&self.app_ports) {
            *slot = port_be(port);
        }
        p.app_port_count = self.app_ports.len().min(MAX_APP_PORTS) as u32;
        for (slot, target) in p.egress.iter_mut().zip(&self.allow_egress) {
            *slot = EgressRule {
                ip_be: ip_be(target.ip),
                port_be: port_be(target.port),
                _pad: [0; 2],
            };
        }
        p.egress_count = self.allow_egress.len().min(MAX_EGRESS_RULES) as u32;
        p
    }
}

/// The policy in force, as `appvm vm status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyView {
    pub enabled: bool,
    pub backend_ip: Ipv4Addr,
    pub backend_mac: Option<String>,
    pub app_ports: Vec<u16>,
    pub dhcp_server: Ipv4Addr,
    pub allow_egress: Vec<String>,
    pub allow_ipv6: bool,
}

impl From<&VmPolicy> for PolicyView {
    fn from(p: &VmPolicy) -> Self {
        let ports = (p.app_port_count as usize).min(MAX_APP_PORTS);
        let rules = (p.egress_count as usize).min(MAX_EGRESS_RULES);
        Self {
            enabled: p.has(FLAG_ENABLED),
            backend_ip: ip_from_be(p.backend_ip_be),
            backend_mac: p.has(FLAG_BACKEND_MAC).then(|| format_mac(p.backend_mac)),
            app_ports: p.app_ports_be[..ports]
                .iter()
                .map(|&raw| port_from_be(raw))
                .collect(),
            dhcp_server: ip_from_be(p.dhcp_server_be),
            allow_egress: p.egress[..rules]
                .iter()
                .map(|r| {
                    EgressTarget {
                        ip: ip_from_be(r.ip_be),
                        port: port_from_be(r.port_be),
                    }
                    .to_string()
                })
                .collect(),
            allow_ipv6: p.has(FLAG_ALLOW_IPV6),
        }
    }
}

#[cfg(test)]
mod tests {
    use appvm_common::policy::{FLAG_ALLOW_IPV6, FLAG_BACKEND_MAC, FLAG_ENABLED};

    use super::*;
    use crate::vm::GuardSettings;

    #[test]
    fn policy_is_network_order_and_round_trips() {
        let config = GuardSettings {
            iface: Some("eth0".into()),
            backend_ip: Some("192.168.128.1".into()),
            backend_mac: Some("02:00:00:00:00:01".into()),
            app_ports: vec![443, 8443],
            allow_egress: vec!["192.168.128.9:25".into()],
            allow_ipv6: Some(true),
            ..GuardSettings::default()
        }
        .validate()
        .expect("valid");
        let p = config.to_policy();
        assert_eq!(p.flags, FLAG_ENABLED | FLAG_BACKEND_MAC | FLAG_ALLOW_IPV6);
        // As the bytes sit in a packet: 192.168.128.1 and port 443 (0x01bb).
        assert_eq!(p.backend_ip_be.to_ne_bytes(), [192, 168, 128, 1]);
        assert_eq!(p.app_ports_be[0].to_ne_bytes(), [0x01, 0xbb]);
        assert_eq!(p.app_port_count, 2);
        assert_eq!(p.egress_count, 1);
        let view = PolicyView::from(&p);
        assert_eq!(view.app_ports, vec![443, 8443]);
        assert_eq!(view.allow_egress, vec!["192.168.128.9:25".to_owned()]);
        assert_eq!(view.backend_mac.as_deref(), Some("02:00:00:00:00:01"));
        assert_eq!(view.dhcp_server, config.backend_ip);
    }

    #[test]
    fn disabled_policy_shows_as_disabled() {
        assert!(!PolicyView::from(&VmPolicy::DISABLED).enabled);
    }
}
