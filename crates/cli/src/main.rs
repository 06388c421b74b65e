//! `carechain`: command line for patients and operators.
//!
//! - `keys new | import | list | address`: Web3 Secret Storage keystores ([`keys`]);
//! - `consent grant | revoke | list | submit`: consent by name, the EIP-712 typed data wallets
//!   sign, signed consent relayed by anyone ([`consent`]);
//! - `delegate add | remove`, `org admit | suspend | reinstate`,
//!   `member add | suspend | reinstate | retire | rotate` ([`ops`]);
//! - `deploy`: the project's forge deploy script and its manifest ([`deploy`]);
//! - `login`, `records`, `access-log`: the FHIR gateway ([`gateway`]);
//! - `codes`: the FHIR code tables the on-chain consent is expressed in;
//! - `decide`: asks `ConsentRegistry.decide` whether a requester may act on a patient's data.
//!
//! Errors reach the person as one line each, saying what to do; no backtraces.

mod chain;
mod consent;
mod deploy;
mod gateway;
mod keys;
mod ops;
mod prompt;
mod time;

use alloy::{
    network::Ethereum,
    primitives::Address,
    providers::{Provider, RootProvider},
};
use carechain_contracts::{
    Action, Basis, ConsentRegistry, DeploymentManifest, Purpose, ResourceType,
};
use clap::{Parser, Subcommand};
use eyre::{WrapErr, bail, eyre};
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
    Keys(KeysCommand),
    /// Grant, revoke and list a patient's consent, by name: resource types, actions, purposes
    /// of use and durations.
    #[command(
        subcommand,
        after_help = "Examples:\n  carechain consent grant --key alice --grantee 0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC \\\n    --types Observation,Condition --purpose TREAT --for 30d\n  carechain consent list --key alice"
    )]
    Consent(ConsentCommand),
    /// Let a guardian, caregiver or proxy act for you (read your records, grant and revoke
    /// consent), until a date.
    #[command(
        subcommand,
        after_help = "Example:\n  carechain delegate add --key alice --delegate 0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65 --kind guardian --for 1y"
    )]
    Delegate(DelegateCommand),
    /// Emergency access (break-glass) by a member key: opens a bounded session on the chain
    /// in which the organisation may read the patient's records for purpose ETREAT only. Every
    /// such access is audited and queued for compliance review.
    #[command(
        subcommand,
        after_help = "Example:\n  carechain break-glass open --key dr-b --patient 0x90F79bf6EB2c4f870365E785982E1f101E93b906 \\\n    --reason life-threatening --for 1h\n  carechain break-glass close --key dr-b --patient 0x90F7..."
    )]
    BreakGlass(BreakGlassCommand),
    /// Compliance: verify the gateway's audit log against its on-chain anchors, and fetch an
    /// AuditEvent's inclusion proof (needs `carechain login` with a compliance member key).
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Sign in to a carechain gateway with your key (EIP-4361) and keep the bearer token.
    #[command(
        after_help = "Example:\n  carechain login --key alice --gateway http://127.0.0.1:8080\n\n\
        The token is kept in --token-file (0600) for `records` and `access-log`. It lasts as long\n\
        as the gateway's tokens (15 minutes unless its operator set CARECHAIN_GATEWAY_TOKEN_TTL):\n\
        the signed message's Expiration Time is taken from the gateway. Run login again then."
    )]
    Login {
        #[command(flatten)]
        gateway: gateway::GatewayArgs,
        #[command(flatten)]
        key: keys::KeyArgs,
    },
    /// Your own records (or, as a delegate, your patient's) through the gateway's FHIR search.
    #[command(
        after_help = "Examples:\n  carechain records\n  carechain records --type Observation,Condition\n  \
        carechain records --json > my-records.json\n  \
        carechain records --patient 0x7099...   # as a delegate\n\n\
        Needs `carechain login` first."
    )]
    Records {
        /// Resource types to search, comma-separated [default: every clinical type].
        #[arg(long = "type", value_name = "TYPES", default_value = gateway::DEFAULT_RECORD_TYPES, hide_default_value = true)]
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
        gateway: gateway::GatewayArgs,
    },
    /// Who accessed your data: the gateway's audit trail for you (FHIR AuditEvent search,
    /// `GET [base]/AuditEvent?patient=..`), allowed and denied requests alike.
    #[command(
        after_help = "Examples:\n  carechain access-log\n  carechain access-log --since 2026-01-01 --json\n\n\
        Needs `carechain login` first."
    )]
    AccessLog {
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
        gateway: gateway::GatewayArgs,
    },
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
    Org(OrgCommand),
    /// Operators: add, suspend, reinstate, retire and rotate member keys (governance or the
    /// organisation's own key).
    #[command(
        subcommand,
        after_help = "Example:\n  carechain member add --key governance --org 0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc \\\n    --member 0x976EA74026E726554dB657fA54763abd0C3a0aa9 --role practitioner"
    )]
    Member(MemberCommand),
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
    Decide(DecideArgs),
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a new random key in an encrypted keystore.
    #[command(after_help = "Examples:\n  carechain keys new --name alice\n  \
        carechain keys new --name ci-relayer --password-file ./relayer.pass\n\n\
        The key itself is never shown; the address is. Keystores are created 0600 in a 0700 directory.")]
    New {
        /// Name of the keystore (its file name in the keystore directory).
        #[arg(long)]
        name: String,
        #[command(flatten)]
        dir: keys::KeystoreDirArgs,
        #[command(flatten)]
        password: keys::PasswordArgs,
    },
    /// Import a private key (typed at a hidden prompt, or one line on standard input) or an
    /// existing keystore file into the keystore directory.
    #[command(
        after_help = "Examples:\n  carechain keys import --name alice            # asks for the key and a password\n  \
        carechain keys import --name bob --from ~/.foundry/keystores/bob\n  \
        carechain keys import --name dev --password-file p.txt < key.hex"
    )]
    Import {
        /// Name of the new keystore.
        #[arg(long)]
        name: String,
        /// Copy this keystore file (cast, geth) instead of reading a private key; its password
        /// opens it and stays its password.
        #[arg(long, value_name = "KEYSTORE_FILE")]
        from: Option<PathBuf>,
        #[command(flatten)]
        dir: keys::KeystoreDirArgs,
        #[command(flatten)]
        password: keys::PasswordArgs,
    },
    /// List the keystores and their addresses (no password needed).
    #[command(after_help = "Example:\n  carechain keys list\n  carechain keys list --json")]
    List {
        #[command(flatten)]
        dir: keys::KeystoreDirArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Unlock a key and print its address (checks the password).
    #[command(after_help = "Example:\n  carechain keys address --key alice")]
    Address {
        #[command(flatten)]
        key: keys::KeyArgs,
    },
}

#[derive(Debug, Subcommand)]
enum ConsentCommand {
    /// Grant (or replace) consent for an organisation or member key.
    ///
    /// Shows what will be signed and asks before signing (--yes skips the question; without a
    /// terminal --yes is required). By default the key sends `grant` as a transaction and pays
    /// the gas. --sign-only signs the EIP-712 typed data and prints it with the signature as
    /// JSON instead (anyone may submit it: `carechain consent submit`); --unsigned prints the
    /// typed data for a browser wallet's eth_signTypedData_v4 and needs no key.
    #[command(after_help = "Examples:\n  \
        carechain consent grant --key alice --grantee 0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC \\\n    \
        --types Observation,Condition --purpose TREAT --for 30d\n  \
        carechain consent grant --key alice --grantee 0x3C44... --types Observation --actions read \\\n    \
        --purpose TREAT,COC --until 2027-01-31 --sign-only > grant.json\n  \
        carechain consent grant --patient 0x7099... --grantee 0x3C44... --types Observation \\\n    \
        --purpose TREAT --for 1y --unsigned > to-sign.json\n\n\
        Codes: `carechain codes`. Durations: 90s, 15m, 12h, 30d, 2w, 1y.")]
    Grant(GrantArgs),
    /// Revoke the consent stored for a grantee (same modes as grant).
    #[command(after_help = "Examples:\n  \
        carechain consent revoke --key alice --grantee 0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC\n  \
        carechain consent revoke --key alice --grantee 0x3C44... --sign-only --yes > revoke.json")]
    Revoke(RevokeArgs),
    /// List the patient's stored consents, read from the chain: the grantees named in the
    /// patient's ConsentGranted events, each read back with ConsentRegistry.consentOf (so
    /// revoked consents are gone and expiry is current). Needs only the RPC endpoint.
    #[command(after_help = "Examples:\n  carechain consent list --key alice\n  \
        carechain consent list --patient 0x70997970C51812dc3A010C7d01b50e0d17dc79C8 --json")]
    List(ListArgs),
    /// Submit a signed grant or revocation (the JSON of --sign-only, or --unsigned typed data
    /// with a wallet's signature added as "signature"): with --via-gateway the gateway checks
    /// it and pays the gas (gas-free for the patient); otherwise the submitting key pays.
    #[command(
        after_help = "Examples:\n  carechain consent submit --via-gateway --file grant.json   # gas-free\n  \
        carechain consent submit --key relayer --file grant.json\n  \
        carechain consent submit --key relayer < grant.json"
    )]
    Submit(SubmitArgs),
}

#[derive(Debug, clap::Args)]
struct SigningModeArgs {
    /// Sign the EIP-712 typed data and print it with the signature as JSON; send nothing.
    #[arg(long, conflicts_with = "unsigned")]
    sign_only: bool,
    /// Print the EIP-712 typed data for a wallet to sign (eth_signTypedData_v4); needs no key
    /// but --patient.
    #[arg(long)]
    unsigned: bool,
    /// How long a signature stays valid for submission (with --sign-only / --unsigned).
    #[arg(long, default_value = "1h", value_name = "DURATION")]
    deadline: String,
    /// Do not ask before signing or sending (required without a terminal).
    #[arg(long, short = 'y')]
    yes: bool,
}

impl SigningModeArgs {
    fn mode(&self) -> consent::Mode {
        if self.sign_only {
            consent::Mode::SignOnly
        } else if self.unsigned {
            consent::Mode::Unsigned
        } else {
            consent::Mode::Direct
        }
    }
}

#[derive(Debug, clap::Args)]
struct GrantArgs {
    /// Organisation or member key (address) the consent is for.
    #[arg(long)]
    grantee: Address,
    /// FHIR resource types, comma-separated (e.g. Observation,Condition).
    #[arg(long, value_name = "TYPES")]
    types: String,
    /// SMART v2 actions: names (read,search) or letters (rs).
    #[arg(long, default_value = "read,search")]
    actions: String,
    /// HL7 purposes of use, comma-separated (e.g. TREAT or TREAT,COC).
    #[arg(long, value_name = "PURPOSES")]
    purpose: String,
    /// How long the consent lasts from now (e.g. 30d, 1y).
    #[arg(
        long = "for",
        value_name = "DURATION",
        required_unless_present = "until",
        conflicts_with = "until"
    )]
    duration: Option<String>,
    /// Last day (YYYY-MM-DD, end of day UTC) or time (RFC 3339) of the consent.
    #[arg(long, value_name = "DATE")]
    until: Option<String>,
    /// The patient (default: the signing key's address; a delegate names the patient here).
    #[arg(long)]
    patient: Option<Address>,
    #[command(flatten)]
    mode: SigningModeArgs,
    #[command(flatten)]
    chain: chain::ChainArgs,
    #[command(flatten)]
    key: keys::KeyArgs,
}

#[derive(Debug, clap::Args)]
struct RevokeArgs {
    /// Organisation or member key (address) whose consent is revoked.
    #[arg(long)]
    grantee: Address,
    /// The patient (default: the signing key's address; a delegate names the patient here).
    #[arg(long)]
    patient: Option<Address>,
    #[command(flatten)]
    mode: SigningModeArgs,
    #[command(flatten)]
    chain: chain::ChainArgs,
    #[command(flatten)]
    key: keys::KeyArgs,
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    /// The patient (default: the signing key's address).
    #[arg(long)]
    patient: Option<Address>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    chain: chain::ChainArgs,
    #[command(flatten)]
    key: keys::KeyArgs,
}

#[derive(Debug, clap::Args)]
struct SubmitArgs {
    /// The signed JSON (default: standard input).
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// Hand it to the gateway (`POST [base]/relay/consent`), which checks it and submits it
    /// with its own funded key: no key and no gas needed here.
    #[arg(long)]
    via_gateway: bool,
    #[command(flatten)]
    gateway: gateway::GatewayArgs,
    #[command(flatten)]
    chain: chain::ChainArgs,
    #[command(flatten)]
    key: keys::KeyArgs,
}

fn read_input(file: Option<&PathBuf>) -> eyre::Result<String> {
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

async fn consent_command(command: ConsentCommand) -> eyre::Result<()> {
    match command {
        ConsentCommand::Grant(args) => {
            let now = time::now();
            let valid_until = match (&args.duration, &args.until) {
                (Some(d), _) => now.saturating_add(time::parse_duration(d)?),
                (None, Some(u)) => time::parse_date(u)?,
                (None, None) => {
                    bail!("say how long the consent lasts: --for 30d or --until 2027-01-31")
                }
            };
            let scope =
                consent::Scope::parse(&args.types, &args.actions, &args.purpose, 0, valid_until)?;
            let chain = chain::Chain::connect(&args.chain).await?;
            consent::grant(
                &chain,
                &args.key,
                consent::GrantRequest {
                    patient: args.patient,
                    grantee: args.grantee,
                    scope,
                    deadline_secs: time::parse_duration(&args.mode.deadline)?,
                    mode: args.mode.mode(),
                    yes: args.mode.yes,
                },
            )
            .await
        }
        ConsentCommand::Revoke(args) => {
            let chain = chain::Chain::connect(&args.chain).await?;
            consent::revoke(
                &chain,
                &args.key,
                consent::RevokeRequest {
                    patient: args.patient,
                    grantee: args.grantee,
                    deadline_secs: time::parse_duration(&args.mode.deadline)?,
                    mode: args.mode.mode(),
                    yes: args.mode.yes,
                },
            )
            .await
        }
        ConsentCommand::List(args) => {
            let patient = match args.patient {
                Some(p) => p,
                None if args.key.configured() => args.key.signer()?.address(),
                None => bail!("name the patient: --patient ADDRESS (or --key NAME for your own)"),
            };
            let chain = chain::Chain::connect(&args.chain).await?;
            consent::list(&chain, patient, args.json).await
        }
        ConsentCommand::Submit(args) => {
            let text = read_input(args.file.as_ref())?;
            let signed: serde_json::Value =
                serde_json::from_str(&text).wrap_err("the signed consent is not JSON")?;
            if args.via_gateway {
                return gateway::relay(&args.gateway, &signed).await;
            }
            let chain = chain::Chain::connect(&args.chain).await?;
            consent::submit(&chain, &args.key, &signed).await
        }
    }
}

/// Chain, key and confirmation: what every transaction needs.
#[derive(Debug, clap::Args)]
struct TxArgs {
    /// Do not ask before sending (required without a terminal).
    #[arg(long, short = 'y')]
    yes: bool,
    #[command(flatten)]
    chain: chain::ChainArgs,
    #[command(flatten)]
    key: keys::KeyArgs,
}

#[derive(Debug, Subcommand)]
enum DelegateCommand {
    /// Add (or update) a delegate of the signing patient.
    #[command(after_help = "Example:\n  carechain delegate add --key alice \\\n    \
        --delegate 0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65 --kind guardian --for 1y")]
    Add {
        /// The delegate's wallet address.
        #[arg(long)]
        delegate: Address,
        /// guardian (grants and revokes anything for the patient), caregiver (reads, never
        /// changes consent) or proxy (grants only within --types/--actions/--purpose, revokes
        /// only what it granted).
        #[arg(long)]
        kind: String,
        /// A proxy's resource types, comma-separated (what it may read and grant).
        #[arg(long, value_name = "TYPES")]
        types: Option<String>,
        /// A proxy's actions (SMART v2, e.g. rs or read,search) it may grant.
        #[arg(long, value_name = "ACTIONS", default_value = "rs")]
        actions: String,
        /// A proxy's purposes of use, comma-separated, it may grant.
        #[arg(long, value_name = "PURPOSES", default_value = "TREAT")]
        purpose: String,
        /// How long the delegation lasts (e.g. 90d, 1y).
        #[arg(
            long = "for",
            value_name = "DURATION",
            required_unless_present = "until",
            conflicts_with = "until"
        )]
        duration: Option<String>,
        /// Last day (YYYY-MM-DD) or time (RFC 3339) of the delegation.
        #[arg(long, value_name = "DATE")]
        until: Option<String>,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Remove a delegate of the signing patient.
    #[command(
        after_help = "Example:\n  carechain delegate remove --key alice \\\n    \
        --delegate 0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65"
    )]
    Remove {
        /// The delegate's wallet address.
        #[arg(long)]
        delegate: Address,
        #[command(flatten)]
        tx: TxArgs,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Recompute the whole audit log's hash chain and check every anchored Merkle root against
    /// AuditAnchor; reports the first tampered or missing row (and exits non-zero).
    #[command(after_help = "Example:\n  carechain login --key auditor && carechain audit verify")]
    Verify {
        /// Print the gateway's Parameters report as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        gateway: gateway::GatewayArgs,
    },
    /// An AuditEvent's inclusion proof: its hash, the anchored batch and root, the anchoring
    /// transaction and block, and whether the proof verified on chain.
    #[command(after_help = "Example:\n  carechain audit proof 1234")]
    Proof {
        /// The AuditEvent id.
        id: String,
        /// Print the gateway's Parameters resource as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        gateway: gateway::GatewayArgs,
    },
}

#[derive(Debug, Subcommand)]
enum BreakGlassCommand {
    /// Open an emergency session for the patient (your organisation; ETREAT only).
    #[command(
        after_help = "Example:\n  carechain break-glass open --key dr-b \\\n    \
        --patient 0x90F79bf6EB2c4f870365E785982E1f101E93b906 --reason life-threatening --for 1h\n\n\
        Reasons: patient-unconscious, life-threatening, imminent-risk-of-harm,\n\
        patient-unable-to-communicate. The chain caps the duration (governance sets the maximum)."
    )]
    Open {
        /// The patient's wallet address.
        #[arg(long)]
        patient: Address,
        /// Why: patient-unconscious, life-threatening, imminent-risk-of-harm or
        /// patient-unable-to-communicate.
        #[arg(long)]
        reason: String,
        /// How long the session lasts (e.g. 30m, 1h).
        #[arg(long = "for", value_name = "DURATION", default_value = "1h")]
        duration: String,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Close your organisation's emergency session for the patient before it expires.
    #[command(
        after_help = "Example:\n  carechain break-glass close --key dr-b \\\n    \
        --patient 0x90F79bf6EB2c4f870365E785982E1f101E93b906"
    )]
    Close {
        /// The patient's wallet address.
        #[arg(long)]
        patient: Address,
        #[command(flatten)]
        tx: TxArgs,
    },
}

#[derive(Debug, Subcommand)]
enum OrgCommand {
    /// Admit an organisation to the consortium (governance only).
    #[command(
        after_help = "Example:\n  carechain org admit --key governance \\\n    \
        --org 0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc --kind hospital --name \"St. Mary Hospital\"\n\n\
        Kinds: hospital, clinic, lab, pharmacy, insurer, research, compliance. The name is public (on chain)."
    )]
    Admit {
        /// The organisation's address (its identifier, typically its administrative wallet).
        #[arg(long)]
        org: Address,
        /// hospital, clinic, lab, pharmacy, insurer, research or compliance.
        #[arg(long)]
        kind: String,
        /// Display name (public, on chain).
        #[arg(long)]
        name: String,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Suspend an organisation: all its keys are denied everywhere at once (governance only).
    #[command(
        after_help = "Example:\n  carechain org suspend --key governance --org 0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc"
    )]
    Suspend {
        /// The organisation's address.
        #[arg(long)]
        org: Address,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Reinstate a suspended organisation (governance only).
    #[command(
        after_help = "Example:\n  carechain org reinstate --key governance --org 0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc"
    )]
    Reinstate {
        /// The organisation's address.
        #[arg(long)]
        org: Address,
        #[command(flatten)]
        tx: TxArgs,
    },
}

#[derive(Debug, Subcommand)]
enum MemberCommand {
    /// Link a member key (a practitioner's or a service's) to an organisation.
    #[command(
        after_help = "Example:\n  carechain member add --key governance --org 0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc \\\n    \
        --member 0x976EA74026E726554dB657fA54763abd0C3a0aa9 --role practitioner"
    )]
    Add {
        /// The organisation.
        #[arg(long)]
        org: Address,
        /// The member key's address.
        #[arg(long)]
        member: Address,
        /// practitioner or service.
        #[arg(long, default_value = "practitioner")]
        role: String,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Suspend a member key: denied everywhere at once.
    #[command(
        after_help = "Example:\n  carechain member suspend --key governance --member 0x976EA74026E726554dB657fA54763abd0C3a0aa9"
    )]
    Suspend {
        /// The member key's address.
        #[arg(long)]
        member: Address,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Reinstate a suspended member key.
    #[command(
        after_help = "Example:\n  carechain member reinstate --key governance --member 0x976EA74026E726554dB657fA54763abd0C3a0aa9"
    )]
    Reinstate {
        /// The member key's address.
        #[arg(long)]
        member: Address,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Retire a member key for good.
    #[command(
        after_help = "Example:\n  carechain member retire --key governance --member 0x976EA74026E726554dB657fA54763abd0C3a0aa9"
    )]
    Retire {
        /// The member key's address.
        #[arg(long)]
        member: Address,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Replace a member key by a new one (the old key is retired).
    #[command(
        after_help = "Example:\n  carechain member rotate --key governance \\\n    \
        --member 0x976EA74026E726554dB657fA54763abd0C3a0aa9 --new 0x14dC79964da2C08b23698B3D3cc7Ca32193d9955"
    )]
    Rotate {
        /// The member key being replaced.
        #[arg(long)]
        member: Address,
        /// The new key.
        #[arg(long)]
        new: Address,
        #[command(flatten)]
        tx: TxArgs,
    },
}

fn until(duration: Option<&String>, until: Option<&String>) -> eyre::Result<u64> {
    match (duration, until) {
        (Some(d), _) => Ok(time::now().saturating_add(time::parse_duration(d)?)),
        (None, Some(u)) => Ok(time::parse_date(u)?),
        (None, None) => bail!("say how long: --for 30d or --until 2027-01-31"),
    }
}

async fn break_glass_command(command: BreakGlassCommand) -> eyre::Result<()> {
    match command {
        BreakGlassCommand::Open {
            patient,
            reason,
            duration,
            tx,
        } => {
            let reason = ops::break_glass_reason(&reason)?;
            let seconds = u32::try_from(time::parse_duration(&duration)?).map_err(|_| {
                eyre::eyre!("--for {duration} is far too long for an emergency session")
            })?;
            let chain = chain::Chain::connect(&tx.chain).await?;
            ops::break_glass_open(&chain, &tx.key, patient, reason, seconds, tx.yes).await
        }
        BreakGlassCommand::Close { patient, tx } => {
            let chain = chain::Chain::connect(&tx.chain).await?;
            ops::break_glass_close(&chain, &tx.key, patient, tx.yes).await
        }
    }
}

async fn delegate_command(command: DelegateCommand) -> eyre::Result<()> {
    match command {
        DelegateCommand::Add {
            delegate,
            kind,
            types,
            actions,
            purpose,
            duration,
            until: until_date,
            tx,
        } => {
            let kind = ops::delegate_kind(&kind)?;
            let valid_until = until(duration.as_ref(), until_date.as_ref())?;
            let scope = match (kind, types) {
                (carechain_contracts::DelegateKind::Proxy, Some(types)) => Some(
                    consent::Scope::parse(&types, &actions, &purpose, 0, valid_until)?,
                ),
                (carechain_contracts::DelegateKind::Proxy, None) => {
                    bail!(
                        "a proxy acts within a scope: name it with --types (and --actions, --purpose)"
                    )
                }
                (_, Some(_)) => bail!("only a proxy takes --types: a {kind} has no scope"),
                (_, None) => None,
            };
            let chain = chain::Chain::connect(&tx.chain).await?;
            ops::delegate_add(&chain, &tx.key, delegate, kind, scope, valid_until, tx.yes).await
        }
        DelegateCommand::Remove { delegate, tx } => {
            let chain = chain::Chain::connect(&tx.chain).await?;
            ops::delegate_remove(&chain, &tx.key, delegate, tx.yes).await
        }
    }
}

async fn membership_command(operation: ops::Membership, tx: TxArgs) -> eyre::Result<()> {
    let chain = chain::Chain::connect(&tx.chain).await?;
    ops::membership(&chain, &tx.key, operation, tx.yes).await
}

async fn org_command(command: OrgCommand) -> eyre::Result<()> {
    use ops::Membership as M;
    match command {
        OrgCommand::Admit {
            org,
            kind,
            name,
            tx,
        } => {
            let kind = ops::org_kind(&kind)?;
            membership_command(M::Admit { org, kind, name }, tx).await
        }
        OrgCommand::Suspend { org, tx } => membership_command(M::SuspendOrg(org), tx).await,
        OrgCommand::Reinstate { org, tx } => membership_command(M::ReinstateOrg(org), tx).await,
    }
}

async fn member_command(command: MemberCommand) -> eyre::Result<()> {
    use ops::Membership as M;
    match command {
        MemberCommand::Add {
            org,
            member,
            role,
            tx,
        } => {
            let role = ops::member_role(&role)?;
            membership_command(
                M::AddMember {
                    org,
                    key: member,
                    role,
                },
                tx,
            )
            .await
        }
        MemberCommand::Suspend { member, tx } => {
            membership_command(M::SuspendMember(member), tx).await
        }
        MemberCommand::Reinstate { member, tx } => {
            membership_command(M::ReinstateMember(member), tx).await
        }
        MemberCommand::Retire { member, tx } => {
            membership_command(M::RetireMember(member), tx).await
        }
        MemberCommand::Rotate { member, new, tx } => {
            membership_command(M::RotateMember { old: member, new }, tx).await
        }
    }
}

fn keys(command: KeysCommand) -> eyre::Result<()> {
    match command {
        KeysCommand::New {
            name,
            dir,
            password,
        } => keys::new_key(&dir, &password, &name)?,
        KeysCommand::Import {
            name,
            from,
            dir,
            password,
        } => {
            let source = match from {
                Some(path) => keys::ImportSource::Keystore(path),
                None => keys::ImportSource::PrivateKey,
            };
            keys::import_key(&dir, &password, &name, source)?
        }
        KeysCommand::List { dir, json } => keys::list_keys(&dir, json)?,
        KeysCommand::Address { key } => println!("{}", key.signer()?.address()),
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
struct DecideArgs {
    /// JSON-RPC URL of the chain.
    #[arg(long, env = "CARECHAIN_RPC_URL")]
    rpc: String,
    /// Deployment manifest written by the deploy script.
    #[arg(long, env = "CARECHAIN_MANIFEST")]
    manifest: PathBuf,
    /// The patient's address.
    #[arg(long)]
    patient: Address,
    /// The requesting member key or organisation address.
    #[arg(long)]
    requester: Address,
    /// FHIR resource type, e.g. Observation (see `carechain codes`).
    #[arg(long = "type", value_name = "RESOURCE_TYPE")]
    resource_type: ResourceType,
    /// SMART v2 action: c, r, u, d, s or create, read, update, delete, search.
    #[arg(long)]
    action: Action,
    /// HL7 purpose of use, e.g. TREAT, ETREAT, HRESCH.
    #[arg(long)]
    purpose: Purpose,
}

fn print_codes() {
    println!("Resource types (uint64 bitmap, bit = index):");
    for t in ResourceType::ALL {
        println!("  {:>2}  {}", t.index(), t.code());
    }
    println!("\nActions (SMART v2, uint8 mask):");
    for a in Action::ALL {
        println!("  {:>2}  {}  {}", a.index(), a.code(), a.long_name());
    }
    println!("\nPurposes of use (HL7 v3 PurposeOfUse, uint16 bitmap):");
    for p in Purpose::ALL {
        println!("  {:>2}  {:<8} {}", p.index(), p.code(), p.display());
    }
}

async fn decide(args: DecideArgs) -> eyre::Result<()> {
    let manifest = DeploymentManifest::load(&args.manifest)?;
    let url = args
        .rpc
        .parse()
        .wrap_err_with(|| format!("invalid --rpc URL `{}`", args.rpc))?;
    let provider = RootProvider::<Ethereum>::new_http(url);
    let chain_id = provider
        .get_chain_id()
        .await
        .wrap_err_with(|| format!("cannot reach the chain at {}", args.rpc))?;
    if chain_id != manifest.chain_id {
        bail!(
            "the chain at {} has chain id {chain_id}, but the manifest {} is for chain {}",
            args.rpc,
            args.manifest.display(),
            manifest.chain_id
        );
    }
    let registry = ConsentRegistry::new(manifest.contracts.consent_registry, &provider);
    let answer = registry
        .decide(
            args.patient,
            args.requester,
            args.resource_type.index(),
            args.action.index(),
            args.purpose.index(),
        )
        .call()
        .await
        .wrap_err("ConsentRegistry.decide failed")?;
    let basis = Basis::try_from(answer.basis)
        .map_err(|e| eyre!("the contract answered an unknown basis: {e}"))?;
    println!(
        "{} ({basis}): {} {} {} of patient {} for {}",
        if answer.allowed { "ALLOWED" } else { "DENIED" },
        args.requester,
        args.action.long_name(),
        args.resource_type,
        args.patient,
        args.purpose,
    );
    Ok(())
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
            print_codes();
            Ok(())
        }
        Command::Decide(args) => decide(args).await,
        Command::Keys(command) => keys(command),
        Command::Consent(command) => consent_command(command).await,
        Command::Delegate(command) => delegate_command(command).await,
        Command::BreakGlass(command) => break_glass_command(command).await,
        Command::Audit(AuditCommand::Verify { json, gateway }) => {
            gateway::audit_verify(&gateway, json).await
        }
        Command::Audit(AuditCommand::Proof { id, json, gateway }) => {
            gateway::audit_proof(&gateway, &id, json).await
        }
        Command::Deploy(args) => deploy::deploy(args).await,
        Command::Login { gateway, key } => gateway::login(&gateway, &key).await,
        Command::Records {
            types,
            patient,
            purpose,
            json,
            gateway,
        } => gateway::records(&gateway, patient, &types, purpose, json).await,
        Command::AccessLog {
            patient,
            since,
            json,
            gateway,
        } => gateway::access_log(&gateway, patient, since.as_deref(), json).await,
        Command::Org(command) => org_command(command).await,
        Command::Member(command) => member_command(command).await,
    }
}
