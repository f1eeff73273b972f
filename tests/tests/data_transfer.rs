//! `lane data export | import | backup | backups | restore` through the real binary, against real
//! MariaDB and Redis: a lane's data moves to another lane identically; a `lane data import`
//! SIGKILLed while it stages a large file leaves the lane's previous data, and the next import
//! cleans up after it; a backup restores; bad files and wrong bindings are clear errors.

mod common;

use std::time::Duration;

use common::{TestEnv, sample_manifest};
use lane_data::mysql::{Mysql, quote};
use lane_data::redis::{Redis, Reply};

fn servers() -> (String, String) {
    let env = common::services::start("all");
    (
        env.var("LANE_TEST_MYSQL_URL"),
        env.var("LANE_TEST_REDIS_URL"),
    )
}

/// A binding's item count in a `--json` report.
fn items(report: &serde_json::Value, binding: &str) -> u64 {
    report["bindings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["binding"] == binding)
        .unwrap_or_else(|| panic!("{binding} in {report:#}"))["items"]
        .as_u64()
        .unwrap()
}

#[test]
fn export_import_backup_restore_and_a_killed_import() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (mysql_url, redis_url) = servers();
    let db = format!("lx_{}", std::process::id());
    let q = quote(&db);
    let (base_index, first, last) = (34u32, 35u32, 37u32);
    let m = rt.block_on(Mysql::connect(&mysql_url)).unwrap();
    rt.block_on(m.execute(&[
        &format!("DROP DATABASE IF EXISTS {q}"),
        &format!("CREATE DATABASE {q}"),
        &format!("CREATE TABLE {q}.t (id INT PRIMARY KEY, v VARCHAR(40), n INT, KEY by_n (n))"),
        &format!("CREATE VIEW {q}.small AS SELECT id FROM {q}.t WHERE n < 10"),
        &format!("INSERT INTO {q}.t VALUES (1, 'base', 1)"),
    ]))
    .unwrap();
    let mut r = rt.block_on(Redis::connect(&redis_url)).unwrap();
    for i in base_index..=last {
        rt.block_on(r.cmd(&[b"SELECT", i.to_string().as_bytes()]))
            .unwrap();
        rt.block_on(r.cmd(&[b"FLUSHDB"])).unwrap();
    }

    let env = TestEnv::new("data-transfer", 210);
    let bindings = format!(
        "\n[data.orders]\nkind = \"mysql\"\nurl = \"{mysql_url}/{db}\"\nenv = \"ORDERS_DSN\"\n\
         [data.cache]\nkind = \"redis\"\nurl = \"{redis_url}/{base_index}\"\nenv = \"REDIS_URL\"\n\
         pool = [{first}, {last}]\n"
    );
    let repo = env.repo(
        "b",
        &format!("{}{bindings}", sample_manifest(&env.bin, "b", None, "")),
    );
    env.branch(&repo, "feature");
    env.ok_in(&repo, &["deploy", "--lane", "feat-x"]);
    env.ok_in(&repo, &["deploy", "--lane", "feat-y"]);
    let (xdb, ydb) = (format!("{db}__lane_feat_x"), format!("{db}__lane_feat_y"));
    let index = |lane: &str| -> u32 {
        let l = env.lane(lane).expect("the lane");
        l["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == "cache")
            .unwrap()["target"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (ix, iy) = (index("feat-x"), index("feat-y"));

    // feat-x: a large table; feat-y: a little data of its own.
    rt.block_on(m.execute(&[&format!(
        "INSERT INTO {}.t SELECT seq, CONCAT('row ', seq, ' ', REPEAT('x', seq % 20)), seq % 1000 \
         FROM {q}.seq_1_to_600000",
        quote(&xdb)
    )]))
    .unwrap();
    rt.block_on(m.execute(&[&format!("INSERT INTO {}.t VALUES (7, 'y', 7)", quote(&ydb))]))
        .unwrap();
    let set = |r: &mut Redis, index: u32, k: &str, v: &str| {
        rt.block_on(r.cmd(&[b"SELECT", index.to_string().as_bytes()]))
            .unwrap();
        rt.block_on(r.cmd(&[b"SET", k.as_bytes(), v.as_bytes()]))
            .unwrap();
    };
    for i in 0..200 {
        set(&mut r, ix, &format!("x:{i}"), "x");
    }
    set(&mut r, iy, "y:only", "y");
    let state = |r: &mut Redis, database: &str, index: u32| {
        let sum = rt
            .block_on(m.show(&format!("CHECKSUM TABLE {}.t", quote(database)), 1))
            .unwrap();
        rt.block_on(r.cmd(&[b"SELECT", index.to_string().as_bytes()]))
            .unwrap();
        let Reply::Array(Some(mut keys)) = rt.block_on(r.cmd(&[b"KEYS", b"*"])).unwrap() else {
            panic!("KEYS")
        };
        keys.sort_by_key(|k| format!("{k:?}"));
        (sum, keys)
    };
    let y_before = state(&mut r, &ydb, iy);

    // Export feat-x.
    let file = env.root.join("x.lanedata");
    let file_s = file.to_str().unwrap();
    let out = env
        .ok_in(&repo, &["data", "export", "feat-x", "-o", file_s, "--json"])
        .json();
    assert_eq!(items(&out, "orders"), 600_000, "{out:#}");
    assert_eq!(items(&out, "cache"), 200, "{out:#}");
    assert!(file.exists() && !env.root.join("x.lanedata.partial").exists());

    // A backup of feat-y, listed.
    env.ok_in(&repo, &["data", "backup", "feat-y"]);
    let list = env.ok(&["data", "backups", "feat-y", "--json"]).json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list:#}");

    // An import SIGKILLed while it stages: feat-y keeps its data.
    let import = env.spawn_in(&repo, &["data", "import", "feat-y", file_s], &[]);
    let staged = format!("{ydb}$imp");
    common::wait_for(
        "the import to stage rows",
        Duration::from_secs(60),
        &mut || {
            let n = rt
                .block_on(m.column(&format!(
                    "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{staged}'"
                )))
                .ok()?;
            if n != ["1"] {
                return None;
            }
            let rows = rt
                .block_on(m.column(&format!("SELECT COUNT(*) FROM {}.t", quote(&staged))))
                .ok()?;
            (rows[0].parse::<u64>().ok()? > 1000).then_some(())
        },
    );
    let killed = import.kill9();
    assert_ne!(killed.code, 0, "{killed}");
    assert_eq!(
        state(&mut r, &ydb, iy),
        y_before,
        "feat-y's data is as it was"
    );
    assert!(
        rt.block_on(m.database_exists(&staged)).unwrap(),
        "the kill left the staging database (cleaned by the next import)"
    );

    // Bad input: clear errors, nothing changed.
    let bad = env.root.join("bad.lanedata");
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    std::fs::write(&bad, &bytes).unwrap();
    let out = env.run_in(
        &repo,
        &["data", "import", "feat-y", bad.to_str().unwrap()],
        &[],
    );
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("corrupt"), "{out}");
    std::fs::write(&bad, "not lane data").unwrap();
    let out = env.run_in(
        &repo,
        &["data", "import", "feat-y", bad.to_str().unwrap()],
        &[],
    );
    assert!(
        out.code != 0 && out.stderr.contains("not a lane data file"),
        "{out}"
    );
    let out = env.run_in(
        &repo,
        &["data", "import", "feat-y", "payments", file_s],
        &[],
    );
    assert!(
        out.code != 0 && out.stderr.contains("no binding `payments`"),
        "{out}"
    );
    let out = env.run_in(&repo, &["data", "export", "feat-z", "-o", file_s], &[]);
    assert!(out.code != 0 && out.stderr.contains("feat-z"), "{out}");
    assert_eq!(state(&mut r, &ydb, iy), y_before);

    // Someone else's lane: refused (exit 5) unless forced.
    let bob = env.root.join("bob-config");
    std::fs::create_dir_all(bob.join("lane")).unwrap();
    std::fs::write(bob.join("lane/config.toml"), "owner = \"bob\"\n").unwrap();
    let as_bob = [("XDG_CONFIG_HOME", bob.to_str().unwrap())];
    let out = env.run_in(&repo, &["data", "import", "feat-y", file_s], &as_bob);
    assert!(out.code == 5 && out.stderr.contains("--force"), "{out}");
    let out = env.run_in(&repo, &["data", "restore", "feat-y"], &as_bob);
    assert_eq!(out.code, 5, "{out}");
    assert_eq!(state(&mut r, &ydb, iy), y_before);

    // The import again: it removes the leftover, and feat-y now holds feat-x's data.
    let out = env
        .ok_in(&repo, &["data", "import", "feat-y", file_s, "--json"])
        .json();
    assert_eq!(items(&out, "orders"), 600_000, "{out:#}");
    assert!(!rt.block_on(m.database_exists(&staged)).unwrap());
    let x = state(&mut r, &xdb, ix);
    let y = state(&mut r, &ydb, iy);
    assert_eq!(x.0, y.0, "same table checksum");
    assert_eq!(x.1, y.1, "same keys");
    assert_eq!(
        rt.block_on(m.column(&format!("SELECT COUNT(*) FROM {}.small", quote(&ydb))))
            .unwrap(),
        ["6000"],
        "the view reads feat-y's own table"
    );

    // One binding only, then the restore of the backup brings feat-y's data back.
    env.ok_in(&repo, &["data", "import", "feat-y", "cache", file_s]);
    env.ok_in(&repo, &["data", "restore", "feat-y"]);
    assert_eq!(state(&mut r, &ydb, iy), y_before, "restored");

    env.ok(&["rm", "feat-x"]);
    env.ok(&["rm", "feat-y"]);
    assert!(!rt.block_on(m.database_exists(&ydb)).unwrap());
    for i in first..=last {
        rt.block_on(r.cmd(&[b"SELECT", i.to_string().as_bytes()]))
            .unwrap();
        assert_eq!(
            rt.block_on(r.cmd(&[b"DBSIZE"])).unwrap(),
            Reply::Int(0),
            "index {i}"
        );
    }
    env.finish();
    rt.block_on(m.execute(&[&format!("DROP DATABASE {q}")]))
        .unwrap();
}
