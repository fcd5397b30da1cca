//! The backend enforcer's map values: policy, the application-VM table as the
//! kernel sees it, per-VM counters, tracked outbound flows.

use crate::policy::POLICY_SLOTS;

/// Policy is filled in and may be enforced. A zeroed slot drops everything
/// on the public interface.
pub const BFLAG_ENABLED: u32 = 1 << 0;
/// `public_ipv6` is set: IPv6 gets the same policy as IPv4.
pub const BFLAG_PUBLIC_IPV6: u32 = 1 << 1;

/// Slots in the backend policy map (double buffering, as for the VM guard).
pub const BACKEND_POLICY_SLOTS: u32 = POLICY_SLOTS;
/// Capacity of the VM table map and the per-VM counter map.
pub const MAX_VMS: u32 = 65_536;
/// Capacity of the outbound flow map (LRU).
pub const MAX_FLOWS: u32 = 65_536;

/// Everything the backend programs decide by.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendPolicy {
    /// `BFLAG_*` bits.
    pub flags: u32,
    /// Public IPv4 and port (network byte order).
    pub public_ip_be: u32,
    pub public_port_be: u16,
    pub _pad0: [u8; 2],
    /// The backend's own IP on the secure network.
    pub secure_ip_be: u32,
    /// Application-VM pool: `ip & pool_mask == pool_net`.
    pub pool_net_be: u32,
    pub pool_mask_be: u32,
    /// How long a tracked outbound flow accepts replies without traffic.
    pub flow_timeout_ns: u64,
    /// Public IPv6, when `BFLAG_PUBLIC_IPV6` is set.
    pub public_ipv6: [u8; 16],
}

const _: () = assert!(size_of::<BackendPolicy>() == 48);

impl BackendPolicy {
    /// Not enabled: the public program drops everything.
    pub const DISABLED: Self = Self {
        flags: 0,
        public_ip_be: 0,
        public_port_be: 0,
        _pad0: [0; 2],
        secure_ip_be: 0,
        pool_net_be: 0,
        pool_mask_be: 0,
        flow_timeout_ns: 0,
        public_ipv6: [0; 16],
    };

    #[must_use]
    pub const fn has(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }

    /// Whether `ip_be` lies in the application-VM pool.
    #[must_use]
    pub const fn in_pool(&self, ip_be: u32) -> bool {
        ip_be & self.pool_mask_be == self.pool_net_be
    }
}

impl Default for BackendPolicy {
    fn default() -> Self {
        Self::DISABLED
    }
}

/// One application VM as the secure-interface program sees it; keyed by its
/// IPv4 (network byte order).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmEntry {
    /// The MAC the VM's IP is pinned to.
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

const _: () = assert!(size_of::<VmEntry>() == 8);

/// One application VM's slot on the secure interface, per CPU; keyed like
/// [`VmEntry`]. It carries a copy of the pinned MAC (the same on every
/// CPU) beside this CPU's counters, so the program decides and counts with
/// one lookup; [`VmEntry`]'s map is the table as userspace reads it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmTraffic {
    /// The MAC the VM's IP is pinned to.
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
    /// Frames from the VM (right IP, right MAC), passed.
    pub packets: u64,
    pub bytes: u64,
    /// Frames claiming the VM's IP from another MAC, dropped.
    pub spoofed_packets: u64,
    pub spoofed_bytes: u64,
}

const _: () = assert!(size_of::<VmTraffic>() == 40);

impl VmTraffic {
    /// A new slot: the pinned MAC, no traffic yet.
    #[must_use]
    pub const fn pinned(mac: [u8; 6]) -> Self {
        Self {
            mac,
            _pad: [0; 2],
            packets: 0,
            bytes: 0,
            spoofed_packets: 0,
            spoofed_bytes: 0,
        }
    }

    /// The counters of two CPUs' slots added (the MAC is `o`'s: every
    /// CPU's copy is the same).
    #[must_use]
    pub const fn add(self, o: Self) -> Self {
        Self {
            mac: o.mac,
            _pad: [0; 2],
            packets: self.packets.wrapping_add(o.packets),
            bytes: self.bytes.wrapping_add(o.bytes),
            spoofed_packets: self.spoofed_packets.wrapping_add(o.spoofed_packets),
            spoofed_bytes: self.spoofed_bytes.wrapping_add(o.spoofed_bytes),
        }
    }
}

/// An outbound flow the backend opened on its public interface, as seen
/// from outside: replies arrive with these fields.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Remote address: IPv4 in the first 4 bytes, or IPv6.
    pub remote: [u8; 16],
    /// Local address (the backend's), same encoding.
    pub local: [u8; 16],
    /// Ports, network byte order.
    pub remote_port_be: u16,
    pub local_port_be: u16,
    /// IP protocol (TCP, UDP).
    pub proto: u8,
    /// 4 or 6.
    pub family: u8,
    pub _pad: [u8; 2],
}

const _: () = assert!(size_of::<FlowKey>() == 40);

// SAFETY: plain old data, `#[repr(C)]`, padding explicit, every bit pattern valid.
#[cfg(feature = "user")]
unsafe impl aya::Pod for BackendPolicy {}
// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for VmEntry {}
// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for VmTraffic {}
// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for FlowKey {}
