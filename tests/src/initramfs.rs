//! The application VM's root filesystem: busybox, the virtio-net modules,
//! the `appvm` binary and Nginx with the shared libraries they load, the
//! VM's certificate, and an `/init` that boots as the VM controller would.

use std::{
    fs,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Command,
};

use crate::{cpio::Cpio, sys::run};

/// Lines the guest prints on its console start with this.
pub const MARK: &str = "APPVM-GUEST";
/// Where the guest's Nginx finds its certificate and key.
const CERT_DIR: &str = "/etc/appvm/cert";

/// What the guest's boot needs to know.
#[derive(Debug)]
pub struct GuestSpec {
    pub backend_ip: Ipv4Addr,
    pub backend_mac: String,
    pub app_port: u16,
    /// Directory holding `<name>.crt` and `<name>.key` from `appvm cert issue`.
    pub cert_dir: PathBuf,
    pub cert_name: String,
    /// The unpacked Debian kernel package (`boot/`, `lib/modules/`).
    pub kernel_root: PathBuf,
    pub appvm: PathBuf,
}

/// Modules for virtio-net, in dependency order (the Debian kernel builds
/// them as modules; virtio and virtio-pci are built in).
const MODULES: &[&str] = &[
    "kernel/net/core/failover.ko",
    "kernel/drivers/net/net_failover.ko",
    "kernel/drivers/net/virtio_net.ko",
];

/// The boot sequence. The guard is attached while eth0 is still down and
/// has no address; only then does DHCP configure it. Afterwards the script
/// serves the host's commands, read from the console, one per line.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mark() { echo "APPVM-GUEST $*"; }
fail() { mark fail "$@"; poweroff -f; }
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t bpf bpf /sys/fs/bpf || fail bpffs
mkdir -p /run /tmp/nginx
stty -echo 2>/dev/null
mark step userspace "$(cut -d' ' -f1 /proc/uptime)"
for m in @MODULES@; do insmod "/lib/modules/$m" || fail modules "$m"; done
ip link set lo up
i=0
while [ ! -e /sys/class/net/eth0 ]; do
  i=$((i+1)); [ $i -gt 100 ] && fail nic "no eth0"; sleep 0.1
done
state="$(cat /sys/class/net/eth0/operstate) addr=$(ip -4 -o addr show dev eth0 | wc -l)"
appvm vm attach --iface eth0 --backend-ip @BACKEND_IP@ --backend-mac @BACKEND_MAC@ \
  --app-port @APP_PORT@ || fail attach
mark step guard "$(cut -d' ' -f1 /proc/uptime)" "eth0=$state"
ip link set eth0 up
udhcpc -i eth0 -n -q -f -t 10 -T 1 -s /etc/udhcpc.sh >/dev/null 2>&1 || fail dhcp
mark step dhcp "$(cut -d' ' -f1 /proc/uptime)" "$(cat /run/dhcp-ip)"
nginx -e /tmp/nginx/error.log -c /etc/nginx/nginx.conf || fail nginx "$(cat /tmp/nginx/error.log)"
mark step https "$(cut -d' ' -f1 /proc/uptime)"
mark ready
while read -r cmd a b; do
  case "$cmd" in
    connect)
      arp -s "$a" "$b" -i eth0 || mark fail connect "arp -s"
      if echo | nc -w 3 "$a" @PROBE_PORT@ >/dev/null 2>&1; then r=connected; else r=refused-or-dropped; fi
      mark result connect "$r" ;;
    status)
      mark begin status
      appvm vm status --iface eth0 --json
      echo
      mark end status ;;
    poweroff)
      mark step poweroff "$(cut -d' ' -f1 /proc/uptime)"
      poweroff -f ;;
    *) [ -n "$cmd" ] && mark unknown "$cmd" ;;
  esac
done
fail console "end of input"
"#;

/// The TCP port the guest's outbound probe tries.
pub const PROBE_PORT: u16 = 8080;

const UDHCPC: &str = "#!/bin/sh\ncase \"$1\" in\n  bound|renew)\n    ip addr flush dev \"$interface\"\n    ip addr add \"$ip/${mask:-24}\" dev \"$interface\"\n    echo \"$ip\" > /run/dhcp-ip;;\nesac\nexit 0\n";

/// Writes the initramfs for `spec` into `dir` and returns its path.
pub fn build(spec: &GuestSpec, dir: &Path) -> Result<PathBuf, String> {
    let mut c = Cpio::new();
    for d in [
        "bin", "sbin", "proc", "sys", "dev", "run", "tmp", "etc", "root",
    ] {
        c.dir(d);
    }
    c.file("/bin/busybox", 0o755, &read(Path::new("/bin/busybox"))?);
    c.symlink("/bin/sh", "busybox");
    let modules = module_dir(&spec.kernel_root)?;
    let mut names = Vec::new();
    for m in MODULES {
        let (data, name) = module(&modules.join(m))?;
        c.file(&format!("/lib/modules/{name}"), 0o644, &data);
        names.push(name);
    }
    let stripped = dir.join("appvm.stripped");
    run(Command::new("strip")
        .arg("-o")
        .arg(&stripped)
        .arg(&spec.appvm))?;
    c.file("/bin/appvm", 0o755, &read(&stripped)?);
    let nginx = Path::new("/usr/sbin/nginx");
    c.file("/usr/sbin/nginx", 0o755, &read(nginx)?);
    for lib in shared_libraries(&[&stripped, nginx])? {
        c.file(&lib.display().to_string(), 0o755, &read(&lib)?);
    }
    // nginx's `user root;` looks both names up.
    c.file("/etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n");
    c.file("/etc/group", 0o644, b"root:x:0:\n");
    c.file("/etc/udhcpc.sh", 0o755, UDHCPC.as_bytes());
    for ext in ["crt", "key"] {
        let from = spec.cert_dir.join(format!("{}.{ext}", spec.cert_name));
        c.file(&format!("{CERT_DIR}/vm.{ext}"), 0o600, &read(&from)?);
    }
    c.file("/etc/nginx/nginx.conf", 0o644, nginx_conf(spec).as_bytes());
    let init = INIT
        .replace("@MODULES@", &names.join(" "))
        .replace("@BACKEND_IP@", &spec.backend_ip.to_string())
        .replace("@BACKEND_MAC@", &spec.backend_mac)
        .replace("@APP_PORT@", &spec.app_port.to_string())
        .replace("@PROBE_PORT@", &PROBE_PORT.to_string());
    c.file("/init", 0o755, init.as_bytes());
    let path = dir.join("initramfs.cpio");
    fs::write(&path, c.finish()).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// Nginx in the VM: TLS on the application port, answering with what it
/// received (the stand-in for REDCap).
fn nginx_conf(spec: &GuestSpec) -> String {
    let t = "/tmp/nginx";
    format!(
        "daemon on;\nuser root;\nworker_processes 1;\npid {t}/nginx.pid;\nevents {{ worker_connections 64; }}\nhttp {{\n    access_log off;\n    client_body_temp_path {t}/body;\n    proxy_temp_path {t}/proxy;\n    fastcgi_temp_path {t}/fastcgi;\n    uwsgi_temp_path {t}/uwsgi;\n    scgi_temp_path {t}/scgi;\n    server {{\n        listen {port} ssl;\n        ssl_certificate {CERT_DIR}/vm.crt;\n        ssl_certificate_key {CERT_DIR}/vm.key;\n        location / {{\n            return 200 \"redcap-guest uri=$uri xff=$http_x_forwarded_for\\n\";\n        }}\n    }}\n}}\n",
        port = spec.app_port
    )
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// `lib/modules/<version>` of the unpacked kernel.
fn module_dir(kernel_root: &Path) -> Result<PathBuf, String> {
    let base = kernel_root.join("lib/modules");
    fs::read_dir(&base)
        .map_err(|e| {
            format!(
                "{}: {e} (cargo xtask setup unpacks the guest kernel)",
                base.display()
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.is_dir())
        .ok_or_else(|| format!("{}: no kernel version inside", base.display()))
}

/// A module's bytes, decompressed (busybox insmod loads plain ELF), and
/// its file name.
fn module(path: &Path) -> Result<(Vec<u8>, String), String> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if path.exists() {
        return Ok((read(path)?, name));
    }
    let xz = path.with_extension("ko.xz");
    let out = run(Command::new("xz").arg("-dc").arg(&xz))?;
    Ok((out.stdout, name))
}

/// Every library `ldd` lists for `binaries`, with the dynamic loader.
fn shared_libraries(binaries: &[&Path]) -> Result<Vec<PathBuf>, String> {
    let mut libs = Vec::new();
    for bin in binaries {
        let out = run(Command::new("ldd").arg(bin))?;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
            // "/lib64/ld-linux-x86-64.so.2 (0x...)"
            let path = line
                .split_once("=>")
                .map_or(line, |(_, p)| p)
                .split_whitespace()
                .next()
                .unwrap_or_default();
            if path.starts_with('/') && !libs.iter().any(|l: &PathBuf| l == Path::new(path)) {
                libs.push(PathBuf::from(path));
            }
        }
    }
    Ok(libs)
}
