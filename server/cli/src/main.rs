//! `lane`: release lanes for microservice teams. One binary: the CLI, the agent that runs local
//! lanes, the router, and the IDE daemon (`lane lsp`).

mod baseline_sync;
mod cli;
mod commands;
mod consul_router;
mod data;
mod demo;
mod http_client;
mod lsp;
mod operator;
mod output;
mod requests;
mod route;
mod sample;
mod trace;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // `lane lsp` sends its logs to the IDE as well as stderr; it sets up its own subscriber.
    if !matches!(cli.command, cli::Command::Lsp { .. }) {
        // The operator is a service: its passes are logged (info) unless RUST_LOG says otherwise.
        let operator = matches!(cli.command, cli::Command::Operator { .. });
        init_tracing(if operator {
            cli.verbose.max(1)
        } else {
            cli.verbose
        });
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    requests::set_context(cli.context.clone());
    let code = runtime.block_on(async move {
        match cli.command {
            cli::Command::Lsp { describe } => {
                commands::finish(lsp::run(describe, cli.backend).await)
            }
            command => commands::run(cli.backend, command).await,
        }
    });
    // Do not wait for detached tasks (e.g. a proxy's idle connections).
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    ExitCode::from(code)
}

/// Logs go to stderr (stdout carries command output, and the protocol for `lane lsp`).
fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info,hyper=warn",
        _ => "debug,hyper=info",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let ansi = std::env::var_os("NO_COLOR").is_none()
        && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}
