//! A version's life: restarted when it dies, reclaimed by `lane rm` and by TTL expiry, and
//! concurrent deploys.

mod common;

use std::time::Duration;

use common::{TestEnv, sample_manifest};

#[test]
fn a_killed_version_is_restarted_and_still_routed() {
    let env = TestEnv::new("restart", 4);
    let repo = env.repo("b", &sample_manifest(&env.bin, "b", None, ""));
    env.branch(&repo, "feature-x-branch");
    env.ok_in(&repo, &["deploy", "--lane", "feature-x"]);
    let before = env.instance("feature-x", "demo.b").expect("instance");
    let pid = before["placement"]["pid"].as_u64().expect("pid") as u32;
    assert_eq!(before["restarts"], 0);

    common::kill(pid, "KILL");
    let after = env.wait_for(
        "the version to be restarted and healthy",
        Duration::from_secs(15),
        || {
            let i = env.instance("feature-x", "demo.b")?;
            let new_pid = i["placement"]["pid"].as_u64()? as u32;
            (new_pid != pid && i["state"] == "healthy" && i["restarts"].as_u64()? >= 1).then_some(i)
        },
    );
    assert!(!common::alive(pid), "the killed process is gone");
    let new_pid = after["placement"]["pid"].as_u64().unwrap() as u32;
    assert!(common::alive(new_pid), "{after:#}");
    assert_eq!(
        after["placement"]["addr"], before["placement"]["addr"],
        "restarted on the same port"
    );

    let reply = common::http_get(
        env.router(),
        "b.demo.localhost",
        "/",
        &[("x-lane", "feature-x")],
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.served_by(), ["demo.b@feature-x"]);
    env.finish();
}

#[test]
fn rm_leaves_no_process_no_route_and_no_state() {
    let env = TestEnv::new("rm", 5);
    let b = env.repo("b", &sample_manifest(&env.bin, "b", None, ""));
    let c = env.repo("c", &sample_manifest(&env.bin, "c", None, ""));
    // Baseline has b only; the lane has b and c.
    let ws = env.root.join("repos").join("lane-workspace.toml");
    std::fs::write(&ws, "[[service]]\npath = \"b\"\n").unwrap();
    env.ok(&["baseline", "up", "--file", ws.to_str().unwrap()]);
    for repo in [&b, &c] {
        env.branch(repo, "feature-x-branch");
        env.ok_in(repo, &["deploy", "--lane", "feature-x"]);
    }
    let status = env.status();
    let lane_b = common::instance_in(&status, "feature-x", "demo.b").expect("lane b");
    let lane_c = common::instance_in(&status, "feature-x", "demo.c").expect("lane c");
    let pids: Vec<u32> = [&lane_b, &lane_c]
        .iter()
        .map(|i| i["placement"]["pid"].as_u64().unwrap() as u32)
        .collect();
    let logs: Vec<std::path::PathBuf> = [&lane_b, &lane_c]
        .iter()
        .map(|i| i["placement"]["log"].as_str().expect("a log path").into())
        .collect();
    for log in &logs {
        assert!(log.exists(), "{} exists while the lane runs", log.display());
    }
    let router = env.router();
    let served = |host: &str| common::http_get(router, host, "/", &[("x-lane", "feature-x")]);
    assert_eq!(served("b.demo.localhost").served_by(), ["demo.b@feature-x"]);
    assert_eq!(served("c.demo.localhost").served_by(), ["demo.c@feature-x"]);

    let out = env.ok(&["rm", "feature-x"]);
    assert!(out.stdout.contains("feature-x"), "{out}");

    // No process.
    for pid in &pids {
        assert!(!common::alive(*pid), "pid {pid} of the lane is gone");
    }
    // No route: b falls back to baseline, c (lane-only) has nowhere to go.
    let r = served("b.demo.localhost");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.served_by(), ["demo.b@baseline"]);
    let r = served("c.demo.localhost");
    assert!(
        r.status == 404 || r.status == 503,
        "c has no version anywhere now: {r:?}"
    );
    assert!(
        r.served_by().iter().all(|s| !s.contains("feature-x")),
        "{r:?}"
    );
    // No state.
    assert!(env.lane("feature-x").is_none(), "the lane is not listed");
    let state = std::fs::read_to_string(env.home.join("state.json")).expect("state.json");
    assert!(
        !state.contains("feature-x"),
        "state.json still mentions the lane:\n{state}"
    );
    for log in &logs {
        assert!(!log.exists(), "{} was removed", log.display());
    }
    // rm of a lane that is gone is a clear not-found.
    let again = env.run(&["rm", "feature-x"]);
    assert_eq!(again.code, 3, "{again}");
    assert!(again.stderr.contains("feature-x"), "{again}");
    // Baseline is untouched.
    assert_eq!(
        env.instance("baseline", "demo.b").unwrap()["state"],
        "healthy"
    );
    env.finish();
}

#[test]
fn an_expired_lane_is_reclaimed_with_its_processes() {
    let env = TestEnv::new("ttl", 6);
    let repo = env.repo("b", &sample_manifest(&env.bin, "b", None, ""));
    env.branch(&repo, "x-branch");
    env.ok(&["create", "x", "--ttl", "2s"]);
    let deployed = env
        .ok_in(&repo, &["deploy", "--lane", "x", "--json"])
        .json();
    let pid = deployed["placement"]["pid"]
        .as_u64()
        .expect("the deployed instance has a pid") as u32;
    env.wait_for("lane x to expire", Duration::from_secs(6), || {
        env.lane("x").is_none().then_some(())
    });
    env.wait_for("the lane's process to stop", Duration::from_secs(5), || {
        (!common::alive(pid)).then_some(())
    });
    let status = env.status();
    assert!(status["lanes"].as_array().unwrap().is_empty(), "{status:#}");
    let state = std::fs::read_to_string(env.home.join("state.json")).unwrap();
    assert!(
        !state.contains("\"x/"),
        "no instance of lane x is left:\n{state}"
    );
    let procs: Vec<_> = env
        .processes()
        .into_iter()
        .filter(|(p, _)| Some(*p) != env.agent_pid())
        .collect();
    assert!(procs.is_empty(), "only the agent runs: {procs:#?}");
    env.finish();
}

#[test]
fn two_concurrent_deploys_into_different_lanes_both_succeed() {
    let env = TestEnv::new("concurrent", 7);
    let b = env.repo("b", &sample_manifest(&env.bin, "b", None, ""));
    let c = env.repo("c", &sample_manifest(&env.bin, "c", None, ""));
    env.branch(&b, "one-branch");
    env.branch(&c, "two-branch");
    // No agent runs yet: both commands race to start it, too.
    let one = env.spawn_in(&b, &["deploy", "--lane", "lane-one"], &[]);
    let two = env.spawn_in(&c, &["deploy", "--lane", "lane-two"], &[]);
    let (one, two) = (
        one.wait(common::COMMAND_TIMEOUT),
        two.wait(common::COMMAND_TIMEOUT),
    );
    assert_eq!(one.code, 0, "{one}");
    assert_eq!(two.code, 0, "{two}");
    let status = env.status();
    assert_eq!(
        common::instance_in(&status, "lane-one", "demo.b").unwrap()["state"],
        "healthy"
    );
    assert_eq!(
        common::instance_in(&status, "lane-two", "demo.c").unwrap()["state"],
        "healthy"
    );
    let router = env.router();
    let r = common::http_get(router, "b.demo.localhost", "/", &[("x-lane", "lane-one")]);
    assert_eq!(r.served_by(), ["demo.b@lane-one"]);
    let r = common::http_get(router, "c.demo.localhost", "/", &[("x-lane", "lane-two")]);
    assert_eq!(r.served_by(), ["demo.c@lane-two"]);
    let agents = env
        .processes()
        .into_iter()
        .filter(|(_, cmd)| cmd.ends_with(" agent"))
        .count();
    assert_eq!(agents, 1, "exactly one agent runs: {:#?}", env.processes());
    env.finish();
}

#[test]
fn a_lane_that_expires_during_a_deploy_leaves_no_orphan_instance() {
    let env = TestEnv::new("ttl-mid-deploy", 22);
    // The build outlasts the lane's TTL.
    let manifest = sample_manifest(&env.bin, "b", None, "")
        .replace("echo building && touch built.txt", "sleep 2.5");
    let repo = env.repo("b", &manifest);
    env.branch(&repo, "x-branch");
    env.ok(&["create", "x", "--ttl", "1s"]);
    let out = env.run_in(&repo, &["deploy", "--lane", "x"], &[]);
    assert_eq!(out.code, 4, "{out}");
    assert!(out.stderr.contains("expired"), "says why: {out}");
    assert!(env.lane("x").is_none());
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.home.join("state.json")).unwrap())
            .unwrap();
    assert_eq!(state["instances"], serde_json::json!({}), "{state:#}");
    let agent = env.agent_pid();
    let procs: Vec<_> = env
        .processes()
        .into_iter()
        .filter(|(p, _)| Some(*p) != agent)
        .collect();
    assert!(
        procs.is_empty(),
        "nothing runs for the gone lane: {procs:#?}"
    );
    // Nothing routes lane x to a version either.
    let r = common::http_get(env.router(), "b.demo.localhost", "/", &[("x-lane", "x")]);
    assert!(r.served_by().iter().all(|s| !s.ends_with("@x")), "{r:?}");
    env.finish();
}

#[test]
fn rm_during_a_deploy_fails_the_deploy_and_leaves_nothing() {
    let env = TestEnv::new("rm-mid-deploy", 23);
    // The version starts at once but only turns healthy once `ready` exists.
    let manifest = sample_manifest(&env.bin, "b", None, "")
        .replace("http = \"/healthz\"", "command = \"test -f ready\"");
    let repo = env.repo("b", &manifest);
    env.branch(&repo, "x-branch");
    let deploy = env.spawn_in(&repo, &["deploy", "--lane", "x"], &[]);
    let pid = env.wait_for("the version to start", Duration::from_secs(20), || {
        env.processes()
            .into_iter()
            .find(|(_, cmd)| cmd.contains("sample-service"))
            .map(|(p, _)| p)
    });
    env.ok(&["rm", "x"]);
    let out = deploy.wait(Duration::from_secs(20));
    assert_eq!(out.code, 4, "{out}");
    assert!(out.stderr.contains("deleted"), "says why: {out}");
    assert!(!common::alive(pid), "the version's process is gone");
    assert!(env.lane("x").is_none());
    let state = std::fs::read_to_string(env.home.join("state.json")).unwrap();
    assert!(!state.contains("\"x/"), "{state}");
    env.finish();
}
