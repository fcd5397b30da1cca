//! IPv4 header parsing by its header length (options are never assumed away).

use crate::{frame::Frame, headers::*};

/// The fields of an IPv4 header the programs decide by.
#[derive(Clone, Copy)]
pub(crate) struct Ipv4 {
    /// Header length in bytes (IHL * 4, 20..=60).
    pub(crate) hdr_len: usize,
    /// Total length from the header, in bytes.
    pub(crate) total_len: usize,
    pub(crate) proto: u8,
    /// Source and destination, network byte order.
    pub(crate) src_be: u32,
    pub(crate) dst_be: u32,
    /// Fragment offset in 8-byte units, and the more-fragments bit.
    pub(crate) frag_offset: u16,
    pub(crate) more_fragments: bool,
}

/// Why an IPv4 header could not be used.
pub(crate) enum Ipv4Error {
    /// The frame ends inside the header.
    Truncated,
    /// Version, IHL, lengths or flags are inconsistent.
    Malformed,
}

/// TCP/UDP ports, network byte order.
#[derive(Clone, Copy)]
pub(crate) struct Ports {
    pub(crate) src_be: u16,
    pub(crate) dst_be: u16,
}

impl Ipv4 {
    /// Parses the IPv4 header that follows the Ethernet header.
    #[inline(always)]
    pub(crate) fn parse(frame: &Frame) -> Result<Self, Ipv4Error> {
        if !frame.has(ETH_HLEN, IPV4_MIN_HLEN) {
            return Err(Ipv4Error::Truncated);
        }
        let vihl: u8 = frame.read(ETH_HLEN).ok_or(Ipv4Error::Truncated)?;
        let hdr_len = usize::from(vihl & 0x0f) * 4;
        if vihl >> 4 != 4 || hdr_len < IPV4_MIN_HLEN {
            return Err(Ipv4Error::Malformed);
        }
        if !frame.has(ETH_HLEN, hdr_len) {
            return Err(Ipv4Error::Truncated);
        }
        let total_len = usize::from(
            frame
                .be16(ETH_HLEN + IPV4_TOT_LEN)
                .ok_or(Ipv4Error::Truncated)?,
        );
        // Ethernet may pad a frame beyond the datagram, never cut it short.
        if total_len < hdr_len || ETH_HLEN + total_len > frame.wire_len() {
            return Err(Ipv4Error::Malformed);
        }
        let frag = frame
            .be16(ETH_HLEN + IPV4_FRAG)
            .ok_or(Ipv4Error::Truncated)?;
        if frag & IPV4_FRAG_RESERVED != 0 {
            return Err(Ipv4Error::Malformed);
        }
        Ok(Self {
            hdr_len,
            total_len,
            proto: frame
                .read(ETH_HLEN + IPV4_PROTO)
                .ok_or(Ipv4Error::Truncated)?,
            src_be: frame
                .read(ETH_HLEN + IPV4_SRC)
                .ok_or(Ipv4Error::Truncated)?,
            dst_be: frame
                .read(ETH_HLEN + IPV4_DST)
                .ok_or(Ipv4Error::Truncated)?,
            frag_offset: frag & IPV4_FRAG_OFFSET,
            more_fragments: frag & IPV4_FRAG_MF != 0,
        })
    }

    /// A fragment of a larger datagram (first or later).
    #[inline(always)]
    pub(crate) const fn is_fragment(&self) -> bool {
        self.more_fragments || self.frag_offset != 0
    }

    /// A fragment without the transport header.
    #[inline(always)]
    pub(crate) const fn is_later_fragment(&self) -> bool {
        self.frag_offset != 0
    }

    /// The TCP/UDP ports: `Ok(None)` for other protocols, `Err(())` when the
    /// transport header is cut short by the frame or by the datagram.
    #[inline(always)]
    pub(crate) fn ports(&self, frame: &Frame) -> Result<Option<Ports>, ()> {
        let l4_len = match self.proto {
            IPPROTO_TCP => TCP_MIN_HLEN,
            IPPROTO_UDP => UDP_HLEN,
            _ => return Ok(None),
        };
        if self.hdr_len + l4_len > self.total_len {
            return Err(());
        }
        let l4 = ETH_HLEN + self.hdr_len;
        if !frame.has(l4, l4_len) {
            return Err(());
        }
        let src_be = frame.read::<u16>(l4).ok_or(())?;
        let dst_be = frame.read::<u16>(l4 + 2).ok_or(())?;
        Ok(Some(Ports { src_be, dst_be }))
    }
}

/// Host-order port to the network-order value the policy stores.
#[inline(always)]
pub(crate) const fn port_be(port: u16) -> u16 {
    u16::from_ne_bytes(port.to_be_bytes())
}
