//! `lane deploy` with a Redis binding's `copy`: the deploy that claims the lane's database copies
//! baseline's matching keys into it (values and TTLs, within the quota), a second deploy copies
//! nothing again, `lane data ls` shows the quota, and `lane rm` flushes the lane's database while
//! baseline's keys stay as they were (real Redis from `scripts/services.sh`).

mod common;

use common::{TestEnv, sample_manifest};
use lane_data::redis::{Redis, Reply};

fn redis_url() -> String {
    common::services::start("redis").var("LANE_TEST_REDIS_URL")
}

#[test]
fn the_first_deploy_copies_matching_baseline_keys_once() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let redis_url = redis_url();
    let (base_index, first, last) = (47u32, 45u32, 46u32);
    let mut r = rt.block_on(Redis::connect(&redis_url)).unwrap();
    let mut run = |args: &[&[u8]]| rt.block_on(r.cmd(args)).unwrap();
    for i in first..=base_index {
        run(&[b"SELECT", i.to_string().as_bytes()]);
        run(&[b"FLUSHDB"]);
    }
    run(&[b"SELECT", base_index.to_string().as_bytes()]);
    run(&[b"SET", b"session:a", b"alice", b"PX", b"900000"]);
    run(&[b"SET", b"session:b", b"bob"]);
    run(&[b"HSET", b"feature:flags", b"dark", b"on"]);
    run(&[b"SET", b"orders:1", b"not copied"]);
    let base_dump = |run: &mut dyn FnMut(&[&[u8]]) -> Reply| {
        run(&[b"SELECT", base_index.to_string().as_bytes()]);
        ["session:a", "session:b", "feature:flags", "orders:1"]
            .map(|k| run(&[b"DUMP", k.as_bytes()]))
    };
    let before = base_dump(&mut run);

    let env = TestEnv::new("data-redis-copy", 212);
    let bindings = format!(
        "\n[data.cache]\nkind = \"redis\"\nurl = \"{redis_url}/{base_index}\"\nenv = \"REDIS_URL\"\n\
         pool = [{first}, {last}]\n\
         copy = {{ patterns = [\"session:*\", \"feature:*\"], keys = 100, bytes = \"1MiB\" }}\n"
    );
    let repo = env.repo(
        "b",
        &format!("{}{bindings}", sample_manifest(&env.bin, "b", None, "")),
    );
    let ws = env.root.join("repos").join("lane-workspace.toml");
    std::fs::write(&ws, "[[service]]\npath = \"b\"\n").unwrap();
    env.ok(&["baseline", "up", "--file", ws.to_str().unwrap()]);
    env.branch(&repo, "feature");
    env.ok_in(&repo, &["deploy", "--lane", "feat-c"]);

    let index = first.to_string();
    run(&[b"SELECT", index.as_bytes()]);
    let mut keys = match run(&[b"KEYS", b"*"]) {
        Reply::Array(Some(k)) => k
            .into_iter()
            .map(|k| match k {
                Reply::Bulk(Some(b)) => String::from_utf8(b).unwrap(),
                other => panic!("{other:?}"),
            })
            .collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    keys.sort();
    assert_eq!(
        keys,
        ["__lane_owner__", "feature:flags", "session:a", "session:b"]
    );
    assert_eq!(
        run(&[b"GET", b"session:b"]),
        Reply::Bulk(Some(b"bob".to_vec()))
    );
    let Reply::Int(ttl) = run(&[b"PTTL", b"session:a"]) else {
        panic!("PTTL")
    };
    assert!(0 < ttl && ttl <= 900_000, "the TTL came along: {ttl}");
    assert_eq!(run(&[b"PTTL", b"session:b"]), Reply::Int(-1));

    let ls = env.ok_in(&repo, &["data", "ls", "--json"]).json();
    let row = ls
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["binding"] == "cache"))
        .unwrap_or_else(|| panic!("cache in {ls:#}"))
        .clone();
    assert_eq!(row["target"], index.as_str(), "{ls:#}");
    assert_eq!(row["size"], "3 keys", "{ls:#}");
    assert_eq!(
        row["quota"],
        "pool 45..=46, copy session:* feature:* (100 keys, 1048576 bytes)"
    );

    // The lane changes its keys; deploying again copies nothing over them.
    run(&[b"SELECT", index.as_bytes()]);
    run(&[b"DEL", b"session:a"]);
    run(&[b"SET", b"session:b", b"lane's"]);
    env.ok_in(&repo, &["deploy", "--lane", "feat-c"]);
    run(&[b"SELECT", index.as_bytes()]);
    assert_eq!(run(&[b"EXISTS", b"session:a"]), Reply::Int(0));
    assert_eq!(
        run(&[b"GET", b"session:b"]),
        Reply::Bulk(Some(b"lane's".to_vec()))
    );

    env.ok(&["rm", "feat-c"]);
    run(&[b"SELECT", index.as_bytes()]);
    assert_eq!(run(&[b"DBSIZE"]), Reply::Int(0), "flushed and released");
    assert_eq!(base_dump(&mut run), before, "baseline's keys unchanged");
    assert_eq!(run(&[b"DBSIZE"]), Reply::Int(4));
    env.finish();
    run(&[b"FLUSHDB"]);
}
