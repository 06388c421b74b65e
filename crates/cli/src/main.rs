//! `carechain`: command line for patients and operators.
//!
//! - `keys new | import | list | address`: Web3 Secret Storage keystores ([`keys`]);
//! - `consent grant | revoke | list | submit`: consent by name, the EIP-712 typed data wallets
//!   sign, signed consent relayed by anyone ([`consent`]);
//! - `delegate add | remove`, `org admit | suspend | reinstate`,
//!   `member add | suspend | reinstate | retire | rotate` ([`ops`]);
//! - `deploy`: the project's forge deploy script and its manifest ([`deploy`]);
//! - `login`, `records`, `access-log`: the FHIR gateway ([`gateway_client`]);
//! - `import`, `research export`: EHR transaction Bundles in, de-identified research exports
//!   out (FHIR Bulk Data) ([`bulk`]);
//! - `codes`: the FHIR code tables the on-chain consent is expressed in;
//! - `decide`: asks `ConsentRegistry.decide` whether a requester may act on a patient's data.
//!
//! The arguments of each command are in [`commands`], one file per command.
//!
//! Errors reach the person as one line each, saying what to do; no backtraces.

mod bulk;
mod chain;
mod commands;
mod consent;
mod deploy;
mod gateway_client;
mod keys;
mod ops;
mod prompt;
mod time;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// `$XDG_CONFIG_HOME/carechain`, else `~/.config/carechain`.
pub(crate) fn config_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|home| PathBuf::from(home).join(".config"))
        })?;
    Some(base.join("carechain"))
}

/// carechain: consent and access layer of the healthcare consortium.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    long_about = None,
    propagate_version = true,
    after_help = "Getting started (a local stack from scripts/stack):\n  \
        carechain keys new --name alice\n  \
        carechain consent grant --key alice --grantee 0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC \\\n    \
        --types Observation --purpose TREAT --for 30d\n  \
        carechain consent list --key alice\n\n\
        Chain commands read CARECHAIN_RPC_URL and CARECHAIN_MANIFEST; `carechain COMMAND --help` has examples."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Manage signing keys: Web3 Secret Storage keystores (the format of `cast wallet` and geth).
    #[command(
        subcommand,
        after_help = "Examples:\n  carechain keys new --name alice\n  carechain keys list"
    )]
    Keys(commands::keys::KeysCommand),
    /// Grant, revoke and list a patient's consent, by name: resource types, actions, purposes
    /// of use and durations.
    #[command(
        subcommand,
        after_help = "Examples:\n  carechain consent grant --key alice --grantee 0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC \\\n    --types Observation,Condition --purpose TREAT --for 30d\n  carechain consent list --key alice"
    )]
    Consent(commands::consent::ConsentCommand),
    /// Let a guardian, caregiver or proxy act for you (read your records, grant and revoke
    /// consent), until a date.
    #[command(
        subcommand,
        after_help = "Example:\n  carechain delegate add --key alice --delegate 0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65 --kind guardian --for 1y"
    )]
    Delegate(commands::delegate::DelegateCommand),
    /// Emergency access (break-glass) by a member key: opens a bounded session on the chain
    /// in which the organisation may read the patient's records for purpose ETREAT only. Every
    /// such access is audited and queued for compliance review.
    #[command(
        subcommand,
        after_help = "Example:\n  carechain break-glass open --key dr-b --patient 0x90F79bf6EB2c4f870365E785982E1f101E93b906 \\\n    --reason life-threatening --for 1h\n  carechain break-glass close --key dr-b --patient 0x90F7..."
    )]
    BreakGlass(commands::break_glass::BreakGlassCommand),
    /// Compliance: verify the gateway's audit log against its on-chain anchors, and fetch an
    /// AuditEvent's inclusion proof (needs `carechain login` with a compliance member key).
    #[command(subcommand)]
    Audit(commands::audit::AuditCommand),
    /// Sign in to a carechain gateway with your key (EIP-4361) and keep the bearer token.
    #[command(
        after_help = "Example:\n  carechain login --key alice --gateway http://127.0.0.1:8080\n\n\
        The token is kept in --token-file (0600) for `records` and `access-log`. It lasts as long\n\
        as the gateway's tokens (15 minutes unless its operator set CARECHAIN_GATEWAY_TOKEN_TTL):\n\
        the signed message's Expiration Time is taken from the gateway. Run login again then."
    )]
    Login(commands::gateway::LoginArgs),
    /// Your own records (or, as a delegate, your patient's) through the gateway's FHIR search.
    #[command(
        after_help = "Examples:\n  carechain records\n  carechain records --type Observation,Condition\n  \
        carechain records --json > my-records.json\n  \
        carechain records --patient 0x7099...   # as a delegate\n\n\
        Needs `carechain login` first."
    )]
    Records(commands::gateway::RecordsArgs),
    /// Who accessed your data: the gateway's audit trail for you (FHIR AuditEvent search,
    /// `GET [base]/AuditEvent?patient=..`), allowed and denied requests alike.
    #[command(
        after_help = "Examples:\n  carechain access-log\n  carechain access-log --since 2026-01-01 --json\n\n\
        Needs `carechain login` first."
    )]
    AccessLog(commands::gateway::AccessLogArgs),
    /// Import an EHR's transaction Bundles (Synthea's, for one) through the gateway, each
    /// linked to its patient's wallet; hospitals and clinicians go to the directory.
    #[command(after_help = "Examples:\n  \
        carechain import --patient-wallet 0x90F79bf6EB2c4f870365E785982E1f101E93b906 tests/data/synthea/bundle-afhir.json\n  \
        carechain import --wallets wallets.json exports/*.json     # {\"<source Patient id>\": \"0x...\"}\n\n\
        Needs `carechain login` with a member key of the custodian organisation, and the\n\
        patients' consent for it to create their records.")]
    Import(commands::research::ImportArgs),
    /// Research organisations: de-identified FHIR Bulk Data exports of the records patients
    /// consented to share for research (purpose HRESCH).
    #[command(subcommand)]
    Research(commands::research::ResearchCommand),
    /// Operators: deploy the contracts with the project's forge script and write the
    /// deployment manifest the indexer, the gateway and this command line read.
    #[command(after_help = "Examples (from the repository's root):\n  \
        CARECHAIN_PRIVATE_KEY=0xac09...ff80 carechain deploy --rpc http://127.0.0.1:8545\n  \
        carechain deploy --key deployer --rpc https://rpc.example --governance 0xSafe... --out deployments/prod.json\n\n\
        Same as scripts/lib.sh deploy_contracts; the key is handed to forge as a throw-away keystore.")]
    Deploy(deploy::DeployArgs),
    /// Operators: admit, suspend and reinstate consortium organisations (governance key).
    #[command(
        subcommand,
        after_help = "Example:\n  carechain org admit --key governance --org 0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc --kind hospital --name \"St. Mary Hospital\""
    )]
    Org(commands::membership::OrgCommand),
    /// Operators: add, suspend, reinstate, retire and rotate member keys (governance or the
    /// organisation's own key).
    #[command(
        subcommand,
        after_help = "Example:\n  carechain member add --key governance --org 0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc \\\n    --member 0x976EA74026E726554dB657fA54763abd0C3a0aa9 --role practitioner"
    )]
    Member(commands::membership::MemberCommand),
    /// Print the FHIR code tables (resource types, SMART v2 actions, purposes of use) with
    /// their on-chain bit indices.
    #[command(after_help = "Example:\n  carechain codes")]
    Codes,
    /// Ask the chain whether REQUESTER may perform ACTION on PATIENT's resources of TYPE for
    /// PURPOSE, and on what basis (ConsentRegistry.decide).
    #[command(
        after_help = "Example:\n  carechain decide --rpc http://127.0.0.1:8545 \\\n    \
        --manifest deployments/31337.json --patient 0x70997970C51812dc3A010C7d01b50e0d17dc79C8 \\\n    \
        --requester 0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC \\\n    \
        --type Observation --action read --purpose TREAT"
    )]
    Decide(commands::decide::DecideArgs),
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse().command).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // The chain of causes, one line each; no backtrace (this is for people).
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> eyre::Result<()> {
    match command {
        Command::Codes => {
            commands::decide::print_codes();
            Ok(())
        }
        Command::Decide(args) => commands::decide::decide(args).await,
        Command::Keys(command) => command.run(),
        Command::Consent(command) => command.run().await,
        Command::Delegate(command) => command.run().await,
        Command::BreakGlass(command) => command.run().await,
        Command::Audit(command) => command.run().await,
        Command::Deploy(args) => deploy::deploy(args).await,
        Command::Login(args) => args.run().await,
        Command::Records(args) => args.run().await,
        Command::AccessLog(args) => args.run().await,
        Command::Import(args) => args.run().await,
        Command::Research(command) => command.run().await,
        Command::Org(command) => command.run().await,
        Command::Member(command) => command.run().await,
    }
}
