//! HTTPS: the listener that turns accepted TCP connections into TLS streams for axum
//! ([`TlsListener`]), and the certificate reload on SIGHUP ([`reload_on_sighup`]).
//!
//! Handshakes run in tasks of their own, so a slow or hostile client holding its handshake
//! open delays nobody else; each is bounded in time, and at most [`MAX_HANDSHAKES`] run at once
//! (further connections are closed at once until some finish). The certificate comes from a
//! [`ReloadingCertificate`] that rustls asks on every handshake: reloading it changes what new
//! connections get and leaves established ones alone. ALPN offers `h2` and `http/1.1`; axum
//! serves whichever the client chose.

use carechain_tls::{
    ReloadingCertificate, TlsError,
    tokio_rustls::{TlsAcceptor, server::TlsStream},
};
use std::{io, net::SocketAddr, sync::Arc, time::Duration};
use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinSet,
};

/// Handshakes in progress at most; connections beyond are closed without one.
pub const MAX_HANDSHAKES: usize = 1024;

/// Longest a client may take to complete its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The gateway's TLS: the certificate it serves and the acceptor built on it.
#[derive(Clone)]
pub struct GatewayTls {
    certificate: Arc<ReloadingCertificate>,
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for GatewayTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayTls")
            .field("certificate", &self.certificate.cert_path())
            .finish_non_exhaustive()
    }
}

impl GatewayTls {
    /// Loads the certificate chain and key (TLS 1.2+, ALPN `h2` and `http/1.1`).
    pub fn load(cert: &std::path::Path, key: &std::path::Path) -> Result<Self, TlsError> {
        let certificate = Arc::new(ReloadingCertificate::load(cert, key)?);
        let config = carechain_tls::server::server_config(Arc::clone(&certificate))?;
        Ok(Self {
            certificate,
            acceptor: TlsAcceptor::from(config),
        })
    }

    /// The served certificate; [`ReloadingCertificate::reload`] swaps it.
    pub fn certificate(&self) -> &Arc<ReloadingCertificate> {
        &self.certificate
    }
}

/// An [`axum::serve::Listener`] yielding TLS streams whose handshake has completed.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("tcp", &self.tcp)
            .field("handshakes", &self.handshakes.len())
            .finish_non_exhaustive()
    }
}

impl TlsListener {
    /// TLS on the connections `tcp` accepts.
    pub fn new(tcp: TcpListener, tls: &GatewayTls) -> Self {
        Self {
            tcp,
            acceptor: tls.acceptor.clone(),
            handshakes: JoinSet::new(),
        }
    }

    fn start_handshake(&mut self, stream: TcpStream, peer: SocketAddr) {
        if self.handshakes.len() >= MAX_HANDSHAKES {
            tracing::warn!(%peer, "too many TLS handshakes in progress; connection closed");
            return;
        }
        // Responses leave in several TLS records; Nagle's algorithm would hold back the last.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%err, "TCP_NODELAY not set");
        }
        let acceptor = self.acceptor.clone();
        self.handshakes.spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => Some((tls, peer)),
                Ok(Err(err)) => {
                    // Untrusting clients, scanners, plain HTTP on the TLS port: routine.
                    tracing::debug!(%peer, %err, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    None
                }
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, peer)) => self.start_handshake(stream, peer),
                    Err(err) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tracing::warn!(%err, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some(connection)) = done {
                        return connection;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// Reloads `certificate` from its files on every SIGHUP until the process ends; a failed
/// reload is logged and the certificate in use stays.
pub async fn reload_on_sighup(certificate: Arc<ReloadingCertificate>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGHUP: the certificate will not be reloaded");
                return;
            }
        };
        while hangups.recv().await.is_some() {
            match certificate.reload() {
                Ok(()) => tracing::info!(
                    cert = %certificate.cert_path().display(),
                    "TLS certificate reloaded: new connections get it"
                ),
                Err(err) => {
                    tracing::error!(%err, "TLS certificate not reloaded; the old one stays")
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = certificate;
        std::future::pending::<()>().await;
    }
}
