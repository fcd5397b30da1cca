//! The lab's topology: a secure network as a bridge inside its own
//! namespace, with the backend, the application VM and a rogue VM attached.
//!
//! ```text
//!   ns public: pub0 203.0.113.50 ---- pub0 203.0.113.10 (public side of ns backend)
//!
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
/// The backend's and the public client's interface on the public side.
pub const PUB_IF: &str = "pub0";
pub const PUBLIC_PORT: u16 = 4443;
pub const BACKEND_PUBLIC_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
pub const CLIENT_PUBLIC_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 50);
pub const APP_PORT: u16 = 443;
/// The backend's MAC on the public side.
pub const BACKEND_PUBLIC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x10];

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
    /// A client on the internet side, wired straight to the backend.
    pub public: Host,
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
        Self::build(false)
    }

    /// Like [`Self::new`], but the VM's interface gets no address: the VM
    /// asks the lab's dnsmasq for it by DHCP.
    pub fn with_dhcp_vm() -> Result<Self, String> {
        Self::build(true)
    }

    fn build(vm_dhcp: bool) -> Result<Self, String> {
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
            if !(vm_dhcp && role == "vm") {
                ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", SEC_IF])?;
            }
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
        let public = Netns::new("public")?;
        public.ip(&[
            "link",
            "add",
            PUB_IF,
            "type",
            "veth",
            "peer",
            "name",
            PUB_IF,
            "netns",
            backend.ns.name(),
        ])?;
        let pub_mac = mac(0x50);
        public.ip(&[
            "link",
            "set",
            PUB_IF,
            "address",
            &appvm::vm::config::format_mac(pub_mac),
        ])?;
        backend.ns.ip(&[
            "link",
            "set",
            PUB_IF,
            "address",
            &appvm::vm::config::format_mac(BACKEND_PUBLIC_MAC),
        ])?;
        public.ip(&[
            "addr",
            "add",
            &format!("{CLIENT_PUBLIC_IP}/24"),
            "dev",
            PUB_IF,
        ])?;
        backend.ns.ip(&[
            "addr",
            "add",
            &format!("{BACKEND_PUBLIC_IP}/24"),
            "dev",
            PUB_IF,
        ])?;
        public.ip(&["link", "set", PUB_IF, "multicast", "off", "up"])?;
        backend
            .ns
            .ip(&["link", "set", PUB_IF, "multicast", "off", "up"])?;
        let public = Host {
            role: "public",
            ns: public,
            ip: CLIENT_PUBLIC_IP,
            mac: pub_mac,
        };
        let pin_root = PathBuf::from(format!(
            "/sys/fs/bpf/appvm-lab-{}-{}",
            std::process::id(),
            NEXT_ROOT.fetch_add(1, Ordering::Relaxed)
        ));
        Ok(Self {
            backend,
            vm,
            rogue,
            public,
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

    /// `appvm vm attach` in the VM with this lab's backend IP and
    /// application port; the output of the command (not checked).
    pub fn attach_guard(&self) -> Output {
        self.attach_guard_at(&self.pin_root)
    }

    /// [`Self::attach_guard`] with another pin root.
    pub fn attach_guard_at(&self, pin_root: &Path) -> Output {
        self.vm
            .ns
            .command(appvm_bin())
            .args(["vm", "attach", "--iface", SEC_IF, "--backend-ip"])
            .arg(self.backend.ip.to_string())
            .arg("--app-port")
            .arg(APP_PORT.to_string())
            .env("APPVM_PIN_ROOT", pin_root)
            .output()
            .expect("run appvm")
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

    /// A scratch directory for this lab's files (configs, table, hosts
    /// file), removed on drop.
    pub fn files(&self) -> PathBuf {
        let dir = std::env::temp_dir().join(
            self.pin_root
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        drop(std::fs::create_dir_all(&dir));
        dir
    }

    /// Runs `appvm table ...` (root namespace; files only) with `config`.
    pub fn table(&self, config: &Path, args: &[&str]) -> Output {
        let mut cmd = Command::new(appvm_bin());
        cmd.arg("table").args(args).env("APPVM_CONFIG", config);
        cmd.output().expect("run appvm table")
    }

    /// `appvm table add` of this lab's VM ("redcap", its MAC and IP) to
    /// the table of `config`; the output (not checked).
    pub fn table_add_vm(&self, config: &Path) -> Output {
        let mac = appvm::vm::config::format_mac(self.vm.mac);
        let ip = self.vm.ip.to_string();
        self.table(
            config,
            &[
                "add",
                "--name",
                "redcap",
                "--mac",
                &mac,
                "--vm-config",
                "lab",
                "--ip",
                &ip,
            ],
        )
    }

    /// `appvm backend status --json` with `config`, parsed (panics if the
    /// command fails).
    #[track_caller]
    pub fn backend_status(&self, config: &Path) -> serde_json::Value {
        let out = self.backend_cmd(config, &["status", "--json"]);
        serde_json::from_str(&crate::sys::ok(&out)).expect("status JSON")
    }

    /// Runs `appvm backend ...` inside the backend namespace.
    pub fn backend_cmd(&self, config: &Path, args: &[&str]) -> Output {
        let mut cmd = self.backend.ns.command(appvm_bin());
        cmd.arg("backend")
            .args(args)
            .env("APPVM_CONFIG", config)
            .env("APPVM_PIN_ROOT", &self.pin_root);
        cmd.output().expect("run appvm backend")
    }

    /// Writes a backend config for this lab (pool 192.168.128.16/28) and
    /// returns its path.
    pub fn backend_config(&self, extra: &str) -> PathBuf {
        self.backend_config_for("192.168.128.0/24", "192.168.128.16/28", extra)
    }

    /// [`Self::backend_config`] with another secure network and pool (a
    /// large table needs a large pool).
    pub fn backend_config_for(&self, secure_network: &str, vm_pool: &str, extra: &str) -> PathBuf {
        let dir = self.files();
        let path = dir.join("backend.toml");
        let text = format!(
            "secure_network = \"{secure_network}\"\nvm_pool = \"{vm_pool}\"\nbackend_ip = \"{}\"\nsecure_iface = \"{SEC_IF}\"\npublic_iface = \"{PUB_IF}\"\npublic_ip = \"{BACKEND_PUBLIC_IP}\"\npublic_port = {PUBLIC_PORT}\ntable = \"{}\"\nhosts_file = \"{}\"\n{extra}",
            self.backend.ip,
            dir.join("table.toml").display(),
            dir.join("secure-hosts").display(),
        );
        std::fs::write(&path, text).expect("write backend config");
        path
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Pins first (removing link pins detaches), then the namespaces
        // (fields drop after this, hosts before `lan`).
        if self.pin_root.exists() {
            drop(std::fs::remove_dir_all(&self.pin_root));
        }
        let files = self.files();
        drop(std::fs::remove_dir_all(files));
    }
}

/// A table file of `n` VMs named `vm<i>` at `first_ip` onwards, their
/// MACs `02:<tag>:..` distinct for each `tag` (a large table for the
/// faults and control-plane runs).
pub fn bulk_table(n: usize, first_ip: Ipv4Addr, tag: u8) -> String {
    let base = u32::from(first_ip);
    (0..n)
        .map(|i| {
            let ip = Ipv4Addr::from(base + u32::try_from(i).expect("a /8 at most"));
            format!(
                "[[vm]]\nname = \"vm{i}\"\nmac = \"02:{tag:02x}:{:02x}:{:02x}:{:02x}:01\"\nvm_config = \"bulk\"\nip = \"{ip}\"\nports = [443]\n\n",
                (i >> 16) & 0xff,
                (i >> 8) & 0xff,
                i & 0xff
            )
        })
        .collect()
}
