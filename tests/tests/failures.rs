//! Bad input and failing services: clear errors with the documented exit codes, and nothing left
//! behind.

mod common;

use std::net::TcpListener;

use common::{TestEnv, sample_manifest};

/// Processes of this test's state dir other than the agent.
fn non_agent_processes(env: &TestEnv) -> Vec<(u32, String)> {
    let agent = env.agent_pid();
    env.processes()
        .into_iter()
        .filter(|(p, _)| Some(*p) != agent)
        .collect()
}

#[test]
fn invalid_lane_id_is_exit_2_naming_the_rule() {
    let env = TestEnv::new("bad-id", 8);
    let out = env.run(&["create", "Bad_Id"]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("Bad_Id"), "names the value: {out}");
    assert!(
        out.stderr.contains("lowercase letters, digits and `-`"),
        "names the rule: {out}"
    );
    let out = env.run(&["create", "baseline"]);
    assert_eq!(out.code, 2, "`baseline` is reserved: {out}");
    assert!(out.stderr.contains("reserved"), "{out}");
    let out = env.run(&["deploy", "--lane", "-x-"]);
    assert_eq!(out.code, 2, "{out}");
    env.finish();
}

#[test]
fn missing_and_malformed_lane_toml_are_clear_errors() {
    let env = TestEnv::new("bad-manifest", 9);
    // A repo without lane.toml.
    let repo = env.repo("b", "placeholder");
    env.git(&repo, &["rm", "-q", "lane.toml"]);
    env.git(&repo, &["commit", "-q", "-m", "no manifest"]);
    let out = env.run_in(&repo, &["deploy", "--lane", "feature-x"], &[]);
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stderr.contains("no lane.toml in") && out.stderr.contains("repository root"),
        "{out}"
    );
    assert!(out.stderr.contains("help:"), "says what to do: {out}");

    // A malformed one: the error points at the line and column.
    std::fs::write(
        repo.join("lane.toml"),
        "app = \"demo\"\nproc = \"b\"\n[run]\ncommand = \"true\"\n[health]\nhttp = 42\n",
    )
    .unwrap();
    let out = env.run_in(&repo, &["deploy", "--lane", "feature-x"], &[]);
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stderr.contains("lane.toml:6:8"),
        "points at line 6 col 8: {out}"
    );

    std::fs::write(
        repo.join("lane.toml"),
        "app = \"demo\"\nproc = \"b\"\n[run\n",
    )
    .unwrap();
    let out = env.run_in(&repo, &["deploy", "--lane", "feature-x"], &[]);
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stderr.contains("lane.toml:3:"),
        "points at line 3: {out}"
    );

    // A bad value: the position of the value.
    std::fs::write(
        repo.join("lane.toml"),
        "app = \"demo\"\nproc = \"B_x\"\n[run]\ncommand = \"true\"\n",
    )
    .unwrap();
    let out = env.run_in(&repo, &["deploy", "--lane", "feature-x"], &[]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("lane.toml:2:8"), "{out}");

    // Not a git repo at all.
    let plain = env.root.join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let out = env.run_in(&plain, &["deploy", "--lane", "feature-x"], &[]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("git"), "{out}");

    // Nothing was created by any of it.
    assert!(env.lane("feature-x").is_none());
    env.finish();
}

#[test]
fn a_run_command_that_exits_at_once_fails_the_deploy_and_leaves_nothing() {
    let env = TestEnv::new("exits-at-once", 11);
    let manifest = "app = \"demo\"\nproc = \"b\"\n[build]\ncommand = \"echo building\"\n\
                    [run]\ncommand = \"echo boom-message-from-b; exit 3\"\n[health]\ntcp = true\n";
    let repo = env.repo("b", manifest);
    env.branch(&repo, "feature-x-branch");
    let out = env.run_in(&repo, &["deploy", "--lane", "feature-x"], &[]);
    assert_eq!(out.code, 6, "{out}");
    assert!(
        out.stderr.contains("boom-message-from-b"),
        "shows the log tail: {out}"
    );
    assert!(out.stderr.contains("exit"), "{out}");
    assert!(env.lane("feature-x").is_none(), "no lane was created");
    let status = env.status();
    assert!(status["lanes"].as_array().unwrap().is_empty(), "{status:#}");
    assert!(
        non_agent_processes(&env).is_empty(),
        "{:#?}",
        env.processes()
    );
    let logs: Vec<_> = std::fs::read_dir(env.home.join("logs")).unwrap().collect();
    assert!(logs.is_empty(), "no instance log is left: {logs:?}");
    env.finish();
}

#[test]
fn a_health_check_that_never_passes_fails_the_deploy_and_leaves_nothing() {
    let env = TestEnv::new("never-healthy", 12);
    let manifest = "app = \"demo\"\nproc = \"b\"\n[run]\ncommand = \"sleep 30\"\n\
                    [health]\ncommand = \"exit 1\"\ntimeout = \"1s\"\n";
    let repo = env.repo("b", manifest);
    env.branch(&repo, "feature-x-branch");
    let started = std::time::Instant::now();
    let out = env.run_in(&repo, &["deploy", "--lane", "feature-x"], &[]);
    assert_eq!(out.code, 6, "{out}");
    assert!(out.stderr.contains("health check"), "{out}");
    assert!(out.stderr.contains("1s"), "names the timeout: {out}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "gave up in time"
    );
    assert!(env.lane("feature-x").is_none(), "no lane was created");
    assert!(
        non_agent_processes(&env).is_empty(),
        "{:#?}",
        env.processes()
    );
    env.finish();
}

#[test]
fn occupied_ports_in_the_range_are_skipped() {
    let mut env = TestEnv::new("port-taken", 13);
    // A three-port range whose first two ports another program holds.
    env.ports = (env.ports.0, env.ports.0 + 2);
    let _first = TcpListener::bind(("127.0.0.1", env.ports.0)).expect("bind the first port");
    let _second = TcpListener::bind(("127.0.0.1", env.ports.0 + 1)).expect("bind the second port");
    let repo = env.repo("b", &sample_manifest(&env.bin, "b", None, ""));
    env.branch(&repo, "feature-x-branch");
    let out = env.ok_in(&repo, &["deploy", "--lane", "feature-x", "--json"]);
    let addr = out.json()["placement"]["addr"].as_str().unwrap().to_owned();
    assert_eq!(addr, format!("127.0.0.1:{}", env.ports.0 + 2), "{out}");
    let r = common::http_get(
        env.router(),
        "b.demo.localhost",
        "/",
        &[("x-lane", "feature-x")],
    );
    assert_eq!(r.served_by(), ["demo.b@feature-x"]);
    env.finish();
}

#[test]
fn an_occupied_router_address_is_a_clear_error() {
    let mut env = TestEnv::new("router-taken", 14);
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    env.router_addr = addr.clone();
    let out = env.run(&["status"]);
    assert_eq!(out.code, 7, "{out}");
    assert!(out.stderr.contains(&addr), "names the address: {out}");
    assert!(
        out.stderr.contains("LANE_ROUTER_ADDR"),
        "says what to set: {out}"
    );
    assert!(
        env.processes().is_empty(),
        "no agent is left: {:#?}",
        env.processes()
    );
    // With a free address it works.
    env.router_addr = "127.0.0.1:0".into();
    env.ok(&["status"]);
    drop(taken);
    env.finish();
}

/// A port that was free when the agent picked it but is taken before the version binds it (another
/// process on this machine got there first): the deploy starts the version again on another port.
#[test]
fn a_port_taken_before_the_version_binds_it_is_replaced_by_another() {
    let env = TestEnv::new("port-race", 32);
    let marker = env.root.join("squatted");
    let pid_file = env.root.join("squatter.pid");
    // First start: put a squatter (in its own session, so not ours to kill) on the port, wait until
    // it listens, and fail the way a service does when its port is taken. Then: the real service.
    let squat = format!(
        "if [ ! -f '{m}' ]; then touch '{m}'; setsid python3 -c 'import socket,sys,time,os; \
         s=socket.socket(); s.bind((\\\"127.0.0.1\\\",int(sys.argv[1]))); s.listen(); \
         open(sys.argv[2],\\\"w\\\").write(str(os.getpid())); time.sleep(120)' {{port}} '{p}' & \
         while [ ! -s '{p}' ]; do sleep 0.05; done; echo address in use; exit 1; fi; ",
        m = marker.display(),
        p = pid_file.display()
    );
    let manifest = format!(
        "app = \"demo\"\nproc = \"b\"\n\n[run]\ncommand = \"{squat}exec '{}' sample-service --app demo \
         --name b --port {{port}}\"\n\n[health]\nhttp = \"/healthz\"\ntimeout = \"20s\"\n",
        env.bin.display()
    );
    let repo = env.repo("b", &manifest);
    let out = env.run_in(&repo, &["deploy", "--lane", "race", "--json"], &[]);
    let squatter: u32 = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .expect("the squatter started");
    let squatted_port = std::fs::read_to_string(format!("/proc/{squatter}/cmdline"))
        .unwrap_or_default()
        .split('\0')
        .filter_map(|a| a.parse::<u16>().ok())
        .next();
    common::kill(squatter, "KILL");
    assert_eq!(out.code, 0, "{out}");
    let inst = out.json();
    assert_eq!(inst["state"], "healthy", "{inst:#}");
    let port: u16 = inst["placement"]["addr"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(squatted_port.is_some(), "the squatter's port is known");
    assert_ne!(
        Some(port),
        squatted_port,
        "started on another port: {inst:#}"
    );
    let reply = common::http_get(env.router(), "b.demo.localhost", "/", &[("x-lane", "race")]);
    assert_eq!(reply.status, 200, "{reply:?}");
    env.finish();
}
