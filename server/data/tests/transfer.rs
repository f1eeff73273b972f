//! Export, import, backup and restore against the real servers: a lane's data exported and
//! imported into another lane is identical (table checksums, DDL, keys with their payloads and
//! time to live); 20 cycles of create → write → export → import → teardown leave baseline as it
//! was; a corrupt or foreign file, a wrong binding, an unreachable server, a wrong password and a
//! cancel are clear errors that leave the lane's data as it was and no staging behind.

mod common;

use std::path::Path;

use lane_core::LaneId;
use lane_core::data::{self, DataSpec};
use lane_core::manifest::Manifest;
use lane_data::DataError;
use lane_data::kafka::Kafka;
use lane_data::mysql::{Mysql, quote};
use lane_data::redis::{Redis, Reply};
use lane_data::teardown;
use lane_data::transfer::{self, Cancel, Progress, Target};

fn specs(db: &str, base_index: u32, first: u32, last: u32) -> Vec<DataSpec> {
    Manifest::parse(
        Path::new("lane.toml"),
        &format!(
            "app = \"a\"\nproc = \"b\"\n[run]\ncommand = \"x\"\n\
             [data.orders]\nkind = \"mysql\"\nurl = \"{}/{db}\"\nenv = \"DSN\"\n\
             [data.cache]\nkind = \"redis\"\nurl = \"{}/{base_index}\"\nenv = \"R\"\n\
             pool = [{first}, {last}]\n",
            common::mysql_url(),
            common::redis_url()
        ),
    )
    .unwrap()
    .data
}

/// A baseline with foreign keys (one named), indexes, a generated column, a view of a view, a
/// trigger, NULLs, binary and non-ASCII values.
async fn baseline(m: &Mysql, db: &str) {
    let q = quote(db);
    m.execute(&[
        &format!("CREATE DATABASE {q} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"),
        &format!(
            "CREATE TABLE {q}.customers (id INT AUTO_INCREMENT PRIMARY KEY, \
             name VARCHAR(50) NOT NULL, email VARCHAR(80), UNIQUE KEY email (email))"
        ),
        &format!(
            "CREATE TABLE {q}.orders (id BIGINT AUTO_INCREMENT PRIMARY KEY, customer INT, \
             total DECIMAL(10,2) NOT NULL DEFAULT 0, note TEXT, blob_col BLOB, \
             made DATETIME(3), doubled DECIMAL(11,2) AS (total * 2) VIRTUAL, \
             KEY by_customer (customer, made), \
             CONSTRAINT fk_customer FOREIGN KEY (customer) REFERENCES customers (id))"
        ),
        &format!("CREATE TABLE {q}.audit (id INT AUTO_INCREMENT PRIMARY KEY, what VARCHAR(40))"),
        &format!(
            "CREATE VIEW {q}.big AS SELECT o.id, o.total FROM {q}.orders o WHERE o.total > 10"
        ),
        &format!("CREATE VIEW {q}.big_ids AS SELECT id FROM {q}.big"),
        &format!(
            "CREATE TRIGGER {q}.audit_orders AFTER INSERT ON {q}.orders FOR EACH ROW \
             INSERT INTO {q}.audit (what) VALUES (CONCAT('order ', NEW.id))"
        ),
        &format!("INSERT INTO {q}.customers (name, email) VALUES ('base', 'b@x')"),
    ])
    .await
    .unwrap();
}

/// Writes lane data into database `db` (the lane's copy): `n` orders and a few odd values.
async fn write_rows(m: &Mysql, db: &str, tag: &str, n: u32) {
    let q = quote(db);
    m.execute(&[
        &format!(
            "INSERT INTO {q}.customers (name, email) VALUES ('{tag} ünï', '{tag}@x'), ('{tag}2', NULL), \
             (CONCAT('{tag}', CHAR(39), CHAR(92), CHAR(34), CHAR(10), CHAR(13), CHAR(0), CHAR(26), ';--'), \
             CONCAT('{tag}', CHAR(92)))"
        ),
        &format!(
            "INSERT INTO {q}.orders (customer, total, note, blob_col, made) \
             SELECT (SELECT MIN(id) FROM {q}.customers WHERE name LIKE '{tag}%'), seq % 100 + 0.5, \
             IF(seq % 3 = 0, NULL, REPEAT('n', seq % 50)), UNHEX('00FF10'), \
             '2026-01-02 03:04:05.678' FROM {q}.seq_1_to_{n}"
        ),
    ])
    .await
    .unwrap();
}

async fn checksums(m: &Mysql, db: &str) -> Vec<String> {
    let mut out = Vec::new();
    for t in ["audit", "customers", "orders"] {
        out.push(
            m.show(&format!("CHECKSUM TABLE {}.{}", quote(db), quote(t)), 1)
                .await
                .unwrap(),
        );
        out.push(
            m.column(&format!("SELECT COUNT(*) FROM {}.{}", quote(db), quote(t)))
                .await
                .unwrap()
                .join(""),
        );
    }
    out
}

/// Every table's, view's and trigger's definition, with the database's name taken out.
async fn ddl(m: &Mysql, db: &str) -> Vec<String> {
    let mut out = Vec::new();
    for t in ["audit", "customers", "orders"] {
        out.push(
            m.show(&format!("SHOW CREATE TABLE {}.{}", quote(db), quote(t)), 1)
                .await
                .unwrap()
                .replace(" AUTO_INCREMENT=", " AI="),
        );
    }
    for v in ["big", "big_ids"] {
        out.push(
            m.show(&format!("SHOW CREATE VIEW {}.{}", quote(db), quote(v)), 1)
                .await
                .unwrap(),
        );
    }
    out.push(
        m.show(
            &format!("SHOW CREATE TRIGGER {}.`audit_orders`", quote(db)),
            2,
        )
        .await
        .unwrap(),
    );
    out.iter()
        .map(|s| {
            lane_data::mysql::strip_definer(s)
                .replace(&quote(db), "`DB`")
                .split(" AI=")
                .map(|p| p.trim_start_matches(char::is_numeric).to_owned())
                .collect::<Vec<_>>()
                .join("")
        })
        .collect()
}

/// Every key of database `index` (the claim key excepted) with its DUMP payload and whether it
/// has a time to live.
async fn keys(r: &mut Redis, index: u32) -> Vec<(Vec<u8>, Vec<u8>, bool)> {
    r.cmd(&[b"SELECT", index.to_string().as_bytes()])
        .await
        .unwrap();
    let Reply::Array(Some(all)) = r.cmd(&[b"KEYS", b"*"]).await.unwrap() else {
        panic!("KEYS")
    };
    let mut out = Vec::new();
    for k in all {
        let Reply::Bulk(Some(k)) = k else { continue };
        if k == lane_data::redis::OWNER_KEY.as_bytes() {
            continue;
        }
        let Reply::Bulk(Some(dump)) = r.cmd(&[b"DUMP", &k]).await.unwrap() else {
            panic!("DUMP")
        };
        let Reply::Int(ttl) = r.cmd(&[b"PTTL", &k]).await.unwrap() else {
            panic!("PTTL")
        };
        out.push((k, dump, ttl > 0));
    }
    out.sort();
    out
}

async fn write_keys(r: &mut Redis, index: u32, tag: &str, n: u32) {
    r.cmd(&[b"SELECT", index.to_string().as_bytes()])
        .await
        .unwrap();
    for i in 0..n {
        r.cmd(&[
            b"SET",
            format!("{tag}:s:{i}").as_bytes(),
            format!("v{i}").as_bytes(),
        ])
        .await
        .unwrap();
    }
    r.cmd(&[b"HSET", format!("{tag}:h").as_bytes(), b"f", b"\x00\xff"])
        .await
        .unwrap();
    r.cmd(&[b"RPUSH", format!("{tag}:l").as_bytes(), b"a", b"b"])
        .await
        .unwrap();
    r.cmd(&[
        b"SET",
        format!("{tag}:ttl").as_bytes(),
        b"x",
        b"EX",
        b"3600",
    ])
    .await
    .unwrap();
}

use common::xfer::{export, import, no_progress};

/// The lane's copies: its database and a Redis database, as a deploy makes them.
async fn provision(
    m: &Mysql,
    r: &mut Redis,
    specs: &[DataSpec],
    db: &str,
    lane: &LaneId,
    base: u32,
) -> Vec<Target> {
    let report = m.clone_schema(db, lane, None).await.unwrap();
    let (first, last) = match &specs[0].options {
        data::DataOptions::Redis {
            mode: data::RedisMode::Database { first, last },
            ..
        } => (*first, *last),
        _ => panic!("cache first"),
    };
    let index = r.allocate(lane, first, last, base).await.unwrap();
    vec![
        Target {
            spec: specs[1].clone(),
            target: report.database,
        },
        Target {
            spec: specs[0].clone(),
            target: index.to_string(),
        },
    ]
}

async fn teardown_lane(lane: &LaneId, specs: &[DataSpec], targets: &[Target]) {
    let records = vec![data::record(&targets[1].spec, targets[1].target.clone())];
    let plan = teardown::plan(lane, specs, &records).unwrap();
    teardown::execute(&plan, specs).await.unwrap();
}

async fn staging_left(
    m: &Mysql,
    r: &mut Redis,
    live: &str,
    lane: &LaneId,
    first: u32,
    last: u32,
) -> Vec<String> {
    let mut left = Vec::new();
    for suffix in ["$imp", "$old"] {
        if m.database_exists(&format!("{live}{suffix}")).await.unwrap() {
            left.push(format!("{live}{suffix}"));
        }
    }
    for i in first..=last {
        r.cmd(&[b"SELECT", i.to_string().as_bytes()]).await.unwrap();
        if let Reply::Bulk(Some(o)) = r
            .cmd(&[b"GET", lane_data::redis::OWNER_KEY.as_bytes()])
            .await
            .unwrap()
            && o.starts_with(format!("{lane}$").as_bytes())
        {
            left.push(format!("redis {i}"));
        }
    }
    left
}

async fn flush(r: &mut Redis, first: u32, last: u32) {
    for i in first..=last {
        r.cmd(&[b"SELECT", i.to_string().as_bytes()]).await.unwrap();
        r.cmd(&[b"FLUSHDB"]).await.unwrap();
    }
}

#[tokio::test]
async fn export_then_import_into_another_lane_gives_identical_data() {
    let m = Mysql::connect(common::mysql_url()).await.unwrap();
    let mut r = Redis::connect(common::redis_url()).await.unwrap();
    let db = common::unique("lt_xf_");
    baseline(&m, &db).await;
    let (base, first, last) = (2u32, 3u32, 5u32);
    flush(&mut r, base, last).await;
    let specs = specs(&db, base, first, last);
    let (a, b) = (common::lane("xa-"), common::lane("xb-"));
    let ta = provision(&m, &mut r, &specs, &db, &a, base).await;
    let tb = provision(&m, &mut r, &specs, &db, &b, base).await;
    write_rows(&m, &ta[0].target, "a", 500).await;
    write_keys(&mut r, ta[1].target.parse().unwrap(), "a", 300).await;
    // Lane b has data of its own, replaced by the import.
    write_rows(&m, &tb[0].target, "b", 7).await;
    write_keys(&mut r, tb[1].target.parse().unwrap(), "b", 5).await;

    let seen = std::sync::Mutex::new(Vec::new());
    let on = |p: &Progress| seen.lock().unwrap().push(p.clone());
    let (file, report) = transfer::export(&a, &ta, Vec::new(), &on, &Cancel::new())
        .await
        .unwrap();
    assert_eq!(report.bindings.len(), 2);
    assert_eq!(
        report.bindings[0].items,
        3 + 500 + 500,
        "customers + orders + audit rows: {report:?}"
    );
    assert_eq!(report.bindings[0].objects, 3 + 2 + 1);
    assert_eq!(report.bindings[1].items, 303);
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|p| p.step == "export" && p.unit == "keys")
    );

    let imported = import(&b, &tb, &file, None).await.unwrap();
    assert_eq!(imported.bindings[0].items, 1003);
    assert_eq!(
        checksums(&m, &ta[0].target).await,
        checksums(&m, &tb[0].target).await
    );
    assert_eq!(ddl(&m, &ta[0].target).await, ddl(&m, &tb[0].target).await);
    let (ia, ib) = (ta[1].target.parse().unwrap(), tb[1].target.parse().unwrap());
    let (ka, kb) = (keys(&mut r, ia).await, keys(&mut r, ib).await);
    assert_eq!(ka.len(), 303);
    assert_eq!(ka, kb, "same keys, payloads and TTLs");
    assert!(kb.iter().any(|k| k.2), "the TTL travelled");
    // The lane's claim is intact, nothing is staged any more.
    r.cmd(&[b"SELECT", ib.to_string().as_bytes()])
        .await
        .unwrap();
    assert_eq!(
        r.cmd(&[b"GET", lane_data::redis::OWNER_KEY.as_bytes()])
            .await
            .unwrap(),
        Reply::Bulk(Some(b.as_str().as_bytes().to_vec()))
    );
    assert!(
        staging_left(&m, &mut r, &tb[0].target, &b, first, last)
            .await
            .is_empty()
    );
    // The trigger works in the imported lane database, on its own tables.
    let qb = quote(&tb[0].target);
    let audit = || async {
        m.column(&format!("SELECT COUNT(*) FROM {qb}.audit"))
            .await
            .unwrap()
    };
    let before = audit().await;
    m.execute(&[&format!(
        "INSERT INTO {qb}.orders (customer, total) VALUES (NULL, 1)"
    )])
    .await
    .unwrap();
    assert_ne!(audit().await, before);
    assert_eq!(
        m.column(&format!("SELECT COUNT(*) FROM {qb}.big_ids"))
            .await
            .unwrap(),
        m.column(&format!(
            "SELECT COUNT(*) FROM {qb}.orders WHERE total > 10"
        ))
        .await
        .unwrap()
    );

    // One binding only: the other one stays as it is.
    write_keys(&mut r, ib, "later", 1).await;
    let kept = keys(&mut r, ib).await;
    import(&b, &tb, &file, Some("orders")).await.unwrap();
    assert_eq!(keys(&mut r, ib).await, kept);

    for (l, t) in [(&a, &ta), (&b, &tb)] {
        teardown_lane(l, &specs, t).await;
    }
    m.execute(&[&format!("DROP DATABASE {}", quote(&db))])
        .await
        .unwrap();
}

/// A Kafka binding of baseline topic `topic` (and a consumer group).
fn kafka_spec(topic: &str) -> DataSpec {
    Manifest::parse(
        Path::new("lane.toml"),
        &format!(
            "app = \"a\"\nproc = \"b\"\n[run]\ncommand = \"x\"\n[data.events]\nkind = \"kafka\"\n\
             url = \"kafka://{}\"\nenv = \"K\"\ntopics = {{ T = \"{topic}\" }}\n\
             groups = {{ G = \"{topic}_g\" }}\n",
            common::kafka_bootstrap()
        ),
    )
    .unwrap()
    .data
    .remove(0)
}

/// The lane's topic of a Kafka binding, as a deploy makes it.
async fn provision_kafka(k: &mut Kafka, spec: &DataSpec, topic: &str, lane: &LaneId) -> Target {
    let made = k
        .create_lane_topics(lane, &[topic.to_owned()])
        .await
        .unwrap();
    Target {
        spec: spec.clone(),
        target: made[0].topic.clone(),
    }
}

/// Fingerprint type: table checksums, baseline's keys, baseline topics' end offsets.
type Fingerprint = (Vec<String>, Vec<(Vec<u8>, Vec<u8>, bool)>, Vec<Vec<i64>>);

/// What must never change: every baseline table's checksum, baseline's key set and every
/// baseline topic's end offsets per partition.
async fn baseline_fingerprint(
    m: &Mysql,
    db: &str,
    r: &mut Redis,
    base: u32,
    k: &mut Kafka,
    topics: &[&str],
) -> Fingerprint {
    let mut offsets = Vec::new();
    for t in topics {
        offsets.push(k.end_offsets(t).await.unwrap());
    }
    (checksums(m, db).await, keys(r, base).await, offsets)
}

#[tokio::test]
async fn twenty_cycles_leave_baseline_unchanged() {
    let m = Mysql::connect(common::mysql_url()).await.unwrap();
    let mut r = Redis::connect(common::redis_url()).await.unwrap();
    let db = common::unique("lt_cy_");
    baseline(&m, &db).await;
    let (base, first, last) = (6u32, 7u32, 9u32);
    flush(&mut r, base, last).await;
    write_rows(&m, &db, "base", 20).await;
    write_keys(&mut r, base, "base", 10).await;
    let mut specs = specs(&db, base, first, last);
    // Baseline also has a Kafka topic with records.
    let mut k = Kafka::connect(&format!("kafka://{}", common::kafka_bootstrap()))
        .await
        .unwrap();
    let topic = common::unique("lt_cy_t_");
    k.create_topic(&topic, 2, 1, &[]).await.unwrap();
    for i in 0..10u8 {
        k.produce(&topic, i32::from(i % 2), Some(&[i]), b"base")
            .await
            .unwrap();
    }
    let kspec = kafka_spec(&topic);
    specs.push(kspec.clone());
    let before = baseline_fingerprint(&m, &db, &mut r, base, &mut k, &[&topic]).await;
    for cycle in 0..20 {
        let (a, b) = (common::lane("cy-"), common::lane("cz-"));
        let mut ta = provision(&m, &mut r, &specs, &db, &a, base).await;
        let mut tb = provision(&m, &mut r, &specs, &db, &b, base).await;
        ta.push(provision_kafka(&mut k, &kspec, &topic, &a).await);
        tb.push(provision_kafka(&mut k, &kspec, &topic, &b).await);
        // Each lane writes to its own topic.
        for (t, n) in [(&ta[2].target, 5u8), (&tb[2].target, 2)] {
            for i in 0..n {
                k.produce(
                    t,
                    i32::from(i % 2),
                    Some(&[i]),
                    format!("c{cycle}").as_bytes(),
                )
                .await
                .unwrap();
            }
        }
        write_rows(&m, &ta[0].target, &format!("c{cycle}"), 30).await;
        write_keys(
            &mut r,
            ta[1].target.parse().unwrap(),
            &format!("c{cycle}"),
            10,
        )
        .await;
        let file = export(&a, &ta).await;
        import(&b, &tb, &file, None).await.unwrap();
        assert_eq!(k.records(&tb[2].target).await.unwrap(), 5);
        // The lane writes after the import too.
        write_rows(&m, &tb[0].target, "after", 3).await;
        k.produce(&tb[2].target, 0, None, b"after").await.unwrap();
        teardown_lane(&a, &specs, &ta).await;
        teardown_lane(&b, &specs, &tb).await;
        assert!(!m.database_exists(&tb[0].target).await.unwrap());
        assert!(!k.topic_exists(&tb[2].target).await.unwrap());
        assert!(
            !k.topic_exists(&format!("{}.staging", tb[2].target))
                .await
                .unwrap()
        );
        assert!(
            staging_left(&m, &mut r, &tb[0].target, &b, first, last)
                .await
                .is_empty()
        );
        assert_eq!(
            baseline_fingerprint(&m, &db, &mut r, base, &mut k, &[&topic]).await,
            before,
            "cycle {cycle}"
        );
    }
    for i in first..=last {
        r.cmd(&[b"SELECT", i.to_string().as_bytes()]).await.unwrap();
        assert_eq!(
            r.cmd(&[b"DBSIZE"]).await.unwrap(),
            Reply::Int(0),
            "pool database {i} released"
        );
    }
    m.execute(&[&format!("DROP DATABASE {}", quote(&db))])
        .await
        .unwrap();
    // The test's baseline topic (the guard is for lanes; tests remove their own).
    rskafka::client::ClientBuilder::new(k.brokers().to_vec())
        .build()
        .await
        .unwrap()
        .controller_client()
        .unwrap()
        .delete_topic(&topic, 30_000)
        .await
        .unwrap();
}

#[tokio::test]
async fn bad_input_is_a_clear_error_and_leaves_the_lane_as_it_was() {
    let m = Mysql::connect(common::mysql_url()).await.unwrap();
    let mut r = Redis::connect(common::redis_url()).await.unwrap();
    let db = common::unique("lt_bad_");
    baseline(&m, &db).await;
    let (base, first, last) = (60u32, 61u32, 63u32);
    flush(&mut r, base, last).await;
    let specs = specs(&db, base, first, last);
    let (a, b) = (common::lane("ba-"), common::lane("bb-"));
    let ta = provision(&m, &mut r, &specs, &db, &a, base).await;
    let tb = provision(&m, &mut r, &specs, &db, &b, base).await;
    write_rows(&m, &ta[0].target, "a", 50).await;
    write_keys(&mut r, ta[1].target.parse().unwrap(), "a", 20).await;
    write_rows(&m, &tb[0].target, "b", 5).await;
    let ib: u32 = tb[1].target.parse().unwrap();
    write_keys(&mut r, ib, "b", 3).await;
    let file = export(&a, &ta).await;
    let lane_b = || async {
        (
            checksums(&m, &tb[0].target).await,
            ddl(&m, &tb[0].target).await,
        )
    };
    let b_before = lane_b().await;
    let mut r2 = Redis::connect(common::redis_url()).await.unwrap();
    let keys_before = keys(&mut r2, ib).await;

    let mut failures: Vec<(String, DataError)> = Vec::new();
    // A byte flipped late in the file: the rows are staged, then the checksum fails.
    let mut corrupt = file.clone();
    let at = corrupt.len() - 200;
    corrupt[at] ^= 1;
    failures.push((
        "corrupt".into(),
        import(&b, &tb, &corrupt, None).await.unwrap_err(),
    ));
    failures.push((
        "truncated".into(),
        import(&b, &tb, &file[..file.len() / 2], None)
            .await
            .unwrap_err(),
    ));
    failures.push((
        "foreign".into(),
        import(
            &b,
            &tb,
            b"-- MySQL dump 10.13\nCREATE TABLE x (a int);\n",
            None,
        )
        .await
        .unwrap_err(),
    ));
    failures.push((
        "binding".into(),
        import(&b, &tb, &file, Some("payments")).await.unwrap_err(),
    ));
    // A lane without the binding.
    failures.push((
        "lane".into(),
        import(&b, &tb[..1], &file, None).await.unwrap_err(),
    ));
    // Cancelled half-way.
    let cancel = Cancel::new();
    let stop = |p: &Progress| {
        if p.step == "stage" && p.done > 10 {
            cancel.cancel();
        }
    };
    failures.push((
        "cancel".into(),
        transfer::import(
            &b,
            &tb,
            file.as_slice(),
            None,
            file.len() as u64,
            &stop,
            &cancel,
        )
        .await
        .unwrap_err(),
    ));
    for (what, e) in &failures {
        let text = e.to_string();
        let expected = match what.as_str() {
            "corrupt" => "corrupt",
            "truncated" => "truncated",
            "foreign" => "not a lane data file",
            "binding" => "no binding `payments`",
            "lane" => "does not hold",
            "cancel" => "cancelled",
            _ => unreachable!(),
        };
        assert!(text.contains(expected), "{what}: {text}");
        assert_eq!(
            lane_b().await,
            b_before,
            "{what}: lane b's tables are as they were"
        );
        assert_eq!(
            keys(&mut r2, ib).await,
            keys_before,
            "{what}: lane b's keys"
        );
        assert!(
            staging_left(&m, &mut r2, &tb[0].target, &b, first, last)
                .await
                .is_empty(),
            "{what}"
        );
    }

    // Unreachable server, wrong password: named as such, with no password in the message.
    let with_url = |url: &str| {
        let mut t = tb.clone();
        t[0].spec.address = url.to_owned();
        t
    };
    let e = import(
        &b,
        &with_url("mysql://lane:lane@127.0.0.1:1/x"),
        &file,
        Some("orders"),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, DataError::Unreachable { .. }), "{e}");
    let e = import(
        &b,
        &with_url("mysql://lane:wrong-pw@127.0.0.1:23306/x"),
        &file,
        Some("orders"),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, DataError::Auth { .. }), "{e}");
    assert!(!e.to_string().contains("wrong-pw"), "{e}");
    let e = transfer::export(
        &b,
        &with_url("mysql://lane:lane@127.0.0.1:1/x")[..1],
        Vec::new(),
        &no_progress,
        &Cancel::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, DataError::Unreachable { .. }), "{e}");
    // Another lane's database is refused by the guard, on export and import.
    let mut other = tb.clone();
    other[0].target = ta[0].target.clone();
    let e = import(&b, &other, &file, Some("orders")).await.unwrap_err();
    assert!(matches!(e, DataError::Guard(_)), "{e}");
    let mut base_db = tb.clone();
    base_db[0].target = db.clone();
    let e = transfer::export(&b, &base_db, Vec::new(), &no_progress, &Cancel::new())
        .await
        .unwrap_err();
    assert!(matches!(e, DataError::Guard(_)), "{e}");
    assert_eq!(lane_b().await, b_before);

    // A leftover of a killed import (a staging database) does not block the next one.
    m.execute(&[&format!(
        "CREATE DATABASE {}",
        quote(&format!("{}$imp", tb[0].target))
    )])
    .await
    .unwrap();
    import(&b, &tb, &file, None).await.unwrap();
    assert_eq!(
        checksums(&m, &tb[0].target).await,
        checksums(&m, &ta[0].target).await
    );
    assert!(
        staging_left(&m, &mut r2, &tb[0].target, &b, first, last)
            .await
            .is_empty()
    );

    // The lane's teardown removes what a killed import left: a staging database and a staging
    // Redis database of the pool.
    m.execute(&[&format!(
        "CREATE DATABASE {}",
        quote(&format!("{}$old", tb[0].target))
    )])
    .await
    .unwrap();
    r2.cmd(&[b"SELECT", last.to_string().as_bytes()])
        .await
        .unwrap();
    r2.cmd(&[
        b"SET",
        lane_data::redis::OWNER_KEY.as_bytes(),
        format!("{b}$imp").as_bytes(),
    ])
    .await
    .unwrap();
    r2.cmd(&[b"SET", b"staged", b"1"]).await.unwrap();
    assert_eq!(
        staging_left(&m, &mut r2, &tb[0].target, &b, first, last)
            .await
            .len(),
        2
    );
    for (l, t) in [(&a, &ta), (&b, &tb)] {
        teardown_lane(l, &specs, t).await;
    }
    assert!(
        staging_left(&m, &mut r2, &tb[0].target, &b, first, last)
            .await
            .is_empty()
    );
    r2.cmd(&[b"SELECT", last.to_string().as_bytes()])
        .await
        .unwrap();
    assert_eq!(r2.cmd(&[b"DBSIZE"]).await.unwrap(), Reply::Int(0));
    m.execute(&[&format!("DROP DATABASE {}", quote(&db))])
        .await
        .unwrap();
}
