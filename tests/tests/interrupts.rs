//! Deploys interrupted by a killed CLI or a killed agent are rolled back.

mod common;

use std::time::Duration;

use common::TestEnv;

/// A service whose build takes 30s (the tests interrupt it long before).
fn slow_manifest(env: &TestEnv) -> String {
    format!(
        "app = \"demo\"\nproc = \"b\"\n[build]\ncommand = \"echo slow-build-starts; sleep 30\"\n\
         [run]\ncommand = \"'{}' sample-service --app demo --name b --port {{port}}\"\n\
         [health]\nhttp = \"/healthz\"\n",
        env.bin.display()
    )
}

/// Waits until the deploy into `lane` is in its build: the lane exists and `sleep 30` runs.
fn wait_for_build(env: &TestEnv, lane: &str) -> Vec<u32> {
    env.wait_for("the slow build to start", Duration::from_secs(20), || {
        env.lane(lane)?;
        let builds: Vec<u32> = env
            .processes()
            .into_iter()
            .filter(|(_, cmd)| cmd.contains("sleep 30"))
            .map(|(p, _)| p)
            .collect();
        (!builds.is_empty()).then_some(builds)
    })
}

fn non_agent_processes(env: &TestEnv) -> Vec<(u32, String)> {
    let agent = env.agent_pid();
    env.processes()
        .into_iter()
        .filter(|(p, _)| Some(*p) != agent)
        .collect()
}

#[test]
fn killing_the_cli_mid_deploy_rolls_the_deploy_back() {
    let env = TestEnv::new("kill-cli", 15);
    let repo = env.repo("b", &slow_manifest(&env));
    env.branch(&repo, "slow-branch");
    let deploy = env.spawn_in(&repo, &["deploy", "--lane", "slow"], &[]);
    let builds = wait_for_build(&env, "slow");
    let out = deploy.kill9();
    assert_eq!(out.code, -1, "killed by a signal: {out}");

    env.wait_for(
        "the half-made lane to be rolled back",
        Duration::from_secs(5),
        || env.lane("slow").is_none().then_some(()),
    );
    env.wait_for("the build to be stopped", Duration::from_secs(5), || {
        (builds.iter().all(|p| !common::alive(*p)) && non_agent_processes(&env).is_empty())
            .then_some(())
    });
    let state = std::fs::read_to_string(env.home.join("state.json")).unwrap();
    assert!(!state.contains("slow"), "{state}");
    env.finish();
}

#[test]
fn killing_the_agent_mid_deploy_is_rolled_back_by_the_next_agent() {
    let env = TestEnv::new("kill-agent", 16);
    let repo = env.repo("b", &slow_manifest(&env));
    env.branch(&repo, "slow-branch");
    let deploy = env.spawn_in(&repo, &["deploy", "--lane", "slow"], &[]);
    let builds = wait_for_build(&env, "slow");
    let agent = env.agent_pid().expect("agent.json names the agent");
    common::kill(agent, "KILL");
    env.wait_for("the agent to die", Duration::from_secs(5), || {
        (!common::alive(agent)).then_some(())
    });
    let out = deploy.wait(Duration::from_secs(20));
    assert_ne!(
        out.code, 0,
        "the deploy cannot succeed without its agent: {out}"
    );
    assert!(
        out.stderr.contains("agent"),
        "says the agent went away: {out}"
    );

    // The next command starts a new agent, which rolls the half-made lane back.
    let lanes = env.ok(&["ls", "--json"]).json();
    assert!(
        lanes.as_array().unwrap().iter().all(|l| l["id"] != "slow"),
        "{lanes:#}"
    );
    let new_agent = env.agent_pid().expect("a new agent runs");
    assert_ne!(new_agent, agent);
    env.wait_for(
        "the orphaned build to be stopped",
        Duration::from_secs(5),
        || {
            (builds.iter().all(|p| !common::alive(*p)) && non_agent_processes(&env).is_empty())
                .then_some(())
        },
    );
    // And the lane can be deployed again (with a fast build this time).
    std::fs::write(
        repo.join("lane.toml"),
        common::sample_manifest(&env.bin, "b", None, ""),
    )
    .unwrap();
    env.ok_in(&repo, &["deploy", "--lane", "slow"]);
    assert_eq!(env.instance("slow", "demo.b").unwrap()["state"], "healthy");
    env.finish();
}

#[test]
fn a_killed_agent_is_replaced_and_adopts_the_healthy_versions() {
    let env = TestEnv::new("agent-crash", 24);
    let repo = env.repo("b", &common::sample_manifest(&env.bin, "b", None, ""));
    env.branch(&repo, "feature-x-branch");
    env.ok_in(&repo, &["deploy", "--lane", "feature-x"]);
    let old = env.instance("feature-x", "demo.b").unwrap()["placement"]["pid"]
        .as_u64()
        .unwrap() as u32;
    let agent = env.agent_pid().unwrap();
    common::kill(agent, "KILL");
    env.wait_for("the agent to die", Duration::from_secs(5), || {
        (!common::alive(agent)).then_some(())
    });

    // The next command starts a new agent; the version still runs and is healthy, so the new
    // agent adopts it as it is (tests/tests/agent_crash.rs: under load, and with one that died).
    let inst = env.wait_for("the version to be healthy", Duration::from_secs(20), || {
        let i = env.instance("feature-x", "demo.b")?;
        (i["state"] == "healthy").then_some(i)
    });
    assert_eq!(
        inst["placement"]["pid"].as_u64().unwrap() as u32,
        old,
        "the earlier agent's healthy process was adopted, not restarted: {inst:#}"
    );
    assert!(common::alive(old));
    assert_ne!(env.agent_pid(), Some(agent));
    assert_eq!(inst["version"]["branch"], "feature-x-branch");
    let r = common::http_get(
        env.router(),
        "b.demo.localhost",
        "/",
        &[("x-lane", "feature-x")],
    );
    assert_eq!(r.served_by(), ["demo.b@feature-x"]);
    // The adopted process is stopped by `lane down` like any other (finish checks none is left).
    env.finish();
}

#[test]
fn ctrl_c_cancels_a_deploy_with_exit_130_and_leaves_nothing() {
    let env = TestEnv::new("ctrl-c", 26);
    let repo = env.repo("b", &slow_manifest(&env));
    env.branch(&repo, "slow-branch");
    let deploy = env.spawn_in(&repo, &["deploy", "--lane", "slow"], &[]);
    let builds = wait_for_build(&env, "slow");
    common::kill(deploy.pid(), "INT");
    let out = deploy.wait(Duration::from_secs(10));
    assert_eq!(out.code, 130, "{out}");
    assert!(out.stderr.contains("cancelled"), "{out}");
    env.wait_for(
        "the cancelled deploy to be rolled back",
        Duration::from_secs(5),
        || {
            (env.lane("slow").is_none()
                && builds.iter().all(|p| !common::alive(*p))
                && non_agent_processes(&env).is_empty())
            .then_some(())
        },
    );
    env.finish();
}
