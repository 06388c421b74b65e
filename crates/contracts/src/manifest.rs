//! The deployment manifest written by the deploy script:
//!
//! ```json
//! {"chainId":31337,"deploymentBlock":5,"deployer":"0x..",
//!  "contracts":{"ProviderRegistry":"0x..","ConsentRegistry":"0x..",
//!               "RecordRegistry":"0x..","AuditAnchor":"0x.."}}
//! ```
//!
//! Unknown fields are accepted (the script may add some); the four contract addresses are
//! required, non-zero and distinct.

use alloy::primitives::Address;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Why a manifest could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read deployment manifest {path}: {source}")]
    Read {
        /// The manifest path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a manifest in JSON.
    #[error("deployment manifest {path} is not valid: {source}")]
    Parse {
        /// The manifest path (or `<inline>`).
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The manifest parsed but its content is inconsistent.
    #[error("deployment manifest {path} is invalid: {reason}")]
    Invalid {
        /// The manifest path (or `<inline>`).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Addresses of the four deployed contracts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractAddresses {
    /// `ProviderRegistry`.
    #[serde(rename = "ProviderRegistry")]
    pub provider_registry: Address,
    /// `ConsentRegistry`.
    #[serde(rename = "ConsentRegistry")]
    pub consent_registry: Address,
    /// `RecordRegistry`.
    #[serde(rename = "RecordRegistry")]
    pub record_registry: Address,
    /// `AuditAnchor`.
    #[serde(rename = "AuditAnchor")]
    pub audit_anchor: Address,
}

impl ContractAddresses {
    /// The four addresses with their contract names, in a fixed order.
    pub fn named(&self) -> [(&'static str, Address); 4] {
        [
            ("ProviderRegistry", self.provider_registry),
            ("ConsentRegistry", self.consent_registry),
            ("RecordRegistry", self.record_registry),
            ("AuditAnchor", self.audit_anchor),
        ]
    }
}

/// The deployment manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentManifest {
    /// EIP-155 chain id the contracts were deployed on.
    pub chain_id: u64,
    /// Block of the first deployment transaction: indexing starts here.
    pub deployment_block: u64,
    /// The deploying account.
    pub deployer: Address,
    /// The contract addresses.
    pub contracts: ContractAddresses,
}

impl DeploymentManifest {
    /// Reads, parses and validates the manifest at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ManifestError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse_at(&text, path)
    }

    /// Parses and validates a manifest from JSON text.
    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        Self::parse_at(text, Path::new("<inline>"))
    }

    fn parse_at(text: &str, path: &Path) -> Result<Self, ManifestError> {
        let manifest: Self = serde_json::from_str(text).map_err(|source| ManifestError::Parse {
            path: path.to_owned(),
            source,
        })?;
        manifest
            .validate()
            .map_err(|reason| ManifestError::Invalid {
                path: path.to_owned(),
                reason,
            })?;
        Ok(manifest)
    }

    /// Checks the content: non-zero chain id, non-zero and distinct contract addresses.
    pub fn validate(&self) -> Result<(), String> {
        if self.chain_id == 0 {
            return Err("chainId is 0".into());
        }
        let named = self.contracts.named();
        for (i, (name, address)) in named.iter().enumerate() {
            if address.is_zero() {
                return Err(format!("contracts.{name} is the zero address"));
            }
            if let Some((other, _)) = named[..i].iter().find(|(_, a)| a == address) {
                return Err(format!(
                    "contracts.{name} and contracts.{other} have the same address {address}"
                ));
            }
        }
        Ok(())
    }

    /// Every contract address, for log filters.
    pub fn addresses(&self) -> Vec<Address> {
        self.contracts.named().iter().map(|(_, a)| *a).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::address;

    const GOOD: &str = r#"{"chainId":31337,"deploymentBlock":3,
        "deployer":"0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        "contracts":{"ProviderRegistry":"0x5FbDB2315678afecb367f032d93F642f64180aa3",
        "ConsentRegistry":"0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
        "RecordRegistry":"0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0",
        "AuditAnchor":"0xCf7Ed3AccA5a467e9e704C703E8D87F634fB0Fc9"},"extra":1}"#;

    #[test]
    fn parses_the_deploy_script_format() {
        let m = DeploymentManifest::parse(GOOD).expect("valid manifest");
        assert_eq!(m.chain_id, 31337);
        assert_eq!(m.deployment_block, 3);
        assert_eq!(
            m.contracts.consent_registry,
            address!("e7f1725E7734CE288F8367e1Bb143E90bb3F0512")
        );
        assert_eq!(m.addresses().len(), 4);
        let round_trip = DeploymentManifest::parse(&serde_json::to_string(&m).expect("serialises"))
            .expect("round trip");
        assert_eq!(round_trip, m);
    }

    #[test]
    fn rejects_bad_manifests() {
        let missing = GOOD.replace(
            r#""AuditAnchor":"0xCf7Ed3AccA5a467e9e704C703E8D87F634fB0Fc9""#,
            r#""X":"0x00""#,
        );
        assert!(matches!(
            DeploymentManifest::parse(&missing),
            Err(ManifestError::Parse { .. })
        ));
        let dup = GOOD.replace(
            "0xCf7Ed3AccA5a467e9e704C703E8D87F634fB0Fc9",
            "0x5FbDB2315678afecb367f032d93F642f64180aa3",
        );
        let err = DeploymentManifest::parse(&dup).expect_err("duplicate");
        assert!(err.to_string().contains("same address"), "{err}");
        let zero = GOOD.replace(
            "0xCf7Ed3AccA5a467e9e704C703E8D87F634fB0Fc9",
            "0x0000000000000000000000000000000000000000",
        );
        assert!(matches!(
            DeploymentManifest::parse(&zero),
            Err(ManifestError::Invalid { .. })
        ));
        let err = DeploymentManifest::load("/nonexistent/manifest.json").expect_err("missing file");
        assert!(
            err.to_string().contains("/nonexistent/manifest.json"),
            "{err}"
        );
    }
}
