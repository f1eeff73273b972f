//! `lane lsp`: the IDE daemon. JSON-RPC (LSP framing) over stdio; stdout carries only the
//! protocol, logs go to stderr and to the IDE (`window/logMessage`).
//!
//! | module       | holds                                                                    |
//! |--------------|--------------------------------------------------------------------------|
//! | `ext`        | every custom method, command and wire type (mirrored by the IDE plugins) |
//! | `to_proto`   | backend types → wire types (pure)                                        |
//! | `server`     | the thin `LanguageServer` impl and the daemon's state                    |
//! | `handlers`   | one free function per command                                            |
//! | `keeper`     | starts the local agent again when it dies, and tells the IDE             |
//! | `watch`      | the status pusher: git/`lane.toml` watcher + backend long-poll, debounced |
//! | `workspace`  | the folders' services, git state and watched paths (off the async threads) |
//! | `uri`        | the IDE's `file://` URIs as paths (percent escapes decoded)              |
//! | `log`        | tracing → `window/logMessage`                                            |
//! | `stdio`      | stdin guard: malformed or oversized frames never reach the framework     |
//!
//! **Architecture invariant:** the daemon holds no lane logic. Every operation is a call of the
//! same [`lane_api::Backend`] the CLI uses, with requests built by the same shared helpers
//! (`crate::requests`: `deploy_request`, the backend choice, the identity); what git and
//! `lane.toml` say comes from `lane-workspace`, always in `spawn_blocking`. It does not import the
//! CLI's `commands`, nor they it.

mod data;
pub mod ext;
mod handlers;
mod keeper;
mod log;
mod server;
mod stdio;
mod to_proto;
mod uri;
mod watch;
mod workspace;

use std::io::Write as _;

use tower_lsp_server::ls_types::request::Request as _;
use tower_lsp_server::{LspService, Server};

/// Runs the daemon until the client says `exit` or closes stdin.
pub async fn run(describe: bool, backend: Option<String>) -> anyhow::Result<u8> {
    if describe {
        let text = serde_json::to_string_pretty(&ext::describe())?;
        // A closed pipe (`lane lsp --describe | head`) is not an error worth a panic.
        let _ = writeln!(std::io::stdout(), "{text}");
        return Ok(0);
    }
    let log = log::init();
    let (service, socket) = LspService::build(|client| server::Lsp::new(client, backend, log))
        .custom_method(ext::StatusRequest::METHOD, server::Lsp::status)
        .custom_method(ext::HistoryRequest::METHOD, server::Lsp::history)
        .custom_method(
            "window/workDoneProgress/cancel",
            server::Lsp::cancel_progress,
        )
        .custom_method("$/setTrace", server::Lsp::set_trace)
        .custom_method(stdio::INVALID_REQUEST_METHOD, server::Lsp::invalid_request)
        .finish();
    tracing::info!("lane lsp {} serving on stdio", env!("CARGO_PKG_VERSION"));
    Server::new(
        stdio::guard(tokio::io::stdin()),
        tokio::io::stdout(),
        socket,
    )
    // A deploy holds its slot for minutes; status and cancellation must not wait behind it.
    .concurrency_level(32)
    .serve(service)
    .await;
    tracing::info!("client gone; lane lsp exits");
    Ok(0)
}
