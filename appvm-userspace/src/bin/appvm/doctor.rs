//! `appvm doctor`: a pass/fail table; exit 1 on any failure.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use appvm::doctor::{Outcome, run as checks};
use clap::Args;

use crate::exit::CliError;

#[derive(Debug, Args)]
pub(crate) struct DoctorArgs {
    /// Backend configuration (backend checks are skipped without one).
    #[arg(long, env = "APPVM_CONFIG", default_value = appvm::backend::config::DEFAULT_CONFIG)]
    config: PathBuf,
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: DoctorArgs, root: &Path) -> Result<(), CliError> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let results = checks(root, Some(&args.config), now);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&results).context("encode")?
        );
    } else {
        let width = results.iter().map(|c| c.check.len()).max().unwrap_or(5);
        for c in &results {
            let o = match c.outcome {
                Outcome::Pass => "pass",
                Outcome::Fail => "FAIL",
                Outcome::Skip => "skip",
            };
            println!("{:<width$}  {o}  {}", c.check, c.detail);
        }
    }
    let failed = results
        .iter()
        .filter(|c| c.outcome == Outcome::Fail)
        .count();
    if failed > 0 {
        return Err(CliError::Failed(anyhow::anyhow!(
            "{failed} check(s) failed"
        )));
    }
    Ok(())
}
