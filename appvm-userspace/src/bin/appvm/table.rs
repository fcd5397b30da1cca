//! `appvm table add | remove | list | show`: the application-VM table.

use std::path::PathBuf;

use anyhow::Context as _;
use appvm::{
    backend::config::BackendConfig,
    table::{AddRequest, TableEntry, store},
};
use clap::{Args, Subcommand};

use crate::exit::CliError;

#[derive(Debug, Args)]
pub(crate) struct TableArgs {
    /// Backend configuration (secure network, VM pool, table and hosts file).
    #[arg(long, global = true, env = "APPVM_CONFIG", default_value = appvm::backend::config::DEFAULT_CONFIG)]
    config: PathBuf,
    #[command(subcommand)]
    command: TableCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TableCommand {
    /// Add a VM, allocating the lowest free IP of the pool unless --ip is given.
    ///
    /// Example: appvm table add --name redcap --mac 02:00:00:00:00:20 --vm-config cfg-7 --port 443
    Add {
        /// DNS label used for DNS and the VM's certificate.
        #[arg(long)]
        name: String,
        #[arg(long)]
        mac: String,
        /// The platform's VM configuration id.
        #[arg(long)]
        vm_config: String,
        /// A specific IP from the pool.
        #[arg(long)]
        ip: Option<String>,
        /// Port opened for external access (repeatable; default from the config).
        #[arg(long = "port", allow_negative_numbers = true)]
        ports: Vec<i64>,
    },
    /// Remove a VM by name.
    ///
    /// Example: appvm table remove redcap
    Remove { name: String },
    /// List every VM.
    ///
    /// Example: appvm table list --json
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one VM.
    ///
    /// Example: appvm table show redcap --json
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

fn bad(e: impl ToString) -> CliError {
    CliError::BadInput(e.to_string())
}

pub(crate) fn run(args: TableArgs) -> Result<(), CliError> {
    let cfg = BackendConfig::load(&args.config).map_err(bad)?;
    match args.command {
        TableCommand::Add {
            name,
            mac,
            vm_config,
            ip,
            ports,
        } => {
            let req = AddRequest {
                name,
                mac,
                vm_config,
                ip,
                ports,
            };
            let entry = store::update(&cfg, |t| t.add(&req, &cfg)).map_err(bad)?;
            println!(
                "added {} {} {} ports {:?}",
                entry.name, entry.mac, entry.ip, entry.ports
            );
            Ok(())
        }
        TableCommand::Remove { name } => {
            let entry = store::update(&cfg, |t| t.remove(&name)).map_err(bad)?;
            println!("removed {} ({})", entry.name, entry.ip);
            Ok(())
        }
        TableCommand::List { json } => {
            let table = store::load_valid(&cfg).map_err(bad)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&table.vms).context("encode")?
                );
            } else {
                print_entries(&table.vms);
            }
            Ok(())
        }
        TableCommand::Show { name, json } => {
            let table = store::load_valid(&cfg).map_err(bad)?;
            let entry = table
                .get(&name)
                .ok_or_else(|| bad(format!("no VM named '{name}' in the table")))?;
            if json {
                println!("{}", serde_json::to_string_pretty(entry).context("encode")?);
            } else {
                print_entries(std::slice::from_ref(entry));
            }
            Ok(())
        }
    }
}

fn print_entries(entries: &[TableEntry]) {
    println!(
        "{:<24} {:<17} {:<15} {:<16} ports",
        "name", "mac", "ip", "vm_config"
    );
    for e in entries {
        let ports: Vec<String> = e.ports.iter().map(u16::to_string).collect();
        println!(
            "{:<24} {:<17} {:<15} {:<16} {}",
            e.name,
            e.mac,
            e.ip,
            e.vm_config,
            ports.join(",")
        );
    }
}
