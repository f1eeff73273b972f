//! A workspace folder as the daemon sees it: its service (from `lane.toml`), its git state, and
//! the files whose changes change the status.

use std::path::{Path, PathBuf};

use lane_core::manifest::MANIFEST_FILE;

use super::ext;
use crate::{commands, git};

/// The folders that are services: those with a `lane.toml` at their root.
pub fn services(folders: &[PathBuf]) -> Vec<&PathBuf> {
    folders
        .iter()
        .filter(|f| f.join(MANIFEST_FILE).is_file())
        .collect()
}

/// A service folder's `lane.toml` and git state (router host and URL are added with the status).
pub fn info(folder: &Path) -> ext::WorkspaceInfo {
    let mut ws = ext::WorkspaceInfo {
        folder: folder.display().to_string(),
        ..Default::default()
    };
    let mut errors = Vec::new();
    match commands::load_manifest(folder) {
        Ok(m) => {
            ws.service = Some(m.service.to_string());
            ws.protocol = serde_json::to_value(m.protocol)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned));
        }
        Err(e) => errors.push(format!("{e:#}")),
    }
    match git::head(folder) {
        Ok((branch, commit)) => {
            ws.branch = Some(branch);
            ws.commit = Some(commit);
        }
        Err(e) => errors.push(format!("{e:#}")),
    }
    ws.error = (!errors.is_empty()).then(|| errors.join("; "));
    ws
}

/// What to watch for a folder: the folder itself (for `lane.toml`), and when it is in a git
/// repository, the git dir (for `HEAD`, `packed-refs`) and its `refs/` (new commits).
pub fn watch_paths(folder: &Path) -> Vec<(PathBuf, bool)> {
    let mut paths = vec![(folder.to_path_buf(), false)];
    if let Ok(root) = git::repo_root(folder) {
        let git_dir = root.join(".git");
        if git_dir.is_dir() {
            paths.push((git_dir.join("refs"), true));
            paths.push((git_dir, false));
        }
    }
    paths
}

/// Whether a change of `path` can change the status.
pub fn is_relevant(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.ends_with(".lock") {
        return false;
    }
    name == MANIFEST_FILE
        || name == "HEAD"
        || name == "packed-refs"
        || path.components().any(|c| c.as_os_str() == "refs")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_head_refs_and_manifest_matter() {
        for (path, want) in [
            ("/r/.git/HEAD", true),
            ("/r/.git/HEAD.lock", false),
            ("/r/.git/refs/heads/feature-x", true),
            ("/r/.git/refs/heads/feature-x.lock", false),
            ("/r/.git/packed-refs", true),
            ("/r/.git/index", false),
            ("/r/lane.toml", true),
            ("/r/src/main.rs", false),
        ] {
            assert_eq!(is_relevant(Path::new(path)), want, "{path}");
        }
    }
}
