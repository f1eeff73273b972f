//! What the benchmark binaries that drive the real `lane` share: finding it, reading flags, and
//! running git in their temporary repositories.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;

/// `lane` next to this binary (`target/<profile>/`), else `lane` on `PATH`.
pub fn default_lane_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("lane")))
        .unwrap_or_else(|| PathBuf::from("lane"))
}

/// Command-line flags, each `--name value`.
pub struct Flags(std::env::Args);

impl Flags {
    pub fn new() -> Self {
        let mut args = std::env::args();
        args.next();
        Flags(args)
    }

    /// The next flag's name, if any.
    pub fn next_flag(&mut self) -> Option<String> {
        self.0.next()
    }

    /// The value of flag `name`, parsed.
    pub fn value<T: FromStr>(&mut self, name: &str) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        let v = self.0.next().ok_or(format!("{name} needs a value"))?;
        v.parse().map_err(|e| format!("{name}: {e}"))
    }
}

/// Runs git in `dir` as the benchmark's own identity; panics when it fails.
pub fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@lane")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@lane")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "git {args:?} failed in {}", dir.display());
}
