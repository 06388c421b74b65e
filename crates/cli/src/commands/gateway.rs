//! `carechain login`, `records` and `access-log`: the FHIR gateway, as a patient, delegate or
//! member uses it.

use crate::{gateway_client, keys as keystore};
use alloy::primitives::Address;
use carechain_contracts::Purpose;

/// `carechain login`.
#[derive(Debug, clap::Args)]
pub(crate) struct LoginArgs {
    #[command(flatten)]
    gateway: gateway_client::GatewayArgs,
    #[command(flatten)]
    key: keystore::KeyArgs,
}

/// `carechain records`.
#[derive(Debug, clap::Args)]
pub(crate) struct RecordsArgs {
    /// Resource types to search, comma-separated [default: every clinical type].
    #[arg(long = "type", value_name = "TYPES", default_value = gateway_client::DEFAULT_RECORD_TYPES, hide_default_value = true)]
    types: String,
    /// The patient (default: the signed-in address).
    #[arg(long)]
    patient: Option<Address>,
    /// Purpose of use [default: PATRQT for a patient or delegate, TREAT for a member key].
    #[arg(long)]
    purpose: Option<Purpose>,
    /// Print one FHIR searchset Bundle.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    gateway: gateway_client::GatewayArgs,
}

/// `carechain access-log`.
#[derive(Debug, clap::Args)]
pub(crate) struct AccessLogArgs {
    /// The patient (default: the signed-in address).
    #[arg(long)]
    patient: Option<Address>,
    /// Only accesses from this day (YYYY-MM-DD) or time (RFC 3339) on.
    #[arg(long, value_name = "DATE")]
    since: Option<String>,
    /// Print one FHIR searchset Bundle.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    gateway: gateway_client::GatewayArgs,
}

impl LoginArgs {
    /// Runs the command.
    pub(crate) async fn run(self) -> eyre::Result<()> {
        gateway_client::login(&self.gateway, &self.key).await
    }
}

impl RecordsArgs {
    /// Runs the command.
    pub(crate) async fn run(self) -> eyre::Result<()> {
        gateway_client::records(
            &self.gateway,
            self.patient,
            &self.types,
            self.purpose,
            self.json,
        )
        .await
    }
}

impl AccessLogArgs {
    /// Runs the command.
    pub(crate) async fn run(self) -> eyre::Result<()> {
        gateway_client::access_log(
            &self.gateway,
            self.patient,
            self.since.as_deref(),
            self.json,
        )
        .await
    }
}
