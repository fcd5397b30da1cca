//! Outbound-flow keys for the public interface (shared by both directions).

use appvm_common::backend::FlowKey;

#[inline(always)]
const fn v4(ip_be: u32) -> [u8; 16] {
    let b = ip_be.to_ne_bytes();
    [b[0], b[1], b[2], b[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
}

/// The key of a flow as a reply sees it (remote = the reply's source).
#[inline(always)]
pub(crate) const fn key_v4(
    proto: u8,
    remote_be: u32,
    remote_port_be: u16,
    local_be: u32,
    local_port_be: u16,
) -> FlowKey {
    FlowKey {
        remote: v4(remote_be),
        local: v4(local_be),
        remote_port_be,
        local_port_be,
        proto,
        family: 4,
        _pad: [0; 2],
    }
}

#[inline(always)]
pub(crate) const fn key_v6(
    proto: u8,
    remote: [u8; 16],
    remote_port_be: u16,
    local: [u8; 16],
    local_port_be: u16,
) -> FlowKey {
    FlowKey {
        remote,
        local,
        remote_port_be,
        local_port_be,
        proto,
        family: 6,
        _pad: [0; 2],
    }
}
