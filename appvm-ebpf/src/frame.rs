//! The one bounds-checked view of packet bytes used by every program.

use core::mem::size_of;

/// Packet bytes between `start` and `end` (kernel packet pointers).
///
/// A tc program sees only the skb's linear part between the pointers; the
/// packet on the wire can be longer (paged data, GSO). `wire_len` is that
/// full length, which the IPv4 length checks compare against.
#[derive(Clone, Copy)]
pub(crate) struct Frame {
    start: usize,
    end: usize,
    wire_len: usize,
}

impl Frame {
    /// An XDP frame: all of it is between the pointers.
    #[inline(always)]
    pub(crate) const fn new(start: usize, end: usize) -> Self {
        Self {
            start,
            end,
            wire_len: end - start,
        }
    }

    /// An skb whose full length is `wire_len`.
    #[inline(always)]
    pub(crate) const fn skb(start: usize, end: usize, wire_len: usize) -> Self {
        Self {
            start,
            end,
            wire_len,
        }
    }

    /// Readable bytes (the linear part).
    #[inline(always)]
    pub(crate) const fn len(&self) -> usize {
        self.end - self.start
    }

    /// The packet's full length.
    #[inline(always)]
    pub(crate) const fn wire_len(&self) -> usize {
        self.wire_len
    }

    /// Whether `len` bytes starting at `offset` are inside the frame.
    #[inline(always)]
    pub(crate) const fn has(&self, offset: usize, len: usize) -> bool {
        self.start + offset + len <= self.end
    }

    /// Reads a `T` at `offset`, or `None` if it would cross the end.
    #[inline(always)]
    pub(crate) fn read<T: Copy>(&self, offset: usize) -> Option<T> {
        let at = self.start + offset;
        if at + size_of::<T>() > self.end {
            return None;
        }
        // SAFETY: `at..at + size_of::<T>()` was just checked to lie inside the
        // packet, and `read_unaligned` has no alignment requirement.
        Some(unsafe { (at as *const T).read_unaligned() })
    }

    /// Writes `value` at `offset`, or `None` if it would cross the end
    /// (only the benchmark's generator writes).
    #[inline(always)]
    pub(crate) fn write<T: Copy>(&self, offset: usize, value: T) -> Option<()> {
        let at = self.start + offset;
        if at + size_of::<T>() > self.end {
            return None;
        }
        // SAFETY: as in `read`: the bytes were just checked to lie inside
        // the packet, which an XDP program may write.
        unsafe { (at as *mut T).write_unaligned(value) };
        Some(())
    }

    /// Reads a big-endian `u16` at `offset`.
    #[inline(always)]
    pub(crate) fn be16(&self, offset: usize) -> Option<u16> {
        self.read::<[u8; 2]>(offset).map(u16::from_be_bytes)
    }
}
