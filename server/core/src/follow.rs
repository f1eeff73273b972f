//! What a baseline service follows: the git ref (or release tag pattern) of its repository that
//! says what production runs (`follow = "origin/main"`, `follow = "refs/tags/v*"` in
//! `lane-workspace.toml`), and the version order that picks the newest tag of a pattern.
//!
//! Pure: resolving a ref against a repository is `lane_workspace::follow`'s.

use std::cmp::Ordering;
use std::fmt;

/// The tag namespace a pattern must be in.
pub const TAGS: &str = "refs/tags/";

/// What production runs, as a baseline service follows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Follow {
    /// One ref, as git resolves it: `origin/main`, `main`, `refs/remotes/prod/release`, a tag.
    Ref(String),
    /// The newest tag matching `refs/tags/<prefix>*<suffix>`, by [`version_cmp`] of what the `*`
    /// matches. Tags whose `*` part is not a version are ignored.
    Tags { prefix: String, suffix: String },
}

impl Follow {
    /// Reads a `follow` value: a ref name git would accept, or a tag pattern with one `*`.
    pub fn parse(value: &str) -> Result<Follow, String> {
        let v = value.trim();
        if v.is_empty() {
            return Err("is empty; name a ref such as \"origin/main\" or a tag pattern such as \"refs/tags/v*\"".into());
        }
        if v != value {
            return Err(format!("`{value}` has spaces around it"));
        }
        let stars = v.matches('*').count();
        if stars == 0 {
            check_ref_name(v).map_err(|why| format!("`{v}` is not a git ref name: {why}"))?;
            return Ok(Follow::Ref(v.to_owned()));
        }
        let Some(rest) = v.strip_prefix(TAGS) else {
            return Err(format!(
                "`{v}`: a pattern (with `*`) must be a tag pattern under refs/tags/, such as \"refs/tags/v*\""
            ));
        };
        if stars > 1 {
            return Err(format!("`{v}` has more than one `*`"));
        }
        let (prefix, suffix) = rest.split_once('*').unwrap_or((rest, ""));
        // The pattern with the `*` replaced by a version must be a ref name.
        check_ref_name(&format!("{TAGS}{prefix}1.0{suffix}"))
            .map_err(|why| format!("`{v}` is not a tag pattern: {why}"))?;
        Ok(Follow::Tags {
            prefix: prefix.to_owned(),
            suffix: suffix.to_owned(),
        })
    }

    /// For a tag pattern: the version a tag (`refs/tags/...` or the short name) stands for, when
    /// it matches the pattern and what the `*` matches is a version.
    pub fn tag_version<'a>(&self, tag: &'a str) -> Option<&'a str> {
        let Follow::Tags { prefix, suffix } = self else {
            return None;
        };
        let short = tag.strip_prefix(TAGS).unwrap_or(tag);
        let v = short
            .strip_prefix(prefix.as_str())?
            .strip_suffix(suffix.as_str())?;
        Version::parse(v).map(|_| v)
    }

    /// The newest of `tags` that match this pattern, by [`version_cmp`] (the tag name breaks a tie
    /// between equal versions such as `v1.2` and `v1.2.0`, so the answer never depends on the
    /// order `tags` come in). `None` for a [`Follow::Ref`] or when no tag matches.
    pub fn newest_tag<'a>(&self, tags: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
        tags.into_iter()
            .filter_map(|t| self.tag_version(t).map(|v| (t, v)))
            .max_by(|(ta, va), (tb, vb)| version_cmp(va, vb).then_with(|| ta.cmp(tb)))
            .map(|(t, _)| t)
    }

    /// What is followed, as it was written (`origin/main`, `refs/tags/v*`).
    pub fn as_written(&self) -> String {
        match self {
            Follow::Ref(r) => r.clone(),
            Follow::Tags { prefix, suffix } => format!("{TAGS}{prefix}*{suffix}"),
        }
    }
}

impl fmt::Display for Follow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_written())
    }
}

/// git's rules for a ref name (`git check-ref-format`), with one-level names allowed (`main`).
fn check_ref_name(name: &str) -> Result<(), &'static str> {
    if name == "@" {
        return Err("`@` alone is not a ref");
    }
    if name.starts_with('/') || name.ends_with('/') || name.contains("//") {
        return Err("it starts or ends with `/` or has an empty component");
    }
    if name.ends_with('.') {
        return Err("it ends with `.`");
    }
    if name.contains("..") {
        return Err("it contains `..`");
    }
    if name.contains("@{") {
        return Err("it contains `@{`");
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_ascii_control() || c.is_whitespace() || "~^:?*[\\".contains(*c))
    {
        return Err(match c {
            ' ' | '\t' => "it contains a space",
            '~' | '^' => "it contains `~` or `^` (name a ref, not a revision expression)",
            _ => {
                "it contains a character git does not allow in a ref (control, `:`, `?`, `[`, `\\`)"
            }
        });
    }
    for part in name.split('/') {
        if part.starts_with('.') {
            return Err("a component starts with `.`");
        }
        if part.starts_with('-') {
            return Err("a component starts with `-`");
        }
        if part.ends_with(".lock") {
            return Err("a component ends with `.lock`");
        }
    }
    Ok(())
}

/// A version as tags spell them: numbers separated by dots (`1.10.0`, `2`, `1.2`), then an
/// optional pre-release after `-` (`-rc.1`) and build metadata after `+` (ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Version<'a> {
    numbers: Vec<u64>,
    pre: Option<&'a str>,
}

impl<'a> Version<'a> {
    fn parse(s: &'a str) -> Option<Version<'a>> {
        let s = s.split_once('+').map_or(s, |(v, _)| v);
        let (core, pre) = match s.split_once('-') {
            Some((c, p)) if !p.is_empty() => (c, Some(p)),
            Some(_) => return None,
            None => (s, None),
        };
        let numbers = core
            .split('.')
            .map(|n| {
                (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| n.parse::<u64>().ok())
                    .flatten()
            })
            .collect::<Option<Vec<u64>>>()?;
        Some(Version { numbers, pre })
    }
}

/// The version order of tag versions, semver-aware: numbers compare as numbers, part by part,
/// a missing part counting as 0 (`1.10.0` > `1.9.3`, `1.2` = `1.2.0`); a pre-release sorts
/// before its release (`1.0.0-rc.2` < `1.0.0`), and pre-releases compare identifier by identifier
/// as semver says (numeric ones as numbers and before alphanumeric ones, a shorter list first when
/// one is the start of the other); build metadata (`+...`) is ignored. A string that is not a
/// version sorts before every version (and such strings compare as text among themselves).
pub fn version_cmp(a: &str, b: &str) -> Ordering {
    match (Version::parse(a), Version::parse(b)) {
        (Some(va), Some(vb)) => {
            let n = va.numbers.len().max(vb.numbers.len());
            let part = |v: &Version, i: usize| v.numbers.get(i).copied().unwrap_or(0);
            (0..n)
                .map(|i| part(&va, i).cmp(&part(&vb, i)))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
                .then_with(|| match (va.pre, vb.pre) {
                    (None, None) => Ordering::Equal,
                    (None, Some(_)) => Ordering::Greater,
                    (Some(_), None) => Ordering::Less,
                    (Some(pa), Some(pb)) => pre_cmp(pa, pb),
                })
        }
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (None, None) => a.cmp(b),
    }
}

fn pre_cmp(a: &str, b: &str) -> Ordering {
    let mut ia = a.split('.');
    let mut ib = b.split('.');
    loop {
        match (ia.next(), ib.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let o = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(nx), Ok(ny)) => nx.cmp(&ny),
                    (Ok(_), Err(_)) => Ordering::Less,
                    (Err(_), Ok(_)) => Ordering::Greater,
                    (Err(_), Err(_)) => x.cmp(y),
                };
                if o.is_ne() {
                    return o;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_order_is_semver_aware() {
        let ascending = [
            "0.9",
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.2",
            "1.9.3",
            "1.10.0",
            "2",
            "10.0.0",
        ];
        for (i, a) in ascending.iter().enumerate() {
            for (j, b) in ascending.iter().enumerate() {
                assert_eq!(version_cmp(a, b), i.cmp(&j), "{a} vs {b}");
            }
        }
        assert_eq!(version_cmp("1.2", "1.2.0"), Ordering::Equal);
        assert_eq!(version_cmp("1.2.0+build.5", "1.2.0"), Ordering::Equal);
        assert_eq!(version_cmp("banana", "0.0.1"), Ordering::Less);
    }

    #[test]
    fn the_newest_tag_of_a_pattern() {
        let f = Follow::parse("refs/tags/v*").unwrap();
        let tags = [
            "v1.9.3",
            "v1.10.0",
            "v1.10.0-rc.1",
            "vnext",
            "x2.0.0",
            "v1.2",
        ];
        assert_eq!(f.newest_tag(tags), Some("v1.10.0"));
        assert_eq!(
            f.newest_tag(["refs/tags/v0.1", "refs/tags/v0.01"]),
            Some("refs/tags/v0.1")
        );
        assert_eq!(f.newest_tag(["vnext", "other"]), None);
        // `v1.2` and `v1.2.0` are the same version: the name decides, whatever the order.
        assert_eq!(
            f.newest_tag(["v1.2.0", "v1.2"]),
            f.newest_tag(["v1.2", "v1.2.0"])
        );
        let suffixed = Follow::parse("refs/tags/release-*-prod").unwrap();
        assert_eq!(
            suffixed.newest_tag(["release-2.0-prod", "release-10.1-prod", "release-11-test"]),
            Some("release-10.1-prod")
        );
        assert_eq!(suffixed.as_written(), "refs/tags/release-*-prod");
    }

    #[test]
    fn values_are_checked() {
        assert_eq!(
            Follow::parse("origin/main"),
            Ok(Follow::Ref("origin/main".into()))
        );
        assert_eq!(Follow::parse("main"), Ok(Follow::Ref("main".into())));
        assert!(Follow::parse("refs/tags/v1.2.0").is_ok());
        for (bad, why) in [
            ("", "is empty"),
            (" main", "spaces around"),
            ("origin/*", "must be a tag pattern under refs/tags/"),
            ("refs/tags/v*.*", "more than one `*`"),
            ("main~1", "revision expression"),
            ("a..b", "contains `..`"),
            ("feature/", "ends with `/`"),
            ("my branch", "contains a space"),
            ("x.lock", "ends with `.lock`"),
            ("-main", "starts with `-`"),
            ("refs/tags/v*.lock", "ends with `.lock`"),
        ] {
            let e = Follow::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }
}
