//! The VM guard's policy, as stored in its map.
//!
//! The policy map holds two slots and a separate one-entry map names the
//! active one. Userspace writes the inactive slot, then flips the index: a
//! program run sees either the old policy or the new one, never a mix, and
//! there is no moment without a policy.
//!
//! Addresses and ports are stored in network byte order, exactly as they
//! appear in packets, so the kernel compares them without byte swapping.

/// Most application ports one VM can open.
pub const MAX_APP_PORTS: usize = 8;
/// Most explicitly allowed egress destinations.
pub const MAX_EGRESS_RULES: usize = 16;
/// Slots in the policy map (double buffering).
pub const POLICY_SLOTS: u32 = 2;

/// Policy is filled in and may be enforced. A zeroed slot drops everything.
pub const FLAG_ENABLED: u32 = 1 << 0;
/// Traffic from the backend IP must also come from `backend_mac`.
pub const FLAG_BACKEND_MAC: u32 = 1 << 1;
/// IPv6 passes in both directions.
pub const FLAG_ALLOW_IPV6: u32 = 1 << 2;

/// IP protocol numbers an egress rule can name.
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// One allowed egress destination: IPv4 address and TCP/UDP port.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EgressRule {
    /// Destination IPv4, network byte order.
    pub ip_be: u32,
    /// Destination port, network byte order.
    pub port_be: u16,
    pub _pad: [u8; 2],
}

const _: () = assert!(size_of::<EgressRule>() == 8);

/// Everything the VM guard's programs decide by.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmPolicy {
    /// `FLAG_*` bits.
    pub flags: u32,
    /// Backend IPv4, network byte order.
    pub backend_ip_be: u32,
    /// DHCP server IPv4, network byte order.
    pub dhcp_server_be: u32,
    /// Backend MAC, checked when `FLAG_BACKEND_MAC` is set.
    pub backend_mac: [u8; 6],
    pub _pad0: [u8; 2],
    /// Application ports, network byte order; the first `app_port_count` are used.
    pub app_ports_be: [u16; MAX_APP_PORTS],
    pub app_port_count: u32,
    pub egress_count: u32,
    /// Allowed egress destinations; the first `egress_count` are used.
    pub egress: [EgressRule; MAX_EGRESS_RULES],
}

const _: () = assert!(size_of::<VmPolicy>() == 172);
const _: () = assert!(align_of::<VmPolicy>() == 4);

impl VmPolicy {
    /// A policy that is not enabled: the programs drop everything.
    pub const DISABLED: Self = Self {
        flags: 0,
        backend_ip_be: 0,
        dhcp_server_be: 0,
        backend_mac: [0; 6],
        _pad0: [0; 2],
        app_ports_be: [0; MAX_APP_PORTS],
        app_port_count: 0,
        egress_count: 0,
        egress: [EgressRule {
            ip_be: 0,
            port_be: 0,
            _pad: [0; 2],
        }; MAX_EGRESS_RULES],
    };

    #[must_use]
    pub const fn has(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }
}

impl Default for VmPolicy {
    fn default() -> Self {
        Self::DISABLED
    }
}

// SAFETY: plain old data, `#[repr(C)]`, padding explicit, every bit pattern valid.
#[cfg(feature = "user")]
unsafe impl aya::Pod for VmPolicy {}
// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for EgressRule {}

#[cfg(test)]
mod tests {
    use core::mem::offset_of;

    use super::*;

    #[test]
    fn layout_is_what_the_kernel_side_reads() {
        assert_eq!(offset_of!(VmPolicy, backend_ip_be), 4);
        assert_eq!(offset_of!(VmPolicy, backend_mac), 12);
        assert_eq!(offset_of!(VmPolicy, app_ports_be), 20);
        assert_eq!(offset_of!(VmPolicy, egress), 44);
        assert_eq!(offset_of!(EgressRule, port_be), 4);
        assert_eq!(VmPolicy::default(), VmPolicy::DISABLED);
        assert!(!VmPolicy::DISABLED.has(FLAG_ENABLED));
    }
}
