//! `appvm vm attach | detach | status`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use appvm::{
    netdev::NetdevError,
    vm::{self, AttachError, AttachOutcome, GuardSettings, VmStatus},
};
use clap::{Args, Subcommand};

use crate::exit::CliError;

#[derive(Debug, Subcommand)]
pub(crate) enum VmCommand {
    /// Load, attach and pin the guard on the VM's secure interface, then exit.
    ///
    /// On an interface that already has the guard, replaces its policy in
    /// place: the interface is never without a filter.
    ///
    /// Example: appvm vm attach --iface eth0 --backend-ip 192.168.128.1 --app-port 443
    Attach(AttachArgs),
    /// Remove the guard and everything it pinned.
    ///
    /// Example: appvm vm detach --iface eth0
    Detach {
        #[arg(long)]
        iface: String,
    },
    /// Show what is attached, the policy in force and the counters by reason.
    ///
    /// Example: appvm vm status --iface eth0 --json
    Status {
        #[arg(long)]
        iface: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub(crate) struct AttachArgs {
    /// The VM's secure-network interface.
    #[arg(long)]
    iface: Option<String>,
    /// The backend server's IPv4 on the secure network.
    #[arg(long, value_name = "IP")]
    backend_ip: Option<String>,
    /// Also require the backend's MAC on traffic from the backend IP.
    #[arg(long, value_name = "MAC")]
    backend_mac: Option<String>,
    /// Application port open to the backend only (repeatable).
    #[arg(long = "app-port", value_name = "PORT", allow_negative_numbers = true)]
    app_ports: Vec<i64>,
    /// DHCP server whose replies are accepted (default: the backend IP).
    #[arg(long, value_name = "IP")]
    dhcp_server: Option<String>,
    /// Extra egress destination the platform provides (repeatable).
    #[arg(long = "allow-egress", value_name = "IP:PORT")]
    allow_egress: Vec<String>,
    /// Let IPv6 through in both directions.
    #[arg(long)]
    allow_ipv6: bool,
    /// TOML file with the same fields (snake_case); flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

pub(crate) fn run(cmd: VmCommand, root: &Path) -> Result<(), CliError> {
    match cmd {
        VmCommand::Attach(args) => attach(args, root),
        VmCommand::Detach { iface } => {
            let removed = vm::detach(&iface, root).map_err(|e| CliError::Failed(e.into()))?;
            println!(
                "detached guard from {iface} ({} pins removed)",
                removed.len()
            );
            Ok(())
        }
        VmCommand::Status { iface, json } => {
            let all = vm::status(root, iface.as_deref()).map_err(|e| CliError::Failed(e.into()))?;
            if json {
                let text = serde_json::to_string_pretty(&all).context("cannot encode status")?;
                println!("{text}");
            } else if all.is_empty() {
                println!("no guard attached under {}", root.display());
            } else {
                for status in &all {
                    print_status(status);
                }
            }
            Ok(())
        }
    }
}

fn attach(args: AttachArgs, root: &Path) -> Result<(), CliError> {
    let bad = |e: vm::ConfigError| CliError::BadInput(e.to_string());
    let file = match &args.config {
        Some(path) => GuardSettings::from_file(path).map_err(bad)?,
        None => GuardSettings::default(),
    };
    let flags = GuardSettings {
        iface: args.iface,
        backend_ip: args.backend_ip,
        backend_mac: args.backend_mac,
        app_ports: args.app_ports,
        dhcp_server: args.dhcp_server,
        allow_egress: args.allow_egress,
        allow_ipv6: args.allow_ipv6.then_some(true),
    };
    let config = file.overridden_by(flags).validate().map_err(bad)?;
    match vm::attach(&config, root) {
        Ok(AttachOutcome::Attached { dir }) => {
            println!(
                "attached guard on {} (pins in {})",
                config.iface,
                dir.display()
            );
            Ok(())
        }
        Ok(AttachOutcome::Updated { dir, slot }) => {
            println!(
                "updated policy of guard on {} in place (slot {slot}, pins in {})",
                config.iface,
                dir.display()
            );
            Ok(())
        }
        Err(AttachError::Netdev(e @ NetdevError::Unknown(_))) => {
            Err(CliError::BadInput(e.to_string()))
        }
        Err(e) => Err(CliError::Failed(e.into())),
    }
}

fn print_status(s: &VmStatus) {
    let state = if s.attached {
        "attached"
    } else {
        "NOT ATTACHED (interface gone or recreated)"
    };
    println!("{}: {state}, pins in {}", s.iface, s.pin_dir.display());
    for (name, link) in [
        ("ingress (xdp)", s.ingress_link),
        ("ingress vlan (tcx)", s.ingress_vlan_link),
        ("egress (tcx)", s.egress_link),
    ] {
        match link {
            Some(l) => println!(
                "  {name}: link {} -> prog {} on ifindex {}",
                l.id, l.prog_id, l.ifindex
            ),
            None => println!("  {name}: no link"),
        }
    }
    let p = &s.policy;
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.join(", ")
        }
    };
    println!(
        "  policy (slot {}): backend {}{}, app ports {}, dhcp server {}, egress {}, ipv6 {}",
        s.policy_slot,
        p.backend_ip,
        p.backend_mac
            .as_ref()
            .map(|m| format!(" (mac {m})"))
            .unwrap_or_default(),
        list(&p.app_ports.iter().map(u16::to_string).collect::<Vec<_>>()),
        p.dhcp_server,
        list(&p.allow_egress),
        if p.allow_ipv6 { "allowed" } else { "dropped" },
    );
    println!(
        "  {:<32} {:<8} {:<7} {:>12} {:>14}",
        "reason", "dir", "verdict", "packets", "bytes"
    );
    for c in &s.counters {
        println!(
            "  {:<32} {:<8} {:<7} {:>12} {:>14}",
            c.reason, c.direction, c.verdict, c.packets, c.bytes
        );
    }
}
