//! `lane-test-grpc --port N [--name NAME] [--host ADDR]`: serves the `lane.test.Greeter` gRPC
//! service (h2c) for end-to-end tests. Stops on SIGTERM or Ctrl-C.

use std::process::ExitCode;

const USAGE: &str = "usage: lane-test-grpc --port N [--name NAME] [--host ADDR]";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut port: Option<u16> = None;
    let mut name = String::from("greeter");
    let mut host = String::from("127.0.0.1");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
            None => (arg, None),
        };
        let mut value = || inline.clone().or_else(|| args.next());
        match key.as_str() {
            "--port" => port = value().and_then(|v| v.parse().ok()),
            "--name" => name = value().unwrap_or_default(),
            "--host" => host = value().unwrap_or_default(),
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("lane-test-grpc: unknown argument `{other}`\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(port) = port else {
        eprintln!("lane-test-grpc: --port N is required\n{USAGE}");
        return ExitCode::from(2);
    };
    let listener = match tokio::net::TcpListener::bind((host.as_str(), port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("lane-test-grpc: cannot listen on {host}:{port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("lane-test-grpc: `{name}` serving lane.test.Greeter on {host}:{port}");
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    match lane_tests::serve(listener, &name, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lane-test-grpc: {e}");
            ExitCode::FAILURE
        }
    }
}
