//! `lane operator`: runs `lane_kube::operator` until SIGINT or SIGTERM.

use std::path::PathBuf;

use anyhow::anyhow;
use lane_kube::lease::{self, LeaseConfig};
use lane_kube::operator::{self, Config, Operator};

use crate::cli::OperatorElection;

pub async fn run(
    kubeconfig: Option<PathBuf>,
    namespaces: Vec<String>,
    lane_header: String,
    election: OperatorElection,
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
    let op = Operator::new(client.clone(), config)?;
    tracing::info!("lane operator: watching {scope}");
    if election.no_leader_election {
        op.run(shutdown()).await;
    } else {
        let identity = election.identity.unwrap_or_else(lease::default_identity);
        let lease = LeaseConfig::new(&election.lease_namespace, &election.lease_name, &identity);
        tracing::info!(
            "lane operator: {identity}, a candidate for Lease {}/{}",
            lease.namespace,
            lease.name
        );
        op.run_elected(lease::Elector::new(client, lease), shutdown())
            .await;
    }
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
