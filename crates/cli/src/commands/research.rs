//! `carechain import` (an EHR's transaction Bundles, Synthea's for one, into a gateway) and
//! `carechain research export` (FHIR Bulk Data export for research organisations).

use crate::{bulk, gateway_client::GatewayArgs};
use std::path::PathBuf;

/// `carechain import`.
#[derive(Debug, clap::Args)]
pub(crate) struct ImportArgs {
    /// Transaction Bundles to import (JSON), each all or nothing, in order.
    #[arg(required = true, value_name = "BUNDLE")]
    pub(crate) bundles: Vec<PathBuf>,
    /// The wallet of the Bundle's only Patient (a Bundle of one patient, as Synthea writes).
    #[arg(long, value_name = "ADDRESS", conflicts_with = "wallets")]
    pub(crate) patient_wallet: Option<String>,
    /// A JSON file mapping the source's Patient ids (or entry fullUrls) to wallets:
    /// `{"<Patient id>": "0x..."}`, for Bundles of several patients.
    #[arg(long, value_name = "FILE")]
    pub(crate) wallets: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) gateway: GatewayArgs,
}

impl ImportArgs {
    /// Runs the command.
    pub(crate) async fn run(self) -> eyre::Result<()> {
        bulk::import(&self).await
    }
}

/// `carechain research ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ResearchCommand {
    /// Export the records research consent allows to your research organisation, de-identified
    /// for a study (FHIR Bulk Data): kick off, show progress while the gateway works, download
    /// the NDJSON files.
    #[command(after_help = "Examples:\n  \
        carechain research export --study diabetes-2027 --out ./export\n  \
        carechain research export --study diabetes-2027 --type Patient,Observation,Condition --since 2026-01-01\n  \
        carechain research export --status <status URL>          # resume polling a job\n  \
        carechain research export --cancel <status URL>\n\n\
        Needs `carechain login` with a member key of a research organisation. Only patients whose\n\
        on-chain consent allows purpose HRESCH to your organisation are exported, decided at the\n\
        job's start block (printed, and in the manifest).")]
    Export(ExportArgs),
}

impl ResearchCommand {
    /// Runs the command.
    pub(crate) async fn run(self) -> eyre::Result<()> {
        match self {
            Self::Export(args) => bulk::export(&args).await,
        }
    }
}

/// `carechain research export`.
#[derive(Debug, clap::Args)]
pub(crate) struct ExportArgs {
    /// The study the pseudonyms are made for (an id: letters, digits, `-`, `.`): the same
    /// patient has the same pseudonym at every custodian within a study, and another one in
    /// the next study.
    #[arg(long, required_unless_present_any = ["status", "cancel"])]
    pub(crate) study: Option<String>,
    /// Resource types to export, comma-separated [default: every type of patient data].
    #[arg(long = "type", value_name = "TYPES")]
    pub(crate) types: Option<String>,
    /// Only resources changed since this day (YYYY-MM-DD) or time (RFC 3339).
    #[arg(long, value_name = "DATE")]
    pub(crate) since: Option<String>,
    /// Where to write the files (one `<Type>.ndjson` each, and `manifest.json`).
    #[arg(long, value_name = "DIR", default_value = "export")]
    pub(crate) out: PathBuf,
    /// Resume polling a job already kicked off (its status URL).
    #[arg(long, value_name = "URL", conflicts_with = "cancel")]
    pub(crate) status: Option<String>,
    /// Cancel a job (its status URL): the gateway stops it and deletes its files.
    #[arg(long, value_name = "URL")]
    pub(crate) cancel: Option<String>,
    #[command(flatten)]
    pub(crate) gateway: GatewayArgs,
}
