//! `carechain-gateway` binary: parses its configuration and refuses to start (not implemented).

use carechain_gateway::GatewayConfig;
use clap::Parser;

/// carechain FHIR R4 gateway (NOT IMPLEMENTED YET: refuses to start).
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    config: GatewayConfig,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match carechain_gateway::run(&cli.config) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::ExitCode::from(2)
        }
    }
}
