//! Drop events: what the programs send to user space through a ring
//! buffer, rate-limited in the kernel by a per-CPU token bucket.

/// Which program dropped the packet (how to read `DropEvent::reason`).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventProgram {
    /// `reason` is a `VmReason`.
    VmIngress = 0,
    VmIngressVlan = 1,
    VmEgress = 2,
    /// `reason` is a `BackendReason`.
    BackendPublic = 3,
    BackendSecure = 4,
}

impl EventProgram {
    #[must_use]
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::VmIngress),
            1 => Some(Self::VmIngressVlan),
            2 => Some(Self::VmEgress),
            3 => Some(Self::BackendPublic),
            4 => Some(Self::BackendSecure),
            _ => None,
        }
    }

    /// `ingress` or `egress`.
    #[must_use]
    pub const fn direction(self) -> &'static str {
        match self {
            Self::VmEgress => "egress",
            _ => "ingress",
        }
    }

    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::VmIngress => "vm_ingress",
            Self::VmIngressVlan => "vm_ingress_vlan",
            Self::VmEgress => "vm_egress",
            Self::BackendPublic => "backend_public",
            Self::BackendSecure => "backend_secure",
        }
    }
}

/// One dropped packet. IPv4 fields are zero for other ethertypes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropEvent {
    /// `bpf_ktime_get_ns` (monotonic, since boot).
    pub ts_ns: u64,
    pub ifindex: u32,
    /// Reason index; the enum depends on `program`.
    pub reason: u32,
    /// `EventProgram`.
    pub program: u8,
    /// IP protocol (0 when not IPv4).
    pub proto: u8,
    pub ethertype_be: u16,
    pub src_port_be: u16,
    pub dst_port_be: u16,
    pub src_ip_be: u32,
    pub dst_ip_be: u32,
    pub src_mac: [u8; 6],
    pub _pad: [u8; 2],
}

const _: () = assert!(size_of::<DropEvent>() == 40);

/// Rate limit of drop events, per CPU. Zero fields take the defaults.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventConfig {
    /// Events per second (token refill rate).
    pub rate_per_sec: u32,
    /// Bucket size: the most events in a burst.
    pub burst: u32,
}

const _: () = assert!(size_of::<EventConfig>() == 8);

pub const DEFAULT_EVENT_RATE: u32 = 100;
pub const DEFAULT_EVENT_BURST: u32 = 50;

/// Per-CPU token bucket state.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenBucket {
    pub tokens: u64,
    pub last_ns: u64,
}

const _: () = assert!(size_of::<TokenBucket>() == 16);

/// Indices of the per-CPU event statistics.
pub const EVENT_STAT_SENT: u32 = 0;
/// Over the rate limit.
pub const EVENT_STAT_SUPPRESSED: u32 = 1;
/// The ring buffer was full.
pub const EVENT_STAT_LOST: u32 = 2;
pub const EVENT_STAT_COUNT: u32 = 3;

/// Size of the event ring buffer (bytes, a power of two of pages).
pub const EVENT_RING_BYTES: u32 = 256 * 1024;

// SAFETY: plain old data, `#[repr(C)]`, padding explicit.
#[cfg(feature = "user")]
unsafe impl aya::Pod for DropEvent {}
// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for EventConfig {}
// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for TokenBucket {}
