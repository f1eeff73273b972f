//! Against real git repositories in temporary directories: a plain repository, a monorepo, a
//! linked worktree, a submodule, a detached `HEAD`, no commits yet, a repository another user owns.

use super::*;

/// A fresh directory under the system temp dir (symlinks resolved, as git reports paths), with a
/// space in its name; deleted on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p =
            std::env::temp_dir().join(format!("lane-workspace {name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p.canonicalize().unwrap())
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

/// git as the test's setup runs it (not through the code under test); panics when it fails.
fn git_in(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(["-c", "user.email=t@t", "-c", "user.name=t"])
        // Submodules cloned from a local path.
        .args(["-c", "protocol.file.allow=always"])
        .args(args)
        .current_dir(dir)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?} in {dir:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

const MANIFEST: &str = "app = \"demo\"\nproc = \"b\"\n[run]\ncommand = \"true\"\n";

/// A repository `name` under `root` on branch `main`, with `lane.toml` at its root, committed.
fn repo(root: &Path, name: &str) -> PathBuf {
    let repo = root.join(name);
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("lane.toml"), MANIFEST).unwrap();
    git_in(&repo, &["init", "-q", "-b", "main"]);
    git_in(&repo, &["add", "."]);
    git_in(&repo, &["commit", "-q", "-m", "one"]);
    repo
}

#[test]
fn a_plain_repository_from_its_root_and_below() {
    let tmp = TempDir::new("plain");
    let root = repo(tmp.path(), "b");
    let head = git_in(&root, &["rev-parse", "HEAD"]);
    std::fs::create_dir_all(root.join("src/deep")).unwrap();
    for start in [root.clone(), root.join("src/deep")] {
        let ws = Workspace::discover(&start).unwrap();
        assert_eq!(ws.repo.root, root);
        assert_eq!(ws.repo.git_dir, root.join(".git"));
        assert_eq!(ws.repo.common_dir, root.join(".git"));
        assert_eq!(
            ws.repo.head,
            Head {
                branch: Some("main".into()),
                commit: Some(head.clone())
            }
        );
        assert_eq!(ws.service_dir, root);
        assert_eq!(ws.manifest.service.to_string(), "demo.b");
        assert_eq!(
            ws.repo.branch_and_commit().unwrap(),
            ("main".into(), head.clone())
        );
    }
    // A file named HEAD does not confuse the revision with a path.
    std::fs::write(root.join("HEAD"), "not a ref").unwrap();
    assert_eq!(Repo::discover(&root).unwrap().head.commit, Some(head));
    assert_eq!(services_in(&root).unwrap(), std::slice::from_ref(&root));
    assert_eq!(
        watch_paths(&root, Some(&Repo::discover(&root).unwrap())),
        [
            WatchPath::new(&root, false),
            WatchPath::new(&root.join(".git"), false),
            WatchPath::new(&root.join(".git/refs"), true),
        ]
    );
}

#[test]
fn a_monorepo_service_is_the_nearest_lane_toml_up_to_the_root() {
    let tmp = TempDir::new("mono");
    let root = repo(tmp.path(), "mono");
    git_in(&root, &["rm", "-q", "lane.toml"]);
    for dir in ["services/b/src", "services/c", "shared", "build/out"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::write(root.join("services/b/lane.toml"), MANIFEST).unwrap();
    std::fs::write(
        root.join("services/c/lane.toml"),
        MANIFEST.replace("\"b\"", "\"c\""),
    )
    .unwrap();
    std::fs::write(root.join("build/out/lane.toml"), MANIFEST).unwrap();
    std::fs::write(root.join(".gitignore"), "build/\n").unwrap();
    git_in(&root, &["add", "services/b", ".gitignore"]);
    git_in(&root, &["commit", "-q", "-m", "b"]);

    let ws = Workspace::discover(&root.join("services/b/src")).unwrap();
    assert_eq!(ws.service_dir, root.join("services/b"));
    assert_eq!(ws.repo.root, root);
    assert_eq!(ws.manifest.service.to_string(), "demo.b");

    // Outside every service's directory: where it looked.
    let e = Workspace::discover(&root.join("shared")).unwrap_err();
    match &e {
        WorkspaceError::NoManifest { start, root: r } => {
            assert_eq!(start, &root.join("shared"));
            assert_eq!(r, &root);
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("no lane.toml in"), "{e}");
    assert!(e.to_string().contains("repository root"), "{e}");
    assert!(e.help().is_some());

    // Tracked (b) and untracked (c) services; ignored (build/) ones are not.
    assert_eq!(
        services_in(&root).unwrap(),
        [root.join("services/b"), root.join("services/c")]
    );
    assert_eq!(
        services_in(&root.join("services")).unwrap(),
        [root.join("services/b"), root.join("services/c")]
    );
    assert_eq!(
        manifest_dir(&root.join("services/c")),
        Some(root.join("services/c"))
    );
    assert_eq!(manifest_dir(&root.join("shared")), None);
}

#[test]
fn a_linked_worktree_has_its_own_head_and_shares_the_common_dir() {
    let tmp = TempDir::new("worktree");
    let main = repo(tmp.path(), "main");
    let wt = tmp.path().join("linked wt");
    git_in(
        &main,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "feature",
            wt.to_str().unwrap(),
        ],
    );
    assert!(
        wt.join(".git").is_file(),
        "a linked worktree's .git is a file"
    );

    let repo = Repo::discover(&wt).unwrap();
    assert_eq!(repo.root, wt);
    assert_eq!(repo.common_dir, main.join(".git"));
    // git names the worktree's git dir after the directory (spaces become dashes).
    assert_eq!(
        repo.git_dir.parent(),
        Some(main.join(".git/worktrees").as_path())
    );
    assert!(repo.git_dir.join("HEAD").is_file());
    assert_eq!(repo.head.branch.as_deref(), Some("feature"));
    // What to watch: this worktree's HEAD, and the shared refs.
    let watched = repo.watch_paths();
    assert!(
        watched.contains(&WatchPath::new(&repo.git_dir, false)),
        "{watched:?}"
    );
    assert!(
        watched.contains(&WatchPath::new(&main.join(".git/refs"), true)),
        "{watched:?}"
    );
    assert!(watched.contains(&WatchPath::new(&main.join(".git"), false)));
    assert!(is_relevant(&repo.git_dir.join("HEAD")));

    // A branch switch in the worktree is its own; the main checkout stays.
    git_in(&wt, &["switch", "-q", "-c", "other"]);
    assert_eq!(
        Repo::discover(&wt).unwrap().head.branch.as_deref(),
        Some("other")
    );
    assert_eq!(
        Repo::discover(&main).unwrap().head.branch.as_deref(),
        Some("main")
    );
    let ws = Workspace::discover(&wt).unwrap();
    assert_eq!(ws.service_dir, wt);
}

#[test]
fn a_submodule_is_a_repository_of_its_own() {
    let tmp = TempDir::new("submodule");
    let sub_origin = repo(tmp.path(), "sub origin");
    let top = repo(tmp.path(), "super");
    git_in(
        &top,
        &[
            "submodule",
            "add",
            "-q",
            sub_origin.to_str().unwrap(),
            "sub",
        ],
    );
    let sub = top.join("sub");
    assert!(sub.join(".git").is_file(), "a submodule's .git is a file");

    let repo = Repo::discover(&sub).unwrap();
    assert_eq!(repo.root, sub);
    assert_eq!(repo.git_dir, top.join(".git/modules/sub"));
    assert_eq!(repo.common_dir, top.join(".git/modules/sub"));
    assert_eq!(
        repo.head.commit,
        Some(git_in(&sub_origin, &["rev-parse", "HEAD"]))
    );
    let ws = Workspace::discover(&sub).unwrap();
    assert_eq!(ws.service_dir, sub, "the submodule's own lane.toml");
    assert!(
        repo.watch_paths()
            .contains(&WatchPath::new(&top.join(".git/modules/sub"), false))
    );
}

#[test]
fn a_detached_head_has_no_branch() {
    let tmp = TempDir::new("detached");
    let root = repo(tmp.path(), "b");
    git_in(&root, &["checkout", "-q", "--detach"]);
    let repo = Repo::discover(&root).unwrap();
    assert_eq!(repo.head.branch, None);
    assert_eq!(repo.head.branch_name(), "HEAD");
    let (branch, commit) = repo.branch_and_commit().unwrap();
    assert_eq!(branch, "HEAD");
    assert_eq!(commit, git_in(&root, &["rev-parse", "HEAD"]));
}

#[test]
fn a_repository_without_commits_has_a_branch_but_no_commit() {
    let tmp = TempDir::new("empty");
    let root = tmp.path().join("empty");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("lane.toml"), MANIFEST).unwrap();
    git_in(&root, &["init", "-q", "-b", "trunk"]);
    let ws = Workspace::discover(&root).unwrap();
    assert_eq!(ws.repo.root, root);
    assert_eq!(ws.repo.git_dir, root.join(".git"));
    assert_eq!(
        ws.repo.head,
        Head {
            branch: Some("trunk".into()),
            commit: None
        }
    );
    let e = ws.repo.branch_and_commit().unwrap_err();
    assert!(matches!(e, WorkspaceError::NoCommits { .. }), "{e:?}");
    assert!(e.to_string().contains("has no commits yet"), "{e}");
    assert!(
        e.help()
            .is_some_and(|h| h.contains("commit something first"))
    );
}

#[test]
fn outside_a_repository_and_in_a_missing_directory() {
    let tmp = TempDir::new("plain dir");
    // The temp dir itself is in no repository (a precondition of this test).
    let e = Repo::discover(tmp.path()).unwrap_err();
    assert!(matches!(e, WorkspaceError::NotARepository { .. }), "{e:?}");
    assert!(
        e.to_string().contains("is not inside a git repository"),
        "{e}"
    );
    assert_eq!(manifest_dir(tmp.path()), None);
    std::fs::write(tmp.path().join("lane.toml"), MANIFEST).unwrap();
    assert_eq!(manifest_dir(tmp.path()), Some(tmp.path().to_path_buf()));
    // No repository to list services from: the folder's own lane.toml still counts.
    assert_eq!(services_in(tmp.path()).unwrap(), [tmp.path().to_path_buf()]);

    let e = Repo::discover(&tmp.path().join("no such dir")).unwrap_err();
    assert!(matches!(e, WorkspaceError::CannotRunGit { .. }), "{e:?}");
}

#[test]
fn a_broken_lane_toml_keeps_its_position() {
    let tmp = TempDir::new("broken");
    let root = repo(tmp.path(), "b");
    std::fs::write(
        root.join("lane.toml"),
        "app = \"demo\"\nproc = \"B_x\"\n[run]\ncommand = \"true\"\n",
    )
    .unwrap();
    let e = Workspace::discover(&root).unwrap_err();
    match &e {
        WorkspaceError::Manifest(m) => {
            assert_eq!((m.line, m.column), (2, 8), "{m}");
            assert_eq!(m.path, root.join("lane.toml"));
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("lane.toml:2:8"), "{e}");
}

/// git refuses a repository another user owns. Simulated by giving the repository to `nobody`,
/// which needs root; as another user, or where git is told to trust every directory
/// (`safe.directory = *`), it cannot be simulated and the test says so.
#[test]
fn a_repository_owned_by_another_user_is_dubious_ownership() {
    use std::os::unix::fs::MetadataExt as _;
    let tmp = TempDir::new("dubious");
    let root = repo(tmp.path(), "theirs");
    git_in(&root, &["config", "user.email", "theirs@example.com"]);
    std::fs::create_dir(root.join("services")).unwrap();
    if std::fs::metadata(&root).unwrap().uid() != 0 {
        eprintln!("not root: cannot give a repository to another user; not simulated");
        return;
    }
    chown_tree(&root, 65534);
    let refused = std::process::Command::new("git")
        .args(["rev-parse", "--git-dir"])
        .current_dir(&root)
        .output()
        .unwrap();
    if refused.status.success() {
        eprintln!("git trusts the repository here (safe.directory); not simulated");
        return;
    }
    let e = Repo::discover(&root).unwrap_err();
    match &e {
        WorkspaceError::DubiousOwnership { repo, hint } => {
            assert_eq!(repo, &root);
            assert!(
                hint.as_deref()
                    .is_some_and(|h| h.contains("safe.directory")),
                "{hint:?}"
            );
        }
        other => panic!("{other:?}: {other}"),
    }
    assert!(
        !e.to_string().contains("not inside a git repository"),
        "{e}"
    );
    assert!(
        e.help().is_some_and(|h| h.contains("safe.directory")),
        "{e:?}"
    );
    assert!(matches!(
        Workspace::discover(&root),
        Err(WorkspaceError::DubiousOwnership { .. })
    ));
    assert!(matches!(
        services_in(&root.join("services")),
        Err(WorkspaceError::DubiousOwnership { .. })
    ));
    // Its config is not read for the identity either.
    let me = Identity {
        config_file: None,
        login: Some("login".into()),
    };
    assert_ne!(me.owner(&root), "theirs@example.com");
}

fn chown_tree(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid)).unwrap();
    if path.is_dir() && !path.is_symlink() {
        for e in std::fs::read_dir(path).unwrap() {
            chown_tree(&e.unwrap().path(), uid);
        }
    }
}

#[test]
fn the_owner_is_the_config_s_else_the_repository_s_email_else_the_login() {
    let tmp = TempDir::new("owner");
    let root = repo(tmp.path(), "b");
    git_in(&root, &["config", "user.email", "repo-dev@example.com"]);
    let wt = tmp.path().join("wt");
    git_in(
        &root,
        &["worktree", "add", "-q", "-b", "x", wt.to_str().unwrap()],
    );

    let config = tmp.path().join("config.toml");
    std::fs::write(&config, "owner = \"configured@example.com\"\n").unwrap();
    let configured = Identity {
        config_file: Some(config),
        login: Some("login".into()),
    };
    assert_eq!(configured.owner(&root), "configured@example.com");

    let unconfigured = Identity {
        config_file: Some(tmp.path().join("no-such-config.toml")),
        login: Some("login".into()),
    };
    assert_eq!(unconfigured.owner(&root), "repo-dev@example.com");
    assert_eq!(unconfigured.owner(&wt), "repo-dev@example.com");
    assert_eq!(unconfigured.owner(&root.join("no such dir")), "login");
    let ws = Workspace::discover(&wt).unwrap();
    assert_eq!(ws.repo.root, wt);
}

#[test]
fn only_head_refs_and_manifest_matter() {
    for (path, want) in [
        ("/r/.git/HEAD", true),
        ("/r/.git/HEAD.lock", false),
        ("/r/.git/worktrees/w/HEAD", true),
        ("/r/.git/refs/heads/feature-x", true),
        ("/r/.git/refs/heads/feature-x.lock", false),
        ("/r/.git/packed-refs", true),
        ("/r/.git/index", false),
        ("/r/lane.toml", true),
        ("/r/src/main.rs", false),
    ] {
        assert_eq!(is_relevant(Path::new(path)), want, "{path}");
    }
}

#[test]
fn a_followed_ref_and_the_newest_release_tag_resolve_to_commits() {
    use lane_core::follow::Follow;
    let tmp = TempDir::new("follow");
    let upstream = repo(tmp.path(), "upstream");
    let first = git_in(&upstream, &["rev-parse", "HEAD"]);
    git_in(&upstream, &["tag", "v1.9.3"]);
    git_in(&upstream, &["commit", "-q", "--allow-empty", "-m", "two"]);
    let second = git_in(&upstream, &["rev-parse", "HEAD"]);
    // Annotated: peeled to its commit.
    git_in(&upstream, &["tag", "-a", "-m", "release", "v1.10.0"]);
    git_in(&upstream, &["commit", "-q", "--allow-empty", "-m", "three"]);
    git_in(&upstream, &["tag", "v1.2.0"]);
    git_in(&upstream, &["tag", "vnext"]);

    let tags = Follow::parse("refs/tags/v*").unwrap();
    let r = follow::resolve(&upstream, &tags).unwrap();
    assert_eq!(r.name, "v1.10.0");
    assert_eq!(r.full.as_deref(), Some("refs/tags/v1.10.0"));
    assert_eq!(r.commit, second);
    let r = follow::resolve(&upstream, &Follow::parse("refs/tags/v1.9.3").unwrap()).unwrap();
    assert_eq!(r.commit, first);
    let e = follow::resolve(&upstream, &Follow::parse("nope").unwrap()).unwrap_err();
    assert!(
        matches!(e, WorkspaceError::FollowUnresolved { .. }) && e.to_string().contains("`nope`"),
        "{e}"
    );
    // No remote: nothing to fetch.
    assert!(follow::fetch(&upstream, &tags).unwrap().is_empty());

    // A clone: `origin/main` is fetched from `origin`, a tag pattern from every remote.
    git_in(tmp.path(), &["clone", "-q", "upstream", "clone"]);
    let clone = tmp.path().join("clone");
    git_in(&upstream, &["commit", "-q", "--allow-empty", "-m", "four"]);
    let fourth = git_in(&upstream, &["rev-parse", "HEAD"]);
    let main = Follow::parse("origin/main").unwrap();
    assert_ne!(follow::resolve(&clone, &main).unwrap().commit, fourth);
    assert_eq!(follow::fetch(&clone, &main).unwrap(), ["origin"]);
    let r = follow::resolve(&clone, &main).unwrap();
    assert_eq!(
        (r.commit.as_str(), r.full.as_deref()),
        (fourth.as_str(), Some("refs/remotes/origin/main"))
    );
    assert!(
        follow::fetch(&clone, &Follow::parse("main").unwrap())
            .unwrap()
            .is_empty()
    );
    assert_eq!(follow::fetch(&clone, &tags).unwrap(), ["origin"]);
    // What the watch looks at.
    let (common, refs) = follow::ref_watch_dirs(&clone).unwrap();
    assert_eq!(refs, common.join("refs"));
    assert!(follow::is_ref_change(&common, &common.join("packed-refs")));
    assert!(follow::is_ref_change(
        &common,
        &refs.join("remotes/origin/main")
    ));
    assert!(!follow::is_ref_change(&common, &common.join("index")));
    // The commit's own lane.toml.
    let m = follow::manifest_at(&clone, &fourth).unwrap();
    assert_eq!(m.service.as_str(), "demo.b");
}
