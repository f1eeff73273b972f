//! `lane history`: every change to a lane is recorded with the lane's owner, who made it and why,
//! and stays readable after the lane is deleted, for `LANE_HISTORY_KEEP`.

mod common;

use std::time::Duration;

use common::{TestEnv, sample_manifest};
use serde_json::Value;

fn history(env: &TestEnv, lane: &str) -> Vec<Value> {
    env.ok(&["history", lane, "--json"])
        .json()
        .as_array()
        .expect("history --json is an array")
        .clone()
}

/// `(event, actor, service)` of every entry, each checked to name alice as the owner and to say
/// why.
fn steps(entries: &[Value]) -> Vec<(String, String, String)> {
    entries
        .iter()
        .map(|e| {
            assert_eq!(e["owner"], "alice@example.com", "{e:#}");
            assert!(e["reason"].as_str().is_some_and(|r| !r.is_empty()), "{e:#}");
            assert!(e["at"].as_u64().is_some_and(|t| t > 1_700_000_000), "{e:#}");
            let s = |k: &str| e[k].as_str().unwrap_or("-").to_owned();
            (s("event"), s("actor"), s("service"))
        })
        .collect()
}

fn step(event: &str, actor: &str, service: &str) -> (String, String, String) {
    (event.into(), actor.into(), service.into())
}

#[test]
fn history_records_every_change_with_owner_and_reason_and_outlives_the_lane_for_a_while() {
    let env = TestEnv::new("history", 123);
    let alice = "alice@example.com";
    let bob_cfg = env.root.join("bob-config");
    std::fs::create_dir_all(bob_cfg.join("lane")).unwrap();
    std::fs::write(bob_cfg.join("lane/config.toml"), "owner = \"bob\"\n").unwrap();
    let as_bob = [("XDG_CONFIG_HOME", bob_cfg.to_str().unwrap())];

    // The first command starts the agent: deleted lanes' histories are kept 4 s.
    let out = env.run_in(
        &env.root,
        &["create", "feature-y", "--ttl", "1h"],
        &[("LANE_HISTORY_KEEP", "4s")],
    );
    assert_eq!(out.code, 0, "{out}");
    let b = env.repo("b", &sample_manifest(&env.bin, "b", None, ""));
    env.branch(&b, "feature-x-branch");
    env.ok_in(&b, &["deploy", "--lane", "feature-x"]);
    std::fs::write(b.join("change.txt"), "x").unwrap();
    env.git(&b, &["add", "."]);
    env.git(&b, &["commit", "-qm", "change"]);
    env.ok_in(&b, &["deploy", "--lane", "feature-x"]);
    env.ok(&["extend", "feature-x", "--by", "1h"]);
    env.ok(&["switch", "feature-x"]);
    env.ok(&["switch", "baseline"]);
    env.ok(&[
        "assign",
        "demo.b",
        "--from",
        "feature-x",
        "--to",
        "feature-y",
    ]);
    let out = env.run_in(
        &env.root,
        &["extend", "feature-y", "--by", "1h", "--force"],
        &as_bob,
    );
    assert_eq!(out.code, 0, "{out}");
    env.ok(&["rm", "feature-y"]);

    let x = history(&env, "feature-x");
    assert_eq!(
        steps(&x),
        [
            step("create", alice, "-"),
            step("deploy", alice, "demo.b"),
            step("deploy", alice, "demo.b"),
            step("extend", alice, "-"),
            step("switch", "-", "-"),
            step("switch", "-", "-"),
            step("assign", alice, "demo.b"),
        ],
        "{x:#?}"
    );
    let reason = |e: &Value| e["reason"].as_str().unwrap().to_owned();
    assert!(reason(&x[0]).contains("first deploy"), "{x:#?}");
    assert!(reason(&x[1]).contains("feature-x-branch@"), "{x:#?}");
    assert!(
        reason(&x[2]).contains("replacing feature-x-branch@"),
        "{x:#?}"
    );
    assert!(reason(&x[3]).contains("by 3600s"), "{x:#?}");
    assert!(reason(&x[4]).contains("made the active lane"), "{x:#?}");
    assert!(
        reason(&x[5]).contains("no longer the active lane"),
        "{x:#?}"
    );
    assert!(reason(&x[6]).contains("to lane feature-y"), "{x:#?}");

    // The deleted lane's history is still there, the forced change saying by whom.
    let y = history(&env, "feature-y");
    assert_eq!(
        steps(&y),
        [
            step("create", alice, "-"),
            step("assign", alice, "demo.b"),
            step("extend", "bob", "-"),
            step("delete", alice, "-"),
        ],
        "{y:#?}"
    );
    assert!(reason(&y[1]).contains("from lane feature-x"), "{y:#?}");
    assert!(reason(&y[2]).contains("--force by bob"), "{y:#?}");
    assert!(reason(&y[3]).contains("stopped 1 instance"), "{y:#?}");

    // A lane reclaimed for its TTL says so.
    env.ok(&["create", "feature-z", "--ttl", "1s"]);
    env.wait_for("feature-z to expire", Duration::from_secs(10), || {
        env.lane("feature-z").is_none().then_some(())
    });
    let z = history(&env, "feature-z");
    assert_eq!(
        steps(&z),
        [step("create", alice, "-"), step("reclaim", "-", "-")],
        "{z:#?}"
    );
    assert!(reason(&z[1]).contains("TTL ran out"), "{z:#?}");

    // The table says the same.
    let table = env.ok(&["history", "feature-x"]).stdout;
    assert!(table.contains("EVENT") && table.contains("WHY"), "{table}");
    assert!(
        table.contains("deploy") && table.contains("replacing"),
        "{table}"
    );

    // After LANE_HISTORY_KEEP the deleted lanes' histories go; the live lane's stays.
    env.wait_for(
        "the deleted lanes' histories to be forgotten",
        Duration::from_secs(15),
        || {
            let gone = |l| env.run(&["history", l]).code == 3;
            (gone("feature-y") && gone("feature-z")).then_some(())
        },
    );
    let out = env.run(&["history", "feature-y"]);
    assert!(out.stderr.contains("no history"), "{out}");
    assert_eq!(history(&env, "feature-x").len(), 7);
    // A lane that never was: not found, and a bad id is invalid input.
    assert_eq!(env.run(&["history", "never-was"]).code, 3);
    assert_eq!(env.run(&["history", "Not A Lane"]).code, 2);
    env.finish();
}
