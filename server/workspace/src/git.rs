//! The one way lane runs git: every git process of the CLI, the IDE daemon and the local backend's
//! working copies is made by [`command`] and judged by [`finish`].
//!
//! A run starts from the directory it is given, never from a repository the caller's environment
//! names (`GIT_DIR`, `GIT_WORK_TREE`, `GIT_INDEX_FILE`, … are removed); it reads nothing from
//! stdin and prompts for nothing; it takes no optional lock (`GIT_OPTIONAL_LOCKS=0`: reading never
//! competes with the developer's own git for the index lock); and its messages are in English
//! (`LC_ALL=C`), so failures can be told apart: git missing, no repository, a repository git
//! refuses (dubious ownership), anything else with git's own words.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::WorkspaceError;

/// Variables that would point git at another repository than the one around the directory.
const REPOSITORY_ENV: [&str; 6] = [
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
];

/// `git` in `dir`: stdin null, stdout and stderr captured, the environment cleaned as the module
/// says. Add arguments (and, for a caller that needs it, environment or a piped stdin) and run it
/// with [`run`], or convert it (an async caller: `tokio::process::Command::from`) and judge its
/// output with [`finish`].
pub fn command(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir);
    for var in REPOSITORY_ENV {
        cmd.env_remove(var);
    }
    cmd.env("GIT_OPTIONAL_LOCKS", "0")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs `git <args>` in `dir` and answers its stdout (trailing whitespace removed).
pub fn run(dir: &Path, args: &[&str]) -> Result<String, WorkspaceError> {
    let what = args.first().copied().unwrap_or("");
    finish(dir, what, command(dir).args(args).output())
}

/// The stdout of a git run in `dir` that succeeded (trailing whitespace removed), else what went
/// wrong. `what` names the git command (`rev-parse`) in the error.
pub fn finish(
    dir: &Path,
    what: &str,
    out: std::io::Result<Output>,
) -> Result<String, WorkspaceError> {
    let out = out.map_err(|e| spawn_error(dir, e))?;
    if !out.status.success() {
        return Err(failure(dir, what, &String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
}

/// Why git could not be started in `dir`.
pub fn spawn_error(dir: &Path, e: std::io::Error) -> WorkspaceError {
    // A missing working directory fails the same way as a missing program.
    if e.kind() == std::io::ErrorKind::NotFound && dir.is_dir() {
        WorkspaceError::GitNotInstalled
    } else {
        WorkspaceError::CannotRunGit {
            dir: dir.to_path_buf(),
            source: e,
        }
    }
}

/// What a failed git run in `dir` means, from what it printed on stderr.
pub fn failure(dir: &Path, what: &str, stderr: &str) -> WorkspaceError {
    let stderr = stderr.trim();
    if let Some(repo) = dubious_repository(stderr) {
        // git's advice is the indented line after "To add an exception for this directory, call:".
        let hint = stderr
            .lines()
            .skip_while(|l| !l.contains("To add an exception"))
            .skip(1)
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(str::to_owned);
        return WorkspaceError::DubiousOwnership { repo, hint };
    }
    // Only the discovery failure: "not a git repository: <path>" is a broken `.git` file.
    if stderr.contains("not a git repository (or any") {
        return WorkspaceError::NotARepository {
            dir: dir.to_path_buf(),
        };
    }
    WorkspaceError::Git {
        dir: dir.to_path_buf(),
        command: what.to_owned(),
        stderr: stderr.to_owned(),
    }
}

/// The repository of git's "detected dubious ownership in repository at '<path>'".
fn dubious_repository(stderr: &str) -> Option<PathBuf> {
    let rest = stderr
        .split("detected dubious ownership in repository at")
        .nth(1)?;
    let line = rest.lines().next().unwrap_or("").trim();
    let path = line
        .strip_prefix('\'')
        .and_then(|l| l.rsplit_once('\''))
        .map_or(line, |(p, _)| p);
    Some(PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_told_apart_by_what_git_says() {
        let dir = Path::new("/w");
        let dubious = "fatal: detected dubious ownership in repository at '/srv/a b'\n\
                       To add an exception for this directory, call:\n\n\
                       \tgit config --global --add safe.directory '/srv/a b'\n";
        match failure(dir, "rev-parse", dubious) {
            WorkspaceError::DubiousOwnership { repo, hint } => {
                assert_eq!(repo, Path::new("/srv/a b"));
                assert_eq!(
                    hint.as_deref(),
                    Some("git config --global --add safe.directory '/srv/a b'")
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            failure(
                dir,
                "rev-parse",
                "fatal: not a git repository (or any of the parent directories): .git"
            ),
            WorkspaceError::NotARepository { .. }
        ));
        // A linked worktree whose main repository is gone is not "no repository".
        let broken = "fatal: not a git repository: /gone/.git/worktrees/w";
        match failure(dir, "rev-parse", broken) {
            WorkspaceError::Git {
                command, stderr, ..
            } => {
                assert_eq!(command, "rev-parse");
                assert_eq!(stderr, broken);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_run_starts_from_its_directory_with_a_clean_environment() {
        let dir = std::env::temp_dir();
        let cmd = command(&dir);
        assert_eq!(cmd.get_current_dir(), Some(dir.as_path()));
        let envs: Vec<_> = cmd.get_envs().collect();
        for var in REPOSITORY_ENV {
            assert!(
                envs.contains(&(std::ffi::OsStr::new(var), None)),
                "{var} is removed"
            );
        }
        for (var, value) in [("GIT_OPTIONAL_LOCKS", "0"), ("LC_ALL", "C")] {
            assert!(
                envs.contains(&(std::ffi::OsStr::new(var), Some(std::ffi::OsStr::new(value)))),
                "{var}={value}"
            );
        }
    }

    #[test]
    fn a_missing_program_is_a_missing_git() {
        let e = spawn_error(
            &std::env::temp_dir(),
            std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        assert!(matches!(e, WorkspaceError::GitNotInstalled), "{e:?}");
        assert!(e.help().is_some_and(|h| h.contains("install git")));
    }

    #[test]
    fn a_missing_directory_is_not_a_missing_git() {
        let e = run(Path::new("/no/such/dir/for/lane"), &["version"]).unwrap_err();
        assert!(
            matches!(e, WorkspaceError::CannotRunGit { .. }),
            "{e:?}: {e}"
        );
    }
}
