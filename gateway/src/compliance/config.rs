//! Compliance settings: audit anchoring.

use crate::config::ConfigError;
use alloy::signers::local::PrivateKeySigner;

/// Settings of the compliance features (flattened into the gateway's flags).
#[derive(Debug, Clone, clap::Args)]
pub struct ComplianceConfig {
    /// Private key (hex) the gateway anchors audit batches with in AuditAnchor; it must be
    /// registered there (`registerGateway`) and must not be a custodian service key (their
    /// transactions would race for nonces). Without it, audit batches are not anchored.
    #[arg(
        long,
        env = "CARECHAIN_GATEWAY_AUDIT_ANCHOR_KEY",
        hide_env_values = true
    )]
    pub audit_anchor_key: Option<String>,
    /// Anchor a batch as soon as this many audit rows are unanchored; also the largest batch.
    #[arg(
        long,
        env = "CARECHAIN_GATEWAY_AUDIT_ANCHOR_ROWS",
        default_value_t = 1000
    )]
    pub audit_anchor_rows: u64,
    /// Anchor what is unanchored once its oldest row is this old (milliseconds).
    #[arg(
        long,
        env = "CARECHAIN_GATEWAY_AUDIT_ANCHOR_INTERVAL_MS",
        default_value_t = 60_000
    )]
    pub audit_anchor_interval_ms: u64,
    /// How often the anchoring task looks at the log (milliseconds).
    #[arg(
        long,
        env = "CARECHAIN_GATEWAY_AUDIT_ANCHOR_POLL_MS",
        default_value_t = 1000
    )]
    pub audit_anchor_poll_ms: u64,
}

impl Default for ComplianceConfig {
    fn default() -> Self {
        Self {
            audit_anchor_key: None,
            audit_anchor_rows: 1000,
            audit_anchor_interval_ms: 60_000,
            audit_anchor_poll_ms: 1000,
        }
    }
}

impl ComplianceConfig {
    /// Checks the settings; returns the anchoring key when anchoring is on.
    pub fn anchor_signer(&self) -> Result<Option<PrivateKeySigner>, ConfigError> {
        if self.audit_anchor_rows == 0 || self.audit_anchor_poll_ms == 0 {
            return Err(ConfigError::Invalid {
                name: "audit_anchor_rows",
                reason: "batch size and poll interval must be positive".into(),
            });
        }
        match self.audit_anchor_key.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(key) => {
                key.parse::<PrivateKeySigner>()
                    .map(Some)
                    .map_err(|_| ConfigError::Invalid {
                        name: "audit_anchor_key",
                        reason: "not a 32-byte hex private key".into(),
                    })
            }
        }
    }
}
