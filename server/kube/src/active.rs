//! The active lane on Kubernetes: the lane the developer's own requests enter (`lane switch`,
//! used by `lane proxy`, `lane trace` and `lane status`). The cluster has no part in it (the
//! proxy on the developer's machine adds the lane header; the mesh routes by the header), so it is
//! kept client-side, per cluster and Lanes namespace: the file `kubernetes-active.json` in lane's
//! state directory (`LANE_HOME`, else `$XDG_STATE_HOME/lane`, else `~/.local/state/lane`), a map
//! from `<API server URL> <namespace>` to the lane id.

use std::collections::BTreeMap;
use std::path::PathBuf;

use lane_api::{BackendError, Result};
use lane_core::LaneRef;

const FILE: &str = "kubernetes-active.json";

fn state_dir() -> Result<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(home) = var("LANE_HOME") {
        return Ok(PathBuf::from(home));
    }
    if let Some(xdg) = var("XDG_STATE_HOME") {
        return Ok(PathBuf::from(xdg).join("lane"));
    }
    match var("HOME") {
        Some(home) => Ok(PathBuf::from(home).join(".local/state/lane")),
        None => Err(BackendError::invalid(
            "cannot find a state directory for the active lane: neither LANE_HOME, \
             XDG_STATE_HOME nor HOME is set",
        )),
    }
}

fn key(server: &str, namespace: &str) -> String {
    format!("{server} {namespace}")
}

fn read_all() -> Result<BTreeMap<String, String>> {
    let path = state_dir()?.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| {
            BackendError::invalid(format!("{} is not valid: {e}", path.display()))
                .with_help("delete it; `lane switch` writes it again")
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(BackendError::internal(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// The active lane for the cluster at `server` and the Lanes of `namespace`; baseline when none
/// was chosen (or the file names something that is not a lane id).
pub fn get(server: &str, namespace: &str) -> Result<LaneRef> {
    Ok(read_all()?
        .get(&key(server, namespace))
        .and_then(|l| l.parse().ok())
        .map(LaneRef::Lane)
        .unwrap_or(LaneRef::Baseline))
}

/// Sets it (baseline removes the entry). Written to a temporary file and renamed, so a reader
/// never sees half a file.
pub fn set(server: &str, namespace: &str, lane: &LaneRef) -> Result<()> {
    let dir = state_dir()?;
    let mut all = read_all()?;
    match lane {
        LaneRef::Baseline => all.remove(&key(server, namespace)),
        LaneRef::Lane(id) => all.insert(key(server, namespace), id.to_string()),
    };
    let io = |what: &str, e: std::io::Error| {
        BackendError::internal(format!("cannot {what} in {}: {e}", dir.display()))
    };
    std::fs::create_dir_all(&dir).map_err(|e| io("create the state directory", e))?;
    let tmp = dir.join(format!("{FILE}.{}", std::process::id()));
    let text = serde_json::to_string_pretty(&all).unwrap_or_default();
    std::fs::write(&tmp, text).map_err(|e| io("write the active lane", e))?;
    std::fs::rename(&tmp, dir.join(FILE)).map_err(|e| io("write the active lane", e))?;
    Ok(())
}
