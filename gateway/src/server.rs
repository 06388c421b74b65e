//! One gateway as a running service: start-up (configuration, keys, database, chain, the
//! background tasks) and serving until shutdown ([`Gateway`]).

use crate::{
    AppState, GatewayConfig, audit,
    audit::AuditLog,
    auth,
    auth::AuthSettings,
    chain,
    chain::ChainClient,
    compliance,
    config::ConfigError,
    consent::{ConsentService, ConsentSettings},
    crypto,
    crypto::SecretKey,
    db, http,
    paging::CursorCodec,
    records::{RecordSettings, Records, RecordsParts, store::SearchTermHasher},
    relay,
    signing::TokenSigner,
    state::AppStateParts,
    tls::{GatewayTls, TlsListener},
};
use axum::serve::ListenerExt;
use carechain_contracts::DeploymentManifest;
use carechain_tls::ReloadingCertificate;
use sqlx::postgres::PgPoolOptions;
use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};
use tokio_util::sync::CancellationToken;

/// Why the gateway cannot start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The deployment manifest cannot be used.
    #[error(transparent)]
    Manifest(#[from] carechain_contracts::ManifestError),
    /// The key-encryption key cannot be loaded.
    #[error(transparent)]
    Kek(#[from] crypto::CryptoError),
    /// The TLS certificate, its key, or a trust or PostgreSQL TLS setting is unusable.
    #[error(transparent)]
    Tls(#[from] carechain_tls::TlsError),
    /// The database is unreachable or refused the migrations.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The migrations failed.
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The chain client could not be built.
    #[error(transparent)]
    Chain(#[from] chain::ChainError),
    /// The audit log's anchoring or the compliance services could not be set up.
    #[error(transparent)]
    AuditLog(#[from] audit::LogError),
    /// The listening socket failed.
    #[error("listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// A started gateway: its state, background tasks and the address it serves on.
#[derive(Debug)]
pub struct Gateway {
    state: AppState,
    listener: tokio::net::TcpListener,
    tls: Option<GatewayTls>,
    background: CancellationToken,
    audit_writer: tokio::task::JoinHandle<()>,
}

impl Gateway {
    /// Loads keys and the manifest, connects, migrates, and binds the listening socket.
    pub async fn start(config: GatewayConfig) -> Result<Self, GatewayError> {
        config.validate()?;
        let manifest_path = config
            .manifest
            .clone()
            .ok_or(ConfigError::Missing("manifest"))?;
        let manifest = DeploymentManifest::load(&manifest_path)?;
        let kek = match (&config.kek_file, &config.kek) {
            (Some(path), _) => SecretKey::from_file(path)?,
            (None, Some(hex)) => SecretKey::from_hex(hex)?,
            (None, None) => return Err(ConfigError::Missing("kek_file or kek").into()),
        };
        let database_url = config
            .database_url
            .clone()
            .ok_or(ConfigError::Missing("database_url"))?;
        let connect = config.db_tls.connect_options(&database_url)?;
        let rpc = config.rpc_endpoint()?;
        rpc.trust().check()?;
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(GatewayTls::load(cert, key)?),
            _ => None,
        };
        // sqlx pings every pooled connection before handing it out: one extra round trip per
        // query on the read path. A connection that has been busy within the last second is
        // taken as alive; one idle for longer is pinged first (a failed ping discards it).
        // Half the connections serve record reads without sqlx's per-use round trip (see
        // `db`); the pool has the rest.
        let read_connections = config.db_max_connections / 2;
        let reads = db::ReadConnections::new(
            connect.clone(),
            read_connections as usize,
            Duration::from_secs(5),
        );
        let pool = PgPoolOptions::new()
            .max_connections(config.db_max_connections - read_connections)
            .acquire_timeout(Duration::from_secs(5))
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for > Duration::from_secs(1) {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(connect)
            .await?;
        if config.migrate {
            // Other services of the workspace may have applied migrations this build does not
            // know yet (one shared folder, binaries built at different times).
            let mut migrator = sqlx::migrate!("../migrations");
            migrator.set_ignore_missing(true);
            migrator.run(&pool).await?;
        }
        let chain = Arc::new(ChainClient::new(
            &rpc,
            manifest.contracts,
            manifest.chain_id,
            &config.parsed_service_keys()?,
            Duration::from_millis(config.chain_timeout_ms),
        )?);
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| GatewayError::Listen {
                addr: config.listen,
                source,
            })?;
        let bound = listener
            .local_addr()
            .map_err(|source| GatewayError::Listen {
                addr: config.listen,
                source,
            })?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let base_url = config
            .base_url
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{bound}"))
            .trim_end_matches('/')
            .to_owned();
        let auth = AuthSettings::for_base_url(
            &base_url,
            manifest.chain_id,
            config.token_ttl_secs,
            config.siwe_max_age_secs,
        )?;
        let consent = Arc::new(ConsentService::new(
            Arc::clone(&chain),
            pool.clone(),
            ConsentSettings::from_config(&config),
        ));
        let background = CancellationToken::new();
        consent.spawn_background(background.clone());
        let (audit, audit_writer) =
            AuditLog::start(pool.clone(), config.audit_role()?, background.clone());
        let relay = config
            .relay_key
            .as_deref()
            .map(|key| {
                relay::Relay::new(
                    &rpc,
                    key,
                    manifest.contracts.consent_registry,
                    manifest.chain_id,
                    pool.clone(),
                    config.relay_per_patient_per_hour,
                    Duration::from_millis(config.chain_timeout_ms),
                )
            })
            .transpose()
            .map_err(|e| ConfigError::Invalid {
                name: "relay_key",
                reason: e.to_string(),
            })?;
        let compliance = compliance::start(
            &config,
            &rpc,
            &pool,
            manifest.contracts.audit_anchor,
            manifest.chain_id,
            background.clone(),
        )?;
        let anchoring = config.record_anchoring.settings()?;
        crate::records::anchoring::spawn(&pool, &chain, anchoring, &background);
        let secret = kek.derive(b"carechain/gateway-secret");
        let records = Records::new(RecordsParts {
            pool: pool.clone(),
            reads,
            chain: Arc::clone(&chain),
            consent: Arc::clone(&consent),
            cursors: CursorCodec::new(SecretKey::from_bytes(
                kek.derive(b"carechain/paging-cursor"),
            )),
            hasher: SearchTermHasher::new(&secret),
            kek,
            settings: RecordSettings {
                base_url,
                default_page_size: config.default_page_size,
                max_page_size: config.max_page_size,
                max_search_patients: config.max_search_patients,
                default_custodian: config.default_custodian,
                require_if_match: config.require_if_match,
                validate: !config.bench_skip_validation,
                anchoring,
            },
        });
        let federation = match config
            .default_custodian
            .and_then(|org| chain.service_key(org).map(|key| (org, key.signer.clone())))
        {
            None => None,
            Some((org, key)) => {
                let settings = &config.federation;
                Some(
                    crate::federation::Federation::new(
                        org,
                        key,
                        crate::federation::request::domain(
                            manifest.chain_id,
                            manifest.contracts.provider_registry,
                        ),
                        &carechain_tls::Trust::from_ca_file(settings.peer_ca_file.as_deref()),
                        carechain_tls::PeerPolicy {
                            allow_plain_http_loopback: settings.peer_allow_plain_http_loopback,
                        },
                        crate::federation::FederationSettings {
                            timeout: Duration::from_millis(settings.federation_timeout_ms),
                            concurrency: settings.federation_concurrency,
                        },
                    )
                    .map_err(|e| ConfigError::Invalid {
                        name: "peer_ca_file",
                        reason: e.to_string(),
                    })?,
                )
            }
        };
        let state = AppState::new(AppStateParts {
            pool,
            chain,
            consent,
            records,
            audit,
            tokens: TokenSigner::new(&secret, "bearer-token"),
            nonces: auth::PeerLimiter::new(config.nonces_per_minute),
            relay_clients: auth::PeerLimiter::new(config.relay_per_client_per_minute),
            users: auth::UserLimiter::new(&config.user_limits),
            compliance: Some(compliance),
            federation,
            exports: crate::research::Exports::new(&config.research, background.clone())?,
            auth,
            relay,
            config,
        });
        crate::research::spawn_sweeper(state.clone());
        Ok(Self {
            state,
            listener,
            tls,
            background,
            audit_writer,
        })
    }

    /// The served TLS certificate, when the gateway serves HTTPS: its
    /// [`ReloadingCertificate::reload`] is what SIGHUP calls (see [`crate::tls::reload_on_sighup`]).
    pub fn certificate(&self) -> Option<Arc<ReloadingCertificate>> {
        self.tls.as_ref().map(|tls| Arc::clone(tls.certificate()))
    }

    /// The address the gateway listens on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// The shared state (tests inspect it).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish, stops the
    /// background tasks and drains the audit writer.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Self {
            state,
            listener,
            tls,
            background,
            audit_writer,
        } = self;
        let router = http::router(state);
        // The peer address reaches handlers (the nonce rate limit is per client address).
        let app = router.into_make_service_with_connect_info::<SocketAddr>();
        let served = match tls {
            // axum provides the peer address of any listener wrapped by `tap_io`.
            Some(tls) => {
                axum::serve(TlsListener::new(listener, &tls).tap_io(|_| {}), app)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
            None => {
                axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
        };
        background.cancel();
        // No request is in flight any more: the writer drains its queue and stops.
        if let Err(err) = audit_writer.await {
            tracing::error!(%err, "audit writer stopped abnormally");
        }
        served
    }
}

/// Resolves when the process receives SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
