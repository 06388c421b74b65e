//! A private chain with the contracts deployed, and the parties a test puts on it.

use crate::{
    anvil::{Anvil, AnvilOptions},
    deploy::Deployment,
    keys::{GOVERNANCE_KEY, wallet_provider},
    names::TempDir,
    paths::repo_root,
};
use alloy::{
    network::TransactionBuilder,
    primitives::{Address, U256},
    providers::{DynProvider, Provider},
    rpc::types::TransactionRequest,
    signers::local::PrivateKeySigner,
};
use carechain_contracts::{
    Basis, ConsentRegistry, DeploymentManifest, MemberRole, OrgKind, ProviderRegistry,
};
use std::path::PathBuf;

/// A private anvil with the contracts deployed by the deploy script, and the governance key
/// (development key 0) as a signing provider. anvil is killed and the manifest removed on drop.
#[derive(Debug)]
pub struct TestChain {
    /// The chain.
    pub anvil: Anvil,
    /// Its JSON-RPC URL.
    pub rpc_url: String,
    /// The deployment manifest.
    pub manifest: DeploymentManifest,
    /// Where the manifest is.
    pub manifest_path: PathBuf,
    /// A provider signing as governance (deployer, admits organisations and members).
    pub governance: DynProvider,
    _manifest_dir: TempDir,
}

/// An organisation whose practitioner key signs in and whose service key anchors its records
/// (what a gateway needs to act as the organisation's custodian).
#[derive(Debug, Clone)]
pub struct Custodian {
    /// The organisation's address.
    pub org: PrivateKeySigner,
    /// A practitioner member key.
    pub practitioner: PrivateKeySigner,
    /// A service member key (the gateway anchors record versions with it).
    pub service: PrivateKeySigner,
}

impl Custodian {
    /// The service key as the gateway's `--service-key` setting takes it (`ORG=0xKEY`).
    pub fn service_key_setting(&self) -> String {
        service_key_setting(self.org.address(), &self.service)
    }
}

/// A service key as the gateway's `--service-key` setting takes it: `ORG=0xKEY`.
pub fn service_key_setting(org: Address, service: &PrivateKeySigner) -> String {
    format!("{org}={}", alloy::hex::encode_prefixed(service.to_bytes()))
}

impl TestChain {
    /// Starts anvil with its defaults and deploys the contracts.
    pub async fn start() -> Self {
        Self::start_with(AnvilOptions::default()).await
    }

    /// Starts anvil with `options` and deploys the contracts.
    pub async fn start_with(options: AnvilOptions) -> Self {
        Self::deploy_on(Anvil::start_with(options).await).await
    }

    /// Deploys the contracts on `anvil` and takes it over.
    pub async fn deploy_on(anvil: Anvil) -> Self {
        let Deployment {
            manifest,
            manifest_path,
            dir,
        } = Deployment::deploy(&anvil.url).await;
        let governance = wallet_provider(
            &anvil.url,
            GOVERNANCE_KEY.parse().expect("the governance key parses"),
        );
        Self {
            rpc_url: anvil.url.clone(),
            anvil,
            manifest,
            manifest_path,
            governance,
            _manifest_dir: dir,
        }
    }

    /// ProviderRegistry, as governance.
    pub fn providers(&self) -> ProviderRegistry::ProviderRegistryInstance<DynProvider> {
        ProviderRegistry::new(
            self.manifest.contracts.provider_registry,
            self.governance.clone(),
        )
    }

    /// ConsentRegistry, as `signer`.
    pub fn consents_as(
        &self,
        signer: &PrivateKeySigner,
    ) -> ConsentRegistry::ConsentRegistryInstance<DynProvider> {
        ConsentRegistry::new(
            self.manifest.contracts.consent_registry,
            wallet_provider(&self.rpc_url, signer.clone()),
        )
    }

    /// A new random key holding 100 ETH.
    pub async fn wallet(&self) -> PrivateKeySigner {
        let signer = PrivateKeySigner::random();
        self.fund(signer.address()).await;
        signer
    }

    /// Gives `address` 100 ETH.
    pub async fn fund(&self, address: Address) {
        self.anvil
            .set_balance(address, U256::from(10u128.pow(20)))
            .await;
    }

    /// Admits organisation `org` of `kind` named `name` (as governance); returns once mined.
    pub async fn admit_organisation(&self, org: Address, kind: OrgKind, name: &str) {
        self.providers()
            .admitOrganisation(org, kind.into(), name.to_owned())
            .send()
            .await
            .expect("send admitOrganisation")
            .get_receipt()
            .await
            .expect("admitOrganisation is mined");
    }

    /// Adds member `key` with `role` to `org` (as governance); returns once mined.
    pub async fn add_member(&self, org: Address, key: Address, role: MemberRole) {
        self.providers()
            .addMember(org, key, role.into())
            .send()
            .await
            .expect("send addMember")
            .get_receipt()
            .await
            .expect("addMember is mined");
    }

    /// Admits a hospital ("General Hospital") with one practitioner key, both new funded
    /// wallets; returns (org, key).
    pub async fn organisation_with_member(&self) -> (PrivateKeySigner, PrivateKeySigner) {
        let org = self.wallet().await;
        let key = self.wallet().await;
        self.admit_organisation(org.address(), OrgKind::Hospital, "General Hospital")
            .await;
        self.add_member(org.address(), key.address(), MemberRole::Practitioner)
            .await;
        (org, key)
    }

    /// A hospital with a practitioner key and a service key (see [`Custodian`]).
    pub async fn custodian(&self) -> Custodian {
        let (org, practitioner) = self.organisation_with_member().await;
        let service = self.wallet().await;
        self.add_member(org.address(), service.address(), MemberRole::Service)
            .await;
        Custodian {
            org,
            practitioner,
            service,
        }
    }

    /// `ConsentRegistry.decide` for a read of Observations for TREAT.
    pub async fn decide_read(&self, patient: Address, requester: Address) -> Basis {
        let registry = ConsentRegistry::new(
            self.manifest.contracts.consent_registry,
            self.anvil.provider(),
        );
        let answer = registry
            .decide(patient, requester, 1, 1, 0)
            .call()
            .await
            .expect("ConsentRegistry.decide");
        Basis::try_from(answer.basis).expect("decide answers a known basis")
    }

    /// Deploys a contract forge compiled (`out/<file>/<name>.json`) with ABI-encoded
    /// constructor arguments, as governance; returns its address.
    pub async fn deploy_artifact(&self, file: &str, name: &str, args: &[u8]) -> Address {
        let path = repo_root().join(format!("out/{file}/{name}.json"));
        let artifact: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("read {} (run forge build): {e}", path.display())),
        )
        .unwrap_or_else(|e| panic!("{} is JSON: {e}", path.display()));
        let bytecode = artifact["bytecode"]["object"]
            .as_str()
            .unwrap_or_else(|| panic!("{} has bytecode.object", path.display()));
        let mut code = alloy::hex::decode(bytecode).expect("the bytecode is hex");
        code.extend_from_slice(args);
        let tx = TransactionRequest::default().with_deploy_code(code);
        self.governance
            .send_transaction(tx)
            .await
            .expect("send the deployment")
            .get_receipt()
            .await
            .expect("the deployment is mined")
            .contract_address
            .expect("a deployment receipt names the contract")
    }

    /// The head block number.
    pub async fn head(&self) -> u64 {
        self.anvil.head().await
    }

    /// Mines `blocks` empty blocks at once (anvil's `finalized` is 64 blocks behind the head);
    /// returns the new head.
    pub async fn mine(&self, blocks: u64) -> u64 {
        self.anvil.mine(blocks).await
    }
}
