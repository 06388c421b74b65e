//! Gateway configuration, from flags or environment variables.

use alloy::{primitives::Address, signers::local::PrivateKeySigner};
use carechain_tls::{PgTls, RpcEndpoint};
use std::{net::SocketAddr, path::PathBuf, time::Duration};

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required setting is missing.
    #[error("missing setting: {0}")]
    Missing(&'static str),
    /// A setting has an invalid value.
    #[error("invalid setting {name}: {reason}")]
    Invalid {
        /// The setting.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Gateway configuration.
#[derive(Debug, Clone, clap::Args)]
pub struct GatewayConfig {
    /// Address to serve the FHIR API on.
    #[arg(
        long,
        env = "CARECHAIN_GATEWAY_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,
    /// Public base URL of the FHIR API (links, `Location`, and the EIP-4361 domain and URI).
    /// Defaults to `https://<listen>` with `--tls-cert`, else `http://<listen>`.
    #[arg(long, env = "CARECHAIN_GATEWAY_BASE_URL")]
    pub base_url: Option<String>,
    /// Serve HTTPS with this PEM certificate chain (the gateway's certificate first, then any
    /// intermediates); needs `--tls-key`. Both files are read again on SIGHUP: new connections
    /// get the new certificate, established ones carry on.
    #[arg(
        long,
        env = "CARECHAIN_GATEWAY_TLS_CERT",
        value_name = "PEM",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1) of `--tls-cert`.
    #[arg(
        long,
        env = "CARECHAIN_GATEWAY_TLS_KEY",
        value_name = "PEM",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address. Without TLS the gateway refuses to listen
    /// anywhere but loopback, since every answer carries PHI; allow it only behind a
    /// TLS-terminating proxy on a network nobody else reaches.
    #[arg(long, env = "CARECHAIN_GATEWAY_ALLOW_PLAIN_HTTP")]
    pub allow_plain_http: bool,
    /// PostgreSQL connection URL (the indexer's database).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// PostgreSQL TLS.
    #[command(flatten)]
    pub db_tls: PgTls,
    /// Maximum connections to PostgreSQL: half serve record reads, the rest everything else
    /// (the audit writer keeps one more of its own).
    #[arg(long, env = "CARECHAIN_GATEWAY_DB_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
    /// Apply the SQL migrations at start-up.
    #[arg(long, env = "CARECHAIN_GATEWAY_MIGRATE", default_value_t = true, action = clap::ArgAction::Set)]
    pub migrate: bool,
    /// JSON-RPC URL of the chain, `http://` or `https://`; it may carry credentials
    /// (`user:password@`, an API key in the path or query), which are never printed.
    #[arg(
        long,
        env = "CARECHAIN_RPC_URL",
        hide_env_values = true,
        default_value = "http://127.0.0.1:8545"
    )]
    pub rpc_url: String,
    /// CA certificate(s) (PEM) the RPC endpoint's HTTPS certificate must chain to, instead of
    /// the system's root certificates.
    #[arg(long, env = "CARECHAIN_RPC_CA_FILE", value_name = "PEM")]
    pub rpc_ca_file: Option<PathBuf>,
    /// Path of the deployment manifest.
    #[arg(long, env = "CARECHAIN_MANIFEST")]
    pub manifest: Option<PathBuf>,
    /// File holding the key-encryption key (64 hex characters).
    #[arg(long, env = "CARECHAIN_GATEWAY_KEK_FILE")]
    pub kek_file: Option<PathBuf>,
    /// The key-encryption key itself (64 hex characters), when no file is given.
    #[arg(long, env = "CARECHAIN_GATEWAY_KEK", hide_env_values = true)]
    pub kek: Option<String>,
    /// Custodian service keys, `<org address>=<private key hex>` separated by commas.
    #[arg(
        long,
        env = "CARECHAIN_GATEWAY_SERVICE_KEYS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub service_keys: Vec<String>,
    /// Custodian organisation for records written by patients and delegates.
    #[arg(long, env = "CARECHAIN_GATEWAY_DEFAULT_CUSTODIAN")]
    pub default_custodian: Option<Address>,
    /// Largest accepted request body in bytes.
    #[arg(long, env = "CARECHAIN_GATEWAY_MAX_BODY", default_value_t = 8 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Sign-in nonces one client address may obtain per minute (a token bucket holding as
    /// many; 0 = unlimited). Behind a reverse proxy every client shares the proxy's address.
    #[arg(
        long,
        env = "CARECHAIN_GATEWAY_NONCES_PER_MINUTE",
        default_value_t = 30
    )]
    pub nonces_per_minute: u32,
    /// Lifetime of bearer tokens in seconds.
    #[arg(long, env = "CARECHAIN_GATEWAY_TOKEN_TTL", default_value_t = 900)]
    pub token_ttl_secs: i64,
    /// Oldest accepted `Issued At` of a sign-in message, in seconds.
    #[arg(long, env = "CARECHAIN_GATEWAY_SIWE_MAX_AGE", default_value_t = 300)]
    pub siwe_max_age_secs: i64,
    /// Per-request time limit in seconds.
    #[arg(long, env = "CARECHAIN_GATEWAY_REQUEST_TIMEOUT", default_value_t = 60)]
    pub request_timeout_secs: u64,
    /// Time limit of one chain call in milliseconds.
    #[arg(
        long,
        env = "CARECHAIN_GATEWAY_CHAIN_TIMEOUT_MS",
        default_value_t = 5000
    )]
    pub chain_timeout_ms: u64,
    /// Refuse requests when the indexer is more than this many blocks behind the chain.
    #[arg(long, env = "CARECHAIN_GATEWAY_MAX_INDEX_LAG", default_value_t = 16)]
    pub max_index_lag_blocks: u64,
    /// Refuse requests when the chain and index were last seen longer ago (milliseconds).
    #[arg(
        long,
        env = "CARECHAIN_GATEWAY_MAX_HEALTH_AGE_MS",
        default_value_t = 3000
    )]
    pub max_health_age_ms: u64,
    /// Interval of the chain / index health probe in milliseconds.
    #[arg(long, env = "CARECHAIN_GATEWAY_PROBE_MS", default_value_t = 250)]
    pub probe_interval_ms: u64,
    /// Longest time a consent decision is cached, in milliseconds (0 disables the cache). A
    /// cached decision is dropped as soon as the indexer announces a change that may affect it
    /// and ends at the consent's own end; this bounds only how long one lives without the
    /// chain being asked again.
    #[arg(
        long,
        env = "CARECHAIN_GATEWAY_DECISION_TTL_MS",
        default_value_t = 600_000
    )]
    pub decision_cache_ttl_ms: u64,
    /// Default page size of searches.
    #[arg(long, env = "CARECHAIN_GATEWAY_PAGE_SIZE", default_value_t = 20)]
    pub default_page_size: usize,
    /// Largest page size (`_count` is clamped to it).
    #[arg(long, env = "CARECHAIN_GATEWAY_MAX_PAGE_SIZE", default_value_t = 100)]
    pub max_page_size: usize,
    /// Most distinct patients one search may span.
    #[arg(
        long,
        env = "CARECHAIN_GATEWAY_MAX_SEARCH_PATIENTS",
        default_value_t = 1000
    )]
    pub max_search_patients: usize,
    /// Refuse an update that does not name the version it replaces (`If-Match` on PUT,
    /// `request.ifMatch` in a transaction) with 428, so no client overwrites a version it has
    /// not seen. The CapabilityStatement says so (`versioning: versioned-update`).
    #[arg(long, env = "CARECHAIN_GATEWAY_REQUIRE_IF_MATCH")]
    pub require_if_match: bool,
    /// Database role the audit writer switches to (INSERT and SELECT only); empty for none.
    #[arg(
        long,
        env = "CARECHAIN_GATEWAY_AUDIT_ROLE",
        default_value = "carechain_gateway_audit"
    )]
    pub audit_role: String,
    /// Private key (hex) of the funded account that submits patients' signed grants and
    /// revocations (`POST /relay/consent`); without it, gas-free consent is switched off.
    #[arg(long, env = "CARECHAIN_GATEWAY_RELAY_KEY", hide_env_values = true)]
    pub relay_key: Option<String>,
    /// Gas-free consent submissions accepted per patient per hour.
    #[arg(long, env = "CARECHAIN_GATEWAY_RELAY_PER_HOUR", default_value_t = 20)]
    pub relay_per_patient_per_hour: u32,
    /// Gas-free consent submissions, valid or not, accepted per client address per minute
    /// (the relay needs no sign-in; each submission costs up to two `eth_call`s to check).
    #[arg(long, env = "CARECHAIN_GATEWAY_RELAY_PER_CLIENT", default_value_t = 30)]
    pub relay_per_client_per_minute: u32,
    /// Limits per signed-in user (the token's subject).
    #[command(flatten)]
    pub user_limits: UserLimits,
    /// BENCHMARKS ONLY: answer without asking the chain for consent. Refused unless the gateway
    /// listens on a loopback address.
    #[arg(
        long,
        env = "CARECHAIN_GATEWAY_BENCH_SKIP_CONSENT",
        default_value_t = false
    )]
    pub bench_skip_consent: bool,
    /// Benchmarks only: store writes without validating them as FHIR R4 (the baseline of
    /// `gateway.write.validate_ratio`). Refused unless listening on a loopback address.
    #[arg(
        long,
        hide = true,
        env = "CARECHAIN_GATEWAY_BENCH_SKIP_VALIDATION",
        default_value_t = false
    )]
    pub bench_skip_validation: bool,
    /// Compliance: audit anchoring.
    #[command(flatten)]
    pub anchoring: AnchoringConfig,
    /// Group anchoring of record versions.
    #[command(flatten)]
    pub record_anchoring: RecordAnchoringConfig,
    /// The federation: asking the other members' gateways.
    #[command(flatten)]
    pub federation: FederationConfig,
    /// Bulk Data export for research organisations.
    #[command(flatten)]
    pub research: ResearchExportConfig,
}

/// The federation (flattened into the gateway's flags). A gateway with an organisation
/// (`--default-custodian`) and that organisation's service key asks the other active members'
/// published endpoints for the records of a patient its signed-in users search, and answers
/// theirs.
#[derive(Debug, Clone, clap::Args)]
pub struct FederationConfig {
    /// CA certificate(s) (PEM) the other members' gateways' HTTPS certificates must chain to,
    /// instead of the system's root certificates (a consortium's own CA).
    #[arg(long, env = "CARECHAIN_GATEWAY_PEER_CA_FILE", value_name = "PEM")]
    pub peer_ca_file: Option<PathBuf>,
    /// Allow plain `http://` endpoints on a loopback address (a development consortium on one
    /// machine; never anything else: PHI travels between members over HTTPS only).
    #[arg(
        long,
        env = "CARECHAIN_GATEWAY_PEER_ALLOW_PLAIN_HTTP_LOOPBACK",
        default_value_t = false
    )]
    pub peer_allow_plain_http_loopback: bool,
    /// Time limit of one custodian's answer, in milliseconds: past it, the custodian is an
    /// `OperationOutcome` entry of the result.
    #[arg(
        long,
        env = "CARECHAIN_GATEWAY_FEDERATION_TIMEOUT_MS",
        default_value_t = 5000
    )]
    pub federation_timeout_ms: u64,
    /// Custodians asked at once by one request.
    #[arg(
        long,
        env = "CARECHAIN_GATEWAY_FEDERATION_CONCURRENCY",
        default_value_t = 8
    )]
    pub federation_concurrency: usize,
}

impl Default for FederationConfig {
    fn default() -> Self {
        Self {
            peer_ca_file: None,
            peer_allow_plain_http_loopback: false,
            federation_timeout_ms: 5000,
            federation_concurrency: 8,
        }
    }
}

/// FHIR Bulk Data export for research organisations (flattened into the gateway's flags; see
/// `gateway/README.md`, "Research export").
#[derive(Debug, Clone, clap::Args)]
pub struct ResearchExportConfig {
    /// The consortium's de-identification secret (hex, at least 32 bytes): study pseudonyms
    /// and date offsets are derived from it, so every custodian of the consortium must hold
    /// the same one for a study's pseudonyms to agree. Without it, exports are refused.
    #[arg(long, env = "CARECHAIN_GATEWAY_DEID_SECRET", hide_env_values = true)]
    pub deid_secret: Option<String>,
    /// A file holding the de-identification secret (hex), instead of `--deid-secret`.
    #[arg(
        long,
        env = "CARECHAIN_GATEWAY_DEID_SECRET_FILE",
        conflicts_with = "deid_secret"
    )]
    pub deid_secret_file: Option<PathBuf>,
    /// Where export jobs write their NDJSON files (one directory per job). Default: the
    /// system's temporary directory, `carechain-exports`.
    #[arg(long, env = "CARECHAIN_GATEWAY_EXPORT_DIR")]
    pub export_dir: Option<PathBuf>,
    /// Most export jobs running at once on the database (a kick-off beyond it is answered
    /// 429 with Retry-After).
    #[arg(long, env = "CARECHAIN_GATEWAY_EXPORT_MAX_JOBS", default_value_t = 2)]
    pub export_max_jobs: u32,
    /// How long a completed export's files stay downloadable (seconds), after which they are
    /// deleted and the status URL answers 404.
    #[arg(long, env = "CARECHAIN_GATEWAY_EXPORT_TTL", default_value_t = 86_400)]
    pub export_ttl_secs: u64,
    /// Benchmarks only: accept `_deidentify=false` (an export as stored, the baseline of
    /// `research.export.ratio_vs_plain`). Refused unless listening on a loopback address.
    #[arg(
        long,
        hide = true,
        env = "CARECHAIN_GATEWAY_BENCH_EXPORT_IDENTIFIED",
        default_value_t = false
    )]
    pub bench_export_identified: bool,
}

impl Default for ResearchExportConfig {
    fn default() -> Self {
        Self {
            deid_secret: None,
            deid_secret_file: None,
            export_dir: None,
            export_max_jobs: 2,
            export_ttl_secs: 86_400,
            bench_export_identified: false,
        }
    }
}

impl ResearchExportConfig {
    /// The de-identification secret, when configured.
    pub fn secret(&self) -> Result<Option<carechain_deid::DeidSecret>, ConfigError> {
        let text = match (&self.deid_secret, &self.deid_secret_file) {
            (Some(text), _) => text.clone(),
            (None, Some(path)) => {
                std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
                    name: "deid_secret_file",
                    reason: e.to_string(),
                })?
            }
            (None, None) => return Ok(None),
        };
        carechain_deid::DeidSecret::from_hex(text.trim())
            .map(Some)
            .map_err(|e| ConfigError::Invalid {
                name: "deid_secret",
                reason: e.to_string(),
            })
    }

    /// The export directory.
    pub fn dir(&self) -> PathBuf {
        self.export_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("carechain-exports"))
    }
}

impl GatewayConfig {
    /// A configuration with every default, for tests and embedding.
    pub fn with_defaults(
        database_url: String,
        rpc_url: String,
        manifest: PathBuf,
        kek: String,
    ) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            base_url: None,
            tls_cert: None,
            tls_key: None,
            allow_plain_http: false,
            database_url: Some(database_url),
            db_tls: PgTls::default(),
            db_max_connections: 16,
            migrate: true,
            rpc_url,
            rpc_ca_file: None,
            manifest: Some(manifest),
            kek_file: None,
            kek: Some(kek),
            service_keys: Vec::new(),
            default_custodian: None,
            max_body_bytes: 8 * 1024 * 1024,
            nonces_per_minute: 30,
            token_ttl_secs: 900,
            siwe_max_age_secs: 300,
            request_timeout_secs: 60,
            chain_timeout_ms: 5000,
            max_index_lag_blocks: 16,
            max_health_age_ms: 3000,
            probe_interval_ms: 100,
            decision_cache_ttl_ms: 600_000,
            default_page_size: 20,
            max_page_size: 100,
            max_search_patients: 1000,
            require_if_match: false,
            audit_role: "carechain_gateway_audit".into(),
            relay_key: None,
            relay_per_patient_per_hour: 20,
            relay_per_client_per_minute: 30,
            user_limits: UserLimits::default(),
            bench_skip_consent: false,
            bench_skip_validation: false,
            anchoring: AnchoringConfig::default(),
            record_anchoring: RecordAnchoringConfig::default(),
            federation: FederationConfig::default(),
            research: ResearchExportConfig::default(),
        }
    }

    /// Checks settings that flags alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::Invalid {
                name: "tls_cert",
                reason: "--tls-cert and --tls-key go together".into(),
            });
        }
        if !self.serves_tls() && !self.listen.ip().is_loopback() && !self.allow_plain_http {
            return Err(ConfigError::Invalid {
                name: "listen",
                reason: format!(
                    "refusing to serve PHI over plain HTTP on {}, a non-loopback address: give \
                     --tls-cert and --tls-key, or --allow-plain-http if a TLS-terminating proxy \
                     on a private network is in front",
                    self.listen
                ),
            });
        }
        self.rpc_endpoint()?;
        if self.bench_skip_consent && !self.listen.ip().is_loopback() {
            return Err(ConfigError::Invalid {
                name: "bench_skip_consent",
                reason: "only allowed when listening on a loopback address".into(),
            });
        }
        if self.research.bench_export_identified && !self.listen.ip().is_loopback() {
            return Err(ConfigError::Invalid {
                name: "bench_export_identified",
                reason: "only allowed when listening on a loopback address".into(),
            });
        }
        self.research.secret()?;
        if self.bench_skip_validation && !self.listen.ip().is_loopback() {
            return Err(ConfigError::Invalid {
                name: "bench_skip_validation",
                reason: "only allowed when listening on a loopback address".into(),
            });
        }
        if self.max_page_size == 0
            || self.default_page_size == 0
            || self.default_page_size > self.max_page_size
        {
            return Err(ConfigError::Invalid {
                name: "default_page_size",
                reason: "page sizes must be positive and the default at most the maximum".into(),
            });
        }
        if self.token_ttl_secs <= 0 || self.siwe_max_age_secs <= 0 {
            return Err(ConfigError::Invalid {
                name: "token_ttl_secs",
                reason: "token lifetime and sign-in message age must be positive".into(),
            });
        }
        if self.db_max_connections < 2 {
            return Err(ConfigError::Invalid {
                name: "db_max_connections",
                reason: "at least 2 (the audit writer holds one while requests use others)".into(),
            });
        }
        self.audit_role()?;
        self.parsed_service_keys()?;
        self.anchoring.anchor_signer()?;
        self.record_anchoring.settings()?;
        Ok(())
    }

    /// Whether the gateway serves HTTPS itself.
    pub fn serves_tls(&self) -> bool {
        self.tls_cert.is_some() && self.tls_key.is_some()
    }

    /// The chain's JSON-RPC endpoint with its trust (the URL is never quoted in errors).
    pub fn rpc_endpoint(&self) -> Result<RpcEndpoint, ConfigError> {
        RpcEndpoint::parse(&self.rpc_url, self.rpc_ca_file.as_deref()).map_err(|err| {
            ConfigError::Invalid {
                name: "rpc_url",
                reason: err.to_string(),
            }
        })
    }

    /// Parses `service_keys` into `(org, key)` pairs.
    pub fn parsed_service_keys(&self) -> Result<Vec<(Address, String)>, ConfigError> {
        self.service_keys
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|entry| {
                let (org, key) = entry.split_once('=').ok_or(ConfigError::Invalid {
                    name: "service_keys",
                    reason: "expected <org address>=<private key>".into(),
                })?;
                let org: Address = org.trim().parse().map_err(|_| ConfigError::Invalid {
                    name: "service_keys",
                    reason: format!("`{}` is not an address", org.trim()),
                })?;
                let key = key.trim();
                let hex = key.strip_prefix("0x").unwrap_or(key);
                if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(ConfigError::Invalid {
                        name: "service_keys",
                        reason: format!("the key for {org} is not 32 bytes of hex"),
                    });
                }
                Ok((org, key.to_owned()))
            })
            .collect()
    }

    /// Checks the audit role name is a plain identifier (it is spliced into `SET ROLE`).
    pub fn audit_role(&self) -> Result<Option<String>, ConfigError> {
        let role = self.audit_role.trim();
        if role.is_empty() {
            return Ok(None);
        }
        if role.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            Ok(Some(role.to_owned()))
        } else {
            Err(ConfigError::Invalid {
                name: "audit_role",
                reason: "must be a plain identifier".into(),
            })
        }
    }
}

/// Token buckets per signed-in user (keyed by the bearer token's subject), one per kind of
/// request; each holds as many tokens as its per-minute rate and refills continuously. Beyond
/// them the answer is 429 with `Retry-After` and an OperationOutcome. 0 switches a kind off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct UserLimits {
    /// Reads (read, vread, history) one signed-in user may make per minute.
    #[arg(
        long = "user-reads-per-minute",
        env = "CARECHAIN_GATEWAY_USER_READS_PER_MINUTE",
        default_value_t = UserLimits::DEFAULT.reads_per_minute
    )]
    pub reads_per_minute: u32,
    /// Searches (type searches, AuditEvent and Consent searches, `$` operations read with GET)
    /// one signed-in user may make per minute.
    #[arg(
        long = "user-searches-per-minute",
        env = "CARECHAIN_GATEWAY_USER_SEARCHES_PER_MINUTE",
        default_value_t = UserLimits::DEFAULT.searches_per_minute
    )]
    pub searches_per_minute: u32,
    /// Writes (create, update, delete, transaction and batch Bundles, `$erase`, reviews) one
    /// signed-in user may make per minute.
    #[arg(
        long = "user-writes-per-minute",
        env = "CARECHAIN_GATEWAY_USER_WRITES_PER_MINUTE",
        default_value_t = UserLimits::DEFAULT.writes_per_minute
    )]
    pub writes_per_minute: u32,
}

impl UserLimits {
    /// The defaults (the flags' and [`Default`]'s): far above what a person, or an
    /// application working for one, does.
    pub const DEFAULT: Self = Self {
        reads_per_minute: 6000,
        searches_per_minute: 1200,
        writes_per_minute: 1200,
    };
}

impl Default for UserLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Group anchoring of record versions (flattened into the gateway's flags): a write is answered
/// once stored; the versions of a window are anchored together with one `anchorBatch` per
/// custodian.
#[derive(Debug, Clone, clap::Args)]
pub struct RecordAnchoringConfig {
    /// Anchor the waiting versions of a custodian once the oldest has waited this long
    /// (milliseconds). Shorter: anchored sooner, but more transactions (gas) per version.
    #[arg(
        long,
        env = "CARECHAIN_GATEWAY_RECORD_ANCHOR_WINDOW_MS",
        default_value_t = RecordAnchoringConfig::DEFAULT.record_anchor_window_ms
    )]
    pub record_anchor_window_ms: u64,
    /// Anchor as soon as this many versions wait; also the largest batch.
    #[arg(
        long,
        env = "CARECHAIN_GATEWAY_RECORD_ANCHOR_MAX_BATCH",
        default_value_t = RecordAnchoringConfig::DEFAULT.record_anchor_max_batch
    )]
    pub record_anchor_max_batch: usize,
    /// Most batch transactions of one custodian in flight (sent, not yet mined).
    #[arg(
        long,
        env = "CARECHAIN_GATEWAY_RECORD_ANCHOR_IN_FLIGHT",
        default_value_t = RecordAnchoringConfig::DEFAULT.record_anchor_in_flight
    )]
    pub record_anchor_in_flight: usize,
    /// Replace a batch transaction not mined after this long with the same nonce and 25%
    /// higher fees (milliseconds).
    #[arg(
        long,
        env = "CARECHAIN_GATEWAY_RECORD_ANCHOR_BUMP_MS",
        default_value_t = RecordAnchoringConfig::DEFAULT.record_anchor_bump_ms
    )]
    pub record_anchor_bump_ms: u64,
    /// Serve a version not yet anchored (marked so) for at most this long after its write;
    /// after that a read refuses it as unverifiable (milliseconds).
    #[arg(
        long,
        env = "CARECHAIN_GATEWAY_RECORD_ANCHOR_GRACE_MS",
        default_value_t = RecordAnchoringConfig::DEFAULT.record_anchor_grace_ms
    )]
    pub record_anchor_grace_ms: u64,
}

impl RecordAnchoringConfig {
    /// The defaults (the flags' and [`Default`]'s), from
    /// [`AnchoringSettings::DEFAULT`](crate::records::anchoring::AnchoringSettings::DEFAULT).
    pub const DEFAULT: Self = {
        let d = crate::records::anchoring::AnchoringSettings::DEFAULT;
        Self {
            record_anchor_window_ms: d.window.as_millis() as u64,
            record_anchor_max_batch: d.max_batch,
            record_anchor_in_flight: d.max_in_flight,
            record_anchor_bump_ms: d.bump_after.as_millis() as u64,
            record_anchor_grace_ms: d.grace.as_millis() as u64,
        }
    };

    /// The anchorer's settings, checked.
    pub fn settings(&self) -> Result<crate::records::anchoring::AnchoringSettings, ConfigError> {
        let invalid = |name, reason: &str| ConfigError::Invalid {
            name,
            reason: reason.into(),
        };
        if self.record_anchor_max_batch == 0 || self.record_anchor_max_batch > 1 << 20 {
            return Err(invalid(
                "record_anchor_max_batch",
                "between 1 and 1048576 versions",
            ));
        }
        if self.record_anchor_in_flight == 0 {
            return Err(invalid("record_anchor_in_flight", "at least 1"));
        }
        if self.record_anchor_bump_ms == 0 || self.record_anchor_grace_ms == 0 {
            return Err(invalid(
                "record_anchor_bump_ms",
                "the bump delay and the grace period must be positive",
            ));
        }
        let window = Duration::from_millis(self.record_anchor_window_ms);
        Ok(crate::records::anchoring::AnchoringSettings {
            window,
            max_batch: self.record_anchor_max_batch,
            max_in_flight: self.record_anchor_in_flight,
            bump_after: Duration::from_millis(self.record_anchor_bump_ms),
            poll: crate::records::anchoring::AnchoringSettings::DEFAULT
                .poll
                .min(window.max(Duration::from_millis(5))),
            grace: Duration::from_millis(self.record_anchor_grace_ms),
        })
    }
}

impl Default for RecordAnchoringConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Audit anchoring settings (flattened into the gateway's flags).
#[derive(Debug, Clone, clap::Args)]
pub struct AnchoringConfig {
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
        default_value_t = AnchoringConfig::DEFAULT.audit_anchor_rows
    )]
    pub audit_anchor_rows: u64,
    /// Anchor what is unanchored once its oldest row is this old (milliseconds).
    #[arg(
        long,
        env = "CARECHAIN_GATEWAY_AUDIT_ANCHOR_INTERVAL_MS",
        default_value_t = AnchoringConfig::DEFAULT.audit_anchor_interval_ms
    )]
    pub audit_anchor_interval_ms: u64,
    /// How often the anchoring task looks at the log (milliseconds).
    #[arg(
        long,
        env = "CARECHAIN_GATEWAY_AUDIT_ANCHOR_POLL_MS",
        default_value_t = AnchoringConfig::DEFAULT.audit_anchor_poll_ms
    )]
    pub audit_anchor_poll_ms: u64,
}

impl AnchoringConfig {
    /// The defaults (the flags' and [`Default`]'s): no anchoring key.
    pub const DEFAULT: Self = Self {
        audit_anchor_key: None,
        audit_anchor_rows: 1000,
        audit_anchor_interval_ms: 60_000,
        audit_anchor_poll_ms: 1000,
    };
}

impl Default for AnchoringConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl AnchoringConfig {
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
