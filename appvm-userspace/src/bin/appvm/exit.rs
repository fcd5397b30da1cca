//! Exit codes: 2 for bad input (nothing was changed), 1 for failures.

use std::process::ExitCode;

#[derive(Debug)]
pub(crate) enum CliError {
    /// The command line or a config is wrong; nothing was changed.
    BadInput(String),
    /// The command was valid but could not be carried out.
    Failed(anyhow::Error),
}

impl CliError {
    pub(crate) fn report(self) -> ExitCode {
        match self {
            Self::BadInput(msg) => {
                eprintln!("appvm: {msg}");
                ExitCode::from(2)
            }
            Self::Failed(e) => {
                // Messages already carry their cause; `{:#}` would repeat it.
                eprintln!("appvm: {e}");
                ExitCode::from(1)
            }
        }
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        Self::Failed(e)
    }
}

/// clap's errors span lines (usage, hints); one line is what scripts log.
pub(crate) fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_owned()
}
