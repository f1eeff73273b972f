//! Baseline follows production: a baseline service with `follow = "<ref>"` in
//! `lane-workspace.toml` runs exactly the commit that ref names (a working copy of it, not the
//! checkout's working tree), is rolled forward when the ref moves (the agent watches the refs;
//! `lane baseline sync` fetches and checks now), picks the newest release tag by version order,
//! and reports drift, with the old version serving on, when a roll-forward fails to build.
//! Real git repositories (an "upstream" and a clone of it), real processes, the real router.

mod common;
mod load;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::TestEnv;
use serde_json::Value;

/// A `lane.toml` for `demo.b` whose sample service answers with `name` (so a reply tells which
/// commit serves), with `build` as its build command.
fn manifest(env: &TestEnv, name: &str, build: &str) -> String {
    format!(
        "app = \"demo\"\nproc = \"b\"\n\n[build]\ncommand = \"{build}\"\n\n\
         [run]\ncommand = \"'{}' sample-service --app demo --name {name} --port {{port}}\"\n\n\
         [health]\nhttp = \"/healthz\"\ntimeout = \"20s\"\n",
        env.bin.display()
    )
}

const BUILD: &str = "echo building && touch built.txt";

/// Commits `lane.toml` answering `name` in `repo`; returns the commit.
fn commit_version(env: &TestEnv, repo: &Path, name: &str, build: &str) -> String {
    std::fs::write(repo.join("lane.toml"), manifest(env, name, build)).unwrap();
    env.git(repo, &["commit", "-qam", name]);
    env.git(repo, &["rev-parse", "HEAD"])
}

/// An upstream repository (production's) and the baseline's checkout, a clone of it.
fn upstream_and_clone(env: &TestEnv) -> (PathBuf, PathBuf) {
    let upstream = env.repo("upstream", &manifest(env, "v1", BUILD));
    let checkout = env.root.join("repos").join("b");
    env.git(
        &env.root.join("repos"),
        &["clone", "-q", upstream.to_str().unwrap(), "b"],
    );
    (upstream, checkout)
}

fn workspace(env: &TestEnv, follow: &str) -> String {
    let ws = env.root.join("repos").join("lane-workspace.toml");
    std::fs::write(
        &ws,
        format!("[[service]]\npath = \"b\"\nfollow = \"{follow}\"\n"),
    )
    .unwrap();
    ws.to_str().unwrap().to_owned()
}

/// What baseline `demo.b` answers through the router (its first word: the version's name).
fn served(env: &TestEnv) -> String {
    let reply = common::http_get(env.router(), "b.demo.localhost", "/", &[]);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.served_by(), ["demo.b@baseline"], "{reply:?}");
    reply
        .body
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn sync_row(status: &Value) -> Value {
    let rows = status["baseline_sync"]
        .as_array()
        .unwrap_or_else(|| panic!("status has baseline_sync: {status:#}"));
    assert_eq!(rows.len(), 1, "{status:#}");
    rows[0].clone()
}

/// Waits until baseline runs `commit` in sync, and the router serves `name`.
fn wait_rolled(env: &TestEnv, commit: &str, name: &str) {
    env.wait_for(
        &format!("baseline rolled forward to {name} ({commit})"),
        Duration::from_secs(60),
        || {
            let row = sync_row(&env.status());
            (row["running"] == commit && row["drift"] == "in_sync").then_some(())
        },
    );
    assert_eq!(served(env), name);
}

#[test]
fn baseline_follows_a_moving_ref_then_the_newest_release_tag() {
    let env = TestEnv::new("follow-ref", 170);
    let (upstream, checkout) = upstream_and_clone(&env);
    let v1 = env.git(&upstream, &["rev-parse", "HEAD"]);
    // The checkout's working tree has an edit nobody committed: baseline never runs it.
    std::fs::write(checkout.join("lane.toml"), manifest(&env, "dirty", BUILD)).unwrap();
    let ws = workspace(&env, "origin/main");
    env.ok(&["baseline", "up", "--file", &ws]);
    assert_eq!(
        served(&env),
        "v1",
        "the commit origin/main names, not the working tree"
    );
    let row = sync_row(&env.status());
    assert_eq!(row["service"], "demo.b");
    assert_eq!(row["follows"], "origin/main");
    assert_eq!(row["production"], v1.as_str());
    assert_eq!(row["running"], v1.as_str());
    assert_eq!(row["drift"], "in_sync");
    assert!(row["last_sync"].as_u64().is_some(), "{row:#}");
    let base = env.instance("baseline", "demo.b").unwrap();
    assert_eq!(base["version"]["commit"], v1.as_str(), "{base:#}");
    assert_eq!(base["version"]["branch"], "origin/main", "{base:#}");
    let first_pid = base["placement"]["pid"].as_u64().unwrap() as u32;

    // Production moves (a commit on upstream main): `lane baseline sync` fetches and rolls.
    let v2 = commit_version(&env, &upstream, "v2", BUILD);
    let out = env.ok(&["baseline", "sync", "--json"]);
    let rows = out.json();
    assert_eq!(rows[0]["running"], v2.as_str(), "{out}");
    assert_eq!(rows[0]["production"], v2.as_str(), "{out}");
    assert_eq!(rows[0]["drift"], "in_sync", "{out}");
    assert_eq!(served(&env), "v2");
    assert!(
        !common::alive(first_pid),
        "the replaced baseline version is stopped"
    );
    let text = env.ok(&["baseline", "sync"]);
    assert!(
        text.stdout.contains("FOLLOWING SERVICE") && text.stdout.contains("in_sync"),
        "{text}"
    );

    // The ref moves under the agent (a fetch of the developer's own): the watch rolls forward
    // without any lane command.
    let v3 = commit_version(&env, &upstream, "v3", BUILD);
    env.git(&checkout, &["fetch", "-q", "origin"]);
    wait_rolled(&env, &v3, "v3");

    // Now production is the newest release tag.
    let t193 = commit_version(&env, &upstream, "t193", BUILD);
    env.git(&upstream, &["tag", "v1.9.3"]);
    env.git(&upstream, &["tag", "not-a-release"]);
    let ws = workspace(&env, "refs/tags/v*");
    env.git(&checkout, &["fetch", "-q", "--tags", "origin"]);
    env.ok(&["baseline", "up", "--file", &ws]);
    assert_eq!(served(&env), "t193");
    let row = sync_row(&env.status());
    assert_eq!(row["production"], t193.as_str(), "{row:#}");
    assert_eq!(row["follows"], "refs/tags/v* (v1.9.3)", "{row:#}");

    // v1.10.0 is newer than v1.9.3 by version order (not by text): rolled forward on sync.
    let t1100 = commit_version(&env, &upstream, "t1100", BUILD);
    env.git(&upstream, &["tag", "-a", "-m", "release", "v1.10.0"]);
    let out = env.ok(&["baseline", "sync", "--json"]);
    assert_eq!(out.json()[0]["running"], t1100.as_str(), "{out}");
    assert_eq!(served(&env), "t1100");

    // A tag that sorts older (v1.2.0), though on a newer commit, is ignored, by the watch…
    commit_version(&env, &upstream, "t120", BUILD);
    env.git(&upstream, &["tag", "v1.2.0"]);
    env.git(&checkout, &["fetch", "-q", "--tags", "origin"]);
    std::thread::sleep(Duration::from_millis(1500));
    // …and by sync.
    let out = env.ok(&["baseline", "sync", "--json"]);
    let row = &out.json()[0];
    assert_eq!(row["running"], t1100.as_str(), "{out}");
    assert_eq!(row["production"], t1100.as_str(), "{out}");
    assert_eq!(row["drift"], "in_sync", "{out}");
    assert_eq!(row["follows"], "refs/tags/v* (v1.10.0)", "{out}");
    assert_eq!(served(&env), "t1100");
    env.finish();
}

#[test]
fn a_roll_forward_that_fails_to_build_keeps_the_old_version_serving_and_says_why() {
    let env = TestEnv::new("follow-broken", 171);
    let (upstream, checkout) = upstream_and_clone(&env);
    let v1 = env.git(&upstream, &["rev-parse", "HEAD"]);
    let ws = workspace(&env, "origin/main");
    env.ok(&["baseline", "up", "--file", &ws]);
    assert_eq!(served(&env), "v1");
    let router = env.router();
    let load = load::Load::start(router, "b.demo.localhost", &[], 1, 1);

    // Production's next commit does not build.
    let broken = commit_version(
        &env,
        &upstream,
        "broken",
        "echo compiling && echo error: boom in main.rs >&2 && exit 3",
    );
    let out = env.run(&["baseline", "sync", "--json"]);
    assert_eq!(out.code, 6, "a sync that leaves drift exits 6: {out}");
    let row = &out.json()[0];
    assert_eq!(row["drift"], "build_failed", "{out}");
    assert_eq!(row["running"], v1.as_str(), "{out}");
    assert_eq!(row["production"], broken.as_str(), "{out}");
    let reason = row["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("error: boom in main.rs") && reason.contains("failed"),
        "the reason has the build's last lines: {reason}"
    );
    // Asked again, sync tries the commit again, with progress and the build's output.
    let text = env.run(&["baseline", "sync"]);
    assert_eq!(text.code, 6, "{text}");
    assert!(
        text.stderr.contains("fetching origin/main")
            && text.stderr.contains("rolling forward")
            && text.stderr.contains("error: boom in main.rs"),
        "{text}"
    );
    assert!(
        text.stdout.contains("build_failed") && text.stdout.contains("boom in main.rs"),
        "{text}"
    );
    // The old version serves on, and every request through the router succeeded.
    assert_eq!(served(&env), "v1");
    let tally = load.stop();
    assert!(tally.ok > 10, "{tally:?}");
    assert_eq!(tally.failures.len(), 0, "{:#?}", tally.failures);
    assert_eq!(
        tally.served_by.keys().collect::<Vec<_>>(),
        ["demo.b@baseline"]
    );

    // The status shows it, in JSON and in words.
    let status = env.status();
    let row = sync_row(&status);
    assert_eq!(row["drift"], "build_failed", "{status:#}");
    assert_eq!(row["running"], v1.as_str());
    let text = env.ok(&["status"]);
    assert!(
        text.stdout.contains("build_failed") && text.stdout.contains("boom in main.rs"),
        "{text}"
    );
    let ls = env.ok(&["ls"]);
    assert!(
        ls.stdout.contains("FOLLOWING SERVICE") && ls.stdout.contains("build_failed"),
        "{ls}"
    );

    // The watch does not try the broken commit again on its own; a fix rolls forward.
    let fixed = commit_version(&env, &upstream, "fixed", BUILD);
    env.git(&checkout, &["fetch", "-q", "origin"]);
    wait_rolled(&env, &fixed, "fixed");
    let row = sync_row(&env.status());
    assert!(row.get("reason").is_none(), "{row:#}");
    env.finish();
}

#[test]
fn a_follow_that_does_not_resolve_is_a_clear_error() {
    let env = TestEnv::new("follow-invalid", 172);
    let (_upstream, _checkout) = upstream_and_clone(&env);
    let ws = workspace(&env, "origin/*");
    let out = env.run(&["baseline", "up", "--file", &ws]);
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stderr
            .contains("lane-workspace.toml:3:10: service.follow: `origin/*`"),
        "{out}"
    );
    let ws = workspace(&env, "origin/no-such-branch");
    let out = env.run(&["baseline", "up", "--file", &ws]);
    assert_ne!(out.code, 0, "{out}");
    assert!(
        out.stderr
            .contains("`origin/no-such-branch` does not resolve to a commit"),
        "{out}"
    );
    let row = sync_row(&env.status());
    assert_eq!(row["drift"], "unknown", "{row:#}");
    env.finish();
}
