//! Header offsets and constants (Ethernet, IPv4, ARP, TCP/UDP).

pub(crate) const ETH_HLEN: usize = 14;
pub(crate) const ETH_SRC: usize = 6;
pub(crate) const ETH_TYPE: usize = 12;

pub(crate) const ETH_P_IP: u16 = 0x0800;
pub(crate) const ETH_P_ARP: u16 = 0x0806;
pub(crate) const ETH_P_IPV6: u16 = 0x86dd;
pub(crate) const ETH_P_8021Q: u16 = 0x8100;
pub(crate) const ETH_P_8021AD: u16 = 0x88a8;
/// Pre-standard QinQ tag still seen in the wild.
pub(crate) const ETH_P_QINQ_9100: u16 = 0x9100;

/// IPv4 header fields, relative to the start of the IPv4 header.
pub(crate) const IPV4_MIN_HLEN: usize = 20;
pub(crate) const IPV4_TOT_LEN: usize = 2;
pub(crate) const IPV4_FRAG: usize = 6;
pub(crate) const IPV4_PROTO: usize = 9;
pub(crate) const IPV4_SRC: usize = 12;
pub(crate) const IPV4_DST: usize = 16;
/// Reserved ("evil") bit: must be zero.
pub(crate) const IPV4_FRAG_RESERVED: u16 = 0x8000;
pub(crate) const IPV4_FRAG_MF: u16 = 0x2000;
pub(crate) const IPV4_FRAG_OFFSET: u16 = 0x1fff;

pub(crate) const IPPROTO_TCP: u8 = 6;
pub(crate) const IPPROTO_UDP: u8 = 17;
pub(crate) const TCP_MIN_HLEN: usize = 20;
/// Offset of the flags byte in the TCP header, and two of its bits.
pub(crate) const TCP_FLAGS: usize = 13;
pub(crate) const TCP_SYN: u8 = 0x02;
pub(crate) const TCP_ACK: u8 = 0x10;
pub(crate) const UDP_HLEN: usize = 8;

/// ARP for Ethernet/IPv4, relative to the start of the ARP header.
pub(crate) const ARP_LEN: usize = 28;
pub(crate) const ARP_HTYPE: usize = 0;
pub(crate) const ARP_PTYPE: usize = 2;
pub(crate) const ARP_HLEN: usize = 4;
pub(crate) const ARP_PLEN: usize = 5;
pub(crate) const ARP_SHA: usize = 8;
pub(crate) const ARP_SPA: usize = 14;
pub(crate) const ARP_TPA: usize = 24;
pub(crate) const ARPHRD_ETHER: u16 = 1;

pub(crate) const DHCP_SERVER_PORT: u16 = 67;
pub(crate) const DHCP_CLIENT_PORT: u16 = 68;
