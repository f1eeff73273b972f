//! Whether a branch's work has reached what baseline follows: the check behind a lane that ends
//! with its branch. Blocking, like the rest of this crate (the agent calls it from
//! `spawn_blocking`), and it runs git only through [`crate::git`].
//!
//! How each way of merging is told:
//!
//! - **fast-forward and merge commit**: the branch's tip is an ancestor of the target
//!   (`git merge-base --is-ancestor <tip> <target>`).
//! - **squash merge** (and rebase-merge, cherry-picks): merging the tip into the target changes
//!   nothing, i.e. `git merge-tree --write-tree <target> <tip>` merges cleanly to exactly the
//!   target's tree. Everything the branch changes since the merge base is already in the target,
//!   however many commits it was squashed from. Limits: when the target has since changed the
//!   same lines again (or the squash was edited while merging), the merge conflicts or differs
//!   and the branch counts as **unmerged** (the lane is kept: the safe side); git 2.38 or later
//!   is needed (an older git reports the branch unmerged, saying why). The trees the merge writes
//!   go to a scratch object directory that is removed after: nothing is left in the repository.
//! - **deleted branch**: merged only when the commit the lane runs is reachable from the target;
//!   otherwise it is unmerged work (squash-merged and then deleted included: nothing left says
//!   where its work went).
//!
//! A version built from uncommitted changes (`dirty`) counts as merged only when the branch has
//! moved past the deployed commit (the changes were committed) and that tip is merged. A version
//! of the target's own branch, or of a detached `HEAD`, is no feature branch and never merged.

use std::path::Path;

use crate::{WorkspaceError, git};

/// How a branch's work reached the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergedBy {
    /// The tip is in the target's history: a fast-forward or a merge commit.
    Ancestor,
    /// The tip's changes are all in the target, by other commits: a squash or rebase merge.
    Content,
    /// The branch is gone and the commit the lane runs is in the target's history.
    DeletedReachable,
}

impl MergedBy {
    pub fn describe(self) -> &'static str {
        match self {
            MergedBy::Ancestor => "fast-forward or merge commit",
            MergedBy::Content => "squash or rebase merge: all its changes are in it",
            MergedBy::DeletedReachable => "branch deleted, its commit is in it",
        }
    }
}

/// What [`branch_merged`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Merged(MergedBy),
    /// Work the target does not have, in words.
    Unmerged(String),
    /// Not a feature branch (the target's own branch, a detached `HEAD`): never merged.
    NotABranch,
}

/// What baseline follows, for merge checks in the repository at `repo`: the remote's default
/// branch (`origin/HEAD`), else `main`, else `master`; `None` when there is none of them.
///
/// The target when the service's baseline follows nothing; when it follows a ref
/// (`follow = "<ref>"` in `lane-workspace.toml`) the local agent's `merge_target` uses what that
/// ref names instead ([`crate::follow::resolve`]).
pub fn merge_target(repo: &Path) -> Result<Option<String>, WorkspaceError> {
    if let Ok(head) = git::run(repo, &["symbolic-ref", "-q", "refs/remotes/origin/HEAD"])
        && !head.is_empty()
        && resolves(repo, &head)?
    {
        return Ok(Some(head));
    }
    for branch in ["refs/heads/main", "refs/heads/master"] {
        if resolves(repo, branch)? {
            return Ok(Some(branch.to_owned()));
        }
    }
    Ok(None)
}

/// The short name of a full ref: `refs/heads/main` → `main`, `refs/remotes/origin/main` →
/// `origin/main`.
pub fn short_ref(full: &str) -> &str {
    full.strip_prefix("refs/heads/")
        .or_else(|| full.strip_prefix("refs/remotes/"))
        .unwrap_or(full)
}

/// Whether `branch` (a lane version's branch, deployed at `commit`, `dirty` when built with
/// uncommitted changes) is merged into `target` (a full ref from [`merge_target`]) in the
/// repository at `repo`.
pub fn branch_merged(
    repo: &Path,
    branch: &str,
    commit: &str,
    dirty: bool,
    target: &str,
) -> Result<Verdict, WorkspaceError> {
    let target_branch = short_ref(target);
    let target_name = target_branch
        .rsplit_once('/')
        .map_or(target_branch, |(_, b)| b);
    if branch == "HEAD" || branch == target_branch || branch == target_name {
        return Ok(Verdict::NotABranch);
    }
    let tip = rev(repo, &format!("refs/heads/{branch}^{{commit}}"))?;
    let Some(tip) = tip else {
        // The branch is gone: what the lane runs must be in the target.
        if dirty {
            return Ok(Verdict::Unmerged(format!(
                "branch {branch} is deleted and the version was built from uncommitted changes \
                 no commit holds"
            )));
        }
        if rev(repo, &format!("{commit}^{{commit}}"))?.is_none() {
            return Ok(Verdict::Unmerged(format!(
                "branch {branch} is deleted and its commit {} is not in the repository",
                short(commit)
            )));
        }
        return Ok(if is_ancestor(repo, commit, target)? {
            Verdict::Merged(MergedBy::DeletedReachable)
        } else {
            Verdict::Unmerged(format!(
                "branch {branch} is deleted but its commit {} is not in {target_branch}: \
                 unmerged work",
                short(commit)
            ))
        });
    };
    if dirty && tip.starts_with(commit) {
        return Ok(Verdict::Unmerged(format!(
            "the version of {branch} was built from uncommitted changes, and nothing was \
             committed on it since"
        )));
    }
    if is_ancestor(repo, &tip, target)? {
        return Ok(Verdict::Merged(MergedBy::Ancestor));
    }
    let out = merge_tree(repo, target, &tip)?;
    let merged_tree = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_owned();
    match out.status.code() {
        Some(0) => {}
        // Conflicts: the target changed the branch's lines differently.
        Some(1) => {
            return Ok(Verdict::Unmerged(format!(
                "branch {branch} has commits that are not in {target_branch} (and would \
                 conflict with it)"
            )));
        }
        _ => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            if stderr.contains("--write-tree") || stderr.contains("usage:") {
                return Ok(Verdict::Unmerged(format!(
                    "branch {branch} is not in {target_branch}'s history, and this git cannot \
                     tell a squash merge (git 2.38 or later can)"
                )));
            }
            return Err(git::failure(repo, "merge-tree", &stderr));
        }
    }
    let target_tree = rev(repo, &format!("{target}^{{tree}}"))?;
    if target_tree.as_deref() == Some(merged_tree.as_str()) {
        Ok(Verdict::Merged(MergedBy::Content))
    } else {
        Ok(Verdict::Unmerged(format!(
            "branch {branch} has changes that are not in {target_branch}"
        )))
    }
}

/// `git merge-tree --write-tree <target> <tip>`, its new objects written to a scratch object
/// directory (the repository's own objects are read through it as an alternate) that is removed
/// after: the check leaves nothing in the developer's repository.
fn merge_tree(
    repo: &Path,
    target: &str,
    tip: &str,
) -> Result<std::process::Output, WorkspaceError> {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let objects = git::run(
        repo,
        &[
            "rev-parse",
            "--path-format=absolute",
            "--git-path",
            "objects",
        ],
    )?;
    let scratch = std::env::temp_dir().join(format!(
        "lane-merge-check-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&scratch).map_err(|e| WorkspaceError::CannotRunGit {
        dir: scratch.clone(),
        source: e,
    })?;
    let out = git::command(repo)
        .env("GIT_OBJECT_DIRECTORY", &scratch)
        .env("GIT_ALTERNATE_OBJECT_DIRECTORIES", &objects)
        .args(["merge-tree", "--write-tree", "--no-messages", target, tip])
        .output();
    let _ = std::fs::remove_dir_all(&scratch);
    out.map_err(|e| git::spawn_error(repo, e))
}

fn short(commit: &str) -> &str {
    commit.get(..8).unwrap_or(commit)
}

/// Whether `rev` names an object.
fn resolves(repo: &Path, rev_: &str) -> Result<bool, WorkspaceError> {
    Ok(rev(repo, &format!("{rev_}^{{commit}}"))?.is_some())
}

/// The object `spec` names, `None` when it names none.
fn rev(repo: &Path, spec: &str) -> Result<Option<String>, WorkspaceError> {
    let out = git::command(repo)
        .args(["rev-parse", "--verify", "-q", spec])
        .output()
        .map_err(|e| git::spawn_error(repo, e))?;
    match out.status.code() {
        Some(0) => Ok(Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())),
        Some(1) => Ok(None),
        _ => Err(git::failure(
            repo,
            "rev-parse",
            &String::from_utf8_lossy(&out.stderr),
        )),
    }
}

/// `git merge-base --is-ancestor a b`: 0 yes, 1 no, else an error.
fn is_ancestor(repo: &Path, a: &str, b: &str) -> Result<bool, WorkspaceError> {
    let out = git::command(repo)
        .args(["merge-base", "--is-ancestor", a, b])
        .output()
        .map_err(|e| git::spawn_error(repo, e))?;
    match out.status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(git::failure(
            repo,
            "merge-base",
            &String::from_utf8_lossy(&out.stderr),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    struct Repo(PathBuf);

    impl Repo {
        fn new(name: &str) -> Repo {
            let dir =
                std::env::temp_dir().join(format!("lane-merged-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let r = Repo(dir);
            r.git(&["init", "-q", "-b", "main"]);
            r.commit("base.txt", "base\n", "base");
            r
        }
        fn git(&self, args: &[&str]) -> String {
            let out = git::command(&self.0)
                .args(["-c", "user.email=t@example.com", "-c", "user.name=T"])
                .args(args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "git {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        }
        fn commit(&self, file: &str, text: &str, msg: &str) -> String {
            std::fs::write(self.0.join(file), text).unwrap();
            self.git(&["add", "."]);
            self.git(&["commit", "-qm", msg]);
            self.git(&["rev-parse", "HEAD"])
        }
        fn verdict(&self, branch: &str, commit: &str, dirty: bool) -> Verdict {
            let target = merge_target(&self.0).unwrap().unwrap();
            branch_merged(&self.0, branch, commit, dirty, &target).unwrap()
        }
    }

    impl Drop for Repo {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn tells_each_way_of_merging_and_keeps_unmerged_work() {
        let r = Repo::new("ways");
        assert_eq!(
            merge_target(&r.0).unwrap().as_deref(),
            Some("refs/heads/main")
        );

        // Fast-forward.
        r.git(&["checkout", "-qb", "ff"]);
        let ff = r.commit("ff.txt", "ff\n", "ff");
        assert!(matches!(r.verdict("ff", &ff, false), Verdict::Unmerged(_)));
        r.git(&["checkout", "-q", "main"]);
        r.git(&["merge", "-q", "--ff-only", "ff"]);
        assert_eq!(
            r.verdict("ff", &ff, false),
            Verdict::Merged(MergedBy::Ancestor)
        );

        // A merge commit, with main moved on meanwhile.
        r.git(&["checkout", "-qb", "mc"]);
        let mc = r.commit("mc.txt", "mc\n", "mc");
        r.git(&["checkout", "-q", "main"]);
        r.commit("other.txt", "other\n", "other");
        assert!(matches!(r.verdict("mc", &mc, false), Verdict::Unmerged(_)));
        r.git(&["merge", "-q", "--no-ff", "-m", "merge mc", "mc"]);
        assert_eq!(
            r.verdict("mc", &mc, false),
            Verdict::Merged(MergedBy::Ancestor)
        );

        // A squash merge of two commits, main moved on before and after.
        r.git(&["checkout", "-qb", "sq"]);
        r.commit("sq1.txt", "one\n", "sq one");
        let sq = r.commit("sq2.txt", "two\n", "sq two");
        r.git(&["checkout", "-q", "main"]);
        r.commit("more.txt", "more\n", "more");
        let objects = || r.git(&["count-objects", "-v"]);
        let before = objects();
        assert!(matches!(r.verdict("sq", &sq, false), Verdict::Unmerged(_)));
        assert_eq!(
            objects(),
            before,
            "the check writes nothing into the repository"
        );
        r.git(&["merge", "-q", "--squash", "sq"]);
        r.git(&["commit", "-qm", "squashed sq"]);
        r.commit("after.txt", "after\n", "after");
        assert_eq!(
            r.verdict("sq", &sq, false),
            Verdict::Merged(MergedBy::Content)
        );

        // Only part of a branch squashed in: unmerged.
        r.git(&["checkout", "-qb", "part"]);
        r.commit("p1.txt", "p1\n", "p1");
        let part = r.commit("p2.txt", "p2\n", "p2");
        r.git(&["checkout", "-q", "main"]);
        r.git(&["checkout", "part", "--", "p1.txt"]);
        r.git(&["commit", "-qm", "only p1"]);
        assert!(matches!(
            r.verdict("part", &part, false),
            Verdict::Unmerged(_)
        ));

        // Deleted branches: merged only when the commit is reachable.
        r.git(&["branch", "-qD", "ff", "sq", "part"]);
        assert_eq!(
            r.verdict("ff", &ff, false),
            Verdict::Merged(MergedBy::DeletedReachable)
        );
        match r.verdict("sq", &sq, false) {
            Verdict::Unmerged(why) => assert!(why.contains("deleted"), "{why}"),
            other => panic!("{other:?}"),
        }
        match r.verdict("part", &part, false) {
            Verdict::Unmerged(why) => assert!(why.contains("unmerged work"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(r.verdict("ff", &ff, true), Verdict::Unmerged(_)));
        assert!(matches!(
            r.verdict("gone", "0123456789abcdef0123456789abcdef01234567", false),
            Verdict::Unmerged(_)
        ));

        // Uncommitted changes: unmerged until committed on the branch and merged.
        r.git(&["checkout", "-qb", "dirty"]);
        let at = r.git(&["rev-parse", "HEAD"]);
        assert!(matches!(
            r.verdict("dirty", &at, true),
            Verdict::Unmerged(_)
        ));
        r.commit("d.txt", "d\n", "d");
        r.git(&["checkout", "-q", "main"]);
        r.git(&["merge", "-q", "--ff-only", "dirty"]);
        assert_eq!(
            r.verdict("dirty", &at, true),
            Verdict::Merged(MergedBy::Ancestor)
        );

        // The target's own branch and a detached HEAD are no feature branches.
        assert_eq!(r.verdict("main", &at, false), Verdict::NotABranch);
        assert_eq!(r.verdict("HEAD", &at, false), Verdict::NotABranch);
    }

    #[test]
    fn the_target_is_origin_head_else_main_else_master() {
        let r = Repo::new("target");
        r.git(&["branch", "-qm", "main", "master"]);
        assert_eq!(
            merge_target(&r.0).unwrap().as_deref(),
            Some("refs/heads/master")
        );
        let head = r.git(&["rev-parse", "HEAD"]);
        r.git(&["update-ref", "refs/remotes/origin/trunk", &head]);
        r.git(&[
            "symbolic-ref",
            "refs/remotes/origin/HEAD",
            "refs/remotes/origin/trunk",
        ]);
        assert_eq!(
            merge_target(&r.0).unwrap().as_deref(),
            Some("refs/remotes/origin/trunk")
        );
        assert_eq!(short_ref("refs/remotes/origin/trunk"), "origin/trunk");
        // origin/trunk's own branch `trunk` is no feature branch.
        assert_eq!(
            branch_merged(&r.0, "trunk", &head, false, "refs/remotes/origin/trunk").unwrap(),
            Verdict::NotABranch
        );
        let empty = std::env::temp_dir().join(format!("lane-merged-none-{}", std::process::id()));
        std::fs::create_dir_all(&empty).unwrap();
        git::run(&empty, &["init", "-q", "-b", "dev"]).unwrap();
        assert_eq!(merge_target(&empty).unwrap(), None);
        let _ = std::fs::remove_dir_all(&empty);
    }
}
