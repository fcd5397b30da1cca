//! Verdict reasons of the backend programs (public and secure interfaces).

use crate::reason::reasons;

reasons! {
    /// Why a backend program passed or dropped a packet.
    BackendReason {
    /// Public in: TCP to the public IP and public port (the proxy).
    PubPort = 0, "pub_in_pass_public_port", true;
    /// Public in: a reply to a flow the backend opened (tracked on egress).
    PubReply = 1, "pub_in_pass_reply", true;
    /// Public in: ARP about the public IP.
    PubArp = 2, "pub_in_pass_arp", true;
    /// Public in: ICMP "fragmentation needed" / ICMPv6 "packet too big".
    PubPmtu = 3, "pub_in_pass_icmp_pmtu", true;
    /// Public in: IPv6 neighbour/router discovery (hop limit 255).
    PubNd = 4, "pub_in_pass_nd", true;
    /// Public in: no policy in force (fail closed).
    PubNoPolicy = 5, "pub_in_drop_no_policy", false;
    /// Public in: headers cut short.
    PubTruncated = 6, "pub_in_drop_truncated", false;
    /// Public in: inconsistent IPv4/ARP header fields.
    PubMalformed = 7, "pub_in_drop_malformed", false;
    /// Public in: VLAN-tagged frame.
    PubVlan = 8, "pub_in_drop_vlan", false;
    /// Public in: IPv6 while no public IPv6 is configured.
    PubIpv6 = 9, "pub_in_drop_ipv6", false;
    /// Public in: any other ethertype.
    PubUnknownEthertype = 10, "pub_in_drop_unknown_ethertype", false;
    /// Public in: IP not addressed to the public IP.
    PubNotForUs = 11, "pub_in_drop_not_public_ip", false;
    /// Public in: TCP to another port, not a reply.
    PubPortClosed = 12, "pub_in_drop_port_closed", false;
    /// Public in: UDP or another protocol (IPv6 extension headers too), not a reply.
    PubProtoDenied = 13, "pub_in_drop_proto_denied", false;
    /// Public in: ICMP other than the PMTU/ND messages.
    PubIcmpDenied = 14, "pub_in_drop_icmp_denied", false;
    /// Public in: IP fragment.
    PubFragment = 15, "pub_in_drop_fragment", false;
    /// Public in: ARP about another address.
    PubArpDenied = 16, "pub_in_drop_arp_denied", false;
    /// Public out: TCP/UDP flow the backend opened, recorded for replies.
    PubOutTracked = 17, "pub_out_pass_tracked", true;
    /// Public out: everything else the backend sends (not restricted).
    PubOutOther = 18, "pub_out_pass_other", true;
    /// Secure in: IPv4 from an application VM's IP and pinned MAC.
    SecVm = 19, "sec_in_pass_vm", true;
    /// Secure in: ARP from an application VM's IP and pinned MAC.
    SecArpVm = 20, "sec_in_pass_arp_vm", true;
    /// Secure in: traffic that claims neither a pool IP nor the backend's.
    SecOther = 21, "sec_in_pass_other", true;
    /// Secure in: a pool IP from a MAC not pinned to it (or not in the table).
    SecSpoofedVmIp = 22, "sec_in_drop_spoofed_vm_ip", false;
    /// Secure in: the backend's own IP from outside.
    SecSpoofedBackendIp = 23, "sec_in_drop_spoofed_backend_ip", false;
    /// Secure in: ARP claiming a pool IP or the backend's IP falsely.
    SecArpSpoof = 24, "sec_in_drop_arp_spoof", false;
    /// Secure in: headers cut short.
    SecTruncated = 25, "sec_in_drop_truncated", false;
    /// Secure in: inconsistent IPv4/ARP header fields.
    SecMalformed = 26, "sec_in_drop_malformed", false;
    /// Secure in: VLAN-tagged frame.
    SecVlan = 27, "sec_in_drop_vlan", false;
    /// Secure in: no policy in force (fail closed).
    SecNoPolicy = 28, "sec_in_drop_no_policy", false;
    }
}

/// Which program a backend reason belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendProgram {
    PublicIngress,
    PublicEgress,
    SecureIngress,
}

impl BackendReason {
    #[must_use]
    pub const fn program(self) -> BackendProgram {
        let i = self as u32;
        if i < Self::PubOutTracked as u32 {
            BackendProgram::PublicIngress
        } else if i < Self::SecVm as u32 {
            BackendProgram::PublicEgress
        } else {
            BackendProgram::SecureIngress
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{BackendProgram, BackendReason};

    #[test]
    fn names_follow_program_and_verdict() {
        for r in BackendReason::ALL {
            let prefix = match r.program() {
                BackendProgram::PublicIngress => "pub_in_",
                BackendProgram::PublicEgress => "pub_out_",
                BackendProgram::SecureIngress => "sec_in_",
            };
            let rest = r.name().strip_prefix(prefix).expect("program prefix");
            assert!(
                rest.starts_with(if r.passes() { "pass_" } else { "drop_" }),
                "{}",
                r.name()
            );
            assert_eq!(BackendReason::from_index(r.index()), Some(*r));
        }
    }
}
