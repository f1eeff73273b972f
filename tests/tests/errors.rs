//! Every user-facing error of the CLI and the agent not covered elsewhere: bad flags, bad
//! environment, lane rules, assign rules, trace targets. Each checks the exit code and that the
//! message names the cause (and, where there is one, what to do).

mod common;

use common::{Out, TestEnv, sample_manifest};

fn expect(out: &Out, code: i32, needles: &[&str]) {
    assert_eq!(out.code, code, "{out}");
    for n in needles {
        assert!(
            out.stderr.contains(n),
            "expected `{n}` in the error:\n{out}"
        );
    }
}

#[test]
fn bad_flags_and_environment() {
    let env = TestEnv::new("errors-flags", 10);
    expect(
        &env.run(&["create", "x", "--ttl", "soon"]),
        2,
        &["--ttl", "`soon` is not a duration"],
    );
    env.ok(&["create", "x"]);
    expect(
        &env.run(&["extend", "x", "--by", "2"]),
        2,
        &["--by", "`2` is not a duration"],
    );
    expect(
        &env.run(&["assign", "not-a-service", "--from", "x", "--to", "x"]),
        2,
        &["`<app>.<proc>`"],
    );
    expect(
        &env.run(&["trace", "http://[bad"]),
        2,
        &["neither a service id nor a URL"],
    );
    let dir = env.root.join("empty");
    std::fs::create_dir_all(&dir).unwrap();
    expect(
        &env.run_in(&dir, &["baseline", "up"], &[]),
        2,
        &["lane-workspace.toml", "help: list the baseline services"],
    );
    env.ok(&["down"]);
    // A fresh agent reads its settings from the environment and refuses bad ones.
    expect(
        &env.run_in(&dir, &["status"], &[("LANE_PORT_RANGE", "9-1")]),
        7,
        &["LANE_PORT_RANGE `9-1` is not a range like 41000-41999"],
    );
    expect(
        &env.run_in(&dir, &["status"], &[("LANE_ROUTER_ADDR", "nowhere")]),
        7,
        &["LANE_ROUTER_ADDR `nowhere` is not an address"],
    );
    env.finish();
}

#[test]
fn lane_rules() {
    let env = TestEnv::new("errors-lanes", 27);
    env.ok(&["create", "team"]);
    expect(
        &env.run(&["create", "team"]),
        4,
        &["lane `team` already exists (owner alice@example.com)"],
    );
    expect(
        &env.run(&["create", "mine", "--parent", "ghost"]),
        3,
        &["parent lane `ghost` does not exist"],
    );
    env.ok(&["create", "mine", "--parent", "team"]);
    expect(
        &env.run(&["rm", "team"]),
        4,
        &["lane `team` has lanes stacked on it: mine", "--force"],
    );
    expect(
        &env.run(&["switch", "ghost"]),
        3,
        &["lane `ghost` does not exist", "existing lanes: mine, team"],
    );
    // No --lane and no active lane: deploy says how to choose one.
    let repo = env.repo("b", &sample_manifest(&env.bin, "b", None, ""));
    expect(
        &env.run_in(&repo, &["deploy"], &[]),
        2,
        &["no lane given and no active lane", "lane switch"],
    );
    // --force moves the stacked lane onto the deleted lane's parent (baseline).
    env.ok(&["rm", "team", "--force"]);
    let mine = env.lane("mine").expect("mine survives");
    assert!(mine.get("parent").is_none_or(|p| p.is_null()), "{mine}");
    env.finish();
}

#[test]
fn assign_rules() {
    let env = TestEnv::new("errors-assign", 28);
    let repo = env.repo("b", &sample_manifest(&env.bin, "b", None, ""));
    env.ok_in(&repo, &["deploy", "--lane", "one"]);
    env.ok_in(&repo, &["deploy", "--lane", "two"]);
    env.ok(&["create", "empty"]);
    expect(
        &env.run(&["assign", "demo.b", "--from", "one", "--to", "one"]),
        2,
        &["source and target lane are the same"],
    );
    expect(
        &env.run(&["assign", "demo.b", "--from", "empty", "--to", "one"]),
        3,
        &["lane `empty` has no version of demo.b"],
    );
    expect(
        &env.run(&["assign", "demo.b", "--from", "one", "--to", "two"]),
        4,
        &["lane `two` already has a version of demo.b", "--force"],
    );
    // The one that works: the version moves, the source lane has none left.
    env.ok(&["assign", "demo.b", "--from", "one", "--to", "empty"]);
    assert!(env.instance("empty", "demo.b").is_some());
    assert!(env.instance("one", "demo.b").is_none());
    env.finish();
}

#[test]
fn failing_builds_empty_repos_and_taken_proxy_ports() {
    let env = TestEnv::new("errors-builds", 29);
    let run = format!(
        "[run]\ncommand = \"'{}' sample-service --app demo --name b --port {{port}}\"\n",
        env.bin.display()
    );

    let failing = format!(
        "app = \"demo\"\nproc = \"b\"\n[build]\ncommand = \"echo compile-error-xyz >&2; exit 3\"\n{run}"
    );
    let repo = env.repo("failing", &failing);
    expect(
        &env.run_in(&repo, &["deploy", "--lane", "x"], &[]),
        6,
        &[
            "the build `echo compile-error-xyz >&2; exit 3` failed",
            "compile-error-xyz",
            "help:",
        ],
    );
    assert!(env.lane("x").is_none(), "the lane the deploy made is gone");

    let slow = format!(
        "app = \"demo\"\nproc = \"b\"\n[build]\ncommand = \"sleep 20\"\ntimeout = \"1s\"\n{run}"
    );
    let repo = env.repo("slow", &slow);
    expect(
        &env.run_in(&repo, &["deploy", "--lane", "x"], &[]),
        6,
        &[
            "the build `sleep 20` did not finish within 1s",
            "raise [build] timeout",
        ],
    );
    assert!(env.lane("x").is_none(), "the lane the deploy made is gone");
    let agent = env.agent_pid();
    let left: Vec<_> = env
        .processes()
        .into_iter()
        .filter(|(p, _)| Some(*p) != agent)
        .collect();
    assert!(left.is_empty(), "the timed-out build is killed: {left:?}");

    let empty = env.root.join("repos/empty");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(
        empty.join("lane.toml"),
        format!("app = \"demo\"\nproc = \"b\"\n{run}"),
    )
    .unwrap();
    env.git(&empty, &["init", "-q", "-b", "main"]);
    expect(
        &env.run_in(&empty, &["deploy", "--lane", "x"], &[]),
        2,
        &["has no commits yet", "commit something first"],
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    expect(
        &env.run(&["proxy", "--listen", &addr]),
        7,
        &[&format!("cannot listen on {addr}"), "--listen"],
    );
    env.finish();
}
