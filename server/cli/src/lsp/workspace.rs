//! The workspace folders as the daemon sees them: their services (from `lane.toml`), their git
//! state, and the files whose changes change the status. What git and the file system say comes
//! from `lane-workspace`; [`read`] is the only entry point and runs it off the async threads.

use std::path::{Path, PathBuf};

use lane_core::manifest::MANIFEST_FILE;
use lane_workspace::{Repo, WatchPath, WorkspaceError};

use super::ext;

/// What git and `lane.toml` say of the workspace folders, read at one moment.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// The service directories: each folder with a `lane.toml`, and a monorepo folder's
    /// services below it.
    pub services: Vec<PathBuf>,
    /// One per service directory, in the same order.
    pub infos: Vec<ext::WorkspaceInfo>,
    /// What to watch: the folders and services (for `lane.toml`), and each folder's git state
    /// (its worktree's `HEAD`, the common dir's refs), sorted.
    pub watch: Vec<WatchPath>,
}

/// Reads the state of `folders` (git runs: one `rev-parse` per folder, and a monorepo folder's
/// `ls-files`), in `spawn_blocking`.
pub async fn read(folders: Vec<PathBuf>) -> State {
    tokio::task::spawn_blocking(move || read_blocking(&folders))
        .await
        .unwrap_or_default()
}

fn read_blocking(folders: &[PathBuf]) -> State {
    let mut state = State::default();
    for folder in folders {
        let repo = Repo::discover(folder);
        let services = match &repo {
            Ok(_) => lane_workspace::services_in(folder).unwrap_or_else(|e| {
                tracing::warn!("cannot list the services of {}: {e}", folder.display());
                Vec::new()
            }),
            Err(e) => {
                if !matches!(e, WorkspaceError::NotARepository { .. }) {
                    tracing::warn!("{}: {e}", folder.display());
                }
                // Outside git (or when git refuses), only the folder's own lane.toml counts.
                let own = folder.join(MANIFEST_FILE).is_file();
                own.then(|| folder.clone()).into_iter().collect()
            }
        };
        let repo = repo.map_err(|e| describe(&e));
        state
            .watch
            .extend(lane_workspace::watch_paths(folder, repo.as_ref().ok()));
        for service in services {
            state.infos.push(info(&service, &repo));
            state.watch.push(WatchPath {
                path: service.clone(),
                recursive: false,
            });
            state.services.push(service);
        }
    }
    state.watch.sort();
    state.watch.dedup();
    state
}

/// An error with what to do about it, as the status bar shows it.
fn describe(e: &WorkspaceError) -> String {
    match e.help() {
        Some(help) => format!("{e}; {help}"),
        None => e.to_string(),
    }
}

/// A service directory's `lane.toml` and the git state of its folder's repository (router host
/// and URL are added with the status).
fn info(service: &Path, repo: &Result<Repo, String>) -> ext::WorkspaceInfo {
    let mut ws = ext::WorkspaceInfo {
        folder: service.display().to_string(),
        ..Default::default()
    };
    let mut errors = Vec::new();
    match lane_workspace::load_manifest(service) {
        Ok(m) => {
            ws.service = Some(m.service.to_string());
            ws.protocol = serde_json::to_value(m.protocol)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned));
        }
        Err(e) => errors.push(describe(&e)),
    }
    match repo.as_ref().map(Repo::branch_and_commit) {
        Ok(Ok((branch, commit))) => {
            ws.branch = Some(branch);
            ws.commit = Some(commit);
        }
        Ok(Err(e)) => errors.push(describe(&e)),
        Err(e) => errors.push(e.clone()),
    }
    ws.error = (!errors.is_empty()).then(|| errors.join("; "));
    ws
}
