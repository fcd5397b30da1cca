//! `appvm cert issue | register`: the VM's certificate for the pathway.

use std::{net::IpAddr, path::PathBuf};

use appvm::{
    backend::config::BackendConfig,
    cert::{
        issue::{DEFAULT_DAYS, IssueRequest, issue},
        register::register,
    },
    render::apply::apply,
    table::store,
};
use clap::{Args, Subcommand};

use crate::exit::CliError;

#[derive(Debug, Args)]
pub(crate) struct CertArgs {
    /// Backend configuration (for `register`).
    #[arg(long, global = true, env = "APPVM_CONFIG", default_value = appvm::backend::config::DEFAULT_CONFIG)]
    config: PathBuf,
    #[command(subcommand)]
    command: CertCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CertCommand {
    /// (VM controller) Generate an ECDSA P-256 key and a self-signed certificate.
    ///
    /// Writes DIR/NAME.crt and DIR/NAME.key (mode 0600); never overwrites
    /// without --force; prints the SHA-256 fingerprint.
    ///
    /// Example: appvm cert issue --name redcap --dns redcap.app.internal --ip 192.168.128.20 --out /etc/appvm/vm
    Issue {
        #[arg(long)]
        name: String,
        /// DNS name for the SAN (repeatable; default NAME).
        #[arg(long)]
        dns: Vec<String>,
        /// IP address for the SAN (repeatable).
        #[arg(long)]
        ip: Vec<String>,
        /// Validity in days.
        #[arg(long, default_value_t = DEFAULT_DAYS)]
        days: u32,
        #[arg(long)]
        out: PathBuf,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
    /// (Backend) Check a VM's certificate, make it the VM's only trust anchor
    /// for Nginx (replacing any previous one) and re-render the Nginx site.
    ///
    /// Example: appvm cert register --name redcap --cert redcap.crt
    Register {
        #[arg(long)]
        name: String,
        #[arg(long)]
        cert: PathBuf,
    },
}

fn bad(e: impl ToString) -> CliError {
    CliError::BadInput(e.to_string())
}

pub(crate) fn run(args: CertArgs) -> Result<(), CliError> {
    match args.command {
        CertCommand::Issue {
            name,
            dns,
            ip,
            days,
            out,
            force,
        } => {
            let ips = ip
                .iter()
                .map(|s| {
                    s.parse::<IpAddr>()
                        .map_err(|_e| bad(format!("invalid ip '{s}': not an IP address")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let issued = issue(&IssueRequest {
                name,
                dns,
                ips,
                days,
                out,
                force,
            })
            .map_err(bad)?;
            println!("certificate {}", issued.cert.display());
            println!("key         {} (mode 0600)", issued.key.display());
            println!("valid until {}", issued.not_after);
            println!("sha256      {}", issued.fingerprint);
            Ok(())
        }
        CertCommand::Register { name, cert } => {
            let cfg = BackendConfig::load(&args.config).map_err(bad)?;
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let info = register(&cfg, &name, &cert, now).map_err(bad)?;
            println!("registered {name}: sha256 {}", info.fingerprint);
            let table = store::load_valid(&cfg).map_err(bad)?;
            match apply(&cfg, &table) {
                Ok(a) if a.nginx => println!("nginx site re-rendered and reloaded"),
                Ok(_) => {}
                Err(e) => {
                    return Err(CliError::Failed(anyhow::anyhow!(
                        "certificate registered, but {e}"
                    )));
                }
            }
            Ok(())
        }
    }
}
