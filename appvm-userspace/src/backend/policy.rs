//! The backend configuration as the kernel's [`BackendPolicy`].

use appvm_common::backend::{BFLAG_ENABLED, BFLAG_PUBLIC_IPV6, BackendPolicy};

use super::config::{BackendConfig, BackendConfigError};
use crate::vm::policy::{ip_be, port_be};

impl BackendConfig {
    /// The enabled policy; needs `public_ip`.
    pub fn to_policy(&self) -> Result<BackendPolicy, BackendConfigError> {
        let public_ip = self
            .public_ip
            .ok_or(BackendConfigError::Missing("public_ip"))?;
        let mut p = BackendPolicy::DISABLED;
        p.flags = BFLAG_ENABLED;
        p.public_ip_be = ip_be(public_ip);
        p.public_port_be = port_be(self.public_port);
        p.secure_ip_be = ip_be(self.backend_ip);
        p.pool_net_be = ip_be(self.vm_pool.network());
        p.pool_mask_be = ip_be(self.vm_pool.netmask());
        p.flow_timeout_ns = self.flow_timeout_secs.saturating_mul(1_000_000_000);
        if let Some(v6) = self.public_ipv6 {
            p.flags |= BFLAG_PUBLIC_IPV6;
            p.public_ipv6 = v6.octets();
        }
        Ok(p)
    }
}
