//! `lane-workspace`: where the developer stands. For a directory: the git repository around it
//! (its working tree's root, its git dir and the common dir shared by its worktrees, its branch
//! and commit), the service it belongs to (the nearest `lane.toml` up to the repository root), and
//! who the developer is. The CLI and the IDE daemon both ask it; it is the only code of theirs
//! that runs git, through the one runner in [`git`].
//!
//! **Architecture invariant:** blocking, no async runtime. The IDE daemon calls it from
//! `tokio::task::spawn_blocking`, never on its async threads.

pub mod follow;
pub mod git;
pub mod merged;

mod error;
mod identity;

use std::path::{Path, PathBuf};

use lane_core::manifest::{MANIFEST_FILE, Manifest};

pub use error::WorkspaceError;
pub use identity::{Identity, config_owner, owner};

pub type Result<T, E = WorkspaceError> = std::result::Result<T, E>;

/// At most this many services are listed for one monorepo folder.
pub const MAX_SERVICES_PER_FOLDER: usize = 64;

/// The working tree of a git repository that a directory is in, as one `git rev-parse` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    /// The working tree's root: a linked worktree's or a submodule's own.
    pub root: PathBuf,
    /// This working tree's git dir, which holds its `HEAD`: `<root>/.git` in a plain repository,
    /// `<common dir>/worktrees/<name>` in a linked worktree, `<superproject's git
    /// dir>/modules/<name>` in a submodule.
    pub git_dir: PathBuf,
    /// The git dir the worktrees share, which holds `refs/` and `packed-refs`.
    pub common_dir: PathBuf,
    pub head: Head,
}

/// What is checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The branch; `None` when `HEAD` is detached.
    pub branch: Option<String>,
    /// The commit; `None` when the branch has no commits yet.
    pub commit: Option<String>,
}

impl Head {
    /// The branch as lane shows it: its name, or `HEAD` when detached.
    pub fn branch_name(&self) -> &str {
        self.branch.as_deref().unwrap_or("HEAD")
    }
}

/// A service in a git repository: what a deploy needs to know of where it starts.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub repo: Repo,
    /// The directory of the service's `lane.toml`: the repository's root, or a service's
    /// directory in a monorepo.
    pub service_dir: PathBuf,
    pub manifest: Manifest,
}

impl Workspace {
    /// The service `start` is in: the repository around `start` ([`Repo::discover`]), the nearest
    /// `lane.toml` from `start` up to its root ([`Repo::service_dir`]), parsed. A repository with
    /// no commits yet is a workspace (its `head.commit` is `None`; [`Repo::branch_and_commit`]
    /// says so when a commit is needed).
    pub fn discover(start: &Path) -> Result<Workspace> {
        let repo = Repo::discover(start)?;
        let service_dir = repo.service_dir(start)?;
        let manifest = load_manifest(&service_dir)?;
        Ok(Workspace {
            repo,
            service_dir,
            manifest,
        })
    }

    /// The developer's identity, with git's `user.email` read in this workspace's repository.
    pub fn owner(&self) -> String {
        owner(&self.repo.root)
    }
}

/// The arguments of the one `git rev-parse` that tells everything about a repository.
const REV_PARSE: [&str; 8] = [
    "rev-parse",
    "--show-toplevel",
    "--absolute-git-dir",
    "--git-common-dir",
    "HEAD",
    "--symbolic-full-name",
    "HEAD",
    // Revisions, not paths, even with a file named HEAD in the directory.
    "--",
];

impl Repo {
    /// The repository `start` is in, its worktree and what is checked out, in one git run (two
    /// when the branch has no commits yet).
    pub fn discover(start: &Path) -> Result<Repo> {
        let out = git::command(start).args(REV_PARSE).output();
        let out = out.map_err(|e| git::spawn_error(start, e))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        let unexpected = || WorkspaceError::Git {
            dir: start.to_path_buf(),
            command: "rev-parse".into(),
            stderr: format!("unexpected output: {stdout:?}"),
        };
        if out.status.success() {
            let [root, git_dir, common_dir, commit, head, "--"] = lines[..] else {
                return Err(unexpected());
            };
            return Ok(Repo::new(
                start,
                [root, git_dir, common_dir],
                Head {
                    branch: branch_of(head),
                    commit: Some(commit.to_owned()),
                },
            ));
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        // The paths came out before git failed on a `HEAD` with no commit behind it.
        if stderr.contains("bad revision 'HEAD'")
            && let [root, git_dir, common_dir, ..] = lines[..]
        {
            // `symbolic-ref` fails only when HEAD is detached, which a commit-less HEAD is not.
            let head = git::run(start, &["symbolic-ref", "-q", "HEAD"]).unwrap_or_default();
            return Ok(Repo::new(
                start,
                [root, git_dir, common_dir],
                Head {
                    branch: branch_of(&head),
                    commit: None,
                },
            ));
        }
        Err(git::failure(start, "rev-parse", &stderr))
    }

    fn new(start: &Path, [root, git_dir, common_dir]: [&str; 3], head: Head) -> Repo {
        // `--git-common-dir` may answer relative to where git ran.
        let common_dir = start.join(common_dir);
        Repo {
            root: PathBuf::from(root),
            git_dir: PathBuf::from(git_dir),
            common_dir: common_dir.canonicalize().unwrap_or(common_dir),
            head,
        }
    }

    /// The branch (`HEAD` when detached) and commit, or [`WorkspaceError::NoCommits`].
    pub fn branch_and_commit(&self) -> Result<(String, String)> {
        match &self.head.commit {
            Some(commit) => Ok((self.head.branch_name().to_owned(), commit.clone())),
            None => Err(WorkspaceError::NoCommits {
                root: self.root.clone(),
            }),
        }
    }

    /// The service directory of `start`: the nearest directory from `start` up to the root with a
    /// `lane.toml` (the root itself, or a service's directory in a monorepo), with symlinks
    /// resolved.
    pub fn service_dir(&self, start: &Path) -> Result<PathBuf> {
        let no_manifest = || WorkspaceError::NoManifest {
            start: start.to_path_buf(),
            root: self.root.clone(),
        };
        let from = start.canonicalize().map_err(|_| no_manifest())?;
        let root = self
            .root
            .canonicalize()
            .unwrap_or_else(|_| self.root.clone());
        from.ancestors()
            .take_while(|d| d.starts_with(&root))
            .find(|d| d.join(MANIFEST_FILE).is_file())
            .map(Path::to_path_buf)
            .ok_or_else(no_manifest)
    }

    /// What to watch so that a branch switch, a new commit or a `lane.toml` change in this
    /// repository is seen: see [`watch_paths`].
    pub fn watch_paths(&self) -> Vec<WatchPath> {
        let mut paths = vec![
            // `HEAD` (the branch switch), replaced by a rename: watch its directory.
            WatchPath::new(&self.git_dir, false),
            // `packed-refs`.
            WatchPath::new(&self.common_dir, false),
            // Branches moving (a commit, a fetch).
            WatchPath::new(&self.common_dir.join("refs"), true),
        ];
        paths.sort();
        paths.dedup();
        paths
    }
}

/// `refs/heads/main` → `main`; `HEAD` (detached) or nothing → `None`.
fn branch_of(full: &str) -> Option<String> {
    let full = full.trim();
    if full.is_empty() || full == "HEAD" {
        return None;
    }
    Some(full.strip_prefix("refs/heads/").unwrap_or(full).to_owned())
}

/// Reads and validates the `lane.toml` in `dir`.
pub fn load_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST_FILE);
    let text =
        std::fs::read_to_string(&path).map_err(|source| WorkspaceError::ManifestUnreadable {
            path: path.clone(),
            source,
        })?;
    let mut m = Manifest::parse(&path, &text)?;
    // Apollo bindings' Open API tokens come from the environment of this process (the variable
    // each binding's `token_env` names), never from the file.
    lane_core::data::resolve_tokens(&mut m.data, |var| std::env::var(var).ok());
    Ok(m)
}

/// The directory of the `lane.toml` that `start` belongs to: the nearest one up to the repository
/// root; when git knows no repository there (or refuses it), `start` itself if it has one.
pub fn manifest_dir(start: &Path) -> Option<PathBuf> {
    match Repo::discover(start) {
        Ok(repo) => repo.service_dir(start).ok(),
        Err(_) => start
            .join(MANIFEST_FILE)
            .is_file()
            .then(|| start.to_path_buf()),
    }
}

/// The service directories of a workspace folder: the folder itself when it has a `lane.toml`;
/// else (a monorepo opened at its root, or above its services) the directories below it whose
/// `lane.toml` git lists, tracked or untracked but not ignored, sorted, at most
/// [`MAX_SERVICES_PER_FOLDER`]. Paths are the folder's own spelling joined with git's.
pub fn services_in(folder: &Path) -> Result<Vec<PathBuf>> {
    if folder.join(MANIFEST_FILE).is_file() {
        return Ok(vec![folder.to_path_buf()]);
    }
    let pattern = format!(":(glob)**/{MANIFEST_FILE}");
    let out = git::command(folder)
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
            "--",
            &pattern,
        ])
        .output();
    let listing = git::finish(folder, "ls-files", out)?;
    let mut found: Vec<PathBuf> = listing
        .split('\0')
        .filter(|p| !p.is_empty())
        .filter_map(|p| Path::new(p).parent().map(|d| folder.join(d)))
        // Listed as tracked but deleted from the working tree: not a service now.
        .filter(|d| d.join(MANIFEST_FILE).is_file())
        .collect();
    found.sort();
    found.dedup();
    found.truncate(MAX_SERVICES_PER_FOLDER);
    Ok(found)
}

/// A path to watch, and whether everything below it too.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WatchPath {
    pub path: PathBuf,
    pub recursive: bool,
}

impl WatchPath {
    fn new(path: &Path, recursive: bool) -> WatchPath {
        WatchPath {
            path: path.to_path_buf(),
            recursive,
        }
    }
}

/// What to watch for a workspace folder: the folder (its `lane.toml`), and when it is in a git
/// repository, that worktree's git dir (its `HEAD`) and the common dir (`packed-refs`, and
/// `refs/` below it), wherever they are: a linked worktree's and a submodule's `.git` is a file
/// naming a git dir elsewhere.
pub fn watch_paths(folder: &Path, repo: Option<&Repo>) -> Vec<WatchPath> {
    let mut paths = vec![WatchPath::new(folder, false)];
    paths.extend(repo.map(Repo::watch_paths).unwrap_or_default());
    paths
}

/// Whether a change of `path` (one of the watched) can change what a workspace shows: `HEAD`,
/// refs, `packed-refs` or a `lane.toml` (git's `*.lock` files come and go on every write).
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
mod tests;
