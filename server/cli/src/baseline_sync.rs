//! `lane baseline sync`: fetch, check what production runs and roll baseline forward now (what
//! the backend also does on its own when a followed ref moves), with progress; then where each
//! followed service stands.

use lane_api::{Backend, Drift};

use crate::commands::{print_json, with_progress};
use crate::output;

/// The exit code of a sync that left services drifting: 6 (build/start/health failed) when a
/// roll-forward failed or baseline is unhealthy, 3 (not found) when what production runs cannot
/// be read, else 0.
fn exit_code(rows: &[lane_api::BaselineSync]) -> u8 {
    if rows
        .iter()
        .any(|b| matches!(b.drift, Drift::BuildFailed | Drift::Unhealthy))
    {
        6
    } else if rows.iter().any(|b| b.drift == Drift::Unknown) {
        3
    } else {
        0
    }
}

pub async fn run(backend: &dyn Backend, json: bool) -> anyhow::Result<u8> {
    let rows = with_progress(json, async |tx, cancel| {
        backend.baseline_sync(tx, cancel).await
    })
    .await?;
    if json {
        print_json(&rows)?;
    } else if rows.is_empty() && backend.name() == "kubernetes" {
        println!(
            "no baseline service follows production: apply a LaneEnvironment naming production's \
             namespace (docs/kubernetes.md, \"Baseline follows production\")"
        );
    } else if rows.is_empty() {
        println!(
            "no baseline service follows production: give one `follow = \"origin/main\"` (or a \
             tag pattern such as \"refs/tags/v*\") in lane-workspace.toml, then `lane baseline up`"
        );
    } else {
        output::baseline_follow(&rows);
    }
    Ok(exit_code(&rows))
}
