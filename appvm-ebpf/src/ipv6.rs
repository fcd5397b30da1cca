//! IPv6 fixed header. Extension headers are not walked: the backend
//! programs treat any next header they do not know as denied.

use crate::{frame::Frame, headers::ETH_HLEN};

pub(crate) const IPV6_HLEN: usize = 40;
pub(crate) const IPPROTO_ICMPV6: u8 = 58;

pub(crate) struct Ipv6 {
    pub(crate) next_header: u8,
    pub(crate) hop_limit: u8,
    pub(crate) src: [u8; 16],
    pub(crate) dst: [u8; 16],
}

pub(crate) enum Ipv6Error {
    Truncated,
    Malformed,
}

impl Ipv6 {
    #[inline(always)]
    pub(crate) fn parse(frame: &Frame) -> Result<Self, Ipv6Error> {
        if !frame.has(ETH_HLEN, IPV6_HLEN) {
            return Err(Ipv6Error::Truncated);
        }
        let first: u8 = frame.read(ETH_HLEN).ok_or(Ipv6Error::Truncated)?;
        let payload = usize::from(frame.be16(ETH_HLEN + 4).ok_or(Ipv6Error::Truncated)?);
        if first >> 4 != 6 || ETH_HLEN + IPV6_HLEN + payload > frame.wire_len() {
            return Err(Ipv6Error::Malformed);
        }
        Ok(Self {
            next_header: frame.read(ETH_HLEN + 6).ok_or(Ipv6Error::Truncated)?,
            hop_limit: frame.read(ETH_HLEN + 7).ok_or(Ipv6Error::Truncated)?,
            src: frame.read(ETH_HLEN + 8).ok_or(Ipv6Error::Truncated)?,
            dst: frame.read(ETH_HLEN + 24).ok_or(Ipv6Error::Truncated)?,
        })
    }
}
