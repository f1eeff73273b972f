//! Who the developer is, for the owner of the lanes they create and the actor of what they do.

use std::path::{Path, PathBuf};

/// Where the developer's identity comes from, in order: `owner` in the user config file, else
/// git's `user.email` as the repository at hand sees it (its own config, then the global one),
/// else the login name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `$XDG_CONFIG_HOME/lane/config.toml`, or `~/.config/lane/config.toml`.
    pub config_file: Option<PathBuf>,
    /// `$USER`, or `$LOGNAME`.
    pub login: Option<String>,
}

impl Identity {
    /// The sources this process's environment names.
    pub fn from_env() -> Identity {
        let nonempty = |v: &str| std::env::var_os(v).filter(|v| !v.is_empty());
        let config_dir = nonempty("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| nonempty("HOME").map(|h| PathBuf::from(h).join(".config")));
        Identity {
            config_file: config_dir.map(|d| d.join("lane").join("config.toml")),
            login: std::env::var("USER")
                .ok()
                .filter(|v| !v.is_empty())
                .or_else(|| std::env::var("LOGNAME").ok().filter(|v| !v.is_empty())),
        }
    }

    /// The owner as seen from `dir` (a directory in the workspace's repository, or any directory:
    /// outside a repository git's global `user.email` applies).
    pub fn owner(&self, dir: &Path) -> String {
        if let Some(owner) = self
            .config_file
            .as_deref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .and_then(|text| config_owner(&text))
        {
            return owner;
        }
        // A repository git refuses, or no git: its config is not read, the next source answers.
        if let Ok(email) = crate::git::run(dir, &["config", "--get", "user.email"])
            && !email.trim().is_empty()
        {
            return email.trim().to_owned();
        }
        self.login.clone().unwrap_or_else(|| "unknown".into())
    }
}

/// The developer's identity as seen from `dir`: see [`Identity`]. Runs git (at most once).
pub fn owner(dir: &Path) -> String {
    Identity::from_env().owner(dir)
}

/// The top-level `owner = "…"` of the user config (a small TOML file; only this key is read, so
/// it is read without a TOML parser: a quoted string, before any `[table]`).
pub fn config_owner(text: &str) -> Option<String> {
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            return None;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.trim() != "owner" {
            continue;
        }
        let value = value.trim();
        let quote = value.chars().next().filter(|c| *c == '"' || *c == '\'')?;
        let (owner, _) = value[1..].split_once(quote)?;
        return (!owner.trim().is_empty()).then(|| owner.trim().to_owned());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_owner_is_a_top_level_quoted_string() {
        for (text, want) in [
            ("owner = \"dev@example.com\"\n", Some("dev@example.com")),
            ("# me\nowner='a=b@x' # trailing\n", Some("a=b@x")),
            ("theme = \"dark\"\nowner = \"\"\n", None),
            ("[other]\nowner = \"x\"\n", None),
            ("owner = unquoted\n", None),
            ("", None),
        ] {
            assert_eq!(config_owner(text).as_deref(), want, "{text:?}");
        }
    }
}
