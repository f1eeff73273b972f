//! `lane deploy` from a branch of a real git repository.

mod common;

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
    assert!(
        repo.join("built.txt").exists(),
        "the build command ran in the repo"
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
    let pid = inst["pid"].as_u64().expect("a pid") as u32;
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
    let old_pid = first["pid"].as_u64().unwrap() as u32;
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
