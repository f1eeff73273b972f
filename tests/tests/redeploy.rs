//! Redeploys without a gap: a new version of a service is started and health-checked before the
//! route moves to it, and the old one is drained and stopped after; requests in flight complete,
//! and a version that fails its health check leaves the old one serving. Amid the 20 lane
//! redeploys, baseline rolls forward 5 times the way production moves it: the baseline service
//! follows `origin/main` of a real upstream repository, each roll-forward is a new upstream
//! commit, picked up by `lane baseline sync` or by the agent's ref watch after a `git fetch`.

mod common;
mod load;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{TestEnv, sample_manifest};
use serde_json::Value;

fn pid_of(v: &serde_json::Value) -> u32 {
    v["placement"]["pid"].as_u64().expect("a pid") as u32
}

/// What `b` answers to `GET /version` through the router (with `headers`): the version the agent
/// started the serving process as.
fn version_served(env: &TestEnv, headers: &[(&str, &str)], served_by: &str) -> Value {
    let reply = common::http_get(env.router(), "b.demo.localhost", "/version", headers);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.served_by(), [served_by], "{reply:?}");
    serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("{e}: {reply:?}"))
}

/// The one `baseline_sync` row of `lane status --json`.
fn sync_row(env: &TestEnv) -> Value {
    let status = env.status();
    let rows = status["baseline_sync"]
        .as_array()
        .unwrap_or_else(|| panic!("status has baseline_sync: {status:#}"));
    assert_eq!(rows.len(), 1, "{status:#}");
    rows[0].clone()
}

/// A new commit on the upstream's `main` (production moves); returns it.
fn release(env: &TestEnv, upstream: &Path, n: usize) -> String {
    std::fs::write(upstream.join("release.txt"), format!("release {n}\n")).unwrap();
    env.git(upstream, &["add", "release.txt"]);
    env.git(upstream, &["commit", "-qm", &format!("release {n}")]);
    env.git(upstream, &["rev-parse", "HEAD"])
}

#[test]
fn twenty_redeploys_and_five_baseline_roll_forwards_under_load_fail_no_request() {
    let env = TestEnv::new("redeploy-load", 174);
    // Production's repository, and the checkout baseline follows it from (a clone).
    let upstream = env.repo("upstream", &sample_manifest(&env.bin, "b", None, ""));
    let repos = env.root.join("repos");
    env.git(&repos, &["clone", "-q", upstream.to_str().unwrap(), "b"]);
    let b = repos.join("b");
    let ws = repos.join("lane-workspace.toml");
    std::fs::write(&ws, "[[service]]\npath = \"b\"\nfollow = \"origin/main\"\n").unwrap();
    env.ok(&["baseline", "up", "--file", ws.to_str().unwrap()]);
    let mut production = env.git(&upstream, &["rev-parse", "HEAD"]);
    assert_eq!(
        version_served(&env, &[], "demo.b@baseline")["commit"],
        production.as_str()
    );
    let lane_commit = env.branch(&b, "feature-x-branch");
    env.ok_in(&b, &["deploy", "--lane", "feature-x"]);
    let router = env.router();

    let lane_load = load::Load::start(router, "b.demo.localhost", &[("x-lane", "feature-x")], 2, 2);
    let base_load = load::Load::start(router, "b.demo.localhost", &[], 1, 1);
    let mut pids = vec![pid_of(&env.instance("feature-x", "demo.b").unwrap())];
    let mut rolls = Vec::new();
    for i in 0..20 {
        // A request in flight on the old version when the route switches completes.
        let slow = std::thread::spawn(move || {
            common::try_http_get(
                router,
                "b.demo.localhost",
                "/slow/1500",
                &[("x-lane", "feature-x")],
            )
        });
        std::thread::sleep(Duration::from_millis(100));
        env.ok_in(&b, &["deploy", "--lane", "feature-x"]);
        let reply = slow.join().unwrap().expect("the slow request completes");
        assert_eq!(reply.status, 200, "redeploy {i}: {reply:?}");
        assert_eq!(reply.served_by(), ["demo.b@feature-x"], "{reply:?}");
        let now = env.instance("feature-x", "demo.b").expect("the lane's b");
        assert_eq!(now["state"], "healthy", "{now:#}");
        let pid = pid_of(&now);
        assert!(!pids.contains(&pid), "redeploy {i} started a new process");
        assert!(
            !common::alive(*pids.last().unwrap()),
            "redeploy {i}: the replaced version is stopped"
        );
        pids.push(pid);
        // Production moves, 5 times in all, and baseline rolls forward to it: by
        // `lane baseline sync` (which fetches), or by the agent's ref watch after a fetch.
        if i % 4 == 3 {
            let n = rolls.len() + 1;
            let before = pid_of(&env.instance("baseline", "demo.b").unwrap());
            let commit = release(&env, &upstream, n);
            let began = Instant::now();
            let by = if n % 2 == 1 {
                let out = env.ok(&["baseline", "sync", "--json"]);
                let row = &out.json()[0];
                assert_eq!(row["running"], commit.as_str(), "{out}");
                assert_eq!(row["drift"], "in_sync", "{out}");
                "baseline sync"
            } else {
                env.git(&b, &["fetch", "-q", "origin"]);
                env.wait_for(
                    &format!("the watch rolls baseline forward to {commit}"),
                    Duration::from_secs(60),
                    || {
                        let row = sync_row(&env);
                        (row["running"] == commit.as_str() && row["drift"] == "in_sync")
                            .then_some(())
                    },
                );
                "ref watch"
            };
            let took = began.elapsed();
            let row = sync_row(&env);
            assert_eq!(row["production"], commit.as_str(), "{row:#}");
            assert_eq!(row["running"], commit.as_str(), "{row:#}");
            assert_eq!(row["drift"], "in_sync", "{row:#}");
            // The router now serves the new commit to requests without a lane…
            let served = version_served(&env, &[], "demo.b@baseline");
            assert_eq!(served["commit"], commit.as_str(), "roll {n}: {served:#}");
            assert_eq!(served["branch"], "origin/main", "{served:#}");
            // …and the lane's own version to the lane's.
            let lane = version_served(&env, &[("x-lane", "feature-x")], "demo.b@feature-x");
            assert_eq!(lane["commit"], lane_commit.as_str(), "{lane:#}");
            let after = pid_of(&env.instance("baseline", "demo.b").unwrap());
            assert_ne!(after, before, "roll {n} started a new process");
            assert!(!common::alive(before), "the replaced baseline is stopped");
            assert_ne!(commit, production);
            production = commit;
            rolls.push((by, took));
        }
    }
    assert_eq!(rolls.len(), 5);
    let lane = lane_load.stop();
    let base = base_load.stop();
    for (n, (by, took)) in rolls.iter().enumerate() {
        eprintln!(
            "baseline roll-forward {} by {by}: in sync after {took:.1?}",
            n + 1
        );
    }
    eprintln!(
        "20 lane redeploys, 5 baseline roll-forwards: lane load: {} requests, {} failed; \
         baseline load: {} requests, {} failed",
        lane.total(),
        lane.failures.len(),
        base.total(),
        base.failures.len()
    );
    assert!(lane.ok > 100, "the lane load ran: {lane:?}");
    assert!(base.ok > 50, "the baseline load ran: {base:?}");
    assert_eq!(lane.failures.len(), 0, "{:#?}", lane.failures);
    assert_eq!(base.failures.len(), 0, "{:#?}", base.failures);
    assert_eq!(
        lane.served_by.keys().collect::<Vec<_>>(),
        ["demo.b@feature-x"],
        "the lane's requests reached the lane's version only"
    );
    assert_eq!(
        base.served_by.keys().collect::<Vec<_>>(),
        ["demo.b@baseline"],
        "requests without a lane reached baseline only"
    );
    env.finish();
}

#[test]
fn a_redeploy_that_fails_its_health_check_keeps_the_old_version_serving() {
    let env = TestEnv::new("redeploy-unhealthy", 175);
    let b = env.repo("b", &sample_manifest(&env.bin, "b", None, ""));
    env.branch(&b, "feature-x-branch");
    env.ok_in(&b, &["deploy", "--lane", "feature-x"]);
    let before = env.instance("feature-x", "demo.b").unwrap();
    let router = env.router();
    let load = load::Load::start(router, "b.demo.localhost", &[("x-lane", "feature-x")], 1, 1);

    // The next version listens nowhere: its health check cannot pass.
    std::fs::write(
        b.join("lane.toml"),
        "app = \"demo\"\nproc = \"b\"\n\n[run]\ncommand = \"sleep 60\"\n\n\
         [health]\nhttp = \"/healthz\"\ntimeout = \"2s\"\n",
    )
    .unwrap();
    env.git(&b, &["commit", "-qam", "broken"]);
    let out = env.run_in(&b, &["deploy", "--lane", "feature-x"], &[]);
    assert_ne!(out.code, 0, "{out}");
    assert!(
        out.stderr.contains("health check") && out.stderr.contains("did not pass within 2"),
        "the error says why: {out}"
    );
    let tally = load.stop();
    assert!(tally.ok > 20, "{tally:?}");
    assert_eq!(tally.failures.len(), 0, "{:#?}", tally.failures);

    let after = env.instance("feature-x", "demo.b").unwrap();
    assert_eq!(
        pid_of(&after),
        pid_of(&before),
        "the old version still runs"
    );
    assert_eq!(after["state"], "healthy");
    assert_eq!(after["version"], before["version"], "{after:#}");
    let reply = common::http_get(router, "b.demo.localhost", "/", &[("x-lane", "feature-x")]);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.served_by(), ["demo.b@feature-x"]);
    // Nothing of the failed version is left running.
    let sleeping = env
        .processes()
        .into_iter()
        .filter(|(_, cmd)| cmd.contains("sleep 60"))
        .count();
    assert_eq!(sleeping, 0, "{:?}", env.processes());
    env.finish();
}
