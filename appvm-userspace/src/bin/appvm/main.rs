//! `appvm`: attach and inspect appvm's kernel guards.

mod backend;
mod cert;
mod doctor;
mod events;
mod exit;
mod render;
mod stats;
mod table;
mod vm;

use std::{path::PathBuf, process::ExitCode};

use clap::{CommandFactory as _, Parser, Subcommand};

use crate::exit::CliError;

/// eBPF enforcement for application secure VMs.
///
/// Inside a VM: `appvm vm attach` at boot. On the backend: `appvm table`,
/// `appvm cert register`, `appvm backend run`. Operators: `appvm stats`,
/// `appvm events`, `appvm doctor`.
#[derive(Debug, Parser)]
#[command(name = "appvm", version)]
struct Cli {
    /// bpffs directory under which programs, links and maps are pinned.
    #[arg(long, global = true, env = "APPVM_PIN_ROOT", default_value = appvm_common::pins::DEFAULT_PIN_ROOT)]
    pin_root: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The application-VM guard (run inside the VM by its controller).
    #[command(subcommand)]
    Vm(vm::VmCommand),
    /// The application-VM table on the backend (fixed IPs pinned by MAC).
    Table(table::TableArgs),
    /// The backend host service and its programs.
    Backend(backend::BackendArgs),
    /// Certificates of the external pathway (VM controller and backend).
    Cert(cert::CertArgs),
    /// Render the Nginx and dnsmasq configuration from the config and table.
    Render(render::RenderArgs),
    /// Drop events (rate-limited in the kernel) from every guard and the backend.
    ///
    /// Example: appvm events --follow --json
    Events(events::EventsArgs),
    /// Packets and bytes by reason for every attached program (reads the pins).
    ///
    /// Example: appvm stats --watch 5
    Stats(stats::StatsArgs),
    /// Shell completions for bash, zsh, fish, elvish or powershell.
    ///
    /// Example: appvm completions bash > /etc/bash_completion.d/appvm
    Completions { shell: clap_complete::Shell },
    /// The manual page (roff) on stdout.
    ///
    /// Example: appvm man > /usr/share/man/man8/appvm.8
    Man,
    /// Check kernel support, pins, maps against the table, rendered files
    /// and certificates; exit 1 if anything fails.
    ///
    /// Example: appvm doctor
    Doctor(doctor::DoctorArgs),
}

fn main() -> ExitCode {
    // SAFETY: restoring the default disposition at start-up, before any
    // thread exists: `appvm vm status | head` then ends quietly.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("APPVM_LOG")
                .unwrap_or_else(|_unset| "warn".into()),
        )
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            print!("{e}");
            return ExitCode::SUCCESS;
        }
        Err(e) => return CliError::BadInput(exit::first_line(&e.to_string())).report(),
    };
    let result = match cli.command {
        Command::Vm(cmd) => vm::run(cmd, &cli.pin_root),
        Command::Table(args) => table::run(args),
        Command::Backend(args) => backend::run(args, &cli.pin_root),
        Command::Cert(args) => cert::run(args),
        Command::Render(args) => render::run(args),
        Command::Events(args) => events::run(args, &cli.pin_root),
        Command::Stats(args) => stats::run(args, &cli.pin_root),
        Command::Doctor(args) => doctor::run(args, &cli.pin_root),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "appvm", &mut std::io::stdout());
            Ok(())
        }
        Command::Man => clap_mangen::Man::new(Cli::command())
            .render(&mut std::io::stdout())
            .map_err(|e| CliError::Failed(e.into())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.report(),
    }
}
