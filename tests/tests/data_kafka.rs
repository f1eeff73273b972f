//! End to end through `lane deploy`: the sample service, deployed into a lane whose service binds
//! MySQL, Redis and Kafka (real MariaDB, Redis and Apache Kafka, started by
//! `scripts/services.sh`), writes and reads only the lane's own database, Redis database and
//! topic; baseline's table (checksum), keys and topic (end offsets) are as they were, and `lane rm`
//! removes the lane's copies. A broker that does not answer fails the deploy and leaves nothing.

mod common;

use common::{TestEnv, sample_manifest};
use lane_data::kafka::Kafka;
use lane_data::mysql::{Mysql, quote};
use lane_data::redis::{Redis, Reply};

/// The test servers (MySQL URL, Redis URL, Kafka bootstrap), started when needed.
fn servers() -> (String, String, String) {
    let env = common::services::start("all");
    (
        env.var("LANE_TEST_MYSQL_URL"),
        env.var("LANE_TEST_REDIS_URL"),
        env.var("LANE_TEST_KAFKA_BOOTSTRAP"),
    )
}

fn environ(pid: u32) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/environ")).unwrap()).into_owned()
}

/// Deletes a baseline topic the test made (lane's own API refuses baseline names by design).
async fn delete_baseline_topic(bootstrap: &str, topic: &str) {
    let client = rskafka::client::ClientBuilder::new(vec![bootstrap.to_owned()])
        .build()
        .await
        .unwrap();
    client
        .controller_client()
        .unwrap()
        .delete_topic(topic, 30_000)
        .await
        .unwrap();
}

#[test]
fn a_lane_process_writes_only_its_own_database_redis_and_topic() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (mysql_url, redis_url, bootstrap) = servers();
    let kafka_url = format!("kafka://{bootstrap}");
    let pid = std::process::id();
    let db = format!("lk_{pid}");
    let topic = format!("lk_{pid}.events");
    let q = quote(&db);
    let (base_index, first, last) = (48u32, 49u32, 52u32);

    // Baseline: a table with a row, a list in Redis, a topic with two partitions, a config and a
    // record.
    let m = rt.block_on(Mysql::connect(&mysql_url)).unwrap();
    rt.block_on(m.execute(&[
        &format!("DROP DATABASE IF EXISTS {q}"),
        &format!("CREATE DATABASE {q}"),
        &format!("CREATE TABLE {q}.notes (id INT AUTO_INCREMENT PRIMARY KEY, body VARCHAR(64))"),
        &format!("INSERT INTO {q}.notes (body) VALUES ('base')"),
    ]))
    .unwrap();
    let checksum = || {
        rt.block_on(m.show(&format!("CHECKSUM TABLE {q}.notes"), 1))
            .unwrap()
    };
    let table_before = checksum();
    let mut r = rt.block_on(Redis::connect(&redis_url)).unwrap();
    for i in base_index..=last {
        rt.block_on(r.cmd(&[b"SELECT", i.to_string().as_bytes()]))
            .unwrap();
        rt.block_on(r.cmd(&[b"FLUSHDB"])).unwrap();
    }
    rt.block_on(r.cmd(&[b"SELECT", base_index.to_string().as_bytes()]))
        .unwrap();
    rt.block_on(r.cmd(&[b"RPUSH", b"notes", b"base"])).unwrap();
    let mut k = rt.block_on(Kafka::connect(&kafka_url)).unwrap();
    let retention = vec![("retention.ms".to_owned(), "7200000".to_owned())];
    assert!(
        rt.block_on(k.create_topic(&topic, 2, 1, &retention))
            .unwrap()
    );
    rt.block_on(k.produce(&topic, 0, None, b"base")).unwrap();
    let offsets_before = rt.block_on(k.end_offsets(&topic)).unwrap();
    assert_eq!(offsets_before, [1, 0]);

    let env = TestEnv::new("data-kafka", 200);
    let bindings = format!(
        "\n[data.orders]\nkind = \"mysql\"\nurl = \"{mysql_url}/{db}\"\nenv = \"SAMPLE_MYSQL_URL\"\n\
         [data.cache]\nkind = \"redis\"\nurl = \"{redis_url}/{base_index}\"\nenv = \"SAMPLE_REDIS_URL\"\n\
         pool = [{first}, {last}]\n\
         [data.stream]\nkind = \"kafka\"\nurl = \"{kafka_url}\"\nenv = \"SAMPLE_KAFKA_URL\"\n\
         topics = {{ SAMPLE_KAFKA_TOPIC = \"{topic}\" }}\ngroups = {{ SAMPLE_KAFKA_GROUP = \"cart\" }}\n"
    );
    let repo = env.repo(
        "b",
        &format!("{}{bindings}", sample_manifest(&env.bin, "b", None, "")),
    );
    let ws = env.root.join("repos").join("lane-workspace.toml");
    std::fs::write(&ws, "[[service]]\npath = \"b\"\n").unwrap();
    env.ok(&["baseline", "up", "--file", ws.to_str().unwrap()]);
    env.branch(&repo, "feature");
    env.ok_in(&repo, &["deploy", "--lane", "feat-k"]);

    let lane_db = format!("{db}__lane_feat_k");
    let lane_topic = format!("{topic}.lane-feat-k");
    let shape = rt
        .block_on(k.shape(&lane_topic))
        .unwrap()
        .expect("the lane's topic");
    assert_eq!(shape.partitions, 2, "baseline's partitions");
    assert_eq!(shape.configs, retention, "baseline's configs");
    // The lane's Redis database: whichever of the pool it was given (the server is shared).
    let lane_doc = env.lane("feat-k").expect("the lane");
    let index: u32 = lane_doc["data"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["name"] == "cache"))
        .and_then(|d| d["target"].as_str())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("the lane's Redis index in {lane_doc:#}"));
    assert!((first..=last).contains(&index), "{index}");
    let pid_of = |lane: &str| {
        env.instance(lane, "demo.b").expect("instance")["placement"]["pid"]
            .as_u64()
            .unwrap() as u32
    };
    let lane_env = environ(pid_of("feat-k"));
    assert!(
        lane_env.contains(&format!("SAMPLE_KAFKA_TOPIC={lane_topic}\0"))
            && lane_env.contains("SAMPLE_KAFKA_GROUP=cart.lane-feat-k\0")
            && lane_env.contains(&format!("SAMPLE_KAFKA_URL={kafka_url}\0")),
        "{lane_env}"
    );
    let base_env = environ(pid_of("baseline"));
    assert!(
        base_env.contains(&format!("SAMPLE_KAFKA_TOPIC={topic}\0"))
            && base_env.contains("SAMPLE_KAFKA_GROUP=cart\0"),
        "{base_env}"
    );

    // The lane's version writes and reads through its own copies.
    let reply = common::http_get(
        env.router(),
        "b.demo.localhost",
        "/data/lanewrite",
        &[("x-lane", "feat-k")],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.body.trim(),
        format!(
            "data lanewrite: mysql {lane_db} rows=1; redis {index} notes=1; \
             kafka {lane_topic} records=1 group cart.lane-feat-k"
        )
    );
    let reply = common::http_get(
        env.router(),
        "b.demo.localhost",
        "/data/second",
        &[("x-lane", "feat-k")],
    );
    assert!(
        reply.body.contains("rows=2; redis") && reply.body.contains("records=2 group"),
        "{}",
        reply.body
    );

    // Through the servers: the lane's copies got the writes, baseline's did not.
    assert_eq!(
        rt.block_on(m.column(&format!(
            "SELECT body FROM {}.notes ORDER BY id",
            quote(&lane_db)
        )))
        .unwrap(),
        ["lanewrite", "second"]
    );
    assert_eq!(checksum(), table_before, "baseline's table untouched");
    assert_eq!(
        rt.block_on(m.column(&format!("SELECT body FROM {q}.notes")))
            .unwrap(),
        ["base"]
    );
    assert_eq!(
        rt.block_on(r.cmd(&[b"LRANGE", b"notes", b"0", b"-1"]))
            .unwrap(),
        Reply::Array(Some(vec![Reply::Bulk(Some(b"base".to_vec()))])),
        "baseline's Redis list"
    );
    rt.block_on(r.cmd(&[b"SELECT", index.to_string().as_bytes()]))
        .unwrap();
    assert_eq!(
        rt.block_on(r.cmd(&[b"LRANGE", b"notes", b"0", b"-1"]))
            .unwrap(),
        Reply::Array(Some(vec![
            Reply::Bulk(Some(b"lanewrite".to_vec())),
            Reply::Bulk(Some(b"second".to_vec()))
        ]))
    );
    assert_eq!(
        rt.block_on(k.end_offsets(&topic)).unwrap(),
        offsets_before,
        "baseline's topic untouched"
    );
    assert_eq!(
        rt.block_on(k.read(&lane_topic, 0, 0))
            .unwrap()
            .into_iter()
            .map(|(_, v)| v)
            .collect::<Vec<_>>(),
        [b"lanewrite".to_vec(), b"second".to_vec()]
    );

    // A consumer of the lane commits an offset in the lane's group.
    rt.block_on(k.commit_group_offset("cart.lane-feat-k", &lane_topic, 0, 2))
        .unwrap();

    // `lane data ls` and the dry run name the lane's topic and group.
    let ls = env.ok_in(&repo, &["data", "ls", "--json"]).json();
    let row = ls
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["lane"] == "feat-k" && r["binding"] == "stream")
        .cloned()
        .unwrap_or_else(|| panic!("stream in {ls:#}"));
    assert_eq!(row["kind"], "kafka");
    assert_eq!(row["target"], lane_topic.as_str());
    assert_eq!(row["size"], "2 partitions, 2 records", "{ls:#}");
    let plan = env.ok_in(&repo, &["rm", "feat-k", "--dry-run"]).stdout;
    assert!(
        plan.contains(&format!("stream: delete Kafka topic `{lane_topic}`"))
            && plan.contains("stream: delete Kafka consumer group `cart.lane-feat-k`")
            && plan.contains("nothing was removed"),
        "{plan}"
    );
    assert!(rt.block_on(k.topic_exists(&lane_topic)).unwrap());

    env.ok(&["rm", "feat-k"]);
    assert!(!rt.block_on(k.topic_exists(&lane_topic)).unwrap());
    let feat_k: lane_core::LaneId = "feat-k".parse().unwrap();
    assert!(
        !rt.block_on(k.delete_lane_group("cart", &feat_k, "cart.lane-feat-k"))
            .unwrap(),
        "the lane's consumer group went with it"
    );
    assert!(!rt.block_on(m.database_exists(&lane_db)).unwrap());
    assert!(rt.block_on(k.topic_exists(&topic)).unwrap());
    assert_eq!(rt.block_on(k.end_offsets(&topic)).unwrap(), offsets_before);
    assert_eq!(checksum(), table_before);
    env.finish();

    rt.block_on(m.execute(&[&format!("DROP DATABASE {q}")]))
        .unwrap();
    rt.block_on(r.cmd(&[b"SELECT", base_index.to_string().as_bytes()]))
        .unwrap();
    rt.block_on(r.cmd(&[b"FLUSHDB"])).unwrap();
    rt.block_on(delete_baseline_topic(&bootstrap, &topic));
}

#[test]
fn an_unreachable_broker_fails_the_deploy_and_leaves_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (mysql_url, _, _) = servers();
    let db = format!("lku_{}", std::process::id());
    let q = quote(&db);
    let m = rt.block_on(Mysql::connect(&mysql_url)).unwrap();
    rt.block_on(m.execute(&[
        &format!("DROP DATABASE IF EXISTS {q}"),
        &format!("CREATE DATABASE {q}"),
        &format!("CREATE TABLE {q}.t (id INT PRIMARY KEY)"),
    ]))
    .unwrap();
    let env = TestEnv::new("data-kafka-down", 201);
    // `orders` is provisioned first (bindings go by name), then the broker does not answer.
    let manifest = format!(
        "{}\n[data.orders]\nkind = \"mysql\"\nurl = \"{mysql_url}/{db}\"\nenv = \"DSN\"\n\
         [data.stream]\nkind = \"kafka\"\nurl = \"kafka://127.0.0.1:1\"\nenv = \"K\"\n\
         topics = {{ T = \"events\" }}\n",
        sample_manifest(&env.bin, "b", None, "")
    );
    let repo = env.repo("b", &manifest);
    let out = env.run_in(&repo, &["deploy", "--lane", "feat-a"], &[]);
    assert_ne!(out.code, 0, "{out}");
    assert!(
        out.stderr
            .contains("data binding `stream`: cannot reach Kafka at kafka://127.0.0.1:1"),
        "{out}"
    );
    assert!(env.lane("feat-a").is_none(), "the lane is gone again");
    assert!(
        !rt.block_on(m.database_exists(&format!("{db}__lane_feat_a")))
            .unwrap(),
        "the database made before the failure is removed"
    );
    env.finish();
    rt.block_on(m.execute(&[&format!("DROP DATABASE {q}")]))
        .unwrap();
}
