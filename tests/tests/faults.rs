//! Fault tests: every operation, its client killed (SIGINT and SIGKILL) at many points of it, and
//! the agent killed (SIGKILL) in the middle of `rm` and `deploy`. Whatever was killed when, once
//! the agent has settled the state and the processes agree (see [`check`]):
//!
//! - no operation is left half-done in `state.json` (no plan, no pending instance);
//! - every instance in `lane status --json` is healthy and its `placement.pid` is a live process
//!   group of that instance (`LANE_INSTANCE=<id>`);
//! - every live process carrying this test's `LANE_HOME`, the agent aside, is in the process group
//!   of an instance in the state (nothing untracked keeps running);
//! - every lane was created by `lane create` or holds a version (no lane of a deploy that neither
//!   completed nor is recorded);
//! - every log file is an instance's;
//! - `lane gc` afterwards has nothing to reclaim;
//!
//! and each operation either happened entirely or not at all (checked per case).
//!
//! Services stop slowly (their shell traps SIGTERM and sleeps before exiting), so `rm`, `assign`,
//! `gc` and a deploy that replaces a version spend most of their time stopping processes after
//! the state changed: where an operation that dies with its client would leave things behind.
//! The cases of one test run at once, each killed at its own delay, so one settle covers them all.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Out, Running, TestEnv};
use serde_json::Value;

/// A service `name` whose processes take `stop` seconds to exit on SIGTERM, built by `build`.
fn manifest(env: &TestEnv, name: &str, build: &str, stop: &str) -> String {
    format!(
        "app = \"demo\"\nproc = \"{name}\"\n\n[build]\ncommand = \"{build}\"\n\n[run]\n\
         command = \"trap 'sleep {stop}; exit 0' TERM; '{bin}' sample-service --app demo \
         --name {name} --port {{port}} & wait\"\n\n[health]\nhttp = \"/healthz\"\ntimeout = \"20s\"\n",
        bin = env.bin.display()
    )
}

/// A git repository for service `name` on branch `branch`.
fn service(env: &TestEnv, name: &str, build: &str, stop: &str, branch: &str) -> PathBuf {
    let repo = env.repo(name, &manifest(env, name, build, stop));
    env.branch(&repo, branch);
    repo
}

/// Runs the commands at once and asserts every one succeeds.
fn all_ok(env: &TestEnv, runs: &[(&Path, Vec<String>)]) {
    let running: Vec<(String, Running)> = runs
        .iter()
        .map(|(dir, args)| {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            (args.join(" "), env.spawn_in(dir, &args, &[]))
        })
        .collect();
    for (what, r) in running {
        let out = r.wait(common::COMMAND_TIMEOUT);
        assert_eq!(out.code, 0, "`lane {what}` failed:\n{out}");
    }
}

fn deploy_args(lane: &str) -> Vec<String> {
    vec!["deploy".into(), "--lane".into(), lane.into()]
}

/// One command killed with `signal` (`INT`, `KILL`) `after` it started.
struct Case {
    label: String,
    dir: PathBuf,
    args: Vec<String>,
    signal: &'static str,
    after: Duration,
}

fn case(label: &str, dir: &Path, args: &[&str], signal: &'static str, ms: u64) -> Case {
    Case {
        label: label.to_owned(),
        dir: dir.to_owned(),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        signal,
        after: Duration::from_millis(ms),
    }
}

/// Alternates SIGINT and SIGKILL over the delays.
fn signal(i: usize) -> &'static str {
    if i.is_multiple_of(2) { "INT" } else { "KILL" }
}

/// Starts every case's command, kills each at its delay, and waits for all of them to exit.
fn run_and_kill(env: &TestEnv, cases: &[Case]) -> BTreeMap<String, Out> {
    let mut running: Vec<(usize, Instant, Running)> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
            (i, Instant::now(), env.spawn_in(&c.dir, &args, &[]))
        })
        .collect();
    running.sort_by_key(|(i, started, _)| *started + cases[*i].after);
    for (i, started, r) in &running {
        let at = *started + cases[*i].after;
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        common::kill(r.pid(), cases[*i].signal);
    }
    running
        .into_iter()
        .map(|(i, _, r)| {
            let c = &cases[i];
            let out = r.wait(common::COMMAND_TIMEOUT);
            // What each kill point met (shown with --nocapture).
            let last = out.stderr.lines().last().unwrap_or_default().to_owned();
            eprintln!(
                "[{}] SIG{} after {:?}: exit {} {last}",
                c.label, c.signal, c.after, out.code
            );
            (c.label.clone(), out)
        })
        .collect()
}

/// What a killed command may have exited with: done (0), cancelled by its Ctrl-C (130), killed
/// by the signal before it could answer (-1), or told its agent went away (7).
fn assert_exit(label: &str, out: &Out, allowed: &[i32]) {
    assert!(
        allowed.contains(&out.code),
        "[{label}] unexpected exit code:\n{out}"
    );
}

/// `KEY=value` strings of a process's environment.
fn environ(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|b| {
            b.split(|c| *c == 0)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn var(pid: u32, key: &str) -> Option<String> {
    let prefix = format!("{key}=");
    environ(pid)
        .into_iter()
        .find_map(|v| v.strip_prefix(&prefix).map(str::to_owned))
}

/// The process group of `pid`.
fn pgid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid pgrp …`
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

/// Every instance in a status object (lanes and baseline).
fn instances(status: &Value) -> Vec<Value> {
    let mut all: Vec<Value> = status["baseline"].as_array().cloned().unwrap_or_default();
    for lane in status["lanes"].as_array().into_iter().flatten() {
        all.extend(lane["instances"].as_array().cloned().unwrap_or_default());
    }
    all
}

/// The log file name of instance `id` (as the supervisor names it).
fn log_name(id: &str) -> String {
    format!("{}.log", id.replace(['/', '#'], "_"))
}

/// Whether the state and the processes agree (see the module docs); `Err` says how they do not.
fn check(env: &TestEnv, created: &BTreeSet<String>) -> Result<Value, String> {
    // Asking for the status first starts an agent if none runs (the command that would have
    // started one may have been killed first).
    let status = env.status();
    let state: Value = std::fs::read_to_string(env.home.join("state.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .ok_or("state.json cannot be read")?;
    if state["plans"].as_object().is_some_and(|p| !p.is_empty()) {
        return Err(format!("operations under way: {:#}", state["plans"]));
    }
    let pending: Vec<&String> = state["instances"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, r)| !r["pending"].is_null())
        .map(|(id, _)| id)
        .collect();
    if !pending.is_empty() {
        return Err(format!("pending instances: {pending:?}"));
    }
    let mut groups: BTreeMap<u32, String> = BTreeMap::new();
    for i in instances(&status) {
        let id = i["id"].as_str().unwrap_or_default().to_owned();
        if i["state"] != "healthy" {
            return Err(format!("{id} is {}", i["state"]));
        }
        let Some(pid) = i["placement"]["pid"].as_u64().map(|p| p as u32) else {
            return Err(format!("healthy {id} has no pid"));
        };
        if !common::alive(pid) || var(pid, "LANE_INSTANCE").as_deref() != Some(id.as_str()) {
            return Err(format!(
                "healthy {id}: pid {pid} is not a live process of it"
            ));
        }
        groups.insert(pid, id);
    }
    let agent = env.agent_pid();
    for (pid, cmd) in env.processes() {
        if Some(pid) == agent {
            continue;
        }
        let group = pgid(pid);
        let owned = group.and_then(|g| groups.get(&g));
        if owned.is_none() {
            return Err(format!(
                "process {pid} ({cmd}, LANE_INSTANCE={:?}, group {group:?}) belongs to no instance \
                 in the state",
                var(pid, "LANE_INSTANCE")
            ));
        }
    }
    for lane in status["lanes"].as_array().into_iter().flatten() {
        let id = lane["id"].as_str().unwrap_or_default();
        let empty = lane["instances"].as_array().is_none_or(Vec::is_empty);
        if empty && !created.contains(id) {
            return Err(format!(
                "lane {id} exists without a version and was not created by `lane create`"
            ));
        }
    }
    let logs: BTreeSet<String> = groups.values().map(|id| log_name(id)).collect();
    for e in std::fs::read_dir(env.home.join("logs"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if !logs.contains(&name) {
            return Err(format!("log {name} is no instance's"));
        }
    }
    Ok(status)
}

/// Waits until [`check`] holds; returns the status.
fn settled(env: &TestEnv, created: &BTreeSet<String>) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match check(env, created) {
            Ok(status) => return status,
            Err(why) if Instant::now() > deadline => {
                panic!("state and processes did not come to agree within 30s: {why}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Waits until [`check`] holds, then asserts `lane gc` finds nothing and it still holds. Returns
/// the status.
fn settle(env: &TestEnv, created: &BTreeSet<String>) -> Value {
    let status = settled(env, created);
    let gc = env.ok(&["gc", "--json"]).json();
    assert_eq!(
        gc,
        serde_json::json!({"lanes_removed": [], "instances_removed": []}),
        "gc found something to reclaim"
    );
    if let Err(why) = check(env, created) {
        panic!("after gc: {why}");
    }
    status
}

fn lane_of<'a>(status: &'a Value, id: &str) -> Option<&'a Value> {
    status["lanes"].as_array()?.iter().find(|l| l["id"] == id)
}

/// The branches of the instances of `service` in `lane` (`baseline` or a lane id).
fn branches(status: &Value, lane: &str, service: &str) -> Vec<String> {
    let list = if lane == "baseline" {
        status["baseline"].as_array().cloned()
    } else {
        lane_of(status, lane).and_then(|l| l["instances"].as_array().cloned())
    };
    list.unwrap_or_default()
        .iter()
        .filter(|i| i["service"] == service)
        .map(|i| i["version"]["branch"].as_str().unwrap_or("?").to_owned())
        .collect()
}

#[test]
fn create_extend_and_switch_killed_at_any_point_happen_entirely_or_not_at_all() {
    let env = TestEnv::new("fault-create", 42);
    env.ok(&["create", "base", "--ttl", "1h"]);
    let expires_before: BTreeMap<String, u64> = (0..6)
        .map(|i| {
            let id = format!("e{i}");
            env.ok(&["create", &id, "--ttl", "1h"]);
            let exp = env.lane(&id).unwrap()["expires"].as_u64().unwrap();
            (id, exp)
        })
        .collect();
    let root = env.root.clone();
    let mut cases = Vec::new();
    for (i, ms) in [0, 3, 8, 15, 30, 60, 100, 200].into_iter().enumerate() {
        let id = format!("c{i}");
        cases.push(case(
            &id,
            &root,
            &["create", &id, "--parent", "base"],
            signal(i),
            ms,
        ));
    }
    for (i, ms) in [0, 5, 15, 40, 90, 200].into_iter().enumerate() {
        let id = format!("e{i}");
        cases.push(case(
            &id,
            &root,
            &["extend", &id, "--by", "2h"],
            signal(i + 1),
            ms,
        ));
    }
    // Switches race each other too: the active lane ends as one of them, or as it was.
    for (i, ms) in [0, 10, 30, 80].into_iter().enumerate() {
        let id = format!("e{i}");
        let label = format!("switch-{id}");
        cases.push(case(&label, &root, &["switch", &id], signal(i), ms));
    }
    let outs = run_and_kill(&env, &cases);
    let mut created: BTreeSet<String> = expires_before.keys().cloned().collect();
    created.insert("base".into());
    created.extend((0..8).map(|i| format!("c{i}")));
    let status = settle(&env, &created);
    for i in 0..8 {
        let id = format!("c{i}");
        let out = &outs[&id];
        assert_exit(&id, out, &[0, -1]);
        let lane = lane_of(&status, &id);
        if out.code == 0 {
            assert!(lane.is_some(), "[{id}] created but missing:\n{out}");
        }
        if let Some(l) = lane {
            assert_eq!(l["parent"], "base", "[{id}] {l:#}");
        }
    }
    for (id, before) in &expires_before {
        let out = &outs[id];
        assert_exit(id, out, &[0, -1]);
        let now = lane_of(&status, id).unwrap()["expires"].as_u64().unwrap();
        let extended = now >= before + 7200 - 2 && now <= before + 7200 + 2;
        assert!(
            now == *before || extended,
            "[{id}] expires {now}: neither {before} nor 2h later"
        );
        if out.code == 0 {
            assert!(extended, "[{id}] reported extended but expires {now}");
        }
    }
    let active = status["active_lane"].as_str().unwrap_or("?");
    let switched: Vec<String> = (0..4)
        .filter(|i| outs[&format!("switch-e{i}")].code == 0)
        .map(|i| format!("e{i}"))
        .collect();
    assert!(
        ["baseline", "e0", "e1", "e2", "e3"].contains(&active),
        "active lane {active}"
    );
    if !switched.is_empty() {
        assert_ne!(active, "baseline", "switched to {switched:?}, yet baseline");
    }
    env.finish();
}

#[test]
fn deploys_killed_at_any_point_roll_back_before_going_live_and_complete_after() {
    let env = TestEnv::new("fault-deploy", 43);
    let repo = service(&env, "b", "sleep 0.4", "1.5", "v1");
    let old: Vec<String> = (0..8).map(|i| format!("d{i}")).collect();
    let setup: Vec<(&Path, Vec<String>)> = old
        .iter()
        .map(|l| (repo.as_path(), deploy_args(l)))
        .collect();
    all_ok(&env, &setup);
    env.branch(&repo, "v2");

    let mut cases = Vec::new();
    for (i, ms) in [0, 150, 350, 600, 900, 1300, 1800, 2600]
        .into_iter()
        .enumerate()
    {
        let lane = format!("d{i}");
        cases.push(case(
            &lane,
            &repo,
            &["deploy", "--lane", &lane],
            signal(i),
            ms,
        ));
    }
    for (i, ms) in [80, 500, 1000, 1500].into_iter().enumerate() {
        let lane = format!("n{i}");
        cases.push(case(
            &lane,
            &repo,
            &["deploy", "--lane", &lane],
            signal(i + 1),
            ms,
        ));
    }
    let outs = run_and_kill(&env, &cases);
    let status = settle(&env, &BTreeSet::new());
    for c in &cases {
        let out = &outs[&c.label];
        assert_exit(&c.label, out, &[0, 130, -1]);
        let got = branches(&status, &c.label, "demo.b");
        let fresh = c.label.starts_with('n');
        let allowed: &[&str] = if fresh { &["v2"] } else { &["v1", "v2"] };
        assert!(
            got.len() <= 1 && got.iter().all(|b| allowed.contains(&b.as_str())),
            "[{}] versions {got:?}",
            c.label
        );
        if !fresh {
            assert_eq!(got.len(), 1, "[{}] the lane lost its version", c.label);
        }
        match out.code {
            0 => assert_eq!(got, ["v2"], "[{}] reported deployed:\n{out}", c.label),
            130 => {
                assert!(
                    out.stderr
                        .contains("cancelled before anything went live; nothing was left behind"),
                    "{out}"
                );
                let before: &[&str] = if fresh { &[] } else { &["v1"] };
                assert_eq!(got, before, "[{}] reported cancelled:\n{out}", c.label);
                if fresh {
                    assert!(lane_of(&status, &c.label).is_none(), "[{}]", c.label);
                }
            }
            _ => {}
        }
    }
    env.finish();
}

/// Lanes `ids`, each with a version of each service in `repos`.
fn lanes_with(env: &TestEnv, ids: &[String], repos: &[PathBuf]) {
    for repo in repos {
        let runs: Vec<(&Path, Vec<String>)> = ids
            .iter()
            .map(|l| (repo.as_path(), deploy_args(l)))
            .collect();
        all_ok(env, &runs);
    }
}

#[test]
fn rm_killed_at_any_point_removes_the_lane_with_all_its_processes_or_nothing() {
    let env = TestEnv::new("fault-rm", 44);
    let repos: Vec<PathBuf> = ["b1", "b2", "b3"]
        .iter()
        .map(|n| service(&env, n, "true", "1.5", "x"))
        .collect();
    let ids: Vec<String> = (0..6).map(|i| format!("r{i}")).collect();
    lanes_with(&env, &ids, &repos);

    let root = env.root.clone();
    let cases: Vec<Case> = [0, 20, 60, 150, 500, 1000]
        .into_iter()
        .enumerate()
        .map(|(i, ms)| case(&ids[i], &root, &["rm", &ids[i]], signal(i), ms))
        .collect();
    let outs = run_and_kill(&env, &cases);
    let status = settle(&env, &BTreeSet::new());
    for id in &ids {
        let out = &outs[id];
        assert_exit(id, out, &[0, -1]);
        if let Some(lane) = lane_of(&status, id) {
            assert_ne!(out.code, 0, "[{id}] reported deleted:\n{out}");
            assert_eq!(
                lane["instances"].as_array().map(Vec::len),
                Some(3),
                "[{id}] {lane:#}"
            );
        }
    }
    env.finish();
}

#[test]
fn assign_killed_at_any_point_moves_the_version_entirely_or_not_at_all() {
    let env = TestEnv::new("fault-assign", 45);
    let repo = service(&env, "b", "true", "1.5", "to-branch");
    let from: Vec<String> = (0..6).map(|i| format!("f{i}")).collect();
    let to: Vec<String> = (0..6).map(|i| format!("t{i}")).collect();
    lanes_with(&env, &to, std::slice::from_ref(&repo));
    env.branch(&repo, "from-branch");
    lanes_with(&env, &from, std::slice::from_ref(&repo));

    let root = env.root.clone();
    let cases: Vec<Case> = [0, 20, 60, 150, 500, 1000]
        .into_iter()
        .enumerate()
        .map(|(i, ms)| {
            let args = [
                "assign", "demo.b", "--from", &from[i], "--to", &to[i], "--force",
            ];
            case(&from[i], &root, &args, signal(i), ms)
        })
        .collect();
    let outs = run_and_kill(&env, &cases);
    // A `from` lane left without its version is one the developer created by deploying into it.
    let created: BTreeSet<String> = from.iter().cloned().collect();
    let status = settle(&env, &created);
    for (f, t) in from.iter().zip(&to) {
        let out = &outs[f];
        assert_exit(f, out, &[0, -1]);
        let (in_from, in_to) = (
            branches(&status, f, "demo.b"),
            branches(&status, t, "demo.b"),
        );
        let before = in_from == ["from-branch"] && in_to == ["to-branch"];
        let after = in_from.is_empty() && in_to == ["from-branch"];
        assert!(before || after, "[{f}] from {in_from:?}, to {in_to:?}");
        if out.code == 0 {
            assert!(after, "[{f}] reported moved:\n{out}");
        }
    }
    env.finish();
}

#[test]
fn gc_killed_at_any_point_reclaims_the_expired_lanes_entirely_or_not_at_all() {
    let env = TestEnv::new("fault-gc", 46);
    // Only `lane gc` reclaims expired lanes here: the agent's own reaping waits an hour.
    let out = env.run_in(&env.root, &["status"], &[("LANE_REAP_INTERVAL", "1h")]);
    assert_eq!(out.code, 0, "{out}");
    let repos: Vec<PathBuf> = ["b1", "b2"]
        .iter()
        .map(|n| service(&env, n, "true", "1.5", "x"))
        .collect();
    for (i, ms) in [0, 60, 250, 700, 1200].into_iter().enumerate() {
        let ids: Vec<String> = ["a", "b"].iter().map(|s| format!("g{i}{s}")).collect();
        for id in &ids {
            env.ok(&["create", id, "--ttl", "1s"]);
        }
        lanes_with(&env, &ids, &repos);
        env.wait_for("the lanes to expire", Duration::from_secs(5), || {
            let st = env.status();
            let expired = ids.iter().all(|id| {
                lane_of(&st, id).is_some_and(|l| l["expires"].as_u64() <= st["now"].as_u64())
            });
            expired.then_some(())
        });
        let label = format!("gc-{ms}ms");
        let c = case(&label, &env.root, &["gc", "--json"], signal(i), ms);
        let out = &run_and_kill(&env, std::slice::from_ref(&c))[&label];
        assert_exit(&label, out, &[0, -1]);
        let status = settled(&env, &BTreeSet::new());
        let left: Vec<&String> = ids
            .iter()
            .filter(|id| lane_of(&status, id).is_some())
            .collect();
        if left.is_empty() {
            continue;
        }
        // The killed gc never reached the agent: both lanes are still whole, and the next gc
        // reclaims them.
        assert_eq!(left.len(), ids.len(), "[{label}] half reclaimed: {left:?}");
        assert_ne!(out.code, 0, "[{label}] reported done:\n{out}");
        for id in &ids {
            let n = lane_of(&status, id).unwrap()["instances"]
                .as_array()
                .map(Vec::len);
            assert_eq!(n, Some(2), "[{label}] {id}");
        }
        let gc = env.ok(&["gc", "--json"]).json();
        let mut removed: Vec<&str> = gc["lanes_removed"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        removed.sort();
        assert_eq!(removed, ids, "[{label}]");
    }
    settle(&env, &BTreeSet::new());
    env.finish();
}

#[test]
fn baseline_up_killed_at_any_point_leaves_what_is_up_up_and_says_so() {
    let env = TestEnv::new("fault-baseline", 47);
    let names = ["s1", "s2", "s3"];
    for n in names {
        service(&env, n, "sleep 0.2", "0.5", "main-line");
    }
    let ws = env.root.join("repos").join("lane-workspace.toml");
    let list: String = names
        .iter()
        .map(|n| format!("[[service]]\npath = \"{n}\"\n"))
        .collect();
    std::fs::write(&ws, list).unwrap();
    let ws = ws.to_str().unwrap().to_owned();
    for (i, ms) in [0, 300, 900, 1700, 2600].into_iter().enumerate() {
        let label = format!("baseline-{ms}ms");
        let c = case(
            &label,
            &env.root,
            &["baseline", "up", "--file", &ws],
            signal(i),
            ms,
        );
        let outs = run_and_kill(&env, std::slice::from_ref(&c));
        let out = &outs[&label];
        assert_exit(&label, out, &[0, 130, -1]);
        let status = settle(&env, &BTreeSet::new());
        for n in names {
            let got = branches(&status, "baseline", &format!("demo.{n}"));
            assert!(got.len() <= 1, "[{label}] demo.{n}: {got:?}");
            if out.code == 0 {
                assert_eq!(got.len(), 1, "[{label}] reported up:\n{out}");
            }
        }
        if out.code == 130 {
            assert!(out.stderr.contains("cancelled"), "[{label}] {out}");
            // Never "nothing was left behind" once something came up: it names what is up.
            if out.stderr.contains("up and staying up") {
                assert!(
                    !out.stderr.contains("nothing was left behind"),
                    "[{label}] {out}"
                );
                assert!(out.stderr.contains("demo.s1"), "[{label}] {out}");
            }
        }
    }
    env.finish();
}

/// Starts each command of `runs` at `kill_at - offset` and SIGKILLs the agent at `kill_at`; then
/// waits for every command to exit. Returns their outputs by label.
fn kill_agent_amid(
    env: &TestEnv,
    runs: &[(String, PathBuf, Vec<String>, u64)],
) -> BTreeMap<String, Out> {
    let agent = env.agent_pid().expect("an agent runs");
    let longest = runs.iter().map(|r| r.3).max().unwrap_or(0);
    let start = Instant::now();
    let kill_at = start + Duration::from_millis(longest);
    let mut order: Vec<&(String, PathBuf, Vec<String>, u64)> = runs.iter().collect();
    order.sort_by_key(|r| std::cmp::Reverse(r.3));
    let mut running = Vec::new();
    for (label, dir, args, offset) in order {
        let at = kill_at - Duration::from_millis(*offset);
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        running.push((label.clone(), env.spawn_in(dir, &args, &[])));
    }
    if let Some(wait) = kill_at.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
    common::kill(agent, "KILL");
    env.wait_for("the agent to die", Duration::from_secs(5), || {
        (!common::alive(agent)).then_some(())
    });
    let outs = running
        .into_iter()
        .map(|(l, r)| (l, r.wait(common::COMMAND_TIMEOUT)))
        .collect();
    // The next command starts a new agent, which finishes or undoes what the dead one left.
    env.ok(&["status"]);
    assert_ne!(env.agent_pid(), Some(agent), "a new agent runs");
    outs
}

#[test]
fn the_next_agent_finishes_an_rm_whose_agent_was_killed() {
    let env = TestEnv::new("fault-agent-rm", 48);
    let repos: Vec<PathBuf> = ["b1", "b2", "b3"]
        .iter()
        .map(|n| service(&env, n, "true", "1.5", "x"))
        .collect();
    let ids: Vec<String> = (0..4).map(|i| format!("k{i}")).collect();
    lanes_with(&env, &ids, &repos);
    let doomed: BTreeMap<String, Vec<u32>> = {
        let status = env.status();
        ids.iter()
            .map(|id| {
                let pids = lane_of(&status, id).unwrap()["instances"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|i| i["placement"]["pid"].as_u64().map(|p| p as u32))
                    .collect();
                (id.clone(), pids)
            })
            .collect()
    };
    // Killed 0.1 s, 0.4 s, 0.9 s and 1.4 s into their rm: while its processes stop.
    let runs: Vec<_> = ids
        .iter()
        .zip([100, 400, 900, 1400])
        .map(|(id, ms)| {
            (
                id.clone(),
                env.root.clone(),
                vec!["rm".into(), id.clone()],
                ms,
            )
        })
        .collect();
    let outs = kill_agent_amid(&env, &runs);
    let status = settle(&env, &BTreeSet::new());
    for id in &ids {
        let out = &outs[id];
        assert_exit(id, out, &[0, 7]);
        if let Some(lane) = lane_of(&status, id) {
            assert_ne!(out.code, 0, "[{id}] reported deleted:\n{out}");
            assert_eq!(
                lane["instances"].as_array().map(Vec::len),
                Some(3),
                "[{id}]"
            );
        } else {
            for pid in &doomed[id] {
                assert!(
                    !common::alive(*pid),
                    "[{id}] process {pid} of the removed lane runs"
                );
            }
        }
    }
    env.finish();
}

#[test]
fn the_next_agent_finishes_or_undoes_a_deploy_whose_agent_was_killed() {
    let env = TestEnv::new("fault-agent-deploy", 49);
    let repo = service(&env, "b", "sleep 0.4", "1.5", "v1");
    let ids: Vec<String> = (0..5).map(|i| format!("a{i}")).collect();
    lanes_with(&env, &ids, std::slice::from_ref(&repo));
    env.branch(&repo, "v2");
    // Killed in the build, at start, at health, and while the replaced version stops.
    let mut runs: Vec<_> = ids
        .iter()
        .zip([150, 500, 900, 1400, 2000])
        .map(|(id, ms)| (id.clone(), repo.clone(), deploy_args(id), ms))
        .collect();
    runs.push(("fresh".into(), repo.clone(), deploy_args("fresh"), 800));
    let outs = kill_agent_amid(&env, &runs);
    let status = settle(&env, &BTreeSet::new());
    for (label, _, _, _) in &runs {
        let out = &outs[label];
        assert_exit(label, out, &[0, 7]);
        let got = branches(&status, label, "demo.b");
        if label == "fresh" {
            assert!(got.is_empty() || got == ["v2"], "[{label}] {got:?}");
        } else {
            assert!(got == ["v1"] || got == ["v2"], "[{label}] {got:?}");
        }
        if out.code == 0 {
            assert_eq!(got, ["v2"], "[{label}] reported deployed:\n{out}");
        }
    }
    env.finish();
}

#[test]
fn gc_reclaims_instance_processes_nothing_accounts_for() {
    let env = TestEnv::new("fault-strays", 50);
    env.ok(&["status"]);
    // A process of this state dir's instances that no agent knows of (as a crash could leave).
    let mut stray = std::process::Command::new("sh");
    stray
        .args(["-c", "sleep 60"])
        .env("LANE_HOME", &env.home)
        .env("LANE_STATE_DIR", &env.home)
        .env("LANE_INSTANCE", "ghost/demo.b#999")
        .stdin(std::process::Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut stray, 0);
    let mut child = stray.spawn().unwrap();
    let gc = env.ok(&["gc", "--json"]).json();
    assert_eq!(
        gc["instances_removed"],
        serde_json::json!(["ghost/demo.b#999"]),
        "{gc:#}"
    );
    let status = child.wait().unwrap();
    assert!(!status.success(), "killed: {status:?}");
    settle(&env, &BTreeSet::new());
    env.finish();
}

#[test]
fn lane_down_amid_a_deploy_rolls_it_back_and_tells_its_client() {
    let env = TestEnv::new("fault-down", 51);
    let repo = service(&env, "b", "sleep 30", "1.5", "x");
    let deploy = env.spawn_in(&repo, &["deploy", "--lane", "slow"], &[]);
    env.wait_for("the slow build", Duration::from_secs(20), || {
        env.processes()
            .iter()
            .any(|(_, cmd)| cmd.contains("sleep 30"))
            .then_some(())
    });
    env.ok(&["down"]);
    let out = deploy.wait(Duration::from_secs(20));
    assert_eq!(out.code, 130, "{out}");
    assert!(
        out.stderr.contains("cancelled before anything went live"),
        "{out}"
    );
    assert!(env.processes().is_empty(), "{:#?}", env.processes());
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(env.home.join("state.json")).unwrap())
            .unwrap();
    assert_eq!(state["lanes"], serde_json::json!({}), "{state:#}");
    assert!(state.get("plans").is_none(), "{state:#}");
    settle(&env, &BTreeSet::new());
    env.finish();
}

#[test]
fn baseline_up_that_fails_half_way_keeps_what_is_up_and_names_what_is_not() {
    let env = TestEnv::new("fault-baseline-fails", 52);
    service(&env, "s1", "true", "0.2", "main-line");
    service(
        &env,
        "s2",
        "echo s2-build-breaks; false",
        "0.2",
        "main-line",
    );
    service(&env, "s3", "true", "0.2", "main-line");
    let ws = env.root.join("repos").join("lane-workspace.toml");
    std::fs::write(
        &ws,
        "[[service]]\npath = \"s1\"\n[[service]]\npath = \"s2\"\n[[service]]\npath = \"s3\"\n",
    )
    .unwrap();
    let out = env.run(&["baseline", "up", "--file", ws.to_str().unwrap()]);
    assert_eq!(out.code, 6, "the build failure's code: {out}");
    for text in [
        "s2-build-breaks",
        "baseline up stopped at demo.s2, which did not start",
        "up and staying up (running, routed): demo.s1",
        "not started: demo.s3",
    ] {
        assert!(out.stderr.contains(text), "says `{text}`: {out}");
    }
    assert!(!out.stderr.contains("nothing was left behind"), "{out}");
    let status = settle(&env, &BTreeSet::new());
    assert_eq!(branches(&status, "baseline", "demo.s1"), ["main-line"]);
    assert!(branches(&status, "baseline", "demo.s2").is_empty());
    assert!(branches(&status, "baseline", "demo.s3").is_empty());
    let r = common::http_get(env.router(), "s1.demo.localhost", "/", &[]);
    assert_eq!(r.served_by(), ["demo.s1@baseline"], "{r:?}");
    env.finish();
}
