//! The benchmark's frame generator (`cargo xtask bench`, measurement only).

/// Map and program names of the measurement programs.
pub const PROG_GEN: &str = "xdp_bench_gen";
pub const PROG_DROP_FLOOR: &str = "xdp_drop_floor";
pub const MAP_GEN_CONFIG: &str = "GEN_CONFIG";

/// Offsets the generator rewrites in its template: Ethernet + IPv4 without
/// options + TCP.
pub const GEN_IP_CSUM: usize = 24;
pub const GEN_IP_SRC: usize = 26;
pub const GEN_TCP_CSUM: usize = 50;
/// Shortest template the generator accepts.
pub const GEN_MIN_FRAME: usize = 54;

/// What the generator does to each frame: source address
/// `src_base + n % src_span` for the n-th frame on this CPU, then a
/// redirect to `ifindex`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GenConfig {
    pub ifindex: u32,
    /// Host byte order.
    pub src_base: u32,
    /// Addresses to cycle through (at least 1).
    pub src_span: u32,
    pub _pad: u32,
}

const _: () = assert!(size_of::<GenConfig>() == 16);

/// `csum` (a ones'-complement Internet checksum, as read big-endian) after
/// a 32-bit field changed from `old` to `new` (RFC 1624, eqn. 3).
#[must_use]
pub const fn csum_replace4(csum: u16, old: u32, new: u32) -> u16 {
    let mut acc = (!csum) as u32;
    acc += (!(old >> 16) as u16) as u32 + (!(old as u16)) as u32;
    acc += (new >> 16) + (new & 0xffff);
    // Five 16-bit terms: two folds always suffice.
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    !(acc as u16)
}

// SAFETY: plain old data, `#[repr(C)]`, padding explicit.
#[cfg(feature = "user")]
unsafe impl aya::Pod for GenConfig {}

#[cfg(test)]
mod tests {
    use super::csum_replace4;

    /// The full checksum of 16-bit words.
    fn full(words: &[u16]) -> u16 {
        let mut acc: u32 = words.iter().map(|&w| u32::from(w)).sum();
        while acc >> 16 != 0 {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        !(acc as u16)
    }

    #[test]
    fn incremental_update_equals_recomputing() {
        // A header's words with a source address in words 6 and 7.
        let mut words = [
            0x4500, 0x0028, 0x0000, 0x4000, 0x4006, 0, 0xc0a8, 0x0001, 0xc0a8, 0x8001,
        ];
        let before = full(&words);
        for new in [0xc0a8_ffff_u32, 0x0a00_0001, 0, 0xffff_ffff, 0xc0a8_0100] {
            let old = (u32::from(words[6]) << 16) | u32::from(words[7]);
            let updated = csum_replace4(full(&words), old, new);
            words[6] = (new >> 16) as u16;
            words[7] = new as u16;
            assert_eq!(updated, full(&words), "new {new:#x}");
        }
        assert_ne!(before, full(&words));
    }
}
