//! The chain: connecting with the deployment manifest, sending transactions, and turning
//! contract reverts into sentences that say what to do.

use alloy::{
    network::{Ethereum, EthereumWallet},
    primitives::{Address, TxHash},
    providers::{DynProvider, PendingTransactionBuilder, Provider, ProviderBuilder, RootProvider},
    signers::local::PrivateKeySigner,
};
use carechain_contracts::{ConsentRegistry, DeploymentManifest, ProviderRegistry, Status};
use carechain_tls::{RedactedUrl, RpcEndpoint};
use eyre::{WrapErr, bail, eyre};
use std::{path::PathBuf, time::Duration};

/// Time limit of one JSON-RPC request.
const RPC_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the chain's JSON-RPC endpoint is and how its HTTPS certificate is checked.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct RpcArgs {
    /// JSON-RPC URL of the chain (`http://` or `https://`; credentials in it are never shown).
    #[arg(
        long,
        env = "CARECHAIN_RPC_URL",
        value_name = "URL",
        hide_env_values = true,
        default_value = "http://127.0.0.1:8545"
    )]
    pub(crate) rpc: RedactedUrl,
    /// CA certificate(s) (PEM) the RPC endpoint's HTTPS certificate must chain to, instead of
    /// the system's root certificates.
    #[arg(long, env = "CARECHAIN_RPC_CA_FILE", value_name = "PEM")]
    pub(crate) rpc_ca_file: Option<PathBuf>,
}

impl RpcArgs {
    /// The endpoint with its trust.
    pub(crate) fn endpoint(&self) -> RpcEndpoint {
        RpcEndpoint::new(self.rpc.clone(), self.rpc_ca_file.as_deref())
    }

    /// A read-only provider (the CA file is read now: a bad one is reported before anything
    /// is sent).
    pub(crate) fn provider(&self) -> eyre::Result<RootProvider<Ethereum>> {
        let endpoint = self.endpoint();
        endpoint.trust().check()?;
        Ok(RootProvider::new(endpoint.client(RPC_TIMEOUT)?))
    }
}

/// Where the chain and the contracts are.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ChainArgs {
    #[command(flatten)]
    pub(crate) rpc: RpcArgs,
    /// Deployment manifest written by the deploy script (`carechain deploy`).
    #[arg(
        long,
        env = "CARECHAIN_MANIFEST",
        value_name = "FILE",
        default_value = "deployments/31337.json"
    )]
    pub(crate) manifest: PathBuf,
}

/// A connection to the chain the manifest describes.
pub(crate) struct Chain {
    pub(crate) provider: DynProvider,
    pub(crate) manifest: DeploymentManifest,
    rpc: RpcArgs,
}

impl Chain {
    /// Connects (read-only) and checks the chain id against the manifest.
    pub(crate) async fn connect(args: &ChainArgs) -> eyre::Result<Self> {
        let manifest = DeploymentManifest::load(&args.manifest).wrap_err(
            "pass --manifest (or CARECHAIN_MANIFEST) naming the file `carechain deploy` wrote",
        )?;
        let provider = args.rpc.provider()?.erased();
        let chain_id = provider.get_chain_id().await.wrap_err_with(|| {
            format!(
                "cannot reach the chain at {} (is it running? pass --rpc or CARECHAIN_RPC_URL)",
                args.rpc.rpc
            )
        })?;
        if chain_id != manifest.chain_id {
            bail!(
                "the chain at {} has chain id {chain_id}, but the manifest {} is for chain {}: pass the matching --manifest or --rpc",
                args.rpc.rpc,
                args.manifest.display(),
                manifest.chain_id
            );
        }
        Ok(Self {
            provider,
            manifest,
            rpc: args.rpc.clone(),
        })
    }

    /// A provider that signs and sends with `signer`.
    pub(crate) fn with_signer(&self, signer: &PrivateKeySigner) -> eyre::Result<DynProvider> {
        Ok(ProviderBuilder::new()
            .wallet(EthereumWallet::from(signer.clone()))
            .connect_client(self.rpc.endpoint().client(RPC_TIMEOUT)?)
            .erased())
    }

    /// The consent registry, read-only.
    pub(crate) fn consents(&self) -> ConsentRegistry::ConsentRegistryInstance<DynProvider> {
        ConsentRegistry::new(
            self.manifest.contracts.consent_registry,
            self.provider.clone(),
        )
    }
}

/// Waits for the receipt of a sent contract call (`call.send().await`); a revert becomes a
/// sentence that says what to do.
pub(crate) async fn mined(
    sent: Result<PendingTransactionBuilder<Ethereum>, alloy::contract::Error>,
    what: &str,
) -> eyre::Result<TxHash> {
    let pending = sent.map_err(|e| explain(e, what))?;
    let receipt = pending
        .get_receipt()
        .await
        .wrap_err_with(|| format!("{what}: the transaction was sent but no receipt came back"))?;
    if !receipt.status() {
        bail!(
            "{what}: transaction {} reverted on chain",
            receipt.transaction_hash
        );
    }
    Ok(receipt.transaction_hash)
}

fn status_name(value: u8) -> String {
    Status::try_from(value)
        .map(|s| s.to_string())
        .unwrap_or_else(|_| value.to_string())
}

/// Turns a failed call into an error that says what happened and what to do.
pub(crate) fn explain(error: alloy::contract::Error, what: &str) -> eyre::Report {
    use ProviderRegistry::ProviderRegistryErrors as P;
    // The registry's refusals read the same in the CLI and the gateway: one explanation,
    // naming people by their keystore names where this machine has them.
    if let Some(text) = error
        .as_revert_data()
        .and_then(|data| carechain_contracts::revert::explain(&data, &crate::keys::name_of))
    {
        return eyre!("{what}: {text}");
    }
    if let Some(e) = error.as_decoded_interface_error::<P>() {
        let text = match e {
            P::AccessControlUnauthorizedAccount(e) => format!(
                "{} is not consortium governance (GOVERNOR_ROLE): sign with the governance key (--key)",
                e.account
            ),
            P::ProviderAlreadyRegistered(e) => format!(
                "{} is already an organisation or a member key: each address is registered once",
                e.account
            ),
            P::ProviderUnknownOrganisation(e) => format!(
                "{} is not an admitted organisation: admit it first with `carechain org admit`",
                e.org
            ),
            P::ProviderUnknownMember(e) => format!(
                "{} is not a member key: add it first with `carechain member add`",
                e.key
            ),
            P::ProviderInvalidInput(_) => {
                "the zero address or an organisation kind of None was given".into()
            }
            P::ProviderInvalidStatus(e) => format!(
                "{} is {}, which this operation does not apply to",
                e.account,
                status_name(e.status)
            ),
            P::ProviderUnauthorizedManager(e) => format!(
                "{} may not manage the keys of organisation {}: sign with governance or the organisation's own key",
                e.caller, e.org
            ),
            other => format!("the contract refused: {other:?}"),
        };
        return eyre!("{what}: {text}");
    }
    if error.as_revert_data().is_some() {
        return eyre!("{what}: the contract reverted ({error})");
    }
    eyre!("{what}: {error} (is the key funded for gas? is the chain reachable?)")
}

/// The address's checksum form.
pub(crate) fn show(address: Address) -> String {
    address.to_checksum(None)
}
