//! `carechain-indexer`: see `--help`.

use carechain_indexer::{Config, Indexer, IndexerError, config::LogFormat};
use clap::Parser;
use std::{io::IsTerminal, process::ExitCode};
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

/// The error and its sources, `: `-separated.
fn with_sources(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Transparent variants repeat their source's message.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Reports a fatal error as a log line, so that it is a JSON object like every other line under
/// `--log-format json` (log collectors see why the indexer stopped), and fails the process.
fn fatal(error: &IndexerError, context: &'static str) -> ExitCode {
    tracing::error!(error = %with_sources(error), kind = error.kind(), "{context}");
    ExitCode::FAILURE
}

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    init_logging(config.log_format);
    let indexer = match Indexer::start(config).await {
        Ok(indexer) => indexer,
        Err(error) => return fatal(&error, "the indexer could not start"),
    };
    tokio::select! {
        result = indexer.run() => {
            if let Err(error) = result {
                return fatal(&error, "the indexer stopped");
            }
        }
        () = shutdown_signal() => tracing::info!("shutting down"),
    }
    ExitCode::SUCCESS
}
