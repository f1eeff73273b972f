//! `lane deploy` gives a lane its own MySQL database and Redis database (real MariaDB and Redis,
//! started by `scripts/services.sh`), its process reads their addresses, and `lane rm` removes
//! exactly them: baseline's tables (checksums) and keys are as they were.

mod common;

use common::{TestEnv, sample_manifest};
use lane_data::mysql::{Mysql, quote};
use lane_data::redis::{Redis, Reply};

/// The test servers' addresses, started when needed (failing the test when they cannot be).
fn servers() -> (String, String) {
    let env = common::services::start("all");
    (
        env.var("LANE_TEST_MYSQL_URL"),
        env.var("LANE_TEST_REDIS_URL"),
    )
}

fn environ(pid: u32) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/environ")).unwrap()).into_owned()
}

#[test]
fn a_lane_gets_its_own_database_and_redis_index_and_rm_removes_only_them() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (mysql_url, redis_url) = servers();
    let db = format!("le_{}", std::process::id());
    let q = quote(&db);
    let (base_index, first, last) = (40u32, 41u32, 44u32);
    let m = rt.block_on(Mysql::connect(&mysql_url)).unwrap();
    rt.block_on(m.execute(&[
        &format!("DROP DATABASE IF EXISTS {q}"),
        &format!("CREATE DATABASE {q}"),
        &format!("CREATE TABLE {q}.t (id INT PRIMARY KEY, v VARCHAR(10))"),
        &format!("INSERT INTO {q}.t VALUES (1, 'one'), (2, 'two'), (3, 'three')"),
    ]))
    .unwrap();
    let checksum = || {
        rt.block_on(m.show(&format!("CHECKSUM TABLE {q}.t"), 1))
            .unwrap()
    };
    let before = checksum();
    let mut r = rt.block_on(Redis::connect(&redis_url)).unwrap();
    for i in base_index..=last {
        rt.block_on(r.cmd(&[b"SELECT", i.to_string().as_bytes()]))
            .unwrap();
        rt.block_on(r.cmd(&[b"FLUSHDB"])).unwrap();
    }
    rt.block_on(r.cmd(&[b"SELECT", base_index.to_string().as_bytes()]))
        .unwrap();
    rt.block_on(r.cmd(&[b"SET", b"base", b"1"])).unwrap();

    let env = TestEnv::new("data-lanes", 137);
    let bindings = format!(
        "\n[data.orders]\nkind = \"mysql\"\nurl = \"{mysql_url}/{db}\"\nenv = \"ORDERS_DSN\"\n\
         sample = {{ rows = 2, bytes = \"1MiB\" }}\n\
         [data.cache]\nkind = \"redis\"\nurl = \"{redis_url}/{base_index}\"\nenv = \"REDIS_URL\"\n\
         pool = [{first}, {last}]\n"
    );
    let repo = env.repo(
        "b",
        &format!("{}{bindings}", sample_manifest(&env.bin, "b", None, "")),
    );
    let ws = env.root.join("repos").join("lane-workspace.toml");
    std::fs::write(&ws, "[[service]]\npath = \"b\"\n").unwrap();
    env.ok(&["baseline", "up", "--file", ws.to_str().unwrap()]);
    env.branch(&repo, "feature");
    env.ok_in(&repo, &["deploy", "--lane", "feat-d"]);

    let lane_db = format!("{db}__lane_feat_d");
    assert!(rt.block_on(m.database_exists(&lane_db)).unwrap());
    let rows = rt
        .block_on(m.column(&format!("SELECT COUNT(*) FROM {}.t", quote(&lane_db))))
        .unwrap();
    assert_eq!(rows, ["2"], "the sample's row limit");
    let lane = env.lane("feat-d").expect("the lane");
    let data = lane["data"].as_array().cloned().unwrap_or_default();
    assert!(
        data.iter()
            .any(|d| d["kind"] == "redis" && d["name"] == "cache" && d["target"] == "41"),
        "{lane:#}"
    );
    let pid = |lane: &str| {
        env.instance(lane, "demo.b").expect("instance")["placement"]["pid"]
            .as_u64()
            .unwrap() as u32
    };
    let lane_env = environ(pid("feat-d"));
    assert!(
        lane_env.contains(&format!("ORDERS_DSN={mysql_url}/{lane_db}\0")),
        "{lane_env}"
    );
    assert!(
        lane_env.contains(&format!("REDIS_URL={redis_url}/41\0")),
        "{lane_env}"
    );
    let base_env = environ(pid("baseline"));
    assert!(
        base_env.contains(&format!("ORDERS_DSN={mysql_url}/{db}\0")),
        "{base_env}"
    );
    assert!(base_env.contains(&format!("REDIS_URL={redis_url}/{base_index}\0")));

    // `lane data ls`: what the lane owns, with sizes and quotas from the lane.toml here.
    let ls = env.ok_in(&repo, &["data", "ls", "--json"]).json();
    let rows = ls.as_array().expect("an array");
    let row = |binding: &str| {
        rows.iter()
            .find(|r| r["lane"] == "feat-d" && r["binding"] == binding)
            .unwrap_or_else(|| panic!("{binding} in {ls:#}"))
            .clone()
    };
    assert_eq!(row("orders")["target"], lane_db.as_str(), "{ls:#}");
    assert_eq!(row("orders")["kind"], "mysql");
    assert_eq!(
        row("orders")["quota"],
        "2 rows/table, 1048576 bytes",
        "{ls:#}"
    );
    assert!(
        row("orders")["size"]
            .as_str()
            .is_some_and(|s| s.ends_with(" bytes")),
        "{ls:#}"
    );
    assert_eq!(row("cache")["target"], "41");
    assert_eq!(row("cache")["size"], "0 keys", "{ls:#}");
    assert_eq!(row("cache")["quota"], "pool 41..=44");
    let text = env.ok_in(&repo, &["data", "ls"]).stdout;
    assert!(
        text.starts_with("LANE") && text.contains("feat-d") && text.contains(&lane_db),
        "{text}"
    );

    // Deploying again keeps the lane's data.
    rt.block_on(m.execute(&[&format!(
        "INSERT INTO {}.t VALUES (9, 'lane')",
        quote(&lane_db)
    )]))
    .unwrap();
    env.ok_in(&repo, &["deploy", "--lane", "feat-d"]);
    let rows = rt
        .block_on(m.column(&format!("SELECT COUNT(*) FROM {}.t", quote(&lane_db))))
        .unwrap();
    assert_eq!(rows, ["3"]);

    // The dry run names exactly the lane's own data and removes nothing.
    let plan = env.ok_in(&repo, &["rm", "feat-d", "--dry-run"]).stdout;
    assert!(
        plan.contains(&format!("orders: drop MySQL database `{lane_db}`"))
            && plan.contains("cache: flush Redis database 41")
            && plan.contains("nothing was removed"),
        "{plan}"
    );
    assert!(!plan.contains(":lane@"), "no password: {plan}");
    assert!(rt.block_on(m.database_exists(&lane_db)).unwrap());
    assert!(env.lane("feat-d").is_some());

    env.ok(&["rm", "feat-d"]);
    assert_eq!(env.ok(&["data", "ls"]).stdout.trim(), "no lane owns data");
    assert!(
        !rt.block_on(m.database_exists(&lane_db)).unwrap(),
        "the lane database is gone"
    );
    rt.block_on(r.cmd(&[b"SELECT", b"41"])).unwrap();
    assert_eq!(
        rt.block_on(r.cmd(&[b"DBSIZE"])).unwrap(),
        Reply::Int(0),
        "released"
    );
    assert_eq!(checksum(), before, "baseline's table untouched");
    rt.block_on(r.cmd(&[b"SELECT", base_index.to_string().as_bytes()]))
        .unwrap();
    assert_eq!(
        rt.block_on(r.cmd(&[b"GET", b"base"])).unwrap(),
        Reply::Bulk(Some(b"1".to_vec()))
    );
    assert!(rt.block_on(m.database_exists(&db)).unwrap());
    env.finish();
    rt.block_on(m.execute(&[&format!("DROP DATABASE {q}")]))
        .unwrap();
    rt.block_on(r.cmd(&[b"FLUSHDB"])).unwrap();
}
