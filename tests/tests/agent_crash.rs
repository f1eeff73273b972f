//! An agent killed with SIGKILL under load: the next agent (started by the next `lane` command)
//! adopts the instances that still run and are healthy, as they are (same pids), and starts again
//! only what died meanwhile. The only requests that fail are those of the window in which no
//! router listened.

mod common;
mod load;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{TestEnv, sample_manifest};

fn pid_of(v: &serde_json::Value) -> u32 {
    v["placement"]["pid"].as_u64().expect("a pid") as u32
}

#[test]
fn a_new_agent_adopts_healthy_instances_and_restarts_only_what_died() {
    let mut env = TestEnv::new("agent-crash", 122);
    // The next agent's router listens where this one's did.
    env.router_addr = format!("127.0.0.1:{}", common::free_port());
    let b = env.repo("b", &sample_manifest(&env.bin, "b", None, ""));
    let c = env.repo("c", &sample_manifest(&env.bin, "c", None, ""));
    let ws = env.root.join("repos").join("lane-workspace.toml");
    std::fs::write(&ws, "[[service]]\npath = \"b\"\n").unwrap();
    env.ok(&["baseline", "up", "--file", ws.to_str().unwrap()]);
    for repo in [&b, &c] {
        env.branch(repo, "feature-x-branch");
        env.ok_in(repo, &["deploy", "--lane", "feature-x"]);
    }
    let router = env.router();
    let status = env.status();
    let base_b = pid_of(&common::instance_in(&status, "baseline", "demo.b").unwrap());
    let lane_b = pid_of(&common::instance_in(&status, "feature-x", "demo.b").unwrap());
    let lane_c = pid_of(&common::instance_in(&status, "feature-x", "demo.c").unwrap());

    let lane_load = load::Load::start(router, "b.demo.localhost", &[("x-lane", "feature-x")], 2, 2);
    let base_load = load::Load::start(router, "b.demo.localhost", &[], 1, 1);
    std::thread::sleep(Duration::from_millis(500));

    let agent = env.agent_pid().expect("the agent runs");
    let killed_at = lane_load.started.elapsed();
    let base_killed_at = base_load.started.elapsed();
    common::kill(agent, "KILL");
    // While no agent runs, the lane's c dies too (its whole process group).
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{lane_c}")])
        .status();
    env.wait_for("the agent to be gone", Duration::from_secs(5), || {
        (!common::alive(agent)).then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    // The next command starts a new agent; its router listens once the command is answered.
    let restart = Instant::now();
    let status = env.status();
    let back_at = lane_load.started.elapsed();
    let base_back_at = base_load.started.elapsed();
    eprintln!(
        "no router listened for {:?} (the new agent took {:?} to answer)",
        back_at - killed_at,
        restart.elapsed()
    );
    assert_ne!(env.agent_pid(), Some(agent), "a new agent runs");

    // The healthy instances were adopted as they were; c was started again.
    let now_b = common::instance_in(&status, "baseline", "demo.b").unwrap();
    assert_eq!(pid_of(&now_b), base_b, "baseline b adopted: {now_b:#}");
    assert_eq!(now_b["state"], "healthy");
    let now_lb = common::instance_in(&status, "feature-x", "demo.b").unwrap();
    assert_eq!(pid_of(&now_lb), lane_b, "the lane's b adopted: {now_lb:#}");
    assert_eq!(now_lb["state"], "healthy");
    let new_c = env.wait_for(
        "the lane's c to be started again",
        Duration::from_secs(20),
        || {
            let c = env.instance("feature-x", "demo.c")?;
            (c["state"] == "healthy").then_some(c)
        },
    );
    assert_ne!(pid_of(&new_c), lane_c, "c was started again: {new_c:#}");
    assert!(common::alive(pid_of(&new_c)));
    let reply = common::http_get(router, "c.demo.localhost", "/", &[("x-lane", "feature-x")]);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.served_by(), ["demo.c@feature-x"]);

    std::thread::sleep(Duration::from_millis(1000));
    // Still the same processes: the adopted ones are watched, not restarted.
    let status = env.status();
    assert_eq!(
        pid_of(&common::instance_in(&status, "feature-x", "demo.b").unwrap()),
        lane_b
    );
    let lane = lane_load.stop();
    let base = base_load.stop();
    let window = |f: &[load::Failure], from: Duration, to: Duration| {
        f.iter().filter(|x| x.at >= from && x.at <= to).count()
    };
    eprintln!(
        "lane load: {} requests, {} failed (all in the window); baseline load: {} requests, {} failed",
        lane.total(),
        lane.failures.len(),
        base.total(),
        base.failures.len()
    );
    assert!(lane.ok > 100 && base.ok > 50, "{lane:?} {base:?}");
    assert!(
        !lane.failures.is_empty(),
        "requests sent while no router listened fail (the test would not see a gap otherwise)"
    );
    assert_eq!(
        window(&lane.failures, killed_at, back_at),
        lane.failures.len(),
        "every failure is in the window no router listened ({killed_at:?}..{back_at:?}): {:#?}",
        lane.failures
    );
    assert_eq!(
        window(&base.failures, base_killed_at, base_back_at),
        base.failures.len(),
        "{:#?}",
        base.failures
    );
    assert_eq!(
        lane.served_by.keys().collect::<Vec<_>>(),
        ["demo.b@feature-x"]
    );
    assert_eq!(
        base.served_by.keys().collect::<Vec<_>>(),
        ["demo.b@baseline"]
    );

    // An adopted instance that dies later is started again by the agent that adopted it.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{lane_b}")])
        .status();
    let again = env.wait_for(
        "the adopted b to be started again after it died",
        Duration::from_secs(20),
        || {
            let b = env.instance("feature-x", "demo.b")?;
            (b["state"] == "healthy" && pid_of(&b) != lane_b).then_some(b)
        },
    );
    assert!(again["restarts"].as_u64().unwrap() >= 1, "{again:#}");
    let reply = common::http_get(router, "b.demo.localhost", "/", &[("x-lane", "feature-x")]);
    assert_eq!(reply.served_by(), ["demo.b@feature-x"], "{reply:?}");
    env.finish();
}
