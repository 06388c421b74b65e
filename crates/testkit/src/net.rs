//! Loopback ports, and a TCP forwarder that can be taken down and brought back.

use tokio::{
    net::{TcpListener, TcpStream},
    task::{JoinHandle, JoinSet},
};

/// A loopback port that was free a moment ago (the OS picked it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}

/// Whether something accepts connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// Forwards 127.0.0.1:`port` to 127.0.0.1:`target`, to simulate an outage of what is behind
/// it: [`TcpProxy::down`] closes the listener and every forwarded connection (clients see
/// resets, then refused connections), [`TcpProxy::up`] listens again on the same port.
#[derive(Debug)]
pub struct TcpProxy {
    /// The port clients connect to.
    pub port: u16,
    target: u16,
    task: Option<JoinHandle<()>>,
}

impl TcpProxy {
    /// Starts forwarding a free port to `target`.
    pub async fn start(target: u16) -> Self {
        let mut proxy = Self {
            port: free_port(),
            target,
            task: None,
        };
        proxy.up().await;
        proxy
    }

    /// Listens (again) and forwards every connection.
    pub async fn up(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap_or_else(|e| panic!("the proxy cannot listen on {}: {e}", self.port));
        let target = self.target;
        self.task = Some(tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                connections.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                while connections.try_join_next().is_some() {}
            }
        }));
    }

    /// Stops listening and cuts every forwarded connection: aborting the task drops the
    /// listener and the `JoinSet`, which aborts each connection's task.
    pub async fn down(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
