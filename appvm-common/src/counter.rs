//! Per-CPU verdict counters: one [`Counter`] per reason index.

/// Packets and bytes seen for one verdict reason on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

const _: () = assert!(size_of::<Counter>() == 16);

impl Counter {
    /// Sum of two counters (used to fold per-CPU values).
    #[must_use]
    pub const fn add(self, other: Self) -> Self {
        Self {
            packets: self.packets.wrapping_add(other.packets),
            bytes: self.bytes.wrapping_add(other.bytes),
        }
    }
}

// SAFETY: plain old data, `#[repr(C)]`, no padding, every bit pattern valid.
#[cfg(feature = "user")]
unsafe impl aya::Pod for Counter {}
