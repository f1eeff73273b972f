//! `lane deploy` from a branch of a real git repository.

mod common;

use std::time::Duration;

use common::{TestEnv, sample_manifest};

#[test]
fn deploy_from_a_branch_shows_lane_version_owner_and_health() {
    let env = TestEnv::new("deploy-branch", 1);
    let repo = env.repo("b", &sample_manifest(&env.bin, "b", None, ""));
    let commit = env.branch(&repo, "feature-x-branch");
    let version = format!("feature-x-branch@{}", &commit[..8]);

    let out = env.ok_in(&repo, &["deploy", "--lane", "feature-x"]);
    assert!(
        out.stdout.contains(&version) && out.stdout.contains("feature-x"),
        "deploy names the version and lane:\n{out}"
    );
    // Built and run in a working copy of the repo in the state dir, not in the repo itself.
    let inst = env.instance("feature-x", "demo.b").expect("instance");
    let source =
        std::path::PathBuf::from(inst["placement"]["source"].as_str().expect("a source dir"));
    assert!(source.starts_with(&env.home), "{inst:#}");
    assert!(
        source.join("built.txt").exists() && source.join("lane.toml").exists(),
        "the build ran in the working copy: {inst:#}"
    );
    assert!(
        !repo.join("built.txt").exists(),
        "nothing is built in the repo"
    );

    // `lane ls --json`
    let lane = env.lane("feature-x").expect("lane feature-x is listed");
    assert_eq!(lane["owner"], "alice@example.com", "{lane:#}");
    assert_eq!(
        lane["services"]["demo.b"]["version"],
        version.as_str(),
        "{lane:#}"
    );
    assert_eq!(lane["services"]["demo.b"]["branch"], "feature-x-branch");
    assert_eq!(lane["services"]["demo.b"]["commit"], commit.as_str());
    let inst = &lane["instances"][0];
    assert_eq!(inst["state"], "healthy", "{lane:#}");
    assert_eq!(inst["version"]["version"], version.as_str());
    let pid = inst["placement"]["pid"].as_u64().expect("a pid") as u32;
    assert!(common::alive(pid));

    // `lane status --json`, run in the repo: the workspace and the same lane.
    let status = env.ok_in(&repo, &["status", "--json"]).json();
    assert_eq!(status["workspace"]["service"], "demo.b", "{status:#}");
    assert_eq!(status["workspace"]["branch"], "feature-x-branch");
    assert_eq!(status["workspace"]["commit"], commit.as_str());
    let inst = common::instance_in(&status["status"], "feature-x", "demo.b").expect("instance");
    assert_eq!(inst["state"], "healthy");
    assert_eq!(inst["version"]["owner"], "alice@example.com");

    // The lane is reachable through the router.
    let router = env.router();
    let reply = common::http_get(router, "b.demo.localhost", "/", &[("x-lane", "feature-x")]);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.served_by(), ["demo.b@feature-x"], "{reply:?}");

    env.finish();
    assert!(
        !common::alive(pid),
        "the version's process is gone after `lane down`"
    );
}

#[test]
fn deploying_again_replaces_the_version() {
    let env = TestEnv::new("redeploy", 25);
    let repo = env.repo("b", &sample_manifest(&env.bin, "b", None, ""));
    env.branch(&repo, "feature-x-branch");
    let first = env
        .ok_in(&repo, &["deploy", "--lane", "feature-x", "--json"])
        .json();
    let old_pid = first["placement"]["pid"].as_u64().unwrap() as u32;
    std::fs::write(repo.join("change.txt"), "v2").unwrap();
    env.git(&repo, &["add", "change.txt"]);
    env.git(&repo, &["commit", "-q", "-m", "v2"]);
    let commit = env.git(&repo, &["rev-parse", "HEAD"]);
    let second = env
        .ok_in(&repo, &["deploy", "--lane", "feature-x", "--json"])
        .json();
    assert_eq!(
        second["version"]["version"],
        format!("feature-x-branch@{}", &commit[..8]).as_str()
    );
    assert!(!common::alive(old_pid), "the old version was stopped");
    let lane = env.lane("feature-x").unwrap();
    assert_eq!(lane["instances"].as_array().unwrap().len(), 1, "{lane:#}");
    assert_eq!(lane["services"]["demo.b"]["commit"], commit.as_str());
    env.finish();
}

/// The version a lane runs is the working tree as it was at deploy time: switching branch, editing
/// and deploying elsewhere from the same checkout leave it alone, even when it is restarted.
#[test]
fn a_deployed_version_is_a_snapshot_of_the_working_tree() {
    let env = TestEnv::new("snapshot", 30);
    // The proc's name in its reply comes from `version.txt` in its working directory.
    let manifest = format!(
        "app = \"demo\"\nproc = \"b\"\n\n[build]\ncommand = \"cp version.txt built.txt\"\n\n\
         [run]\ncommand = \"'{}' sample-service --app demo --name b-$(cat built.txt) --port {{port}}\"\n\n\
         [health]\nhttp = \"/healthz\"\ntimeout = \"20s\"\n",
        env.bin.display()
    );
    let repo = env.repo("b", &manifest);
    let body = |lane: &str| {
        let reply = common::http_get(env.router(), "b.demo.localhost", "/", &[("x-lane", lane)]);
        assert_eq!(reply.status, 200, "{reply:?}");
        reply.body
    };

    env.branch(&repo, "one");
    std::fs::write(repo.join("version.txt"), "one").unwrap();
    env.git(&repo, &["add", "version.txt"]);
    env.git(&repo, &["commit", "-q", "-m", "one"]);
    env.ok_in(&repo, &["deploy", "--lane", "lane-one"]);
    assert!(body("lane-one").contains("b-one"), "{}", body("lane-one"));

    // Another branch, deployed into another lane from the same checkout.
    env.branch(&repo, "two");
    std::fs::write(repo.join("version.txt"), "two").unwrap();
    env.git(&repo, &["commit", "-q", "-am", "two"]);
    env.ok_in(&repo, &["deploy", "--lane", "lane-two"]);
    assert!(body("lane-two").contains("b-two"), "{}", body("lane-two"));
    assert!(body("lane-one").contains("b-one"), "{}", body("lane-one"));

    // Uncommitted edits are deployed too, and the developer's checkout is left as it was.
    std::fs::write(repo.join("version.txt"), "three").unwrap();
    let out = env.ok_in(&repo, &["deploy", "--lane", "lane-three"]);
    let commit = env.git(&repo, &["rev-parse", "HEAD"]);
    let dirty = format!("two@{}+dirty", &commit[..8]);
    assert!(out.stdout.contains(&dirty), "{out}");
    let version = |lane: &str| env.instance(lane, "demo.b").unwrap()["version"].clone();
    assert_eq!(version("lane-three")["version"], dirty.as_str());
    assert_eq!(version("lane-three")["dirty"], true);
    assert_eq!(
        version("lane-two")["version"],
        format!("two@{}", &commit[..8]).as_str()
    );
    assert!(
        body("lane-three").contains("b-three"),
        "{}",
        body("lane-three")
    );
    assert_eq!(
        env.git(&repo, &["status", "--porcelain"]),
        "M version.txt",
        "the developer's index and files are untouched"
    );

    // lane-one's version, killed, comes back as branch one's build, from its own copy.
    let one = env.instance("lane-one", "demo.b").expect("instance");
    let pid = one["placement"]["pid"].as_u64().unwrap() as u32;
    common::kill(pid, "KILL");
    env.wait_for(
        "lane-one's version to be restarted",
        Duration::from_secs(15),
        || {
            let i = env.instance("lane-one", "demo.b")?;
            (i["placement"]["pid"].as_u64()? as u32 != pid && i["state"] == "healthy").then_some(())
        },
    );
    assert!(body("lane-one").contains("b-one"), "{}", body("lane-one"));

    // Three versions, three copies; removing a lane frees its copy, and one spare is kept.
    let sources = |lane: &str| env.instance(lane, "demo.b").unwrap()["placement"]["source"].clone();
    let copies = [
        sources("lane-one"),
        sources("lane-two"),
        sources("lane-three"),
    ];
    assert!(copies[0] != copies[1] && copies[1] != copies[2] && copies[0] != copies[2]);
    env.ok(&["rm", "lane-one"]);
    env.ok(&["rm", "lane-two"]);
    let left: Vec<_> = std::fs::read_dir(env.home.join("src/demo.b"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .collect();
    assert_eq!(left.len(), 2, "lane-three's copy and one spare: {left:?}");
    env.finish();
}

/// In a monorepo, `lane deploy` run anywhere inside a service's directory deploys that service:
/// the nearest `lane.toml` up to the repository root names it, the copy holds the whole repository
/// (shared code included) and the commands run in the service's directory within it.
#[test]
fn a_monorepo_service_deploys_from_its_directory() {
    let env = TestEnv::new("monorepo", 31);
    let repo = env.repo("mono", "# the services have their own\n");
    env.git(&repo, &["rm", "-q", "lane.toml"]);
    let service = repo.join("services/b");
    std::fs::create_dir_all(service.join("src")).unwrap();
    std::fs::create_dir_all(repo.join("shared")).unwrap();
    std::fs::write(repo.join("shared/version.txt"), "shared-one").unwrap();
    std::fs::write(
        service.join("lane.toml"),
        format!(
            "app = \"demo\"\nproc = \"b\"\n\n[build]\ncommand = \"cp ../../shared/version.txt built.txt\"\n\n\
             [run]\ncommand = \"'{}' sample-service --app demo --name b-$(cat built.txt) --port {{port}}\"\n\n\
             [health]\nhttp = \"/healthz\"\ntimeout = \"20s\"\n",
            env.bin.display()
        ),
    )
    .unwrap();
    env.git(&repo, &["add", "."]);
    env.git(&repo, &["commit", "-q", "-m", "services"]);

    // From a directory below the service's.
    let out = env.ok_in(
        &service.join("src"),
        &["deploy", "--lane", "mono", "--json"],
    );
    let inst = out.json();
    assert_eq!(inst["service"], "demo.b", "{inst:#}");
    assert!(
        !inst["version"]["version"]
            .as_str()
            .unwrap()
            .ends_with("+dirty")
    );
    let source = std::path::PathBuf::from(inst["placement"]["source"].as_str().expect("a copy"));
    assert!(source.join("shared/version.txt").exists(), "{inst:#}");
    let reply = common::http_get(env.router(), "b.demo.localhost", "/", &[("x-lane", "mono")]);
    assert!(reply.body.contains("b-shared-one"), "{reply:?}");

    // `lane status` there names the service too.
    let status = env
        .ok_in(&service.join("src"), &["status", "--json"])
        .json();
    assert_eq!(status["workspace"]["service"], "demo.b", "{status:#}");
    let ws = &status["workspace"];
    assert!(
        ws["root"]
            .as_str()
            .unwrap()
            .ends_with("repos/mono/services/b"),
        "{ws:#}"
    );
    assert!(
        ws["repo"].as_str().unwrap().ends_with("repos/mono"),
        "{ws:#}"
    );

    // Outside every service's directory, but in the repository: a clear error.
    let out = env.run_in(&repo.join("shared"), &["deploy", "--lane", "mono"], &[]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("no lane.toml in"), "{out}");
    env.finish();
}

/// A lane's second deploy cannot build in the copy its running version uses: the new copy starts
/// with the build caches `lane.toml` names, copied from that one, so the build is incremental
/// (warm), not from scratch.
#[test]
fn a_redeploy_builds_incrementally_in_a_new_copy() {
    let env = TestEnv::new("warm-build", 33);
    let manifest = format!(
        "app = \"demo\"\nproc = \"b\"\n\n[build]\ncache = [\"out\"]\ncommand = \"mkdir -p out; if [ -f out/marker ]; \
         then echo warm > out/state; else echo cold > out/state; touch out/marker; fi\"\n\n\
         [run]\ncommand = \"'{}' sample-service --app demo --name b-$(cat out/state) --port {{port}}\"\n\n\
         [health]\nhttp = \"/healthz\"\ntimeout = \"20s\"\n",
        env.bin.display()
    );
    let repo = env.repo("b", &manifest);
    std::fs::write(repo.join(".gitignore"), "out/\n").unwrap();
    env.git(&repo, &["commit", "-q", "-am", "ignore the build outputs"]);
    let body = || {
        let reply = common::http_get(env.router(), "b.demo.localhost", "/", &[("x-lane", "warm")]);
        assert_eq!(reply.status, 200, "{reply:?}");
        reply.body
    };
    let source = || env.instance("warm", "demo.b").unwrap()["placement"]["source"].clone();

    env.ok_in(&repo, &["deploy", "--lane", "warm"]);
    assert!(
        body().contains("b-cold"),
        "the first build is from scratch: {}",
        body()
    );
    let first = source();
    let out = env.ok_in(&repo, &["deploy", "--lane", "warm"]);
    assert_ne!(
        source(),
        first,
        "a new copy: the first one's version was running"
    );
    assert!(body().contains("b-warm"), "{}\n{out}", body());
    // The third reuses the first copy, freed when the second replaced its version.
    env.ok_in(&repo, &["deploy", "--lane", "warm"]);
    assert_eq!(source(), first);
    assert!(body().contains("b-warm"), "{}", body());
    env.finish();
}
