//! Export and import of Kafka bindings on a real Apache Kafka broker (`scripts/services.sh
//! kafka`): a lane's topics (several partitions, keyed records, headers, null and empty keys and
//! values, set timestamps) exported and imported into another lane give the same records per
//! partition; an import cancelled or killed before the swap leaves the lane's records as they
//! were and its staging topics are removed later; one killed after the seal is completed by the
//! next import; a file naming a topic the lane does not bind is a clear error.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::kafka_member::{committed, join, leave};
use common::{lane, unique};
use lane_core::LaneId;
use lane_core::data::{self, DataSpec};
use lane_data::DataError;
use lane_data::kafka::Kafka;
use lane_data::teardown;
use lane_data::transfer::format::{Reader, TAG_SECTION, TAG_SECTION_END};
use lane_data::transfer::kafka::{Staging, staging_topic};
use lane_data::transfer::{self, Cancel, Progress, Target};
use rskafka::client::partition::{Compression, OffsetAt, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;

fn url() -> String {
    format!("kafka://{}", common::kafka_bootstrap())
}

fn spec(topics: &[&str], group: &str) -> DataSpec {
    let list: Vec<String> = topics
        .iter()
        .enumerate()
        .map(|(i, t)| format!("T{i} = \"{t}\""))
        .collect();
    Manifest::parse(
        Path::new("lane.toml"),
        &format!(
            "app = \"a\"\nproc = \"b\"\n[run]\ncommand = \"x\"\n[data.events]\nkind = \"kafka\"\n\
             url = \"{}\"\nenv = \"K\"\ntopics = {{ {} }}\ngroups = {{ G = \"{group}\" }}\n",
            url(),
            list.join(", ")
        ),
    )
    .unwrap()
    .data
    .remove(0)
}

use lane_core::manifest::Manifest;

async fn client() -> Client {
    ClientBuilder::new(vec![common::kafka_bootstrap().to_owned()])
        .build()
        .await
        .unwrap()
}

/// A record as compared: key, value, headers, timestamp in ms.
type Rec = (
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    BTreeMap<String, Vec<u8>>,
    i64,
);

/// Every record of every partition of `topic` (earliest to end), by partition.
async fn records(c: &Client, topic: &str, partitions: i32) -> Vec<Vec<Rec>> {
    let mut out = Vec::new();
    for p in 0..partitions {
        let pc = c
            .partition_client(topic, p, UnknownTopicHandling::Retry)
            .await
            .unwrap();
        let start = pc.get_offset(OffsetAt::Earliest).await.unwrap();
        let end = pc.get_offset(OffsetAt::Latest).await.unwrap();
        let mut at = start;
        let mut part = Vec::new();
        while at < end {
            let (rs, _) = pc.fetch_records(at, 1..1_000_000, 500).await.unwrap();
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

/// Writes `n` records per partition of `topic`: keyed and not, with headers, null and empty
/// values, timestamps an hour back, one millisecond apart.
async fn write(c: &Client, topic: &str, partitions: i32, tag: &str, n: usize) {
    let base = chrono::Utc::now() - chrono::Duration::hours(1);
    for p in 0..partitions {
        let pc = c
            .partition_client(topic, p, UnknownTopicHandling::Retry)
            .await
            .unwrap();
        let batch: Vec<Record> = (0..n)
            .map(|i| Record {
                key: match i % 3 {
                    0 => None,
                    1 => Some(Vec::new()),
                    _ => Some(format!("{tag}-k{i}").into_bytes()),
                },
                value: match i % 4 {
                    0 => None,
                    1 => Some(Vec::new()),
                    _ => Some(format!("{tag}-v{p}-{i}\u{0}\u{ff}").into_bytes()),
                },
                headers: if i % 2 == 0 {
                    [
                        ("trace".to_owned(), format!("{tag}{i}").into_bytes()),
                        ("empty".to_owned(), Vec::new()),
                    ]
                    .into_iter()
                    .collect()
                } else {
                    BTreeMap::new()
                },
                timestamp: base + chrono::Duration::milliseconds((p as i64) * 10_000 + i as i64),
            })
            .collect();
        pc.produce(batch, Compression::NoCompression).await.unwrap();
    }
}

/// The lane's topics for `spec`, as a deploy makes them.
async fn provision(k: &mut Kafka, spec: &DataSpec, lane: &LaneId, topics: &[&str]) -> Target {
    let topics: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
    let made = k.create_lane_topics(lane, &topics).await.unwrap();
    Target {
        spec: spec.clone(),
        target: made
            .iter()
            .map(|t| t.topic.clone())
            .collect::<Vec<_>>()
            .join(","),
    }
}

async fn teardown_lane(lane: &LaneId, spec: &DataSpec) {
    let specs = vec![spec.clone()];
    let plan = teardown::plan(lane, &specs, &[]).unwrap();
    teardown::execute(&plan, &specs).await.unwrap();
}

async fn drop_topic(c: &Client, topic: &str) {
    let _ = c
        .controller_client()
        .unwrap()
        .delete_topic(topic, 30_000)
        .await;
}

async fn staging_left(k: &mut Kafka, lane: &LaneId, topics: &[&str]) -> Vec<String> {
    let mut left = Vec::new();
    for t in topics {
        let s = staging_topic(t, lane);
        if k.topic_exists(&s).await.unwrap() {
            left.push(s);
        }
    }
    left
}

use common::xfer::no_progress;

async fn export(lane: &LaneId, t: &Target) -> Vec<u8> {
    common::xfer::export(lane, std::slice::from_ref(t)).await
}

async fn import(lane: &LaneId, t: &Target, file: &[u8]) -> Result<transfer::Report, DataError> {
    common::xfer::import(lane, std::slice::from_ref(t), file, None).await
}

#[tokio::test]
async fn export_then_import_into_another_lane_gives_identical_records() {
    let c = client().await;
    let mut k = Kafka::connect(&url()).await.unwrap();
    let (t1, t2) = (unique("kx_a_"), unique("kx_b_"));
    k.create_topic(&t1, 3, 1, &[("retention.ms".into(), "86400000".into())])
        .await
        .unwrap();
    k.create_topic(&t2, 2, 1, &[]).await.unwrap();
    let topics = [t1.as_str(), t2.as_str()];
    let group = unique("kxg_");
    let spec = spec(&topics, &group);
    let (a, b) = (lane("kxa-"), lane("kxb-"));
    let ta = provision(&mut k, &spec, &a, &topics).await;
    let tb = provision(&mut k, &spec, &b, &topics).await;
    let (a1, a2) = (data::rewrite_topic(&t1, &a), data::rewrite_topic(&t2, &a));
    let (b1, b2) = (data::rewrite_topic(&t1, &b), data::rewrite_topic(&t2, &b));
    write(&c, &a1, 3, "a", 250).await;
    write(&c, &a2, 2, "a2", 40).await;
    // Lane b has records of its own, replaced by the import.
    write(&c, &b1, 3, "b", 5).await;
    write(&c, &b2, 2, "b", 7).await;

    let seen = std::sync::Mutex::new(Vec::new());
    let on = |p: &Progress| seen.lock().unwrap().push(p.clone());
    let (file, report) = transfer::export(
        &a,
        std::slice::from_ref(&ta),
        Vec::new(),
        &on,
        &Cancel::new(),
    )
    .await
    .unwrap();
    assert_eq!(report.bindings[0].items, 3 * 250 + 2 * 40, "{report:?}");
    assert_eq!(report.bindings[0].objects, 2);
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|p| p.step == "export" && p.unit == "records")
    );
    // An export cancelled half-way is an error (the CLI removes its partial file).
    let cancel = Cancel::new();
    let stop = |p: &Progress| {
        if p.done > 0 {
            cancel.cancel();
        }
    };
    let e = transfer::export(&a, std::slice::from_ref(&ta), Vec::new(), &stop, &cancel)
        .await
        .unwrap_err();
    assert!(matches!(e, DataError::Cancelled), "{e}");
    // Records written after the export are not in the file.
    write(&c, &a1, 3, "late", 1).await;

    let imported = import(&b, &tb, &file).await.unwrap();
    assert_eq!(imported.bindings[0].items, 3 * 250 + 2 * 40);
    let ra1 = records(&c, &a1, 3).await;
    let rb1 = records(&c, &b1, 3).await;
    assert_eq!(rb1.iter().map(Vec::len).collect::<Vec<_>>(), [250; 3]);
    for p in 0..3 {
        assert_eq!(ra1[p][..250], rb1[p][..], "partition {p}");
    }
    assert_eq!(records(&c, &a2, 2).await, records(&c, &b2, 2).await);
    assert!(
        rb1[0].iter().any(|r| r.0.is_none()) && rb1[0].iter().any(|r| r.0 == Some(vec![])),
        "null and empty keys kept apart"
    );
    assert!(
        rb1[0].iter().any(|r| r.1.is_none()) && rb1[0].iter().any(|r| r.1 == Some(vec![])),
        "null and empty values kept apart"
    );
    assert!(rb1[1].iter().any(|r| r.2.contains_key("trace")));
    assert!(staging_left(&mut k, &b, &topics).await.is_empty());
    // The offsets go on from lane b's old end: its old records are gone.
    let pc = c
        .partition_client(b1.as_str(), 0, UnknownTopicHandling::Retry)
        .await
        .unwrap();
    assert_eq!(pc.get_offset(OffsetAt::Earliest).await.unwrap(), 5);
    assert_eq!(pc.get_offset(OffsetAt::Latest).await.unwrap(), 255);
    // Lane b's consumer group starts at the imported records.
    let lane_group = data::rewrite_group(&group, &b);
    let bootstrap = common::kafka_bootstrap();
    assert_eq!(committed(bootstrap, &lane_group, &b1, 0).await, 5);
    assert_eq!(committed(bootstrap, &lane_group, &b2, 1).await, 7);
    // Lane a's group was not touched.
    let a_group = data::rewrite_group(&group, &a);
    assert_eq!(committed(bootstrap, &a_group, &a1, 0).await, -1);

    // An import again (a restore of the same file) gives the same records.
    import(&b, &tb, &file).await.unwrap();
    assert_eq!(records(&c, &b1, 3).await, rb1);

    teardown_lane(&a, &spec).await;
    teardown_lane(&b, &spec).await;
    for t in [&a1, &b1, &a2, &b2] {
        assert!(!k.topic_exists(t).await.unwrap(), "{t} deleted");
    }
    for t in topics {
        drop_topic(&c, t).await;
    }
}

/// Stages `file` into lane `lane` up to the seal, as an import does, then stops as if killed
/// (nothing removed).
async fn stage_and_seal(lane: &LaneId, t: &Target, file: &[u8]) {
    let mut s = Staging::prepare(lane, &t.spec, &t.target).await.unwrap();
    let (mut r, _) = Reader::new(file).await.unwrap();
    let cancel = Cancel::new();
    while let Some(f) = r.next().await.unwrap() {
        match f.tag {
            TAG_SECTION => s.section(&f.json("section").unwrap()).unwrap(),
            TAG_SECTION_END => {
                s.end(&f.json("section end").unwrap()).unwrap();
            }
            _ => {
                s.frame(&f, &cancel).await.unwrap();
            }
        }
    }
    s.seal().await.unwrap();
    drop(s);
}

#[tokio::test]
async fn an_import_stopped_before_the_swap_leaves_the_records_and_one_after_the_seal_is_completed()
{
    let c = client().await;
    let mut k = Kafka::connect(&url()).await.unwrap();
    let (t1, t2) = (unique("kk_a_"), unique("kk_b_"));
    k.create_topic(&t1, 2, 1, &[]).await.unwrap();
    k.create_topic(&t2, 1, 1, &[]).await.unwrap();
    let topics = [t1.as_str(), t2.as_str()];
    let spec = spec(&topics, &unique("kkg_"));
    let (a, b) = (lane("kka-"), lane("kkb-"));
    let ta = provision(&mut k, &spec, &a, &topics).await;
    let tb = provision(&mut k, &spec, &b, &topics).await;
    let (a1, b1) = (data::rewrite_topic(&t1, &a), data::rewrite_topic(&t1, &b));
    let (a2, b2) = (data::rewrite_topic(&t2, &a), data::rewrite_topic(&t2, &b));
    write(&c, &a1, 2, "a", 3000).await;
    write(&c, &a2, 1, "a", 10).await;
    write(&c, &b1, 2, "b", 4).await;
    let file = export(&a, &ta).await;
    let before = (records(&c, &b1, 2).await, records(&c, &b2, 1).await);
    let lane_b = || async { (records(&c, &b1, 2).await, records(&c, &b2, 1).await) };

    // Cancelled while staging: the lane's records are as they were, no staging topic is left.
    let cancel = Cancel::new();
    let stop = |p: &Progress| {
        if p.step == "stage" && p.done > 1000 {
            cancel.cancel();
        }
    };
    let e = transfer::import(
        &b,
        std::slice::from_ref(&tb),
        file.as_slice(),
        None,
        file.len() as u64,
        &stop,
        &cancel,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, DataError::Cancelled), "{e}");
    assert_eq!(lane_b().await, before);
    assert!(staging_left(&mut k, &b, &topics).await.is_empty());

    // Killed while staging (the task dies: nothing cleans up): the lane's records are as they
    // were; the staging topic stays until the next import.
    let (lb, tb2, f2) = (b.clone(), tb.clone(), file.clone());
    let killed = tokio::spawn(async move {
        let die = |p: &Progress| {
            if p.step == "stage" && p.done > 1000 {
                panic!("killed mid-import (on purpose)");
            }
        };
        transfer::import(
            &lb,
            std::slice::from_ref(&tb2),
            f2.as_slice(),
            None,
            f2.len() as u64,
            &die,
            &Cancel::new(),
        )
        .await
    })
    .await;
    assert!(killed.is_err(), "the import task died");
    assert_eq!(lane_b().await, before);
    assert_eq!(
        staging_left(&mut k, &b, &topics).await,
        [staging_topic(&t1, &b)]
    );
    // The lane's teardown would remove it; here the next import does, and imports.
    import(&b, &tb, &file).await.unwrap();
    let full = (records(&c, &a1, 2).await, records(&c, &a2, 1).await);
    assert_eq!(lane_b().await, full);
    assert!(staging_left(&mut k, &b, &topics).await.is_empty());

    // Killed after the seal, with a partition's swap cut short: the next import or restore
    // completes the swap from the staging topics first.
    write(&c, &b1, 2, "b-again", 3).await;
    let file_b = export(&b, &tb).await;
    write(&c, &a2, 1, "more", 2).await;
    let file_a = export(&a, &ta).await;
    stage_and_seal(&b, &tb, &file_a).await;
    assert_eq!(staging_left(&mut k, &b, &topics).await.len(), 2);
    // What a swap cut short after deleting part 0's records and copying a few looks like.
    let pc = c
        .partition_client(b1.as_str(), 0, UnknownTopicHandling::Retry)
        .await
        .unwrap();
    let end = pc.get_offset(OffsetAt::Latest).await.unwrap();
    pc.delete_records(end, 30_000).await.unwrap();
    write(&c, &b1, 1, "half", 2).await;
    // The recovery an import runs first: lane b now holds file_a's records.
    Staging::prepare(&b, &tb.spec, &tb.target).await.unwrap();
    assert_eq!(
        lane_b().await,
        (records(&c, &a1, 2).await, records(&c, &a2, 1).await)
    );
    assert!(staging_left(&mut k, &b, &topics).await.is_empty());
    // And a sealed leftover does not get in the way of the next import (file_b back).
    stage_and_seal(&b, &tb, &file_a).await;
    import(&b, &tb, &file_b).await.unwrap();
    let (rb1, _) = lane_b().await;
    assert!(
        rb1[0]
            .iter()
            .any(|r| r.2.get("trace") == Some(&b"b-again0".to_vec()))
    );
    assert!(staging_left(&mut k, &b, &topics).await.is_empty());

    // Teardown removes staging topics left by a killed import.
    stage_and_seal(&b, &tb, &file_a).await;
    teardown_lane(&b, &spec).await;
    assert!(staging_left(&mut k, &b, &topics).await.is_empty());
    assert!(!k.topic_exists(&b1).await.unwrap());
    teardown_lane(&a, &spec).await;
    for t in topics {
        drop_topic(&c, t).await;
    }
}

#[tokio::test]
async fn a_file_naming_a_topic_the_lane_does_not_bind_is_a_clear_error() {
    let c = client().await;
    let mut k = Kafka::connect(&url()).await.unwrap();
    let (t1, t2, t3) = (unique("kb_a_"), unique("kb_b_"), unique("kb_c_"));
    for t in [&t1, &t2, &t3] {
        k.create_topic(t, 2, 1, &[]).await.unwrap();
    }
    let group = unique("kbg_");
    let wide = spec(&[&t1, &t3], &group);
    let narrow = spec(&[&t1, &t2], &group);
    let (a, b) = (lane("kba-"), lane("kbb-"));
    let ta = provision(&mut k, &wide, &a, &[&t1, &t3]).await;
    let tb = provision(&mut k, &narrow, &b, &[&t1, &t2]).await;
    write(&c, &data::rewrite_topic(&t3, &a), 2, "a", 5).await;
    write(&c, &data::rewrite_topic(&t1, &b), 2, "b", 5).await;
    let b1 = data::rewrite_topic(&t1, &b);
    let before = records(&c, &b1, 2).await;
    let file = export(&a, &ta).await;
    let e = import(&b, &tb, &file).await.unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains(&format!("holds topic `{t3}`")) && text.contains("does not bind"),
        "{text}"
    );
    assert_eq!(records(&c, &b1, 2).await, before);
    assert!(staging_left(&mut k, &b, &[&t1, &t2, &t3]).await.is_empty());
    // A lane topic with another partition count than the file's topic: records keep their
    // partition, so this is refused before anything is staged.
    let d = lane("kbd-");
    let d1 = data::rewrite_topic(&t1, &d);
    k.create_topic(&d1, 3, 1, &[]).await.unwrap();
    k.create_lane_topics(&d, std::slice::from_ref(&t2))
        .await
        .unwrap();
    let td = Target {
        spec: narrow.clone(),
        target: String::new(),
    };
    let file_b = export(&b, &tb).await;
    let e = import(&d, &td, &file_b).await.unwrap_err();
    assert!(
        e.to_string()
            .contains(&format!("topic `{t1}` has 2 partitions in the file")),
        "{e}"
    );
    assert!(staging_left(&mut k, &d, &[&t1, &t2]).await.is_empty());
    teardown_lane(&d, &narrow).await;
    assert!(!k.topic_exists(&d1).await.unwrap());

    // A lane topic that takes no records older than 30 minutes refuses the file's hour-old
    // records before anything of the lane changes.
    let e_lane = lane("kbe-");
    let e1 = data::rewrite_topic(&t1, &e_lane);
    k.create_topic(
        &e1,
        2,
        1,
        &[("message.timestamp.before.max.ms".into(), "1800000".into())],
    )
    .await
    .unwrap();
    k.create_lane_topics(&e_lane, std::slice::from_ref(&t2))
        .await
        .unwrap();
    c.partition_client(e1.as_str(), 0, UnknownTopicHandling::Retry)
        .await
        .unwrap()
        .produce(
            vec![Record {
                key: None,
                value: Some(b"e".to_vec()),
                headers: BTreeMap::new(),
                timestamp: chrono::Utc::now(),
            }],
            Compression::NoCompression,
        )
        .await
        .unwrap();
    let e_before = records(&c, &e1, 2).await;
    let e = import(&e_lane, &td, &file_b).await.unwrap_err();
    assert!(
        e.to_string().contains("message.timestamp.before.max.ms")
            && e.to_string().contains("nothing of the lane was changed"),
        "{e}"
    );
    assert_eq!(records(&c, &e1, 2).await, e_before);
    assert!(staging_left(&mut k, &e_lane, &[&t1, &t2]).await.is_empty());
    teardown_lane(&e_lane, &narrow).await;

    // A lane whose topics were never made: named as such.
    let c_lane = lane("kbc-");
    let tc = Target {
        spec: narrow.clone(),
        target: String::new(),
    };
    let e = transfer::export(
        &c_lane,
        std::slice::from_ref(&tc),
        Vec::new(),
        &no_progress,
        &Cancel::new(),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
    // A record naming another lane's topic is refused by the guard.
    let mut other = tb.clone();
    other.target = ta.target.clone();
    let e = import(&b, &other, &file).await.unwrap_err();
    assert!(matches!(e, DataError::Guard(_)), "{e}");
    teardown_lane(&a, &wide).await;
    teardown_lane(&b, &narrow).await;
    for t in [&t1, &t2, &t3] {
        drop_topic(&c, t).await;
    }
}

#[tokio::test]
async fn an_import_while_a_lane_consumer_is_in_its_group_is_a_clear_error_and_changes_nothing() {
    let c = client().await;
    let mut k = Kafka::connect(&url()).await.unwrap();
    let t1 = unique("km_a_");
    k.create_topic(&t1, 2, 1, &[]).await.unwrap();
    let group = unique("kmg_");
    let spec = spec(&[&t1], &group);
    let (a, b) = (lane("kma-"), lane("kmb-"));
    let ta = provision(&mut k, &spec, &a, &[&t1]).await;
    let tb = provision(&mut k, &spec, &b, &[&t1]).await;
    let b1 = data::rewrite_topic(&t1, &b);
    write(&c, &data::rewrite_topic(&t1, &a), 2, "a", 20).await;
    write(&c, &b1, 2, "b", 3).await;
    let file = export(&a, &ta).await;
    let before = records(&c, &b1, 2).await;
    let lane_group = data::rewrite_group(&group, &b);
    let (member, id) = join(common::kafka_bootstrap(), &lane_group, &b1).await;
    let e = import(&b, &tb, &file).await.unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains(&format!("consumer group `{lane_group}`")) && text.contains("has members"),
        "{text}"
    );
    assert_eq!(records(&c, &b1, 2).await, before);
    assert!(staging_left(&mut k, &b, &[&t1]).await.is_empty());
    // Once the consumer has left, the import goes through.
    leave(member, &lane_group, &id).await;
    import(&b, &tb, &file).await.unwrap();
    assert_eq!(
        records(&c, &b1, 2).await,
        records(&c, &data::rewrite_topic(&t1, &a), 2).await
    );
    assert_eq!(
        committed(common::kafka_bootstrap(), &lane_group, &b1, 1).await,
        3
    );
    teardown_lane(&a, &spec).await;
    teardown_lane(&b, &spec).await;
    drop_topic(&c, &t1).await;
}
