//! `appvm doctor`: what is wrong, as a list of pass/fail checks.

use std::{fs, net::Ipv4Addr, path::Path};

use appvm_common::backend::VmEntry;

use aya::programs::Xdp;
use serde::Serialize;

use crate::{
    backend::{
        attach::pin_dir as backend_dir, config::BackendConfig, maps::BackendMaps, sync::desired,
    },
    bpffs,
    cert::inspect::inspect,
    link_info::pinned_link_info,
    netdev, object,
    render::{dnsmasq, nginx},
    table::{hosts, store},
};

/// Pass, fail, or not applicable here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    Skip,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    pub check: String,
    pub outcome: Outcome,
    pub detail: String,
}

fn check(out: &mut Vec<Check>, name: &str, result: Result<String, String>) {
    let (outcome, detail) = match result {
        Ok(d) => (Outcome::Pass, d),
        Err(d) => (Outcome::Fail, d),
    };
    out.push(Check {
        check: name.to_owned(),
        outcome,
        detail,
    });
}

fn skip(out: &mut Vec<Check>, name: &str, why: &str) {
    out.push(Check {
        check: name.to_owned(),
        outcome: Outcome::Skip,
        detail: why.to_owned(),
    });
}

/// Certificates expiring within this many days fail.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

fn kernel_at_least(major: u32, minor: u32) -> Result<String, String> {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").map_err(|e| e.to_string())?;
    let mut parts = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if (a, b) >= (major, minor) {
        Ok(format!("kernel {}", release.trim()))
    } else {
        Err(format!(
            "kernel {} is older than {major}.{minor} (tcx)",
            release.trim()
        ))
    }
}

/// Runs every check; `config` is the backend's (skipped when absent).
pub fn run(root: &Path, config: Option<&Path>, now: i64) -> Vec<Check> {
    let mut out = Vec::new();
    check(
        &mut out,
        "BPF syscall and XDP program load",
        (|| {
            let mut ebpf = object::open().map_err(|e| e.to_string())?;
            let p: &mut Xdp = ebpf
                .program_mut(object::PROG_XDP_PASS_FLOOR)
                .ok_or("floor program missing")?
                .try_into()
                .map_err(|e: aya::programs::ProgramError| e.to_string())?;
            p.load().map_err(|e| e.to_string())?;
            Ok("loaded and verified a test program".into())
        })(),
    );
    check(
        &mut out,
        "BTF",
        if Path::new("/sys/kernel/btf/vmlinux").exists() {
            Ok("/sys/kernel/btf/vmlinux".into())
        } else {
            Err("/sys/kernel/btf/vmlinux missing".into())
        },
    );
    check(&mut out, "tcx", kernel_at_least(6, 6));
    let mut probe = root;
    while !probe.exists() {
        probe = probe.parent().unwrap_or(Path::new("/"));
    }
    check(
        &mut out,
        "bpffs",
        if bpffs::is_bpffs(probe) {
            Ok(format!("{} is on bpffs", probe.display()))
        } else {
            Err(format!(
                "{} is not on bpffs (mount -t bpf bpf /sys/fs/bpf)",
                probe.display()
            ))
        },
    );
    match crate::vm::status(root, None) {
        Ok(guards) if guards.is_empty() => {
            skip(&mut out, "VM guards attached", "no guard pinned here")
        }
        Ok(guards) => {
            for g in guards {
                let r = if g.attached {
                    Ok(format!("pins in {}", g.pin_dir.display()))
                } else {
                    Err("links are not on the interface (gone or recreated)".into())
                };
                check(&mut out, &format!("guard on {} attached", g.iface), r);
            }
        }
        Err(e) => check(&mut out, "VM guards attached", Err(e.to_string())),
    }
    let Some(config) = config.filter(|c| c.exists()) else {
        skip(&mut out, "backend", "no backend config");
        return out;
    };
    let cfg = match BackendConfig::load(config) {
        Ok(c) => c,
        Err(e) => {
            check(&mut out, "backend config", Err(e.to_string()));
            return out;
        }
    };
    check(&mut out, "backend config", Ok(config.display().to_string()));
    let table = match store::load_valid(&cfg) {
        Ok(t) => t,
        Err(e) => {
            check(&mut out, "table", Err(e.to_string()));
            return out;
        }
    };
    check(&mut out, "table", Ok(format!("{} VMs", table.vms.len())));
    let dir = backend_dir(root);
    if dir.exists() {
        for (pin, iface) in [
            (
                appvm_common::pins::backend::PIN_LINK_PUBLIC,
                cfg.public_iface.as_deref(),
            ),
            (
                appvm_common::pins::backend::PIN_LINK_PUBLIC_EGRESS,
                cfg.public_iface.as_deref(),
            ),
            (
                appvm_common::pins::backend::PIN_LINK_SECURE,
                cfg.secure_iface.as_deref(),
            ),
        ] {
            let r = (|| {
                let iface = iface.ok_or("interface not in the config")?;
                let index = netdev::ifindex(iface).map_err(|e| e.to_string())?;
                let info = pinned_link_info(&dir.join(pin)).map_err(|e| format!("{pin}: {e}"))?;
                if info.ifindex == index {
                    Ok(format!("{iface} (link {})", info.id))
                } else {
                    Err(format!(
                        "link on ifindex {}, {iface} is {index}",
                        info.ifindex
                    ))
                }
            })();
            check(&mut out, &format!("backend {pin} attached"), r);
        }
        check(
            &mut out,
            "kernel VM table equals the table",
            (|| {
                let maps = BackendMaps::open(&dir).map_err(|e| e.to_string())?;
                let want = desired(&table).map_err(|e| e.to_string())?;
                let mut have = std::collections::BTreeMap::new();
                for item in maps.vms.iter() {
                    let (k, v) = item.map_err(|e| e.to_string())?;
                    have.insert(k, v);
                }
                // What the program enforces: the per-VM slots, whose MAC
                // must be the entry's on every CPU.
                let mut enforced = std::collections::BTreeMap::new();
                for ip in maps.traffic.keys() {
                    let ip = ip.map_err(|e| e.to_string())?;
                    let per_cpu = maps.traffic.get(&ip, 0).map_err(|e| e.to_string())?;
                    let mut macs = per_cpu.iter().map(|t| t.mac);
                    let first = macs.next().unwrap_or_default();
                    if macs.any(|m| m != first) {
                        return Err(format!(
                            "the slot of {} differs between CPUs",
                            Ipv4Addr::from(u32::from_be(ip))
                        ));
                    }
                    enforced.insert(
                        ip,
                        VmEntry {
                            mac: first,
                            _pad: [0; 2],
                        },
                    );
                }
                if have == want && enforced == want {
                    Ok(format!("{} entries", have.len()))
                } else if have == want {
                    Err(format!(
                        "the entries equal the table, but the enforced slots differ ({} slots, table {})",
                        enforced.len(),
                        want.len()
                    ))
                } else {
                    Err(format!(
                        "kernel has {} entries, table {}; differing: {}",
                        have.len(),
                        want.len(),
                        want.len().abs_diff(have.len()).max(1)
                    ))
                }
            })(),
        );
    } else {
        check(
            &mut out,
            "backend programs attached",
            Err(format!(
                "nothing pinned at {} (is appvm backend run running?)",
                dir.display()
            )),
        );
    }
    check(
        &mut out,
        "hosts file current",
        current(&cfg.hosts_file, &hosts::render(&table)),
    );
    if let Some(d) = &cfg.dnsmasq {
        check(
            &mut out,
            "dnsmasq addn-hosts current",
            current(&d.addn_hosts, &dnsmasq::render_addn_hosts(&cfg, &table)),
        );
        match dnsmasq::render_conf(&cfg) {
            Ok(text) => check(&mut out, "dnsmasq config current", current(&d.conf, &text)),
            Err(e) => check(&mut out, "dnsmasq config current", Err(e.to_string())),
        }
    }
    if let (Some(_), Some(n)) = (&cfg.external, &cfg.nginx) {
        match nginx::render(&cfg, &table) {
            Ok(text) => check(&mut out, "nginx site current", current(&n.site, &text)),
            Err(e) => check(&mut out, "nginx site current", Err(e.to_string())),
        }
    }
    let mut certs: Vec<_> = fs::read_dir(&cfg.trust_dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    certs.sort();
    if let Some(ext) = &cfg.external {
        certs.push(ext.cert.clone());
    }
    if certs.is_empty() {
        skip(&mut out, "certificates", "none registered");
    }
    for c in certs {
        let r = fs::read(&c)
            .map_err(|e| e.to_string())
            .and_then(|pem| inspect(&pem))
            .and_then(|info| {
                let days = (info.not_after - now) / 86_400;
                if days < EXPIRY_WARNING_DAYS {
                    Err(format!("expires in {days} days"))
                } else {
                    Ok(format!("{days} days left"))
                }
            });
        check(&mut out, &format!("certificate {}", c.display()), r);
    }
    out
}

fn current(path: &Path, want: &str) -> Result<String, String> {
    match fs::read_to_string(path) {
        Ok(have) if have == want => Ok(path.display().to_string()),
        Ok(_) => Err(format!(
            "{} differs from what the table renders",
            path.display()
        )),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}
