//! `cargo xtask vm-test`: the guard at the boot of a real VM. The backend
//! side is the pathway's (dnsmasq, Nginx, `appvm backend run`); the
//! application VM is a qemu guest whose NIC is a tap bridged onto the
//! lab's secure network through the VM host's namespace.
//!
//! ```text
//!   ns lan: br0 --- veth --- ns vm: sec0 + tap0 on bridge brv --- qemu guest eth0
//! ```

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use crate::{
    frames,
    guest::{self, Guest, Nic},
    initramfs::{self, GuestSpec, PROBE_PORT},
    lab::{APP_PORT, BACKEND_PUBLIC_IP, SEC_IF},
    netns::Netns,
    pathway::{Check, Pathway, VM_NAME},
    probe::{Listener, send_frames},
    status,
    sys::appvm_bin,
};

const TAP: &str = "tap0";
const HOST_BRIDGE: &str = "brv";
/// Raw SYNs the rogue sends to the guest's application port; the guest's
/// drop counter must move by exactly this much.
const ROGUE_SYNS: u64 = 7;

/// Time bounds for each step (TCG is slow, the machine shared).
const BOOT: Duration = Duration::from_secs(120);
const STEP: Duration = Duration::from_secs(60);
const PROBE: Duration = Duration::from_secs(20);

/// The outcome of one guest run.
#[derive(Debug)]
pub struct GuestReport {
    pub checks: Vec<Check>,
    /// (step, wall time since qemu started, the guest's own uptime).
    pub steps: Vec<(String, Duration, String)>,
    /// The guest's non-zero counters at the end, as its `appvm vm status
    /// --json` printed them on the console.
    pub counters: Vec<(String, u64)>,
    pub total: Duration,
}

/// Boots the guest, runs every check, powers it off. Errors name the step.
pub fn run() -> Result<GuestReport, String> {
    let started = Instant::now();
    let pathway = Pathway::start_backend()?;
    let lab = &pathway.lab;
    let vm_mac = appvm::vm::config::format_mac(lab.vm.mac);
    wire_tap(&lab.vm.ns)?;
    let (kernel_root, vmlinuz) = guest::kernel()?;
    let spec = GuestSpec {
        backend_ip: lab.backend.ip,
        backend_mac: appvm::vm::config::format_mac(lab.backend.mac),
        app_port: APP_PORT,
        cert_dir: pathway.dir.join("vm-cert"),
        cert_name: VM_NAME.to_owned(),
        kernel_root,
        appvm: appvm_bin(),
    };
    let initrd = initramfs::build(&spec, &pathway.dir)?;
    let mut g = Guest::boot(
        &vmlinuz,
        &initrd,
        &Nic {
            ns: &lab.vm.ns,
            tap: TAP,
            mac: &vm_mac,
        },
        &pathway.dir.join("console.log"),
    )?;
    let mut steps = Vec::new();
    let mut step = |g: &mut Guest, name: &str, what: &str, timeout| -> Result<String, String> {
        let rest = g.wait(name, what, timeout)?;
        let uptime = rest.split_whitespace().next().unwrap_or("-").to_owned();
        steps.push((name.to_owned(), g.elapsed(), uptime));
        Ok(rest)
    };
    step(&mut g, "boot to userspace", "step userspace", BOOT)?;
    let guard = step(&mut g, "guard attached", "step guard", STEP)?;
    let dhcp = step(&mut g, "DHCP", "step dhcp", STEP)?;
    step(&mut g, "HTTPS server", "step https", STEP)?;
    g.wait("ready", "ready", STEP)?;
    let mut checks = Vec::new();
    let mut add = |what: &str, expected: &str, actual: String| {
        checks.push(Check {
            what: what.to_owned(),
            expected: expected.to_owned(),
            actual,
        });
    };
    add(
        "guest: guard attached while eth0 was down, without an address",
        "eth0=down addr=0",
        guard.split_once(' ').map_or("", |(_, s)| s).to_owned(),
    );
    add(
        "guest: DHCP address from dnsmasq (pinned by MAC)",
        &lab.vm.ip.to_string(),
        dhcp.split_whitespace().nth(1).unwrap_or("-").to_owned(),
    );
    let vm_cert = pathway.dir.join(format!("vm-cert/{VM_NAME}.crt"));
    add(
        "backend: HTTPS to guest:443, its certificate verified",
        "200",
        https_code(&lab.backend.ns, lab.vm.ip, Some(&vm_cert))?.to_string(),
    );
    lab.pin_neighbour(&lab.rogue, &lab.vm)?;
    add(
        "rogue: HTTPS to guest:443",
        "0",
        https_code(&lab.rogue.ns, lab.vm.ip, None)?.to_string(),
    );
    let before = guest_status(&mut g)?;
    let syns = (0..ROGUE_SYNS)
        .map(|i| {
            frames::tcp_syn(
                lab.rogue.mac,
                lab.vm.mac,
                lab.rogue.ip,
                lab.vm.ip,
                40_000 + u16::try_from(i).unwrap_or(0),
                APP_PORT,
            )
        })
        .collect();
    send_frames(&lab.rogue.ns, SEC_IF, syns)?;
    let after = guest_status(&mut g)?;
    add(
        &format!("guest counters: {ROGUE_SYNS} raw rogue SYNs -> in_drop_foreign_source"),
        &ROGUE_SYNS.to_string(),
        (status::counter(&after, "in_drop_foreign_source")
            - status::counter(&before, "in_drop_foreign_source"))
        .to_string(),
    );
    let listener = Listener::start(&lab.rogue.ns, PROBE_PORT, PROBE * 2)?;
    g.send(&format!(
        "connect {} {}",
        lab.rogue.ip,
        appvm::vm::config::format_mac(lab.rogue.mac)
    ))?;
    let connect = g.wait("guest -> rogue", "result connect", PROBE)?;
    add(
        &format!("guest: TCP to rogue:{PROBE_PORT}"),
        "refused-or-dropped",
        connect,
    );
    add(
        "  ... connections the rogue accepted",
        "0",
        listener.accepted().to_string(),
    );
    let (code, body) = pathway.get(&lab.public, BACKEND_PUBLIC_IP, "/surveys/?s=ABC123")?;
    add(
        "public: GET /surveys/?s=ABC123 via Nginx (certificate pinned)",
        "200",
        code.to_string(),
    );
    add(
        "  ... answered by the guest",
        "redcap-guest uri=/surveys/",
        body.split(" xff=").next().unwrap_or_default().to_owned(),
    );
    let (code, _) = pathway.get(&lab.public, BACKEND_PUBLIC_IP, "/redcap_v14.0.0/index.php")?;
    add(
        "public: GET /redcap_v14.0.0/index.php",
        "403",
        code.to_string(),
    );
    let last = guest_status(&mut g)?;
    for reason in [
        "in_pass_dhcp_reply",
        "out_pass_dhcp_request",
        "in_pass_app_from_backend",
        "out_pass_backend",
        "out_drop_denied",
    ] {
        let n = status::counter(&last, reason);
        add(
            &format!("guest counters: {reason}"),
            "moved",
            if n > 0 { "moved" } else { "0" }.to_owned(),
        );
    }
    let counters = last["counters"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter_map(|c| Some((c["reason"].as_str()?.to_owned(), c["packets"].as_u64()?)))
                .filter(|(_, n)| *n > 0)
                .collect()
        })
        .unwrap_or_default();
    g.send("poweroff")?;
    step(&mut g, "power off", "step poweroff", STEP)?;
    g.wait_exit(STEP)?;
    Ok(GuestReport {
        checks,
        steps,
        counters,
        total: started.elapsed(),
    })
}

/// The VM host's side: the veth that was the VM's interface becomes a
/// bridge port beside the tap, and gives the guest its MAC.
fn wire_tap(ns: &Netns) -> Result<(), String> {
    ns.ip(&["link", "set", SEC_IF, "down"])?;
    ns.ip(&["link", "set", SEC_IF, "address", "02:00:00:00:01:20"])?;
    ns.ip(&[
        "link",
        "add",
        HOST_BRIDGE,
        "type",
        "bridge",
        "mcast_snooping",
        "0",
    ])?;
    ns.ip(&["tuntap", "add", "dev", TAP, "mode", "tap"])?;
    for port in [SEC_IF, TAP] {
        ns.ip(&["link", "set", port, "master", HOST_BRIDGE])?;
        ns.ip(&["link", "set", port, "multicast", "off", "up"])?;
    }
    ns.ip(&["link", "set", HOST_BRIDGE, "multicast", "off", "up"])
}

/// `appvm vm status --json` printed by the guest.
fn guest_status(g: &mut Guest) -> Result<serde_json::Value, String> {
    g.send("status")?;
    let lines = g.block("status", PROBE)?;
    let text = lines.join("\n");
    let all: serde_json::Value =
        serde_json::from_str(text.trim()).map_err(|e| format!("guest status JSON: {e}: {text}"))?;
    // One element per guarded interface; the guest has one.
    Ok(all[0].clone())
}

/// HTTP status of `GET https://<ip>:443/surveys/` from `ns`; 0 when no
/// answer came. With `cacert`, the certificate is verified against it.
fn https_code(ns: &Netns, ip: Ipv4Addr, cacert: Option<&std::path::Path>) -> Result<u16, String> {
    let mut cmd = ns.command("curl");
    cmd.args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"]);
    // A blocked attempt needs only to time out; an allowed one may wait
    // for the guest's TLS under TCG.
    match cacert {
        Some(ca) => cmd.args(["--max-time", "10", "--cacert"]).arg(ca),
        None => cmd.args(["--max-time", "3", "-k"]),
    };
    let out = cmd
        .arg(format!("https://{ip}:{APP_PORT}/surveys/"))
        .output()
        .map_err(|e| format!("curl: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0))
}
