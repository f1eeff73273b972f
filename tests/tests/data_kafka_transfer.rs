//! `lane data export | import` of a Kafka binding through the real binary, against a real Apache
//! Kafka broker: two lanes deployed with `lane deploy`, one lane's topic (two partitions, keyed
//! records with headers) exported and imported into the other gives the same records per
//! partition; an import SIGKILLed while it stages leaves the lane's records as they were and its
//! staging topic, which the next import removes; backup and restore bring the records back;
//! `lane rm` removes the lanes' topics.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{TestEnv, sample_manifest};
use lane_data::kafka::Kafka;
use rskafka::chrono;
use rskafka::client::partition::{Compression, OffsetAt, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;

/// A record as compared: key, value, headers, timestamp in ms.
type Rec = (
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    BTreeMap<String, Vec<u8>>,
    i64,
);

async fn records(c: &Client, topic: &str) -> Vec<Vec<Rec>> {
    let mut out = Vec::new();
    for p in 0..2 {
        let pc = c
            .partition_client(topic, p, UnknownTopicHandling::Retry)
            .await
            .unwrap();
        let mut at = pc.get_offset(OffsetAt::Earliest).await.unwrap();
        let end = pc.get_offset(OffsetAt::Latest).await.unwrap();
        let mut part = Vec::new();
        while at < end {
            let (rs, _) = pc.fetch_records(at, 1..4_000_000, 500).await.unwrap();
            for r in rs {
                if r.offset < at || r.offset >= end {
                    continue;
                }
                at = r.offset + 1;
                part.push((
                    r.record.key,
                    r.record.value,
                    r.record.headers,
                    r.record.timestamp.timestamp_millis(),
                ));
            }
        }
        out.push(part);
    }
    out
}

/// `n` records per partition of `topic`, in batches.
async fn write(c: &Client, topic: &str, tag: &str, n: usize) {
    let now = chrono::Utc::now();
    for p in 0..2 {
        let pc = c
            .partition_client(topic, p, UnknownTopicHandling::Retry)
            .await
            .unwrap();
        let all: Vec<Record> = (0..n)
            .map(|i| Record {
                key: (i % 5 != 0).then(|| format!("{tag}-{i}").into_bytes()),
                value: (i % 7 != 0)
                    .then(|| format!("{tag} value {p} {i} {}", "x".repeat(40)).into_bytes()),
                headers: [("n".to_owned(), i.to_string().into_bytes())]
                    .into_iter()
                    .collect(),
                timestamp: now + chrono::Duration::milliseconds(i as i64),
            })
            .collect();
        for chunk in all.chunks(5000) {
            pc.produce(chunk.to_vec(), Compression::NoCompression)
                .await
                .unwrap();
        }
    }
}

#[test]
fn export_and_import_of_a_kafka_binding_and_a_killed_import() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let env_vars = common::services::start("kafka");
    let bootstrap = env_vars.var("LANE_TEST_KAFKA_BOOTSTRAP");
    let kafka_url = format!("kafka://{bootstrap}");
    let topic = format!("lkx_{}.events", std::process::id());
    let c = rt
        .block_on(ClientBuilder::new(vec![bootstrap.clone()]).build())
        .unwrap();
    let mut k = rt.block_on(Kafka::connect(&kafka_url)).unwrap();
    assert!(rt.block_on(k.create_topic(&topic, 2, 1, &[])).unwrap());

    let env = TestEnv::new("data-kafka-xfer", 250);
    let bindings = format!(
        "\n[data.stream]\nkind = \"kafka\"\nurl = \"{kafka_url}\"\nenv = \"SAMPLE_KAFKA_URL\"\n\
         topics = {{ SAMPLE_KAFKA_TOPIC = \"{topic}\" }}\ngroups = {{ SAMPLE_KAFKA_GROUP = \"cart\" }}\n"
    );
    let repo = env.repo(
        "b",
        &format!("{}{bindings}", sample_manifest(&env.bin, "b", None, "")),
    );
    env.branch(&repo, "feature");
    env.ok_in(&repo, &["deploy", "--lane", "kx-a"]);
    env.ok_in(&repo, &["deploy", "--lane", "kx-b"]);
    let (ta, tb) = (format!("{topic}.lane-kx-a"), format!("{topic}.lane-kx-b"));
    rt.block_on(write(&c, &ta, "a", 60_000));
    rt.block_on(write(&c, &tb, "b", 3));
    let b_before = rt.block_on(records(&c, &tb));

    // Export kx-a (every binding: Kafka is no longer left out).
    let file = env.root.join("k.lanedata");
    let file_s = file.to_str().unwrap();
    let out = env.ok_in(&repo, &["data", "export", "kx-a", "-o", file_s, "--json"]);
    let report = out.json();
    assert_eq!(report["bindings"][0]["binding"], "stream", "{report:#}");
    assert_eq!(report["bindings"][0]["items"], 120_000, "{report:#}");
    assert_eq!(report["bindings"][0]["objects"], 1, "{report:#}");
    assert!(!out.stderr.contains("left out"), "{out}");

    // An import SIGKILLed while it stages: kx-b keeps its records, the staging topic stays.
    let staging = format!("{tb}.staging");
    let import = env.spawn_in(&repo, &["data", "import", "kx-b", "stream", file_s], &[]);
    common::wait_for(
        "the import to stage records",
        Duration::from_secs(60),
        &mut || {
            let end = rt.block_on(k.end_offsets(&staging)).ok()?;
            (end.first().copied()? > 1000).then_some(())
        },
    );
    let killed = import.kill9();
    assert_ne!(killed.code, 0, "{killed}");
    assert_eq!(
        rt.block_on(records(&c, &tb)),
        b_before,
        "kx-b's records are as they were"
    );
    assert!(rt.block_on(k.topic_exists(&staging)).unwrap());

    // The next import removes it and replaces kx-b's records with the file's.
    let out = env
        .ok_in(&repo, &["data", "import", "kx-b", file_s, "--json"])
        .json();
    assert_eq!(out["bindings"][0]["items"], 120_000, "{out:#}");
    let a = rt.block_on(records(&c, &ta));
    assert_eq!(a[0].len(), 60_000);
    assert_eq!(rt.block_on(records(&c, &tb)), a);
    assert!(!rt.block_on(k.topic_exists(&staging)).unwrap());
    // The human report names records and topics.
    let text = env
        .ok_in(&repo, &["data", "export", "kx-b", "stream", "-o", file_s])
        .stdout;
    assert!(
        text.contains("stream: 120000 records, 1 topics (kafka"),
        "{text}"
    );

    // A backup of kx-b, more records written, and a restore brings the backup's records back.
    env.ok_in(&repo, &["data", "backup", "kx-b"]);
    rt.block_on(write(&c, &tb, "later", 2));
    assert_ne!(rt.block_on(records(&c, &tb)), a);
    env.ok_in(&repo, &["data", "restore", "kx-b"]);
    assert_eq!(rt.block_on(records(&c, &tb)), a);

    env.ok(&["rm", "kx-a"]);
    env.ok(&["rm", "kx-b"]);
    assert!(!rt.block_on(k.topic_exists(&ta)).unwrap());
    assert!(!rt.block_on(k.topic_exists(&tb)).unwrap());
    assert!(rt.block_on(k.topic_exists(&topic)).unwrap());
    assert_eq!(rt.block_on(k.end_offsets(&topic)).unwrap(), [0, 0]);
    env.finish();
    rt.block_on(c.controller_client().unwrap().delete_topic(&topic, 30_000))
        .unwrap();
}
