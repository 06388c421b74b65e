//! The command line's arguments, one file per command (its clap definitions and how it runs),
//! and what several commands share: a period (`--for` / `--until`), the transaction arguments
//! (`TxArgs`), reading a file or standard input.

pub(crate) mod audit;
pub(crate) mod break_glass;
pub(crate) mod consent;
pub(crate) mod decide;
pub(crate) mod delegate;
pub(crate) mod gateway;
pub(crate) mod keys;
pub(crate) mod membership;
pub(crate) mod research;

use crate::{chain, keys as keystore, time};
use eyre::{WrapErr, bail};
use std::path::PathBuf;

/// How long something lasts: `--for DURATION` from now, or `--until DATE`.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub(crate) struct Period {
    /// How long it lasts from now (e.g. 30d, 1y; also 90s, 15m, 12h, 2w).
    #[arg(long = "for", value_name = "DURATION")]
    duration: Option<String>,
    /// Its last day (YYYY-MM-DD, end of day UTC) or time (RFC 3339).
    #[arg(long, value_name = "DATE")]
    until: Option<String>,
}

impl Period {
    /// The end, in unix seconds.
    pub(crate) fn end(&self) -> eyre::Result<u64> {
        match (&self.duration, &self.until) {
            (Some(d), _) => Ok(time::now().saturating_add(time::parse_duration(d)?)),
            (None, Some(u)) => Ok(time::parse_date(u)?),
            (None, None) => bail!("say how long: --for 30d or --until 2027-01-31"),
        }
    }
}

/// Chain, key and confirmation: what every transaction needs.
#[derive(Debug, clap::Args)]
pub(crate) struct TxArgs {
    /// Do not ask before sending (required without a terminal).
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,
    #[command(flatten)]
    pub(crate) chain: chain::ChainArgs,
    #[command(flatten)]
    pub(crate) key: keystore::KeyArgs,
}

/// The text of `file`, or of standard input.
pub(crate) fn read_input(file: Option<&PathBuf>) -> eyre::Result<String> {
    use std::io::Read;
    match file {
        Some(path) => std::fs::read_to_string(path)
            .wrap_err_with(|| format!("cannot read {}", path.display())),
        None => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .wrap_err("cannot read standard input")?;
            Ok(text)
        }
    }
}
