//! What the CLI needs from git and the user's environment: branch, commit, identity.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<Option<String>> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .context("cannot run git; is it installed?")?;
    if !out.status.success() {
        return Ok(None);
    }
    let s = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    Ok((!s.is_empty()).then_some(s))
}

/// The repository root containing `dir`.
pub fn repo_root(dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    match git(dir, &["rev-parse", "--show-toplevel"])? {
        Some(root) => Ok(root.into()),
        None => bail!(
            "{} is not inside a git repository; `lane deploy` deploys the current branch of a repo",
            dir.display()
        ),
    }
}

/// The current branch (`HEAD` when detached) and commit.
pub fn head(dir: &Path) -> anyhow::Result<(String, String)> {
    let commit = git(dir, &["rev-parse", "HEAD"])?.with_context(|| {
        format!(
            "the repository at {} has no commits yet; commit something first",
            dir.display()
        )
    })?;
    let branch =
        git(dir, &["symbolic-ref", "--short", "-q", "HEAD"])?.unwrap_or_else(|| "HEAD".into());
    Ok((branch, commit))
}

/// Who the developer is: `owner` in the user config, else git's `user.email`, else the login name.
pub fn owner() -> String {
    if let Some(owner) = config_owner() {
        return owner;
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| ".".into());
    if let Ok(Some(email)) = git(&cwd, &["config", "user.email"]) {
        return email;
    }
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

/// `owner = "..."` from `$XDG_CONFIG_HOME/lane/config.toml` (or `~/.config/lane/config.toml`).
fn config_owner() -> Option<String> {
    let dir = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".config"))
        })?;
    let text = std::fs::read_to_string(dir.join("lane/config.toml")).ok()?;
    let table: toml_lite::Table = toml_lite::parse(&text)?;
    table.get("owner").cloned()
}

/// The user config is tiny; read its `key = "value"` lines without a TOML dependency here.
mod toml_lite {
    pub type Table = std::collections::HashMap<String, String>;
    pub fn parse(text: &str) -> Option<Table> {
        let mut t = Table::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line.split_once('=')?;
            let v = v.trim().trim_matches('"');
            t.insert(k.trim().to_owned(), v.to_owned());
        }
        Some(t)
    }
}
