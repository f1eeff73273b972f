//! Everything that can go wrong in finding a workspace, each with what to do about it.

use std::path::PathBuf;

use lane_core::manifest::{MANIFEST_FILE, ManifestError};

/// Why a workspace (its repository, service or `lane.toml`) could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    /// `git` is not on `PATH`.
    #[error("cannot run git: it is not installed or not on PATH")]
    GitNotInstalled,
    /// git could not be started in `dir` (it does not exist, is not a directory, …).
    #[error("cannot run git in {}: {source}", dir.display())]
    CannotRunGit {
        dir: PathBuf,
        source: std::io::Error,
    },
    /// `dir` is in no git repository.
    #[error("{} is not inside a git repository", dir.display())]
    NotARepository { dir: PathBuf },
    /// git refuses to work in a repository another user owns (`safe.directory`).
    #[error(
        "git refuses the repository at {}: it belongs to another user (\"detected dubious ownership\")",
        repo.display()
    )]
    DubiousOwnership {
        repo: PathBuf,
        /// git's own advice, e.g. `git config --global --add safe.directory /path`.
        hint: Option<String>,
    },
    /// The repository has no commit to deploy.
    #[error("the repository at {} has no commits yet", root.display())]
    NoCommits { root: PathBuf },
    /// No `lane.toml` from `start` up to the repository root.
    #[error(
        "no {MANIFEST_FILE} in {} or in a directory above it up to the repository root {}",
        start.display(),
        root.display()
    )]
    NoManifest { start: PathBuf, root: PathBuf },
    /// A service directory's `lane.toml` cannot be read (it is missing, or not readable).
    #[error("cannot read {}: {source}", path.display())]
    ManifestUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `lane.toml` does not parse or is invalid (`file:line:column: message`).
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// What a baseline service follows (`follow` in `lane-workspace.toml`) names no commit in
    /// its repository.
    #[error("`{follow}` does not resolve to a commit in {}: {why}", dir.display())]
    FollowUnresolved {
        dir: PathBuf,
        follow: String,
        why: String,
    },
    /// Any other git failure, with what git said.
    #[error("git {command} failed in {}: {stderr}", dir.display())]
    Git {
        dir: PathBuf,
        command: String,
        stderr: String,
    },
}

impl WorkspaceError {
    /// What the developer can do about it.
    pub fn help(&self) -> Option<String> {
        Some(match self {
            WorkspaceError::GitNotInstalled => {
                "install git (lane reads branches and commits with it) and make sure it is on PATH"
                    .into()
            }
            WorkspaceError::CannotRunGit { .. } => {
                "check that the directory exists and that you can enter it".into()
            }
            WorkspaceError::NotARepository { .. } => {
                "lane deploys the current branch of a git repository; run it inside one".into()
            }
            WorkspaceError::DubiousOwnership { repo, hint } => match hint {
                Some(hint) => format!("if you trust the repository, tell git so: `{hint}`"),
                None => format!(
                    "if you trust the repository, tell git so: `git config --global --add \
                     safe.directory {}`",
                    repo.display()
                ),
            },
            WorkspaceError::NoCommits { .. } => "commit something first (`git commit`)".into(),
            WorkspaceError::NoManifest { .. } => {
                "a service needs a lane.toml at its root (the repository's, or the service's \
                 directory in a monorepo); see the README's lane.toml reference"
                    .into()
            }
            WorkspaceError::ManifestUnreadable { .. } => {
                "a service needs a readable lane.toml at its root; see the README's lane.toml \
                 reference"
                    .into()
            }
            WorkspaceError::Manifest(_) => "see the README's lane.toml reference".into(),
            WorkspaceError::FollowUnresolved { dir, .. } => format!(
                "check `follow` in lane-workspace.toml against `git show-ref` in {} \
                 (`lane baseline sync` fetches first)",
                dir.display()
            ),
            WorkspaceError::Git { dir, .. } => format!(
                "run `git status` in {} to see what git makes of it",
                dir.display()
            ),
        })
    }
}
