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
