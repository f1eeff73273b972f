//! `kafka-bench`: export + import throughput of a Kafka binding, against a plain copy of the same
//! records from topic to topic with the same client in the same run (see docs/benchmarks.md).
//!
//! ```text
//! cargo run --release -p lane-data --bin kafka-bench -- [--records 200000] [--runs 3]
//! ```
//!
//! Uses the broker of `scripts/services.sh kafka` (`LANE_TEST_KAFKA_BOOTSTRAP`, default
//! `127.0.0.1:31092`). Makes a baseline topic `kbench_<pid>` of 4 partitions, lane topics for
//! lanes `kbench-a-<pid>` and `kbench-b-<pid>`, fills lane a's with `--records` records (key of
//! ~10 bytes, value of 100, one header), and deletes everything it made at the end.
//!
//! - lane: `transfer::export` of lane a's topic to memory, then `transfer::import` of it into
//!   lane b's (staging topic, seal, partition-by-partition swap, staging deleted).
//! - plain: every record of lane a's topic fetched and produced to partition n of a copy topic
//!   (the same client, batches of ~512 KiB): the least any copy through this client does.
//!
//! Records/s over all records; median of `--runs`.

use std::time::{Duration, Instant};

use lane_core::LaneId;
use lane_core::manifest::Manifest;
use lane_data::kafka::Kafka;
use lane_data::transfer::{self, Cancel, Target};
use rskafka::client::partition::{Compression, OffsetAt, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;

mod common;
use common::{arg, die, median};

const PARTITIONS: i32 = 4;

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// Copies every record of `from` to the same partition of `to`.
async fn plain_copy(c: &Client, from: &str, to: &str) -> u64 {
    let mut n = 0;
    for p in 0..PARTITIONS {
        let src = c
            .partition_client(from, p, UnknownTopicHandling::Retry)
            .await
            .unwrap_or_else(|e| die(&e.to_string()));
        let dst = c
            .partition_client(to, p, UnknownTopicHandling::Retry)
            .await
            .unwrap_or_else(|e| die(&e.to_string()));
        let mut at = src
            .get_offset(OffsetAt::Earliest)
            .await
            .unwrap_or_else(|e| die(&e.to_string()));
        let end = src
            .get_offset(OffsetAt::Latest)
            .await
            .unwrap_or_else(|e| die(&e.to_string()));
        while at < end {
            let (records, _) = src
                .fetch_records(at, 1..(1 << 20), 500)
                .await
                .unwrap_or_else(|e| die(&e.to_string()));
            let mut batch = Vec::new();
            let mut bytes = 0;
            for r in records {
                if r.offset < at || r.offset >= end {
                    continue;
                }
                at = r.offset + 1;
                bytes += r.record.approximate_size();
                batch.push(r.record);
                if bytes >= 512 << 10 {
                    n += batch.len() as u64;
                    dst.produce(std::mem::take(&mut batch), Compression::NoCompression)
                        .await
                        .unwrap_or_else(|e| die(&e.to_string()));
                    bytes = 0;
                }
            }
            n += batch.len() as u64;
            dst.produce(batch, Compression::NoCompression)
                .await
                .unwrap_or_else(|e| die(&e.to_string()));
        }
    }
    n
}

async fn fill(c: &Client, topic: &str, records: u64) {
    let per = records / PARTITIONS as u64;
    let now = chrono::Utc::now();
    for p in 0..PARTITIONS {
        let pc = c
            .partition_client(topic, p, UnknownTopicHandling::Retry)
            .await
            .unwrap_or_else(|e| die(&e.to_string()));
        let all: Vec<Record> = (0..per)
            .map(|i| Record {
                key: Some(format!("k{i:09}").into_bytes()),
                value: Some(vec![b'v'; 100]),
                headers: [("n".to_owned(), i.to_be_bytes().to_vec())]
                    .into_iter()
                    .collect(),
                timestamp: now + chrono::Duration::milliseconds(i as i64),
            })
            .collect();
        for chunk in all.chunks(4000) {
            pc.produce(chunk.to_vec(), Compression::NoCompression)
                .await
                .unwrap_or_else(|e| die(&e.to_string()));
        }
    }
}

#[tokio::main]
async fn main() {
    let records = arg("--records", 200_000) / PARTITIONS as u64 * PARTITIONS as u64;
    let runs = arg("--runs", 3).max(1) as usize;
    let bootstrap =
        std::env::var("LANE_TEST_KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:31092".to_owned());
    let url = format!("kafka://{bootstrap}");
    let pid = std::process::id();
    let base = format!("kbench_{pid}");
    let copy = format!("kbench_{pid}_copy");
    let mut k = Kafka::connect(&url)
        .await
        .unwrap_or_else(|e| die(&e.to_string()));
    let c = ClientBuilder::new(vec![bootstrap.clone()])
        .build()
        .await
        .unwrap_or_else(|e| die(&e.to_string()));
    for t in [&base, &copy] {
        k.create_topic(t, PARTITIONS, 1, &[])
            .await
            .unwrap_or_else(|e| die(&e.to_string()));
    }
    let spec = Manifest::parse(
        std::path::Path::new("lane.toml"),
        &format!(
            "app = \"a\"\nproc = \"b\"\n[run]\ncommand = \"x\"\n[data.events]\nkind = \"kafka\"\n\
             url = \"{url}\"\nenv = \"K\"\ntopics = {{ T = \"{base}\" }}\n"
        ),
    )
    .unwrap_or_else(|e| die(&e.to_string()))
    .data
    .remove(0);
    let lane = |s: &str| -> LaneId {
        format!("kbench-{s}-{pid}")
            .parse()
            .unwrap_or_else(|e| die(&format!("{e}")))
    };
    let (a, b) = (lane("a"), lane("b"));
    let mut targets = Vec::new();
    for l in [&a, &b] {
        let made = k
            .create_lane_topics(l, std::slice::from_ref(&base))
            .await
            .unwrap_or_else(|e| die(&e.to_string()));
        targets.push(Target {
            spec: spec.clone(),
            target: made[0].topic.clone(),
        });
    }
    fill(&c, &targets[0].target, records).await;
    println!(
        "kafka-bench: {records} records (~{} MB) in {PARTITIONS} partitions, {runs} runs",
        records * 130 / 1_000_000
    );

    let quiet = |_: &transfer::Progress| {};
    let (mut export, mut import, mut both, mut plain) = (vec![], vec![], vec![], vec![]);
    let mut size = 0;
    for run in 0..runs {
        let t0 = Instant::now();
        let (file, report) =
            transfer::export(&a, &targets[..1], Vec::new(), &quiet, &Cancel::new())
                .await
                .unwrap_or_else(|e| die(&e.to_string()));
        let t1 = Instant::now();
        assert_eq!(report.bindings[0].items, records, "exported");
        size = file.len();
        let r = transfer::import(
            &b,
            &targets[1..],
            file.as_slice(),
            None,
            file.len() as u64,
            &quiet,
            &Cancel::new(),
        )
        .await
        .unwrap_or_else(|e| die(&e.to_string()));
        let t2 = Instant::now();
        assert_eq!(r.bindings[0].items, records, "imported");
        assert_eq!(
            k.records(&targets[1].target).await.unwrap_or(-1),
            records as i64,
            "lane b holds the file's records"
        );
        let copied = plain_copy(&c, &targets[0].target, &copy).await;
        let t3 = Instant::now();
        assert_eq!(copied, records, "copied");
        let (e, i, p) = (t1 - t0, t2 - t1, t3 - t2);
        println!(
            "run {}: export {:.0} rec/s, import {:.0} rec/s, export+import {:.0} rec/s; plain \
             copy {:.0} rec/s",
            run + 1,
            rate(records, e),
            rate(records, i),
            rate(records, e + i),
            rate(records, p)
        );
        export.push(e);
        import.push(i);
        both.push(e + i);
        plain.push(p);
    }
    let (e, i, x, p) = (median(export), median(import), median(both), median(plain));
    println!(
        "median: export {:.0} rec/s, import {:.0} rec/s, export+import {:.0} rec/s ({:.2}x the \
         plain copy's {:.0} rec/s); file {:.1} MB",
        rate(records, e),
        rate(records, i),
        rate(records, x),
        rate(records, x) / rate(records, p),
        rate(records, p),
        size as f64 / 1e6
    );

    for l in [&a, &b] {
        let plan = lane_data::teardown::plan(l, std::slice::from_ref(&spec), &[])
            .unwrap_or_else(|e| die(&e.to_string()));
        lane_data::teardown::execute(&plan, std::slice::from_ref(&spec))
            .await
            .unwrap_or_else(|e| die(&e.to_string()));
    }
    let admin = c
        .controller_client()
        .unwrap_or_else(|e| die(&e.to_string()));
    for t in [&base, &copy] {
        admin
            .delete_topic(t, 30_000)
            .await
            .unwrap_or_else(|e| die(&e.to_string()));
    }
}
