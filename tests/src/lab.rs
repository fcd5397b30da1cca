//! The lab's topology: a secure network as a bridge inside its own
//! namespace, with the backend, the application VM and a rogue VM attached.
//!
//! ```text
//!            ns lan: br0 (02:00:00:00:00:fe)
//!          /               |               \
//!   ns backend          ns vm            ns rogue
//!   sec0 .1             sec0 .20         sec0 .66     192.168.128.0/24
//! ```

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

use crate::{netns::Netns, sys::appvm_bin};

/// The interface every host uses on the secure network.
pub const SEC_IF: &str = "sec0";
pub const APP_PORT: u16 = 443;

/// One host of the lab.
#[derive(Debug)]
pub struct Host {
    /// "backend", "vm" or "rogue".
    pub role: &'static str,
    pub ns: Netns,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
}

/// The namespaces and addresses of one lab; all removed on drop.
#[derive(Debug)]
pub struct Lab {
    pub backend: Host,
    pub vm: Host,
    pub rogue: Host,
    /// Holds the bridge; dropped last so host veths go first.
    pub lan: Netns,
    /// bpffs directory for this lab's pins only.
    pub pin_root: PathBuf,
}

static NEXT_ROOT: AtomicU32 = AtomicU32::new(0);

const fn mac(last: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, last]
}

impl Lab {
    /// Builds the topology. On error, whatever was created is removed.
    pub fn new() -> Result<Self, String> {
        let lan = Netns::new("lan")?;
        lan.ip(&[
            "link",
            "add",
            "br0",
            "address",
            "02:00:00:00:00:fe",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        // No IGMP reports from the bridge's own stack: the lab's counters
        // must hold only the traffic the tests send.
        lan.ip(&["link", "set", "br0", "multicast", "off", "up"])?;
        let host = |role: &'static str, last: u8| -> Result<Host, String> {
            let ns = Netns::new(role)?;
            let ip = Ipv4Addr::new(192, 168, 128, last);
            let port = format!("p-{role}");
            // Created inside `lan`, peer placed straight into the host
            // namespace: no interface ever exists in the root namespace.
            lan.ip(&[
                "link",
                "add",
                &port,
                "type",
                "veth",
                "peer",
                "name",
                SEC_IF,
                "netns",
                ns.name(),
            ])?;
            lan.ip(&["link", "set", &port, "master", "br0", "up"])?;
            let m = mac(last);
            ns.ip(&[
                "link",
                "set",
                SEC_IF,
                "address",
                &appvm::vm::config::format_mac(m),
            ])?;
            ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", SEC_IF])?;
            ns.ip(&["link", "set", SEC_IF, "multicast", "off", "up"])?;
            Ok(Host {
                role,
                ns,
                ip,
                mac: m,
            })
        };
        let backend = host("backend", 1)?;
        let vm = host("vm", 20)?;
        let rogue = host("rogue", 66)?;
        let pin_root = PathBuf::from(format!(
            "/sys/fs/bpf/appvm-lab-{}-{}",
            std::process::id(),
            NEXT_ROOT.fetch_add(1, Ordering::Relaxed)
        ));
        Ok(Self {
            backend,
            vm,
            rogue,
            lan,
            pin_root,
        })
    }

    /// Runs the `appvm` binary inside `host`'s namespace with this lab's pin root.
    pub fn appvm(&self, host: &Host, args: &[&str]) -> Output {
        let mut cmd: Command = host.ns.command(appvm_bin());
        cmd.args(args).env("APPVM_PIN_ROOT", &self.pin_root);
        cmd.output().expect("run appvm")
    }

    /// Static neighbour entry, so a probe reaches the IP layer even where
    /// the guard drops the ARP that would have resolved it.
    pub fn pin_neighbour(&self, on: &Host, peer: &Host) -> Result<(), String> {
        on.ns.ip(&[
            "neigh",
            "replace",
            &peer.ip.to_string(),
            "lladdr",
            &appvm::vm::config::format_mac(peer.mac),
            "dev",
            SEC_IF,
            "nud",
            "permanent",
        ])
    }

    /// The VM guard's pinned counter map.
    pub fn vm_counters_path(&self) -> PathBuf {
        appvm::vm::pin_dir(&self.pin_root, SEC_IF).join(appvm_common::pins::vm::PIN_MAP_COUNTERS)
    }

    pub fn pin_root(&self) -> &Path {
        &self.pin_root
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Pins first (removing link pins detaches), then the namespaces
        // (fields drop after this, hosts before `lan`).
        if self.pin_root.exists() {
            drop(std::fs::remove_dir_all(&self.pin_root));
        }
    }
}
