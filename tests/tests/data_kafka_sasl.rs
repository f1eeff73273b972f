//! End to end through `lane deploy` with a Kafka binding whose brokers want SASL (the
//! `SASL_PLAINTEXT` listener of the broker `scripts/services.sh kafka` starts; user `lane`,
//! password `lane-secret`, SCRAM-SHA-256): the lane's topic is made through it, the sample service
//! of the lane writes to its own topic through it, and `lane rm` deletes the topic. A wrong
//! password fails the deploy with a clear error that does not show the password, and leaves
//! nothing behind.

mod common;

use common::{TestEnv, sample_manifest};
use lane_data::kafka::Kafka;

const WRONG: &str = "wrong-secret-42";

/// The SASL listener's `host:port`, started when needed.
fn sasl_bootstrap() -> String {
    common::services::start("kafka").var("LANE_TEST_KAFKA_SASL_BOOTSTRAP")
}

/// Deletes a baseline topic the test made (lane's own API refuses baseline names by design).
async fn delete_baseline_topic(k: &Kafka, topic: &str) {
    let client = k.client_builder().build().await.unwrap();
    client
        .controller_client()
        .unwrap()
        .delete_topic(topic, 30_000)
        .await
        .unwrap();
}

fn manifest(env: &TestEnv, url: &str, topic: &str) -> String {
    format!(
        "{}\n[data.stream]\nkind = \"kafka\"\nurl = \"{url}\"\nenv = \"SAMPLE_KAFKA_URL\"\n\
         topics = {{ SAMPLE_KAFKA_TOPIC = \"{topic}\" }}\ngroups = {{ SAMPLE_KAFKA_GROUP = \"cart\" }}\n",
        sample_manifest(&env.bin, "b", None, "")
    )
}

#[test]
fn a_lane_deployed_with_sasl_credentials_writes_its_own_topic_and_rm_deletes_it() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let env = TestEnv::new("data-kafka-sasl", 251);
    let bootstrap = sasl_bootstrap();
    let url = format!("kafka://lane:lane-secret@{bootstrap}?mechanism=SCRAM-SHA-256");
    let topic = format!("lks_{}.events", std::process::id());
    let mut k = rt.block_on(Kafka::connect(&url)).unwrap();
    assert!(rt.block_on(k.create_topic(&topic, 2, 1, &[])).unwrap());
    rt.block_on(k.produce(&topic, 0, None, b"base")).unwrap();
    let before = rt.block_on(k.end_offsets(&topic)).unwrap();

    let repo = env.repo("b", &manifest(&env, &url, &topic));
    let ws = env.root.join("repos").join("lane-workspace.toml");
    std::fs::write(&ws, "[[service]]\npath = \"b\"\n").unwrap();
    env.ok(&["baseline", "up", "--file", ws.to_str().unwrap()]);
    env.branch(&repo, "feature");
    let out = env.ok_in(&repo, &["deploy", "--lane", "feat-s"]);
    assert!(
        !out.stdout.contains("lane-secret") && !out.stderr.contains("lane-secret"),
        "{out}"
    );
    let lane_topic = format!("{topic}.lane-feat-s");
    assert_eq!(
        rt.block_on(k.shape(&lane_topic))
            .unwrap()
            .expect("the lane's topic")
            .partitions,
        2
    );

    // The lane's process authenticates with the same address and writes to its own topic.
    let reply = common::http_get(
        env.router(),
        "b.demo.localhost",
        "/data/sasl",
        &[("x-lane", "feat-s")],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.body.trim(),
        format!("data sasl: kafka {lane_topic} records=1 group cart.lane-feat-s")
    );
    assert_eq!(
        rt.block_on(k.read(&lane_topic, 0, 0)).unwrap(),
        [(0, b"sasl".to_vec())]
    );
    assert_eq!(rt.block_on(k.end_offsets(&topic)).unwrap(), before);

    let plan = env.ok_in(&repo, &["rm", "feat-s", "--dry-run"]).stdout;
    assert!(
        plan.contains(&format!("stream: delete Kafka topic `{lane_topic}`"))
            && !plan.contains("lane-secret"),
        "{plan}"
    );
    env.ok(&["rm", "feat-s"]);
    assert!(!rt.block_on(k.topic_exists(&lane_topic)).unwrap());
    assert_eq!(rt.block_on(k.end_offsets(&topic)).unwrap(), before);
    env.finish();
    rt.block_on(delete_baseline_topic(&k, &topic));
}

#[test]
fn a_wrong_password_fails_the_deploy_clearly_and_leaves_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let env = TestEnv::new("data-kafka-sasl-wrong", 252);
    let bootstrap = sasl_bootstrap();
    let good = format!("kafka://lane:lane-secret@{bootstrap}");
    let topic = format!("lksw_{}.events", std::process::id());
    let mut k = rt.block_on(Kafka::connect(&good)).unwrap();
    assert!(rt.block_on(k.create_topic(&topic, 1, 1, &[])).unwrap());

    let bad = format!("kafka://lane:{WRONG}@{bootstrap}");
    let repo = env.repo("b", &manifest(&env, &bad, &topic));
    let out = env.run_in(&repo, &["deploy", "--lane", "feat-w"], &[]);
    assert_ne!(out.code, 0, "{out}");
    assert!(
        out.stderr.contains(&format!(
            "data binding `stream`: Kafka at kafka://lane:***@{bootstrap} refused the credentials: \
             authentication as `lane` with PLAIN at broker {bootstrap} failed"
        )),
        "{out}"
    );
    assert!(
        !out.stdout.contains(WRONG) && !out.stderr.contains(WRONG),
        "{out}"
    );
    assert!(env.lane("feat-w").is_none(), "the lane is gone again");
    assert!(
        !rt.block_on(k.topic_exists(&format!("{topic}.lane-feat-w")))
            .unwrap()
    );
    env.finish();
    rt.block_on(delete_baseline_topic(&k, &topic));
}
