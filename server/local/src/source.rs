//! Working copies: a deploy from a git repository builds and runs from a copy of the repository's
//! working tree taken when the deploy starts, so later edits, branch switches and builds in the
//! developer's checkout never change a version that is already deployed (a crashed version is
//! restarted from the same binary it was deployed with).
//!
//! The copy is what git sees: tracked files with their uncommitted changes and untracked files that
//! are not ignored. It is taken through a scratch index (`git add -A` into a copy of the
//! repository's index, then `git write-tree`), so the developer's index, stash and branches are not
//! touched; the tree's blobs land in the repository's object store as unreachable objects, which
//! `git gc` prunes. Local edits hidden by `assume-unchanged` or `skip-worktree` marks are
//! unhidden in the scratch index (skip-worktree entries without a file, a sparse checkout's, are
//! left out). The copy is then brought to that tree with `git read-tree --reset -u` and an index of
//! its own, which rewrites only the files that differ and deletes the ones that are gone, and `git
//! clean -fd` removes files the tree does not have and git does not ignore. Ignored files (build
//! outputs) stay, so the next build in the same copy is incremental. `core.autocrlf` is off on
//! both sides, so line endings arrive as they are, unless `.gitattributes` asks for conversion
//! (`text`, `eol`), which applies as in any checkout. Every git process is made and judged by
//! `lane_workspace::git`, the runner the CLI and the IDE daemon use too (a `std` command converted
//! to tokio's, killed when the deploy is dropped).
//!
//! Copies live under `<state>/src/<service>/<n>`. Each belongs to the instance that runs from it
//! ([`InstanceRecord::source`](crate::store::InstanceRecord)), or to a deploy under way (a
//! [`Claim`]), or is free. A deploy takes the most recently used free copy of its service, else a new
//! one, which starts with the build caches `lane.toml` names (`[build] cache`) copied from the
//! service's most recent copy ([`seed`]), so it never builds in a directory a running version was
//! started from and its build is still incremental. [`Sources::prune`]
//! keeps one free copy per service as a build cache and deletes the rest.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::SystemTime;

use lane_core::ServiceId;

use lane_api::ErrorCode;
use lane_api::{BackendError, Result};
use lane_workspace::{WorkspaceError, git};

/// Free copies kept per service as a build cache…
const SPARE_PER_SERVICE: usize = 1;
/// …unless no deploy has used them for this long.
const SPARE_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// The working copies under one state dir.
pub(crate) struct Sources {
    root: PathBuf,
    /// Copies a deploy under way is writing to.
    claimed: std::sync::Mutex<HashSet<PathBuf>>,
}

/// A copy taken by one deploy; released when dropped.
pub(crate) struct Claim<'a> {
    sources: &'a Sources,
    pub dir: PathBuf,
    /// For a new copy: the service's most recently used other copy, whose build caches it starts
    /// with ([`seed`]), so that the first build in the new copy is incremental.
    pub seed: Option<PathBuf>,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if let Ok(mut c) = self.sources.claimed.lock() {
            c.remove(&self.dir);
            if let Some(s) = &self.seed {
                c.remove(s);
            }
        }
    }
}

impl Sources {
    pub(crate) fn new(root: PathBuf) -> Self {
        Sources {
            // git runs in other directories: a relative state dir would point elsewhere there.
            root: std::path::absolute(&root).unwrap_or(root),
            claimed: Default::default(),
        }
    }

    /// Takes a copy for a deploy of `service`: the most recently used one that no instance in
    /// `in_use` runs from and no other deploy holds, else a new one, with a copy to `seed` it
    /// from when the deploy has build caches to carry over.
    pub(crate) fn claim(
        &self,
        service: &ServiceId,
        in_use: &HashSet<PathBuf>,
        seed: bool,
    ) -> Result<Claim<'_>> {
        let base = self.root.join(service.to_string());
        std::fs::create_dir_all(&base).map_err(|e| io_err("create", &base, e))?;
        let mut claimed = self
            .claimed
            .lock()
            .map_err(|_| BackendError::internal("the working-copy table is poisoned"))?;
        let copies = copies_in(&base);
        let free = copies
            .iter()
            .filter(|c| !in_use.contains(&c.dir) && !claimed.contains(&c.dir))
            .max_by_key(|c| c.used);
        let (dir, seed) = match free {
            Some(c) => (c.dir.clone(), None),
            None => {
                let n = copies.iter().map(|c| c.n).max().map_or(1, |n| n + 1);
                let dir = base.join(n.to_string());
                std::fs::create_dir(&dir).map_err(|e| io_err("create", &dir, e))?;
                // A copy a deploy is writing to is not a consistent source.
                let seed = copies
                    .iter()
                    .filter(|c| seed && !claimed.contains(&c.dir))
                    .max_by_key(|c| c.used)
                    .map(|c| c.dir.clone());
                (dir, seed)
            }
        };
        claimed.insert(dir.clone());
        // The seed is read while this deploy runs: no other deploy may write to it, and prune
        // may not delete it, until then.
        if let Some(s) = &seed {
            claimed.insert(s.clone());
        }
        Ok(Claim {
            sources: self,
            dir,
            seed,
        })
    }

    /// Deletes free copies beyond [`SPARE_PER_SERVICE`] per service (the least recently used
    /// first) or unused for [`SPARE_MAX_AGE`], and service folders left empty. The copies are
    /// moved aside at once and deleted in the background, so a large build tree does not hold up
    /// the caller.
    pub(crate) fn prune(&self, in_use: &HashSet<PathBuf>) {
        let Ok(claimed) = self.claimed.lock() else {
            return;
        };
        let Ok(services) = std::fs::read_dir(&self.root) else {
            return;
        };
        let mut doomed = Vec::new();
        for base in services.flatten().map(|e| e.path()) {
            if !base.is_dir() || is_trash(&base) {
                continue;
            }
            let mut free: Vec<Copy> = copies_in(&base)
                .into_iter()
                .filter(|c| !in_use.contains(&c.dir) && !claimed.contains(&c.dir))
                .collect();
            free.sort_by_key(|c| std::cmp::Reverse(c.used));
            let stale = |c: &Copy| c.used.elapsed().is_ok_and(|age| age > SPARE_MAX_AGE);
            let doomed_here = free
                .into_iter()
                .enumerate()
                .filter(|(i, c)| *i >= SPARE_PER_SERVICE || stale(c))
                .map(|(_, c)| c);
            for c in doomed_here {
                let trash = self.root.join(format!(
                    "{}{}",
                    own_trash_prefix(),
                    TRASH_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                ));
                if std::fs::rename(&c.dir, &trash).is_ok() {
                    let _ = std::fs::remove_file(index_of(&c.dir));
                    doomed.push(trash);
                }
            }
            // Only succeeds when the folder is empty.
            let _ = std::fs::remove_dir(&base);
        }
        drop(claimed);
        // Trash left by an agent that died while deleting (this agent's own is being deleted).
        if let Ok(entries) = std::fs::read_dir(&self.root) {
            let own = own_trash_prefix();
            for e in entries.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                if is_trash(&e.path()) && !name.starts_with(&own) {
                    doomed.push(e.path());
                }
            }
        }
        if !doomed.is_empty() {
            std::thread::spawn(move || {
                for d in doomed {
                    remove_tree(&d);
                }
            });
        }
    }
}

static TRASH_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn own_trash_prefix() -> String {
    format!(".trash-{}-", std::process::id())
}

fn is_trash(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(".trash-"))
}

/// Deletes a tree, read-only directories (a Go module cache, say) included.
fn remove_tree(dir: &Path) {
    if std::fs::remove_dir_all(dir).is_ok() {
        return;
    }
    fn writable(p: &Path) {
        use std::os::unix::fs::PermissionsExt as _;
        let Ok(meta) = p.symlink_metadata() else {
            return;
        };
        if !meta.is_dir() {
            return;
        }
        let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700));
        if let Ok(entries) = std::fs::read_dir(p) {
            for e in entries.flatten() {
                writable(&e.path());
            }
        }
    }
    writable(dir);
    let _ = std::fs::remove_dir_all(dir);
}

struct Copy {
    n: u64,
    dir: PathBuf,
    /// When a deploy last synced it.
    used: SystemTime,
}

/// The numbered copies in a service folder.
fn copies_in(base: &Path) -> Vec<Copy> {
    let Ok(entries) = std::fs::read_dir(base) else {
        return vec![];
    };
    let mut by_n = BTreeMap::new();
    for e in entries.flatten() {
        let Some(n) = e.file_name().to_str().and_then(|s| s.parse::<u64>().ok()) else {
            continue;
        };
        let dir = e.path();
        let used = std::fs::metadata(index_of(&dir))
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        by_n.insert(n, Copy { n, dir, used });
    }
    by_n.into_values().collect()
}

/// The copy's own git index, beside it (not inside, where a build could see or clean it).
fn index_of(dir: &Path) -> PathBuf {
    beside(dir, ".index")
}

/// The store's I/O error, with what to check when it is about a working copy.
fn io_err(what: &str, path: &Path, e: std::io::Error) -> BackendError {
    crate::store::io_err(what, path, e)
        .with_help("check that the state dir (LANE_HOME) is writable and has space")
}

/// Copies the build caches `paths` (relative to the service's directory, `[build] cache` in
/// `lane.toml`) from the service directory `from` of another copy into `to`, with `cp -a
/// --reflink=auto` (shared blocks where the file system can), so the first build in a new copy is
/// incremental. Only what the manifest names is copied: a running version's other files (sockets,
/// pid files, a virtualenv that embeds its own path) stay where they are. Returns how many were
/// copied; one that cannot be copied is left out, which only costs building it again.
pub(crate) async fn seed(from: &Path, to: &Path, paths: &[PathBuf]) -> usize {
    let mut copied = 0;
    for p in paths {
        let (src, dst) = (from.join(p), to.join(p));
        if src.symlink_metadata().is_err() || dst.symlink_metadata().is_ok() {
            continue;
        }
        if let Some(parent) = dst.parent()
            && std::fs::create_dir_all(parent).is_err()
        {
            continue;
        }
        let out = tokio::process::Command::new("cp")
            .args(["-a", "--reflink=auto"])
            .arg(&src)
            .arg(&dst)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output()
            .await;
        match out {
            Ok(out) if out.status.success() => copied += 1,
            failed => {
                let why = match failed {
                    Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                    Err(e) => e.to_string(),
                };
                tracing::warn!(from = %src.display(), "cannot copy a build cache: {why}");
                remove_tree(&dst);
                let _ = std::fs::remove_file(&dst);
            }
        }
    }
    copied
}

/// What a sync copied.
#[derive(Debug)]
pub(crate) struct Synced {
    /// The working tree's tree id.
    pub tree: String,
    /// The commit and branch (`HEAD` when detached) checked out when the copy was taken.
    pub commit: String,
    pub branch: String,
    /// The tree differs from `commit`'s: there were uncommitted changes or untracked files.
    pub dirty: bool,
    /// Where the service directory is in the copy: `repo`'s path below the repository root
    /// (empty unless the service is a subdirectory of a monorepo).
    pub prefix: PathBuf,
}

/// Brings `dir` to the working tree of the whole git repository that `repo` is in, as it is now,
/// and tells which commit was checked out and whether the working tree differed from it. (The
/// caller's own reading of the branch may be a moment older: this is the one that matches the
/// copy.)
pub(crate) async fn sync(repo: &Path, dir: &Path) -> Result<Synced> {
    // Everything about the repository in one git run.
    let facts = git(
        repo,
        &[
            "rev-parse",
            "--show-toplevel",
            "--show-prefix",
            "--absolute-git-dir",
            "--git-path",
            "index",
            "HEAD",
            "HEAD^{tree}",
            "--abbrev-ref",
            "HEAD",
        ],
        &[],
    )
    .await
    .map_err(in_repo("rev-parse", repo))?;
    let facts: Vec<&str> = facts.lines().collect();
    let [top, prefix, git_dir, index, commit, committed, branch] = facts[..] else {
        return Err(in_repo("rev-parse", repo)(WorkspaceError::Git {
            dir: repo.to_path_buf(),
            command: "rev-parse".into(),
            stderr: format!("unexpected output: {facts:?}"),
        }));
    };
    let top = Path::new(top);
    // Compared as git sees paths: with symlinks resolved.
    if dir
        .canonicalize()
        .unwrap_or_else(|_| dir.to_owned())
        .starts_with(top)
    {
        return Err(BackendError::invalid(format!(
            "the state dir's working copy {} is inside the repository {}",
            dir.display(),
            top.display()
        ))
        .with_help("set LANE_HOME to a directory outside the repository"));
    }
    // `--git-path` answers relative to where git ran.
    let tree = sync_tree(top, Path::new(git_dir), &repo.join(index), dir).await?;
    Ok(Synced {
        dirty: committed != tree,
        tree,
        prefix: PathBuf::from(prefix),
        commit: commit.to_owned(),
        branch: branch.to_owned(),
    })
}

/// Brings `dir` to `commit` of the git repository that `repo` is in (not its working tree: a
/// baseline that follows production runs exactly the commit its ref names). `branch` is what the
/// copy is said to be of (the followed ref's name).
pub(crate) async fn checkout(
    repo: &Path,
    commit: &str,
    branch: &str,
    dir: &Path,
) -> Result<Synced> {
    let facts = git(
        repo,
        &[
            "rev-parse",
            "--show-toplevel",
            "--show-prefix",
            "--absolute-git-dir",
        ],
        &[],
    )
    .await
    .map_err(in_repo("rev-parse", repo))?;
    let facts: Vec<&str> = facts.lines().collect();
    // The prefix line is empty at the root, and `lines` keeps it.
    let [top, prefix, git_dir] = facts[..] else {
        return Err(in_repo("rev-parse", repo)(WorkspaceError::Git {
            dir: repo.to_path_buf(),
            command: "rev-parse".into(),
            stderr: format!("unexpected output: {facts:?}"),
        }));
    };
    let top = Path::new(top);
    if dir
        .canonicalize()
        .unwrap_or_else(|_| dir.to_owned())
        .starts_with(top)
    {
        return Err(BackendError::invalid(format!(
            "the state dir's working copy {} is inside the repository {}",
            dir.display(),
            top.display()
        ))
        .with_help("set LANE_HOME to a directory outside the repository"));
    }
    let spec = format!("{commit}^{{tree}}");
    let tree = git(
        top,
        &["rev-parse", "--verify", "--end-of-options", &spec],
        &[],
    )
    .await
    .map_err(in_repo("rev-parse", repo))?;
    bring_to(Path::new(git_dir), dir, &tree).await?;
    Ok(Synced {
        tree,
        commit: commit.to_owned(),
        branch: branch.to_owned(),
        dirty: false,
        prefix: PathBuf::from(prefix),
    })
}

/// [`sync`] from the repository's root `repo`, whose git dir and index are given.
async fn sync_tree(repo: &Path, git_dir: &Path, index: &Path, dir: &Path) -> Result<String> {
    let scratch = beside(dir, ".scratch-index");
    // Start from the repository's index: its stat data lets `git add` skip unchanged files. A
    // sync killed half-way (a cancelled deploy) may have left the scratch index or its lock.
    let _ = std::fs::remove_file(&scratch);
    let _ = std::fs::remove_file(beside(&scratch, ".lock"));
    if let Err(e) = std::fs::copy(index, &scratch)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        return Err(io_err("copy the git index to", &scratch, e));
    }
    let scratch_env = [("GIT_INDEX_FILE", scratch.as_os_str())];
    let tree = async {
        unhide_local_edits(repo, &scratch_env).await?;
        git(
            repo,
            &[NO_EOL[0], NO_EOL[1], "add", "--all", "--", "."],
            &scratch_env,
        )
        .await
        .map_err(in_repo("add", repo))?;
        git(repo, &["write-tree"], &scratch_env)
            .await
            .map_err(in_repo("write-tree", repo))
    }
    .await;
    let _ = std::fs::remove_file(&scratch);
    let tree = tree?;

    bring_to(git_dir, dir, &tree).await?;
    Ok(tree)
}

/// Brings the copy `dir` to `tree` (any tree-ish of the repository whose git dir is `git_dir`)
/// with its own index: only the files that differ are rewritten, then files the tree does not
/// have and git does not ignore are removed.
async fn bring_to(git_dir: &Path, dir: &Path, tree: &str) -> Result<()> {
    let own_index = index_of(dir);
    let _ = std::fs::remove_file(beside(&own_index, ".lock"));
    let mut git_dir_arg = std::ffi::OsString::from("--git-dir=");
    git_dir_arg.push(git_dir);
    let mut work_tree_arg = std::ffi::OsString::from("--work-tree=");
    work_tree_arg.push(dir);
    let in_copy_git = |args: &[&str]| {
        let mut cmd = command(dir, &[("GIT_INDEX_FILE", own_index.as_os_str())]);
        cmd.args(NO_EOL)
            .args(["-c", "core.sparseCheckout=false"])
            .arg(&git_dir_arg)
            .arg(&work_tree_arg)
            .args(args);
        cmd
    };
    // Files as they are in the tree (only those that differ are rewritten), then away with files
    // the tree does not have and git does not ignore: left by a build, or by a sync cut short.
    let out = in_copy_git(&["read-tree", "--reset", "-u", tree])
        .output()
        .await;
    check(dir, out).map_err(in_copy("read-tree", dir))?;
    let out = in_copy_git(&["clean", "-f", "-d", "-q"]).output().await;
    check(dir, out).map_err(in_copy("clean", dir))?;
    Ok(())
}

/// Both sides of the copy skip `core.autocrlf`'s conversion (`.gitattributes` rules still apply).
const NO_EOL: [&str; 2] = ["-c", "core.autocrlf=false"];

/// Entries marked assume-unchanged, and skip-worktree ones whose file is there (a developer's
/// way to keep local edits out of `git status`), would make `git add` miss the edits: clear the
/// marks in the scratch index. Skip-worktree entries without a file are a sparse checkout's and
/// stay as they are.
async fn unhide_local_edits(repo: &Path, env: &[(&str, &std::ffi::OsStr)]) -> Result<()> {
    let listing = git(repo, &["ls-files", "-v", "-z"], env)
        .await
        .map_err(in_repo("ls-files", repo))?;
    let (mut assumed, mut skipped) = (Vec::new(), Vec::new());
    for entry in listing.split('\0') {
        let Some((tag, path)) = entry.split_once(' ') else {
            continue;
        };
        // `S`: skip-worktree; lowercase: assume-unchanged; `s`: both.
        if tag.eq_ignore_ascii_case("s") {
            if repo.join(path).symlink_metadata().is_ok() {
                skipped.push(path);
                if tag == "s" {
                    assumed.push(path);
                }
            }
        } else if tag.chars().all(|c| c.is_ascii_lowercase()) {
            assumed.push(path);
        }
    }
    // One mark per run: update-index applies only the last of its mark options.
    for (mark, paths) in [
        ("--no-assume-unchanged", assumed),
        ("--no-skip-worktree", skipped),
    ] {
        if paths.is_empty() {
            continue;
        }
        let mut child = command(repo, env)
            .args(["update-index", mark, "-z", "--stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| in_repo("update-index", repo)(git::spawn_error(repo, e)))?;
        if let Some(mut stdin) = child.stdin.take() {
            use tokio::io::AsyncWriteExt as _;
            let mut input = Vec::new();
            for p in paths {
                input.extend_from_slice(p.as_bytes());
                input.push(0);
            }
            let _ = stdin.write_all(&input).await;
        }
        check(repo, child.wait_with_output().await).map_err(in_repo("update-index", repo))?;
    }
    Ok(())
}

/// `path` with `suffix` added to its file name.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// `git` in `cwd`, made by lane-workspace's runner (nothing of the caller's git environment, stdin
/// null, output captured), with `env`, and killed when the deploy is dropped.
fn command(cwd: &Path, env: &[(&str, &std::ffi::OsStr)]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::from(git::command(cwd));
    cmd.envs(env.iter().copied()).kill_on_drop(true);
    cmd
}

async fn git(
    cwd: &Path,
    args: &[&str],
    env: &[(&str, &std::ffi::OsStr)],
) -> std::result::Result<String, WorkspaceError> {
    check(cwd, command(cwd, env).args(args).output().await)
}

/// Stdout of a git run in `cwd` that succeeded, else what went wrong (told apart by the runner).
fn check(
    cwd: &Path,
    out: std::io::Result<std::process::Output>,
) -> std::result::Result<String, WorkspaceError> {
    git::finish(cwd, "", out)
}

/// What git said, for a message that names the git step itself; and what to do, when the runner
/// knows better than the step (git missing, a repository git refuses).
fn detail(e: WorkspaceError) -> (String, Option<String>) {
    match e {
        WorkspaceError::Git { stderr, .. } => (stderr, None),
        other => {
            let help = other.help();
            (other.to_string(), help)
        }
    }
}

/// Turns a failed git step in the developer's repository into the deploy's error.
fn in_repo<'a>(
    what: &'static str,
    repo: &'a Path,
) -> impl FnOnce(WorkspaceError) -> BackendError + 'a {
    move |e| {
        let (detail, help) = detail(e);
        BackendError::new(
            ErrorCode::BuildFailed,
            format!(
                "cannot copy the working tree of {} (git {what}): {detail}",
                repo.display()
            ),
        )
        .with_help(help.unwrap_or_else(|| {
            "run `git status` in the repository to see what git makes of it".into()
        }))
    }
}

/// Turns a failed git step in the copy (the state dir's) into the deploy's error.
fn in_copy<'a>(
    what: &'static str,
    dir: &'a Path,
) -> impl FnOnce(WorkspaceError) -> BackendError + 'a {
    move |e| {
        let (detail, help) = detail(e);
        BackendError::new(
            ErrorCode::BuildFailed,
            format!(
                "cannot update the working copy {} (git {what}): {detail}",
                dir.display()
            ),
        )
        .with_help(help.unwrap_or_else(|| {
            format!(
                "the copy is lane's own; delete {} and deploy again to start it afresh",
                dir.display()
            )
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system temp dir, deleted on drop.
    struct TempDir(PathBuf);
    impl TempDir {
        fn new() -> Self {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p = std::env::temp_dir().join(format!("lane-source-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
        fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn git_in(dir: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE")
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn commit(repo: &Path, message: &str) {
        git_in(
            repo,
            &[
                "-c",
                "user.email=t@t",
                "-c",
                "user.name=t",
                "commit",
                "-q",
                "-m",
                message,
            ],
        );
    }

    fn repo(root: &Path) -> PathBuf {
        let repo = root.join("repo");
        std::fs::create_dir_all(repo.join("src")).unwrap();
        git_in(&repo, &["init", "-q", "-b", "main"]);
        std::fs::write(repo.join(".gitignore"), "target/\n").unwrap();
        std::fs::write(repo.join("src/main.txt"), "v1").unwrap();
        std::fs::write(repo.join("gone.txt"), "soon gone").unwrap();
        git_in(&repo, &["add", "."]);
        commit(&repo, "one");
        repo
    }

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap()
    }

    #[tokio::test]
    async fn a_copy_has_what_git_sees_and_keeps_build_outputs() {
        let tmp = TempDir::new();
        let repo = repo(tmp.path());
        // Uncommitted edit, untracked file, ignored build output.
        std::fs::write(repo.join("src/main.txt"), "v2 uncommitted").unwrap();
        std::fs::write(repo.join("new.txt"), "untracked").unwrap();
        std::fs::create_dir_all(repo.join("target")).unwrap();
        std::fs::write(repo.join("target/bin"), "the developer's build").unwrap();
        let index_before = std::fs::read(repo.join(".git/index")).unwrap();

        let copy = tmp.path().join("copy");
        std::fs::create_dir(&copy).unwrap();
        let head = git_in(&repo, &["rev-parse", "HEAD"]);
        let synced = sync(&repo, &copy).await.unwrap();
        assert_eq!(
            (synced.commit.as_str(), synced.branch.as_str()),
            (head.as_str(), "main")
        );
        assert!(synced.dirty, "uncommitted edits make it dirty");
        let tree = synced.tree;
        assert_eq!(tree.len(), 40, "{tree}");
        assert_eq!(read(&copy.join("src/main.txt")), "v2 uncommitted");
        assert_eq!(read(&copy.join("new.txt")), "untracked");
        assert!(copy.join("gone.txt").exists());
        assert!(
            !copy.join("target").exists(),
            "ignored files are not copied"
        );
        assert!(!copy.join(".git").exists());
        assert_eq!(
            std::fs::read(repo.join(".git/index")).unwrap(),
            index_before,
            "the developer's index is untouched"
        );
        assert_eq!(git_in(&repo, &["status", "--porcelain"]).lines().count(), 2);

        // The copy's build writes outputs and touches a tracked file.
        std::fs::create_dir_all(copy.join("target")).unwrap();
        std::fs::write(copy.join("target/bin"), "built in the copy").unwrap();
        std::fs::write(copy.join("new.txt"), "changed by the build").unwrap();

        // The developer switches branch and deletes a file; the next sync follows.
        git_in(&repo, &["stash", "-q", "--include-untracked"]);
        git_in(&repo, &["checkout", "-q", "-b", "other"]);
        std::fs::remove_file(repo.join("gone.txt")).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let tree2 = sync(&repo, &copy).await.unwrap().tree;
        assert_ne!(tree, tree2);
        assert_eq!(read(&copy.join("src/main.txt")), "v1");
        assert!(!copy.join("gone.txt").exists(), "deleted files go");
        assert!(!copy.join("new.txt").exists(), "stashed files go");
        assert_eq!(
            read(&copy.join("target/bin")),
            "built in the copy",
            "build outputs stay for an incremental build"
        );
        // Same tree again: nothing rewritten.
        let before = std::fs::metadata(copy.join("src/main.txt"))
            .unwrap()
            .modified()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let head = git_in(&repo, &["rev-parse", "HEAD"]);
        let again = sync(&repo, &copy).await.unwrap();
        assert_eq!(
            (again.commit.as_str(), again.branch.as_str()),
            (head.as_str(), "other")
        );
        assert_eq!(again.tree, tree2);
        assert!(again.dirty, "a deleted file is an uncommitted change");
        git_in(&repo, &["add", "-u"]);
        commit(&repo, "gone");
        let head = git_in(&repo, &["rev-parse", "HEAD"]);
        let clean = sync(&repo, &copy).await.unwrap();
        assert_eq!(clean.commit, head);
        assert!(!clean.dirty, "a committed working tree is clean");
        assert_eq!(clean.tree, tree2);
        let after = std::fs::metadata(copy.join("src/main.txt"))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(before, after, "an unchanged file keeps its mtime");
    }

    #[tokio::test]
    async fn a_tracked_file_changed_in_the_copy_is_restored() {
        let tmp = TempDir::new();
        let repo = repo(tmp.path());
        let copy = tmp.path().join("copy");
        std::fs::create_dir(&copy).unwrap();
        sync(&repo, &copy).await.unwrap();
        std::fs::write(copy.join("src/main.txt"), "scribbled on by a build").unwrap();
        sync(&repo, &copy).await.unwrap();
        assert_eq!(read(&copy.join("src/main.txt")), "v1");
    }

    #[tokio::test]
    async fn a_copy_is_exact_whatever_the_leftovers_and_settings() {
        let tmp = TempDir::new();
        let repo = repo(tmp.path());
        let copy = tmp.path().join("copy");
        std::fs::create_dir(&copy).unwrap();
        // A sync cut short left locks and a stray file behind.
        std::fs::write(beside(&copy, ".scratch-index.lock"), "").unwrap();
        std::fs::write(beside(&copy, ".index.lock"), "").unwrap();
        std::fs::write(copy.join("stray.txt"), "not in the tree").unwrap();
        // Settings that would change bytes or hide edits.
        git_in(&repo, &["config", "core.autocrlf", "true"]);
        std::fs::write(repo.join("script.sh"), "#!/bin/sh\necho lf\n").unwrap();
        std::fs::write(repo.join("crlf.txt"), "dos\r\nfile\r\n").unwrap();
        git_in(&repo, &["update-index", "--assume-unchanged", "gone.txt"]);
        std::fs::write(repo.join("gone.txt"), "a local edit under assume-unchanged").unwrap();
        git_in(&repo, &["update-index", "--skip-worktree", "src/main.txt"]);
        std::fs::write(
            repo.join("src/main.txt"),
            "a local edit under skip-worktree",
        )
        .unwrap();

        sync(&repo, &copy).await.unwrap();
        assert!(!copy.join("stray.txt").exists(), "files not in the tree go");
        assert_eq!(read(&copy.join("script.sh")), "#!/bin/sh\necho lf\n");
        assert_eq!(read(&copy.join("crlf.txt")), "dos\r\nfile\r\n");
        assert_eq!(
            read(&copy.join("gone.txt")),
            "a local edit under assume-unchanged"
        );
        assert_eq!(
            read(&copy.join("src/main.txt")),
            "a local edit under skip-worktree"
        );
        assert!(
            git_in(&repo, &["ls-files", "-v", "src/main.txt"]).starts_with('S'),
            "the developer's own marks stay"
        );

        // A build's stray output that git does not ignore is gone by the next sync; ignored
        // output stays.
        std::fs::write(copy.join("generated.go"), "package stray").unwrap();
        std::fs::create_dir_all(copy.join("target")).unwrap();
        std::fs::write(copy.join("target/out"), "kept").unwrap();
        sync(&repo, &copy).await.unwrap();
        assert!(!copy.join("generated.go").exists());
        assert!(copy.join("target/out").exists());
    }

    #[tokio::test]
    async fn a_linked_worktree_is_copied_from_its_own_index() {
        let tmp = TempDir::new();
        let repo = repo(tmp.path());
        let wt = tmp.path().join("wt");
        git_in(
            &repo,
            &["worktree", "add", "-q", "-b", "other", wt.to_str().unwrap()],
        );
        std::fs::write(wt.join("src/main.txt"), "edited in the worktree").unwrap();
        std::fs::write(repo.join("src/main.txt"), "edited in the main checkout").unwrap();
        let copy = tmp.path().join("copy");
        std::fs::create_dir(&copy).unwrap();
        sync(&wt, &copy).await.unwrap();
        assert_eq!(read(&copy.join("src/main.txt")), "edited in the worktree");
    }

    #[tokio::test]
    async fn a_monorepo_service_gets_the_whole_repository_and_its_prefix() {
        let tmp = TempDir::new();
        let repo = repo(tmp.path());
        let service = repo.join("services/b");
        std::fs::create_dir_all(&service).unwrap();
        std::fs::write(service.join("lane.toml"), "app = \"x\"").unwrap();
        let copy = tmp.path().join("copy");
        std::fs::create_dir(&copy).unwrap();
        let head = git_in(&repo, &["rev-parse", "HEAD"]);
        let synced = sync(&service, &copy).await.unwrap();
        assert_eq!(synced.commit, head);
        assert_eq!(synced.prefix, Path::new("services/b/"));
        assert!(copy.join("services/b/lane.toml").exists());
        assert!(
            copy.join("src/main.txt").exists(),
            "the rest of the repository too"
        );
        assert!(
            synced.dirty,
            "the untracked lane.toml is an uncommitted change"
        );
    }

    #[tokio::test]
    async fn a_new_copy_starts_with_the_named_build_caches_of_another() {
        let tmp = TempDir::new();
        let repo = repo(tmp.path());
        let sources = Sources::new(tmp.path().join("src"));
        let svc: ServiceId = "shop.cart".parse().unwrap();
        let none = HashSet::new();
        let first = sources.claim(&svc, &none, true).unwrap();
        assert_eq!(first.seed, None, "nothing to start from");
        sync(&repo, &first.dir).await.unwrap();
        // Build outputs, and what a running version leaves in its directory.
        std::fs::create_dir_all(first.dir.join("target/debug")).unwrap();
        std::fs::write(first.dir.join("target/debug/bin"), "built once").unwrap();
        std::fs::create_dir_all(first.dir.join("web/node_modules/x")).unwrap();
        std::fs::write(first.dir.join("web/node_modules/x/i.js"), "dep").unwrap();
        std::fs::write(first.dir.join("server.pid"), "4242").unwrap();
        let first_dir = first.dir.clone();
        drop(first);

        // The first copy is in use (its version runs): a new one, seeded from it and reserved.
        let second = sources
            .claim(&svc, &[first_dir.clone()].into(), true)
            .unwrap();
        assert_ne!(second.dir, first_dir);
        assert_eq!(second.seed.as_deref(), Some(first_dir.as_path()));
        let other = sources.claim(&svc, &none, true).unwrap();
        assert_ne!(
            other.dir, first_dir,
            "a seed is not handed to another deploy"
        );
        drop(other);
        sources.prune(&none);
        assert!(first_dir.exists(), "nor pruned while it is read");

        std::fs::write(repo.join("src/main.txt"), "v2").unwrap();
        sync(&repo, &second.dir).await.unwrap();
        let caches = [
            PathBuf::from("target"),
            PathBuf::from("web/node_modules"),
            PathBuf::from("no-such-dir"),
        ];
        assert_eq!(seed(&first_dir, &second.dir, &caches).await, 2);
        assert_eq!(read(&second.dir.join("target/debug/bin")), "built once");
        assert_eq!(read(&second.dir.join("web/node_modules/x/i.js")), "dep");
        assert!(
            !second.dir.join("server.pid").exists(),
            "only the named caches"
        );
        assert_eq!(read(&second.dir.join("src/main.txt")), "v2");
        assert_eq!(
            read(&first_dir.join("src/main.txt")),
            "v1",
            "the source is untouched"
        );
        // A cache the new copy has already is left alone.
        std::fs::write(first_dir.join("target/debug/bin"), "built twice").unwrap();
        assert_eq!(seed(&first_dir, &second.dir, &caches).await, 0);
        assert_eq!(read(&second.dir.join("target/debug/bin")), "built once");
        drop(second);
    }

    #[tokio::test]
    async fn a_state_dir_inside_the_repository_is_refused() {
        let tmp = TempDir::new();
        let repo = repo(tmp.path());
        let copy = repo.join(".lane/src/x/1");
        std::fs::create_dir_all(&copy).unwrap();
        let e = sync(&repo, &copy).await.unwrap_err();
        assert!(e.message.contains("inside the repository"), "{e}");
    }

    #[tokio::test]
    async fn a_copy_that_cannot_be_written_is_a_clear_error() {
        let tmp = TempDir::new();
        let repo = repo(tmp.path());
        // Where the scratch index goes is taken by a directory.
        let copy = tmp.path().join("a");
        std::fs::create_dir_all(beside(&copy, ".scratch-index")).unwrap();
        std::fs::create_dir(&copy).unwrap();
        let e = sync(&repo, &copy).await.unwrap_err();
        assert!(e.message.contains("cannot copy the git index to"), "{e}");
        assert!(
            e.help.as_deref().unwrap_or("").contains("LANE_HOME"),
            "{e:?}"
        );
        // Where the copy's own index goes is taken by a directory: git cannot update the copy.
        let copy = tmp.path().join("b");
        std::fs::create_dir_all(index_of(&copy)).unwrap();
        std::fs::create_dir(&copy).unwrap();
        let e = sync(&repo, &copy).await.unwrap_err();
        assert!(e.message.contains("cannot update the working copy"), "{e}");
        assert!(e.message.contains("git read-tree"), "{e}");
        assert!(
            e.help.as_deref().unwrap_or("").contains("deploy again"),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn not_a_repository_is_a_clear_error() {
        let tmp = TempDir::new();
        let copy = tmp.path().join("copy");
        std::fs::create_dir(&copy).unwrap();
        let e = sync(tmp.path(), &copy).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::BuildFailed);
        assert!(e.message.contains("cannot copy the working tree"), "{e}");
        assert!(e.message.contains("is not inside a git repository"), "{e}");
        assert!(
            e.help.as_deref().unwrap_or("").contains("inside one"),
            "{e:?}"
        );
    }

    #[test]
    fn claims_skip_copies_in_use_and_prune_keeps_one_spare() {
        let tmp = TempDir::new();
        let sources = Sources::new(tmp.path().join("src"));
        let svc: ServiceId = "shop.cart".parse().unwrap();
        let none = HashSet::new();

        let a = sources.claim(&svc, &none, false).unwrap();
        let b = sources.claim(&svc, &none, false).unwrap();
        assert_ne!(a.dir, b.dir, "two deploys under way never share a copy");
        let (a_dir, b_dir) = (a.dir.clone(), b.dir.clone());
        std::fs::write(index_of(&a_dir), "").unwrap();
        drop(a);
        drop(b);

        // A running instance holds `a`; a new deploy gets `b`, never `a`.
        let running: HashSet<PathBuf> = [a_dir.clone()].into();
        let c = sources.claim(&svc, &running, false).unwrap();
        assert_eq!(c.seed, None, "no caches to carry over, no seed");
        assert_eq!(c.dir, b_dir);
        drop(c);

        // Three free copies: prune keeps the most recently used one.
        let d = sources
            .claim(&svc, &[a_dir.clone(), b_dir.clone()].into(), false)
            .unwrap();
        let d_dir = d.dir.clone();
        drop(d);
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(index_of(&b_dir), "").unwrap();
        sources.prune(&none);
        assert!(b_dir.exists(), "the most recently used copy stays");
        assert!(!a_dir.exists() && !d_dir.exists());
        assert!(!index_of(&a_dir).exists());

        // The spare ages out when no deploy has used it for a week, and the service folder goes
        // with its last copy.
        let week_ago = SystemTime::now() - SPARE_MAX_AGE - std::time::Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(index_of(&b_dir))
            .unwrap()
            .set_modified(week_ago)
            .unwrap();
        sources.prune(&[b_dir.clone()].into());
        assert!(b_dir.exists(), "a copy in use never goes");
        sources.prune(&none);
        assert!(!b_dir.exists() && !index_of(&b_dir).exists());
        assert!(!tmp.path().join("src/shop.cart").exists());
    }
}
