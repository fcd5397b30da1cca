//! Verdict reasons of the VM guard: every packet the guard sees is counted
//! under exactly one of these, and the index is the key of the counter map.

macro_rules! reasons {
    ($(#[$edoc:meta])* $enum:ident { $( $(#[$doc:meta])* $variant:ident = $index:literal, $name:literal, $pass:literal; )+ }) => {
        $(#[$edoc])*
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $enum {
            $( $(#[$doc])* $variant = $index, )+
        }

        impl $enum {
            /// Every reason, in index order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// Stable name, used in `appvm vm status` and its JSON.
            #[must_use]
            pub const fn name(self) -> &'static str {
                match self { $(Self::$variant => $name,)+ }
            }

            /// Whether this reason lets the packet through.
            #[must_use]
            pub const fn passes(self) -> bool {
                match self { $(Self::$variant => $pass,)+ }
            }

            /// The reason stored at a counter index, if any.
            #[must_use]
            pub const fn from_index(index: u32) -> Option<Self> {
                match index { $($index => Some(Self::$variant),)+ _ => None }
            }

            /// Number of reasons: the size of the counter map.
            pub const COUNT: u32 = Self::ALL.len() as u32;

            /// Counter map index.
            #[must_use]
            pub const fn index(self) -> u32 {
                self as u32
            }
        }

        const _: () = {
            // Indices are dense, so the counter map has no holes.
            let mut i = 0;
            while i < $enum::ALL.len() {
                assert!($enum::ALL[i] as usize == i);
                i += 1;
            }
        };
    };
}

pub(crate) use reasons;

reasons! {
    /// Why the VM guard passed or dropped a packet.
    VmReason {
    /// Ingress: TCP/UDP to an application port from the backend.
    InAppFromBackend = 0, "in_pass_app_from_backend", true;
    /// Ingress: other IPv4 from the backend (proxy connections, replies).
    InBackendOther = 1, "in_pass_backend", true;
    /// Ingress: ARP sent by the backend.
    InArpBackend = 2, "in_pass_arp_backend", true;
    /// Ingress: DHCP reply (UDP 67 -> 68) from the configured DHCP server.
    InDhcpReply = 3, "in_pass_dhcp_reply", true;
    /// Ingress: reply from an explicitly allowed egress destination.
    InAllowedReply = 4, "in_pass_allowed_reply", true;
    /// Ingress: IPv6, explicitly enabled.
    InIpv6Allowed = 5, "in_pass_ipv6", true;
    /// Ingress: no policy in force (fail closed).
    InNoPolicy = 6, "in_drop_no_policy", false;
    /// Ingress: frame shorter than an Ethernet header.
    InTruncatedEth = 7, "in_drop_truncated_eth", false;
    /// Ingress: IPv4 header cut short.
    InTruncatedIpv4 = 8, "in_drop_truncated_ipv4", false;
    /// Ingress: TCP or UDP header cut short.
    InTruncatedL4 = 9, "in_drop_truncated_l4", false;
    /// Ingress: ARP payload cut short.
    InTruncatedArp = 10, "in_drop_truncated_arp", false;
    /// Ingress: IPv4 version/IHL/length fields inconsistent.
    InMalformedIpv4 = 11, "in_drop_malformed_ipv4", false;
    /// Ingress: ARP that is not Ethernet/IPv4.
    InMalformedArp = 12, "in_drop_malformed_arp", false;
    /// Ingress: 802.1Q / 802.1ad tagged frame.
    InVlan = 13, "in_drop_vlan", false;
    /// Ingress: IPv6 while IPv6 is not enabled.
    InIpv6 = 14, "in_drop_ipv6", false;
    /// Ingress: any other ethertype (including 802.3 length fields).
    InUnknownEthertype = 15, "in_drop_unknown_ethertype", false;
    /// Ingress: IPv4 from a source that is neither the backend nor allowed.
    InForeignSource = 16, "in_drop_foreign_source", false;
    /// Ingress: backend IP from a MAC other than the pinned backend MAC.
    InBackendMacMismatch = 17, "in_drop_backend_mac_mismatch", false;
    /// Ingress: IPv4 fragment not from the backend.
    InFragment = 18, "in_drop_fragment", false;
    /// Ingress: ARP not sent by the backend.
    InArpForeign = 19, "in_drop_arp_foreign", false;
    /// Ingress: DHCP reply from a host that is not the DHCP server.
    InDhcpRogue = 20, "in_drop_dhcp_rogue", false;
    /// Ingress (tcx, after XDP): the VLAN tag was moved out of the frame
    /// (offload or a bridge's untagging) where XDP cannot see it.
    InVlanOffloaded = 21, "in_drop_vlan_offloaded", false;
    /// Egress: IPv4 to the backend.
    OutBackend = 22, "out_pass_backend", true;
    /// Egress: ARP to the backend or an allowed destination, probes and announcements.
    OutArp = 23, "out_pass_arp", true;
    /// Egress: DHCP request (UDP 68 -> 67).
    OutDhcpRequest = 24, "out_pass_dhcp_request", true;
    /// Egress: an explicitly allowed destination IP:port.
    OutAllowed = 25, "out_pass_allowed", true;
    /// Egress: IPv6, explicitly enabled.
    OutIpv6Allowed = 26, "out_pass_ipv6", true;
    /// Egress: no policy in force (fail closed).
    OutNoPolicy = 27, "out_drop_no_policy", false;
    /// Egress: headers could not be read, even after pulling the skb.
    OutUnparseable = 28, "out_drop_unparseable", false;
    /// Egress: IPv4 version/IHL/length fields inconsistent.
    OutMalformedIpv4 = 29, "out_drop_malformed_ipv4", false;
    /// Egress: 802.1Q / 802.1ad tagged frame.
    OutVlan = 30, "out_drop_vlan", false;
    /// Egress: IPv6 while IPv6 is not enabled.
    OutIpv6 = 31, "out_drop_ipv6", false;
    /// Egress: any other ethertype.
    OutUnknownEthertype = 32, "out_drop_unknown_ethertype", false;
    /// Egress: IPv4 to a destination that is not allowed.
    OutDenied = 33, "out_drop_denied", false;
    /// Egress: ARP for a host that is not the backend or an allowed destination.
    OutArpDenied = 34, "out_drop_arp_denied", false;
    /// Egress: non-first fragment to a destination other than the backend.
    OutFragment = 35, "out_drop_fragment", false;
    }
}

impl VmReason {
    /// Whether the reason belongs to the ingress (XDP) program.
    #[must_use]
    pub const fn is_ingress(self) -> bool {
        (self as u32) < Self::OutBackend as u32
    }
}

#[cfg(test)]
mod tests {
    use super::VmReason;

    #[test]
    fn names_are_unique_and_prefixed_by_direction_and_verdict() {
        for (i, a) in VmReason::ALL.iter().enumerate() {
            assert_eq!(VmReason::from_index(a.index()), Some(*a));
            for b in &VmReason::ALL[i + 1..] {
                assert_ne!(a.name(), b.name());
            }
            let dir = if a.is_ingress() { "in_" } else { "out_" };
            let verdict = if a.passes() { "pass_" } else { "drop_" };
            let rest = a.name().strip_prefix(dir).expect("direction prefix");
            assert!(rest.starts_with(verdict), "{}", a.name());
        }
        assert_eq!(VmReason::from_index(VmReason::COUNT), None);
    }
}
