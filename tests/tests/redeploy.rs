//! Redeploys without a gap: a new version of a service is started and health-checked before the
//! route moves to it, and the old one is drained and stopped after; requests in flight complete,
//! and a version that fails its health check leaves the old one serving. (`lane baseline up` over
//! a running baseline goes the same way: 5 of them run amid the 20 lane redeploys.)

mod common;
mod load;

use std::time::Duration;

use common::{TestEnv, sample_manifest};

fn pid_of(v: &serde_json::Value) -> u32 {
    v["placement"]["pid"].as_u64().expect("a pid") as u32
}

#[test]
fn twenty_redeploys_under_load_fail_no_request() {
    let env = TestEnv::new("redeploy-load", 120);
    let b = env.repo("b", &sample_manifest(&env.bin, "b", None, ""));
    let ws = env.root.join("repos").join("lane-workspace.toml");
    std::fs::write(&ws, "[[service]]\npath = \"b\"\n").unwrap();
    env.ok(&["baseline", "up", "--file", ws.to_str().unwrap()]);
    env.branch(&b, "feature-x-branch");
    env.ok_in(&b, &["deploy", "--lane", "feature-x"]);
    let router = env.router();

    let lane_load = load::Load::start(router, "b.demo.localhost", &[("x-lane", "feature-x")], 2, 2);
    let base_load = load::Load::start(router, "b.demo.localhost", &[], 1, 1);
    let mut pids = vec![pid_of(&env.instance("feature-x", "demo.b").unwrap())];
    let mut base_rolls = 0;
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
        // Baseline rolls too, 5 times in all.
        if i % 4 == 3 {
            let before = pid_of(&env.instance("baseline", "demo.b").unwrap());
            env.ok(&["baseline", "up", "--file", ws.to_str().unwrap()]);
            let after = pid_of(&env.instance("baseline", "demo.b").unwrap());
            assert_ne!(after, before, "baseline up {i} started a new process");
            assert!(!common::alive(before), "the replaced baseline is stopped");
            base_rolls += 1;
        }
    }
    assert_eq!(base_rolls, 5);
    let lane = lane_load.stop();
    let base = base_load.stop();
    eprintln!(
        "lane load: {} requests, {} failed; baseline load: {} requests, {} failed",
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
    let env = TestEnv::new("redeploy-unhealthy", 121);
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
