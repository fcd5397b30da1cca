//! `cargo xtask <task>`: the project's own commands.
//!
//! - `setup`: install what building and testing need (idempotent, fast when done)
//! - `test`:  setup, build, then every test (unit, verdict, end-to-end)
//! - `demo`:  setup, build, then the namespace lab
//! - `vm-test`: setup, build, then the guard at the boot of a qemu guest
//! - `lint`:  rustfmt and clippy, warnings as errors
//! - `bench`: per-packet cost, the receive path against nftables, sync and
//!   control-plane speed
//! - `fuzz`:  differential fuzzing of the VM guard

mod cmd;
mod guest;
mod setup;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "xtask", about = "appvm project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install the eBPF toolchain, test tools and bpffs mount if missing.
    Setup,
    /// Set up, build, and run all tests (needs root).
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, build, and run the namespace lab demo (needs root).
    Demo,
    /// Boot a qemu guest with the guard on the lab's secure network (needs root).
    VmTest,
    /// rustfmt --check and clippy -D warnings on every crate.
    Lint,
    /// Differential fuzzing of the VM guard against its reference model.
    Fuzz {
        /// Frames per program and policy (two of each: 4 x COUNT in all).
        #[arg(long, default_value_t = 500_000)]
        count: u64,
        #[arg(long, default_value_t = 0x00c0_ffee)]
        seed: u64,
    },
    /// Every benchmark: per-packet cost (BPF_PROG_TEST_RUN), the receive
    /// path against nftables, table sync and the control plane (needs root;
    /// installs nftables and ethtool if missing).
    Bench {
        /// Packets per BPF_PROG_TEST_RUN call (micro).
        #[arg(long, default_value_t = 1_000_000)]
        repeat: u32,
        /// Interleaved runs (micro).
        #[arg(long, default_value_t = 11)]
        runs: u32,
        /// Generated frames per configuration and round (net).
        #[arg(long, default_value_t = 200_000)]
        packets: u32,
        /// Rounds in random order (net).
        #[arg(long, default_value_t = 20)]
        rounds: u32,
        /// Table changes timed while the service runs (control).
        #[arg(long, default_value_t = 200)]
        changes: u32,
        /// Also write every figure as JSON here.
        #[arg(long)]
        json: Option<std::path::PathBuf>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.task {
        Task::Setup => setup::run(),
        Task::Test { args } => {
            setup::run()?;
            cmd::cargo(&["build", "--workspace", "--bins"])?;
            let mut test = vec!["test", "--workspace", "--no-fail-fast"];
            if !args.is_empty() {
                test.push("--");
                test.extend(args.iter().map(String::as_str));
            }
            cmd::cargo(&test)
        }
        Task::Demo => {
            setup::run()?;
            cmd::cargo(&["build", "--workspace", "--bins"])?;
            cmd::run(std::process::Command::new(
                cmd::target_dir().join("debug/appvm-lab"),
            ))
        }
        Task::VmTest => {
            setup::run()?;
            cmd::cargo(&["build", "--workspace", "--bins"])?;
            cmd::run({
                let mut lab = std::process::Command::new(cmd::target_dir().join("debug/appvm-lab"));
                lab.arg("guest");
                lab
            })
        }
        Task::Fuzz { count, seed } => {
            setup::run()?;
            cmd::cargo(&["build", "--release", "--workspace", "--bins"])?;
            lab_release(&["fuzz", &count.to_string(), &seed.to_string()])
        }
        Task::Bench {
            repeat,
            runs,
            packets,
            rounds,
            changes,
            json,
        } => {
            setup::run()?;
            setup::ensure_packages(&["nftables", "ethtool"])?;
            cmd::cargo(&["build", "--release", "--workspace", "--bins"])?;
            let mut args = vec![
                "bench".to_owned(),
                "--repeat".into(),
                repeat.to_string(),
                "--runs".into(),
                runs.to_string(),
                "--packets".into(),
                packets.to_string(),
                "--rounds".into(),
                rounds.to_string(),
                "--changes".into(),
                changes.to_string(),
            ];
            if let Some(path) = json {
                args.push("--json".into());
                args.push(path.display().to_string());
            }
            lab_release(&args.iter().map(String::as_str).collect::<Vec<_>>())
        }
        Task::Lint => {
            cmd::cargo(&["fmt", "--all", "--check"])?;
            cmd::cargo(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ])
        }
    }
}

/// Runs the release build of `appvm-lab` with `args`.
fn lab_release(args: &[&str]) -> Result<()> {
    let mut lab = std::process::Command::new(cmd::target_dir().join("release/appvm-lab"));
    lab.args(args);
    cmd::run(lab)
}
