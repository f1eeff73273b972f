//! `lane operator`: runs `lane_kube::operator` until SIGINT or SIGTERM.

use std::path::PathBuf;

use anyhow::anyhow;
use lane_kube::operator::{self, Config, Operator};

pub async fn run(
    kubeconfig: Option<PathBuf>,
    namespaces: Vec<String>,
    lane_header: String,
) -> anyhow::Result<u8> {
    let client = operator::client(kubeconfig.as_deref())
        .await
        .map_err(|e| anyhow!(e))?;
    let config = Config {
        namespaces,
        lane_header: Some(lane_header),
        ..Config::default()
    };
    let scope = if config.namespaces.is_empty() {
        "all namespaces".to_owned()
    } else {
        config.namespaces.join(", ")
    };
    let op = Operator::new(client, config)?;
    tracing::info!("lane operator: watching {scope}");
    op.run(shutdown()).await;
    tracing::info!("lane operator: stopped");
    Ok(0)
}

/// Resolves on SIGINT or SIGTERM (a Pod's stop).
async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
