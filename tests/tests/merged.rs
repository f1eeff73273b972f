//! Lanes end with their branch: a lane whose version's branch is merged into the repository's
//! default branch (fast-forward, merge commit, squash merge) is marked `merged` and reclaimed
//! after `LANE_MERGED_GRACE`, with its processes; an unmerged lane stays; `lane extend` keeps a
//! merged lane; the history says why, with the owner.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{TestEnv, sample_manifest};
use serde_json::Value;

const GRACE_SECS: u64 = 8;

/// Makes `branch` off main in `repo` with one commit of its own (a file named after it), and
/// deploys it into `lane`; back on main after. Returns the instance's pid.
fn deploy_branch(env: &TestEnv, repo: &Path, branch: &str, lane: &str, extra: &[&str]) -> u32 {
    env.git(repo, &["checkout", "-q", "main"]);
    env.branch(repo, branch);
    for (i, name) in std::iter::once(branch)
        .chain(extra.iter().copied())
        .enumerate()
    {
        std::fs::write(repo.join(format!("{name}.txt")), format!("{name}\n")).unwrap();
        env.git(repo, &["add", "."]);
        env.git(repo, &["commit", "-qm", &format!("{branch} work {i}")]);
    }
    let out = env.run_in(
        repo,
        &["deploy", "--lane", lane],
        &[
            ("LANE_MERGED_GRACE", &format!("{GRACE_SECS}s")),
            ("LANE_MERGE_CHECK_INTERVAL", "300ms"),
        ],
    );
    assert_eq!(out.code, 0, "{out}");
    env.git(repo, &["checkout", "-q", "main"]);
    let service = format!("demo.{}", repo.file_name().unwrap().to_str().unwrap());
    env.instance(lane, &service).expect("the lane's instance")["placement"]["pid"]
        .as_u64()
        .expect("a pid") as u32
}

/// The lane's `merged` object once `lane ls --json` shows one.
fn wait_marked(env: &TestEnv, lane: &str) -> Value {
    env.wait_for(
        &format!("lane {lane} to be marked merged"),
        Duration::from_secs(20),
        || {
            let l = env.lane(lane)?;
            (!l["merged"].is_null()).then(|| l["merged"].clone())
        },
    )
}

fn last_history(env: &TestEnv, lane: &str) -> Value {
    let h = env.ok(&["history", lane, "--json"]).json();
    h.as_array()
        .and_then(|a| a.last())
        .cloned()
        .expect("history")
}

#[test]
fn merged_lanes_are_marked_and_reclaimed_after_the_grace_period_unmerged_and_extended_ones_stay() {
    let env = TestEnv::new("merged", 180);
    let b = env.repo("b", &sample_manifest(&env.bin, "b", None, ""));
    // The lane kept by `lane extend` is of another repository (its merge moves another main).
    let c = env.repo("c", &sample_manifest(&env.bin, "c", None, ""));

    let ff = deploy_branch(&env, &b, "ff-work", "by-ff", &[]);
    let mc = deploy_branch(&env, &b, "mc-work", "by-merge", &[]);
    let sq = deploy_branch(&env, &b, "sq-work", "by-squash", &["sq-more"]);
    let open = deploy_branch(&env, &b, "open-work", "unmerged", &[]);
    let kept = deploy_branch(&env, &c, "kept-work", "kept", &[]);

    // Deployed, nothing merged: nothing is marked.
    std::thread::sleep(Duration::from_millis(900));
    for lane in ["by-ff", "by-merge", "by-squash", "unmerged", "kept"] {
        let l = env.lane(lane).expect("the lane");
        assert!(l["merged"].is_null(), "{l:#}");
    }

    // Merged, then kept with `lane extend` before its grace period is over.
    env.git(&c, &["merge", "-q", "--ff-only", "kept-work"]);
    let mark = wait_marked(&env, "kept");
    let since = mark["since"].as_u64().unwrap();
    assert_eq!(
        mark["reclaim_at"].as_u64(),
        Some(since + GRACE_SECS),
        "{mark:#}"
    );
    assert_eq!(mark["target"], "main", "{mark:#}");
    let ls = env.ok(&["ls"]).stdout;
    assert!(
        ls.contains("(merged)")
            && ls.contains("merged: lane kept")
            && ls.contains("lane extend kept"),
        "{ls}"
    );
    let out = env.ok(&["extend", "kept", "--by", "1h"]).stdout;
    assert!(
        out.contains("lane kept is merged") && out.contains("kept:"),
        "{out}"
    );
    let l = env.lane("kept").expect("kept is still there");
    assert!(!l["merged"].is_null(), "still shown merged: {l:#}");
    assert!(
        l["merged"]["reclaim_at"].is_null(),
        "but not reclaimed: {l:#}"
    );
    let ext = last_history(&env, "kept");
    assert_eq!(ext["event"], "extend");
    assert!(
        ext["reason"]
            .as_str()
            .unwrap()
            .contains("keeps the merged lane"),
        "{ext:#}"
    );

    // A fast-forward (and the branch deleted after: its commit is in main), a merge commit, and
    // a squash merge of two commits, main having moved on meanwhile.
    env.git(&b, &["merge", "-q", "--ff-only", "ff-work"]);
    env.git(&b, &["branch", "-q", "-d", "ff-work"]);
    env.git(
        &b,
        &["merge", "-q", "--no-ff", "-m", "merge mc-work", "mc-work"],
    );
    env.git(&b, &["merge", "-q", "--squash", "sq-work"]);
    env.git(&b, &["commit", "-qm", "squashed sq-work"]);

    let cases = [
        (
            "by-ff",
            ff,
            "ff-work",
            "branch deleted, its commit is in it",
        ),
        ("by-merge", mc, "mc-work", "fast-forward or merge commit"),
        ("by-squash", sq, "sq-work", "squash"),
    ];
    for (lane, _, branch, how) in &cases {
        let mark = wait_marked(&env, lane);
        let reason = mark["reason"].as_str().unwrap();
        assert!(
            reason.contains(&format!("branch {branch} into main")) && reason.contains(how),
            "{lane}: {mark:#}"
        );
        let status = env.status();
        let in_status = status["lanes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["id"] == *lane)
            .map(|l| l["merged"].clone());
        assert!(
            in_status.is_some_and(|m| !m.is_null()),
            "status shows it: {status:#}"
        );
    }
    for (lane, pid, branch, _) in &cases {
        env.wait_for(
            &format!("the merged lane {lane} to be reclaimed"),
            Duration::from_secs(30),
            || env.lane(lane).is_none().then_some(()),
        );
        env.wait_for(
            &format!("{lane}'s process to stop"),
            Duration::from_secs(10),
            || (!common::alive(*pid)).then_some(()),
        );
        let last = last_history(&env, lane);
        assert_eq!(last["event"], "reclaim", "{last:#}");
        assert_eq!(last["owner"], "alice@example.com", "{last:#}");
        assert!(last["actor"].is_null(), "{last:#}");
        let why = last["reason"].as_str().unwrap();
        assert!(
            why.starts_with("merged: ")
                && why.contains(&format!("branch {branch} into main"))
                && why.contains("LANE_MERGED_GRACE"),
            "{last:#}"
        );
    }

    // Well past every grace period: the unmerged lane and the kept one are still there, running.
    std::thread::sleep(Duration::from_secs(1));
    let l = env.lane("unmerged").expect("the unmerged lane stays");
    assert!(l["merged"].is_null(), "{l:#}");
    assert!(common::alive(open), "its process runs");
    let l = env.lane("kept").expect("the kept lane stays");
    assert!(l["merged"]["reclaim_at"].is_null(), "{l:#}");
    assert!(common::alive(kept), "its process runs");
    assert_ne!(last_history(&env, "unmerged")["event"], "reclaim");
    env.finish();
}
