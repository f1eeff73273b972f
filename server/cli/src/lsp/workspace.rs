//! A workspace folder as the daemon sees it: its service (from `lane.toml`), its git state, and
//! the files whose changes change the status.

use std::path::{Path, PathBuf};

use lane_core::manifest::MANIFEST_FILE;

use super::ext;
use crate::{commands, git};

/// At most this many services are listed for one monorepo folder.
const MAX_SERVICES_PER_FOLDER: usize = 64;

/// The service directories of the workspace: each folder with a `lane.toml` at its root, and for
/// a folder without one that is in a git repository (a monorepo opened at its root), the
/// directories below it that have a `lane.toml`, tracked or not (ignored ones are skipped).
pub fn services(folders: &[PathBuf]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for folder in folders {
        if folder.join(MANIFEST_FILE).is_file() {
            found.push(folder.clone());
            continue;
        }
        let mut below: Vec<PathBuf> = manifests_below(folder)
            .into_iter()
            .filter_map(|m| m.parent().map(|d| folder.join(d)))
            .filter(|d| d.join(MANIFEST_FILE).is_file())
            .collect();
        below.sort();
        below.dedup();
        below.truncate(MAX_SERVICES_PER_FOLDER);
        found.extend(below);
    }
    found
}

/// `lane.toml` paths below `folder`, relative to it, as git lists them (none outside git).
fn manifests_below(folder: &Path) -> Vec<PathBuf> {
    let out = std::process::Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
            "--",
        ])
        .arg(format!(":(glob)**/{MANIFEST_FILE}"))
        .current_dir(folder)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    match out {
        Ok(out) if out.status.success() => out
            .stdout
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| PathBuf::from(String::from_utf8_lossy(p).into_owned()))
            .collect(),
        _ => Vec::new(),
    }
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
