//! Configuration rendered from the backend config and the table: Nginx's
//! site (the external pathway) and dnsmasq's configuration and hosts files.

pub mod apply;
pub mod dnsmasq;
pub mod nginx;

/// Rendering, validating or reloading failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RenderError {
    #[error("missing [{0}] in the backend config")]
    Missing(&'static str),
    #[error("external.vm '{0}' is not in the table")]
    NoSuchVm(String),
    #[error(
        "VM '{vm}' has no registered certificate ({path}); run `appvm cert register --name {vm} --cert FILE`"
    )]
    NoCertificate { vm: String, path: String },
    #[error("no room for a DHCP range after the VM pool in {0}; set dnsmasq.dhcp_range")]
    NoDhcpRange(String),
    #[error(
        "invalid dnsmasq.dhcp_range '{0}': expected FIRST,LAST inside secure_network and outside vm_pool"
    )]
    BadDhcpRange(String),
    #[error("{path}: {why}")]
    Io { path: String, why: String },
    #[error("nginx rejected the rendered config (kept the previous one): {0}")]
    NginxTest(String),
    #[error("nginx reload failed (it keeps serving the previous config): {0}")]
    NginxReload(String),
    #[error("dnsmasq rejected the rendered config (kept the previous one): {0}")]
    DnsmasqTest(String),
}
