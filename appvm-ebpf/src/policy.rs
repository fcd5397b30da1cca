//! Reading the active policy and matching against it.

use appvm_common::{
    VmPolicy,
    policy::{FLAG_ENABLED, MAX_APP_PORTS, MAX_EGRESS_RULES},
};

use crate::maps::{VM_POLICY, VM_POLICY_SLOT};

/// The policy in force, or `None` (fail closed) if none is enabled.
#[inline(always)]
pub(crate) fn active() -> Option<&'static VmPolicy> {
    let slot = *VM_POLICY_SLOT.get(0)?;
    let policy = VM_POLICY.get(slot)?;
    policy.has(FLAG_ENABLED).then_some(policy)
}

/// Whether `port_be` (network byte order) is an application port.
#[inline(always)]
pub(crate) fn is_app_port(policy: &VmPolicy, port_be: u16) -> bool {
    let count = policy.app_port_count as usize;
    for i in 0..MAX_APP_PORTS {
        if i >= count {
            break;
        }
        if policy.app_ports_be[i] == port_be {
            return true;
        }
    }
    false
}

/// Whether `ip_be:port_be` is an allowed egress destination.
#[inline(always)]
pub(crate) fn is_egress_allowed(policy: &VmPolicy, ip_be: u32, port_be: u16) -> bool {
    let count = policy.egress_count as usize;
    for i in 0..MAX_EGRESS_RULES {
        if i >= count {
            break;
        }
        let rule = &policy.egress[i];
        if rule.ip_be == ip_be && rule.port_be == port_be {
            return true;
        }
    }
    false
}

/// Whether `ip_be` is the IP of any allowed egress destination.
#[inline(always)]
pub(crate) fn is_egress_ip(policy: &VmPolicy, ip_be: u32) -> bool {
    let count = policy.egress_count as usize;
    for i in 0..MAX_EGRESS_RULES {
        if i >= count {
            break;
        }
        if policy.egress[i].ip_be == ip_be {
            return true;
        }
    }
    false
}
