//! `appvm backend run | detach | status`: the backend host service.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use appvm::{
    backend::{attach, config::BackendConfig, service, status},
    table::store,
};
use clap::{Args, Subcommand};

use crate::exit::CliError;

#[derive(Debug, Args)]
pub(crate) struct BackendArgs {
    /// Backend configuration (interfaces, public IP and port, pool, table).
    #[arg(long, global = true, env = "APPVM_CONFIG", default_value = appvm::backend::config::DEFAULT_CONFIG)]
    config: PathBuf,
    #[command(subcommand)]
    command: BackendCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum BackendCommand {
    /// Attach (or adopt) the backend programs and keep their maps equal to
    /// the table until SIGTERM; the programs stay attached after it exits.
    ///
    /// Example: appvm backend run --config /etc/appvm/backend.toml --metrics-listen 127.0.0.1:9100
    Run {
        /// Serve Prometheus metrics at http://ADDR/metrics.
        #[arg(long, value_name = "ADDR")]
        metrics_listen: Option<std::net::SocketAddr>,
    },
    /// Remove the backend programs and everything they pinned.
    ///
    /// Example: appvm backend detach
    Detach,
    /// Counters by reason and per-VM traffic, from the pinned maps.
    ///
    /// Example: appvm backend status --json
    Status {
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(args: BackendArgs, root: &Path) -> Result<(), CliError> {
    match args.command {
        BackendCommand::Run { metrics_listen } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the runtime")?;
            runtime
                .block_on(service::run(
                    &args.config,
                    root,
                    service::ServiceOptions { metrics_listen },
                ))
                .map_err(|e| match e {
                    service::ServiceError::Config(e) => CliError::BadInput(e.to_string()),
                    other => CliError::Failed(other.into()),
                })
        }
        BackendCommand::Detach => {
            let removed = attach::detach(root).context("cannot detach")?;
            println!("detached backend programs ({} pins removed)", removed.len());
            Ok(())
        }
        BackendCommand::Status { json } => {
            let cfg =
                BackendConfig::load(&args.config).map_err(|e| CliError::BadInput(e.to_string()))?;
            let table = store::load(&cfg.table).map_err(|e| CliError::BadInput(e.to_string()))?;
            let s = status::status(root, &table)
                .map_err(|e| CliError::Failed(anyhow::anyhow!("{e}")))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s).context("encode")?);
                return Ok(());
            }
            println!(
                "backend programs pinned in {} (policy slot {})",
                s.pin_dir, s.policy_slot
            );
            println!(
                "  {:<34} {:<7} {:>12} {:>14}",
                "reason", "verdict", "packets", "bytes"
            );
            for c in &s.counters {
                println!(
                    "  {:<34} {:<7} {:>12} {:>14}",
                    c.reason, c.verdict, c.packets, c.bytes
                );
            }
            println!(
                "  {:<24} {:<15} {:<9} {:>10} {:>12} {:>10}",
                "vm", "ip", "in map", "packets", "bytes", "spoofed"
            );
            for v in &s.vms {
                println!(
                    "  {:<24} {:<15} {:<9} {:>10} {:>12} {:>10}",
                    v.name,
                    v.ip,
                    if v.in_kernel { "yes" } else { "NO" },
                    v.packets,
                    v.bytes,
                    v.spoofed_packets
                );
            }
            Ok(())
        }
    }
}
