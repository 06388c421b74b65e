//! Asking the person at the terminal: confirmations and passwords.

use std::io::{BufRead, IsTerminal, Write};

/// Why a question could not be asked or was answered no.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PromptError {
    /// There is no terminal to ask on and `--yes` was not given.
    #[error(
        "refusing to {what} without a confirmation: there is no terminal to ask on; review the summary above and run again with --yes"
    )]
    NoTerminal {
        /// What would have been done.
        what: String,
    },
    /// The answer was not yes.
    #[error("cancelled: nothing was signed or sent")]
    Declined,
    /// Reading the terminal failed.
    #[error("cannot read from the terminal: {0}")]
    Io(#[from] std::io::Error),
}

/// Whether standard input is a terminal a person can answer on.
pub(crate) fn interactive() -> bool {
    std::io::stdin().is_terminal()
}

/// Asks `question` (on stderr) unless `yes`; refuses without a terminal.
pub(crate) fn confirm(question: &str, what: &str, yes: bool) -> Result<(), PromptError> {
    if yes {
        return Ok(());
    }
    if !interactive() {
        return Err(PromptError::NoTerminal {
            what: what.to_owned(),
        });
    }
    let mut stderr = std::io::stderr();
    write!(stderr, "{question} [y/N] ")?;
    stderr.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(PromptError::Declined),
    }
}

/// Reads a secret from the terminal without echo.
pub(crate) fn secret(prompt: &str) -> Result<String, PromptError> {
    Ok(rpassword::prompt_password(prompt)?)
}
