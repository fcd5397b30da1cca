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

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::{RenderError, dnsmasq, nginx};
    use crate::{
        backend::config::BackendConfig,
        table::{Table, TableEntry},
    };

    /// A trust directory with a registered `redcap` certificate, removed on drop.
    struct TrustDir(std::path::PathBuf);

    impl Drop for TrustDir {
        fn drop(&mut self) {
            drop(std::fs::remove_dir_all(&self.0));
        }
    }

    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

    fn config(extra: &str) -> (BackendConfig, TrustDir) {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("appvm-render-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(dir.join("trust")).expect("tmp");
        std::fs::write(dir.join("trust/redcap.crt"), "x").expect("trust");
        let cfg: BackendConfig = toml::from_str(&format!(
            "secure_network = \"192.168.128.0/24\"\nvm_pool = \"192.168.128.16/28\"\nbackend_ip = \"192.168.128.1\"\nsecure_iface = \"sec0\"\npublic_ip = \"203.0.113.10\"\ntrust_dir = \"{}\"\n{extra}",
            dir.join("trust").display()
        ))
        .expect("config");
        cfg.validate().expect("valid");
        (cfg, TrustDir(dir))
    }

    const EXTERNAL: &str = "[external]\nname = \"surveys.example.org\"\nvm = \"redcap\"\ncert = \"/e.crt\"\nkey = \"/e.key\"\n[dnsmasq]\nconf = \"/d.conf\"\naddn_hosts = \"/d.hosts\"\n";

    fn table() -> Table {
        Table {
            vms: vec![TableEntry {
                name: "redcap".into(),
                mac: "02:00:00:00:00:20".into(),
                vm_config: "c".into(),
                ip: Ipv4Addr::new(192, 168, 128, 20),
                ports: vec![443],
            }],
        }
    }

    #[test]
    fn nginx_site_pins_the_vm_certificate_and_restricts_the_public() {
        let (cfg, _dir) = config(EXTERNAL);
        let site = nginx::render(&cfg, &table()).expect("render");
        for needle in [
            "192.168.128.0/24 1;",
            "\"~^/surveys/\" 1;",
            "\"~^/redcap_v[^/]*/Resources/\" 1;",
            "server 192.168.128.20:443;",
            "listen 203.0.113.10:4443 ssl;",
            "listen 192.168.128.1:4443 ssl;",
            "proxy_ssl_verify on;",
            "proxy_ssl_name redcap.app.internal;",
            "/trust/redcap.crt;",
            "ssl_protocols TLSv1.2 TLSv1.3;",
            "proxy_set_header X-Forwarded-For $remote_addr;",
            "if ($appvm_allow = 0)",
        ] {
            assert!(site.contains(needle), "missing {needle:?} in\n{site}");
        }
        assert!(!site.contains("proxy_ssl_verify off"));
    }

    #[test]
    fn nginx_needs_the_vm_and_its_certificate() {
        let (cfg, _dir) = config(&EXTERNAL.replace("vm = \"redcap\"", "vm = \"ghost\""));
        assert_eq!(
            nginx::render(&cfg, &table()),
            Err(RenderError::NoSuchVm("ghost".into()))
        );
        let (mut cfg, _dir) = config(EXTERNAL);
        cfg.trust_dir = "/nonexistent".into();
        assert!(matches!(
            nginx::render(&cfg, &table()),
            Err(RenderError::NoCertificate { .. })
        ));
        assert_eq!(
            nginx::render(&config("").0, &table()),
            Err(RenderError::Missing("external"))
        );
    }

    #[test]
    fn dnsmasq_range_stays_outside_the_pool() {
        let (cfg, _dir) = config(EXTERNAL);
        assert_eq!(
            dnsmasq::dhcp_range(&cfg),
            Ok((
                Ipv4Addr::new(192, 168, 128, 32),
                Ipv4Addr::new(192, 168, 128, 254)
            ))
        );
        let conf = dnsmasq::render_conf(&cfg).expect("conf");
        assert!(
            conf.contains("dhcp-range=192.168.128.32,192.168.128.254,255.255.255.0,12h"),
            "{conf}"
        );
        assert!(
            conf.contains("addn-hosts=/d.hosts") && conf.contains("interface=sec0"),
            "{conf}"
        );
        for bad in [
            "192.168.128.20,192.168.128.40",
            "192.168.128.2,192.168.128.100",
            "10.0.0.1,10.0.0.9",
            "x",
            "192.168.128.50,192.168.128.40",
        ] {
            let (cfg, _dir) = config(&EXTERNAL.replace(
                "addn_hosts = \"/d.hosts\"",
                &format!("addn_hosts = \"/d.hosts\"\ndhcp_range = \"{bad}\""),
            ));
            assert!(
                matches!(dnsmasq::dhcp_range(&cfg), Err(RenderError::BadDhcpRange(_))),
                "{bad}"
            );
        }
        let hosts = dnsmasq::render_addn_hosts(&cfg, &table());
        assert!(
            hosts.contains("192.168.128.1 surveys.example.org\n")
                && hosts.contains("192.168.128.20 redcap.app.internal\n"),
            "{hosts}"
        );
    }
}
