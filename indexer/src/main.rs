//! `carechain-indexer`: see `--help`.

use carechain_indexer::{Config, Indexer, config::LogFormat};
use clap::Parser;
use eyre::WrapErr;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,alloy=warn,hyper=warn,reqwest=warn"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[tokio::main]
async fn main() -> eyre::Result<()> {
    let config = Config::parse();
    init_logging(config.log_format);
    let indexer = Indexer::start(config)
        .await
        .wrap_err("the indexer could not start")?;
    tokio::select! {
        result = indexer.run() => result.wrap_err("the indexer stopped")?,
        () = shutdown_signal() => tracing::info!("shutting down"),
    }
    Ok(())
}
