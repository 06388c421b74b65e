//! A server running as a task of the test's runtime, with graceful shutdown.

use std::pin::Pin;
use tokio::{sync::oneshot, task::JoinHandle};

/// Completes once a [`BackgroundServer`] is asked to stop (or its handle is dropped).
pub type ShutdownSignal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A server future spawned on the test's runtime with a shutdown signal: [`stop`] fires the
/// signal and waits for the server to finish; dropping the handle fires it too (the server
/// then shuts down on its own).
///
/// [`stop`]: BackgroundServer::stop
#[derive(Debug)]
pub struct BackgroundServer<T> {
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<T>>,
}

impl<T: Send + 'static> BackgroundServer<T> {
    /// Spawns `serve(signal)`, where `signal` completes once the server is asked to stop, e.g.
    /// `BackgroundServer::spawn(|signal| gateway.serve(signal))`.
    pub fn spawn<F, Fut>(serve: F) -> Self
    where
        F: FnOnce(ShutdownSignal) -> Fut,
        Fut: Future<Output = T> + Send + 'static,
    {
        let (shutdown, stopped) = oneshot::channel::<()>();
        let signal: ShutdownSignal = Box::pin(async move {
            let _ = stopped.await;
        });
        let task = tokio::spawn(serve(signal));
        Self {
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    /// Asks the server to stop and waits for it; returns what it returned.
    pub async fn stop(mut self) -> T {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let task = self
            .task
            .take()
            .expect("the server task is there until stop");
        task.await
            .unwrap_or_else(|e| panic!("the server task failed: {e}"))
    }
}
