//! `appvm render nginx | dnsmasq`: the rendered configuration.

use std::path::PathBuf;

use appvm::{
    backend::config::BackendConfig,
    render::{apply, dnsmasq, nginx},
    table::store,
};
use clap::{Args, Subcommand};

use crate::exit::CliError;

#[derive(Debug, Args)]
pub(crate) struct RenderArgs {
    #[arg(long, global = true, env = "APPVM_CONFIG", default_value = appvm::backend::config::DEFAULT_CONFIG)]
    config: PathBuf,
    #[command(subcommand)]
    command: RenderCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum RenderCommand {
    /// The Nginx site of the external pathway (stdout, or installed with --write).
    ///
    /// --write validates with `nginx -t`, keeps the old site if that fails,
    /// then reloads Nginx and checks its error log for a failed reload.
    ///
    /// Example: appvm render nginx --write
    Nginx {
        #[arg(long)]
        write: bool,
    },
    /// dnsmasq's configuration and addn-hosts file (stdout, or installed with --write).
    ///
    /// --write validates with `dnsmasq --test` first.
    ///
    /// Example: appvm render dnsmasq --write
    Dnsmasq {
        #[arg(long)]
        write: bool,
    },
}

fn bad(e: impl ToString) -> CliError {
    CliError::BadInput(e.to_string())
}

fn failed(e: impl std::fmt::Display) -> CliError {
    CliError::Failed(anyhow::anyhow!("{e}"))
}

pub(crate) fn run(args: RenderArgs) -> Result<(), CliError> {
    let cfg = BackendConfig::load(&args.config).map_err(bad)?;
    let table = store::load_valid(&cfg).map_err(bad)?;
    match args.command {
        RenderCommand::Nginx { write: false } => {
            print!("{}", nginx::render(&cfg, &table).map_err(bad)?);
        }
        RenderCommand::Nginx { write: true } => {
            let n = cfg
                .nginx
                .as_ref()
                .ok_or_else(|| bad("missing [nginx] in the backend config"))?;
            let text = nginx::render(&cfg, &table).map_err(bad)?;
            let changed = apply::install_nginx(n, &text).map_err(failed)?;
            println!(
                "{} {}",
                if changed { "installed" } else { "unchanged:" },
                n.site.display()
            );
        }
        RenderCommand::Dnsmasq { write: false } => {
            print!("{}", dnsmasq::render_conf(&cfg).map_err(bad)?);
            print!(
                "# addn-hosts:\n{}",
                dnsmasq::render_addn_hosts(&cfg, &table)
            );
        }
        RenderCommand::Dnsmasq { write: true } => {
            let changed = apply::install_dnsmasq_conf(&cfg).map_err(failed)?;
            let applied = apply::apply_dns(&cfg, &table);
            let d = cfg
                .dnsmasq
                .as_ref()
                .ok_or_else(|| bad("missing [dnsmasq]"))?;
            println!(
                "{} {}",
                if changed { "installed" } else { "unchanged:" },
                d.conf.display()
            );
            if let Err(e) = applied {
                return Err(failed(e));
            }
        }
    }
    Ok(())
}
