//! What production runs, read from a baseline service's repository: the commit a followed ref (or
//! the newest tag of a release tag pattern) names now, fetching first when asked, and which files
//! change when it moves. Shared by the local agent (which rolls baseline forward) and whatever
//! else needs "what baseline follows" (merged-lane reclaim).

use std::path::{Path, PathBuf};

use lane_core::follow::{Follow, TAGS};
use lane_core::manifest::WorkspaceService;

use crate::{Result, WorkspaceError, git};

/// The ref a baseline service's `lane-workspace.toml` entry follows, as written, or `None` when
/// it runs its checkout as it is.
pub fn followed_ref(entry: &WorkspaceService) -> Option<String> {
    entry.followed_ref()
}

/// What a followed ref names now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// For people: `origin/main`, or the tag picked (`v1.10.0`).
    pub name: String,
    /// The full ref (`refs/remotes/origin/main`, `refs/tags/v1.10.0`); `None` when the value is
    /// not a symbolic ref (a commit id).
    pub full: Option<String>,
    /// The commit (a tag is peeled to its commit).
    pub commit: String,
}

/// The commit `follow` names now in the repository around `dir`.
pub fn resolve(dir: &Path, follow: &Follow) -> Result<Resolved> {
    let unresolved = |why: String| WorkspaceError::FollowUnresolved {
        dir: dir.to_path_buf(),
        follow: follow.as_written(),
        why,
    };
    match follow {
        Follow::Ref(name) => {
            let spec = format!("{name}^{{commit}}");
            let commit = git::run(
                dir,
                &[
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    "--end-of-options",
                    &spec,
                ],
            )
            .map_err(|e| match e {
                WorkspaceError::Git { stderr, .. } => unresolved(if stderr.is_empty() {
                    "no such ref".into()
                } else {
                    stderr
                }),
                other => other,
            })?;
            let full = git::run(
                dir,
                &[
                    "rev-parse",
                    "--symbolic-full-name",
                    // `Follow::parse` lets no name start with `-`; git before 2.43 prints
                    // `--end-of-options` back here.
                    name,
                ],
            )
            .ok()
            .filter(|f| f.starts_with("refs/"));
            Ok(Resolved {
                name: name.clone(),
                full,
                commit,
            })
        }
        Follow::Tags { .. } => {
            let listing = git::run(
                dir,
                &[
                    "for-each-ref",
                    "--format=%(refname)%09%(objectname)%09%(*objectname)",
                    TAGS,
                ],
            )?;
            let tags: Vec<(&str, &str)> = listing
                .lines()
                .filter_map(|l| {
                    let mut parts = l.split('\t');
                    // The output's last line lost its empty peeled field to trimming.
                    let (name, object) = (parts.next()?, parts.next()?);
                    let peeled = parts.next().unwrap_or_default();
                    Some((name, if peeled.is_empty() { object } else { peeled }))
                })
                .collect();
            let newest = follow
                .newest_tag(tags.iter().map(|(n, _)| *n))
                .ok_or_else(|| unresolved("no tag matches it with a version".into()))?;
            let commit = tags
                .iter()
                .find(|(n, _)| *n == newest)
                .map(|(_, c)| (*c).to_owned())
                .unwrap_or_default();
            Ok(Resolved {
                name: newest.strip_prefix(TAGS).unwrap_or(newest).to_owned(),
                full: Some(newest.to_owned()),
                commit,
            })
        }
    }
}

/// Fetches what `follow` needs from the remote it is about: for a remote-tracking ref
/// (`origin/main`, `refs/remotes/origin/main`) `git fetch <remote>`, for a tag pattern `git fetch
/// --tags` from every remote. Answers the remotes fetched from (none: a local ref, or a repository
/// without remotes).
pub fn fetch(dir: &Path, follow: &Follow) -> Result<Vec<String>> {
    let remotes: Vec<String> = git::run(dir, &["remote"])?
        .lines()
        .map(str::to_owned)
        .filter(|r| !r.is_empty())
        .collect();
    let targets: Vec<String> = match follow {
        Follow::Tags { .. } => remotes.clone(),
        Follow::Ref(name) => {
            let full = git::run(
                dir,
                &[
                    "rev-parse",
                    "--symbolic-full-name",
                    // `Follow::parse` lets no name start with `-`; git before 2.43 prints
                    // `--end-of-options` back here.
                    name,
                ],
            )
            .ok()
            .filter(|f| f.starts_with("refs/"));
            // A remote-tracking ref, or one not fetched yet that starts with a remote's name.
            let path = match full.as_deref() {
                Some(f) => f.strip_prefix("refs/remotes/").map(str::to_owned),
                None => Some(
                    name.strip_prefix("refs/remotes/")
                        .unwrap_or(name)
                        .to_owned(),
                ),
            };
            path.and_then(|p| {
                remotes
                    .iter()
                    .filter(|r| p.starts_with(&format!("{r}/")))
                    .max_by_key(|r| r.len())
                    .cloned()
            })
            .into_iter()
            .collect()
        }
    };
    for remote in &targets {
        let mut args = vec!["fetch", "--quiet"];
        if matches!(follow, Follow::Tags { .. }) {
            args.push("--tags");
        }
        args.push(remote);
        git::run(dir, &args)?;
    }
    Ok(targets)
}

/// What to watch to see `follow` move in the repository around `dir`: the common git dir (its
/// `packed-refs`, not recursively) and its `refs` tree (recursively). Events for other files in
/// the git dir (the index, logs) are to be ignored: see [`is_ref_change`].
pub fn ref_watch_dirs(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let common = git::run(dir, &["rev-parse", "--git-common-dir"])?;
    let common = dir.join(common);
    let common = common.canonicalize().unwrap_or(common);
    Ok((common.clone(), common.join("refs")))
}

/// Whether a changed path (under the dirs [`ref_watch_dirs`] names) can move a ref: a file under
/// `refs/`, or `packed-refs`.
pub fn is_ref_change(common_dir: &Path, path: &Path) -> bool {
    let Ok(rel) = path.strip_prefix(common_dir) else {
        return false;
    };
    let name = rel.to_string_lossy();
    name.starts_with("refs") || name.starts_with("packed-refs")
}

/// The `lane.toml` of the service in `dir` as it is at `commit` (not in the working tree): what a
/// baseline that follows production builds and runs with.
pub fn manifest_at(dir: &Path, commit: &str) -> Result<lane_core::manifest::Manifest> {
    let spec = format!("{commit}:./{}", lane_core::manifest::MANIFEST_FILE);
    let text = git::run(dir, &["show", &spec])?;
    let short = commit.get(..12).unwrap_or(commit);
    let path = dir.join(format!("{}@{short}", lane_core::manifest::MANIFEST_FILE));
    Ok(lane_core::manifest::Manifest::parse(&path, &text)?)
}
