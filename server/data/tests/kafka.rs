//! Lane topics on a real Apache Kafka broker (KRaft, started by `scripts/services.sh kafka`, or
//! the one `LANE_TEST_KAFKA_BOOTSTRAP` names): a lane's topic mirrors baseline's partitions and
//! configs, teardown deletes exactly the lane's topics (baseline's end offsets unchanged), the
//! guard refuses anything else, and bad input gets a clear error with nothing left behind.

mod common;

use std::sync::OnceLock;

use common::{lane, unique};
use lane_core::LaneId;
use lane_core::data::DataSpec;
use lane_data::DataError;
use lane_data::kafka::Kafka;
use lane_data::teardown;

/// The broker's `kafka://` address, started when needed (the test fails when it cannot be).
fn kafka_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| format!("kafka://{}", common::kafka_bootstrap()))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

/// A topic name unique to this test (`kt_<pid>_<n>`).
fn topic() -> String {
    unique("kt_")
}

fn specs(url: &str, topics: &[&str]) -> Vec<DataSpec> {
    let list: Vec<String> = topics
        .iter()
        .enumerate()
        .map(|(i, t)| format!("T{i} = \"{t}\""))
        .collect();
    lane_core::manifest::Manifest::parse(
        std::path::Path::new("lane.toml"),
        &format!(
            "app = \"a\"\nproc = \"b\"\n[run]\ncommand = \"x\"\n[data.events]\nkind = \"kafka\"\n\
             url = \"{url}\"\nenv = \"K\"\ntopics = {{ {} }}\ngroups = {{ G = \"g\" }}\n",
            list.join(", ")
        ),
    )
    .unwrap()
    .data
}

/// Removes baseline topics made by a test (the guard is for lanes; tests clean their own).
async fn drop_baseline(k: &mut Kafka, topic: &str) {
    // A baseline topic is deleted through a throwaway lane name whose topic is `topic`: not
    // possible by design, so go through rskafka's controller directly.
    let client = rskafka::client::ClientBuilder::new(k.brokers().to_vec())
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
fn a_lane_topic_mirrors_partitions_and_configs_and_teardown_deletes_only_it() {
    let rt = rt();
    rt.block_on(async {
        let url = kafka_url();
        let mut k = Kafka::connect(url).await.unwrap();
        let (a, b) = (topic(), topic());
        let configs = vec![
            ("max.message.bytes".to_owned(), "200000".to_owned()),
            ("retention.ms".to_owned(), "3600000".to_owned()),
        ];
        assert!(k.create_topic(&a, 3, 1, &configs).await.unwrap());
        assert!(k.create_topic(&b, 1, 1, &[]).await.unwrap());
        assert!(!k.create_topic(&a, 3, 1, &configs).await.unwrap(), "exists");
        for p in 0..3 {
            k.produce(&a, p, None, format!("base-{p}").as_bytes())
                .await
                .unwrap();
        }
        let before_a = k.end_offsets(&a).await.unwrap();
        let before_b = k.end_offsets(&b).await.unwrap();
        assert_eq!(before_a, [1, 1, 1]);

        let l: LaneId = lane("kl-");
        let made = k
            .create_lane_topics(&l, &[a.clone(), b.clone()])
            .await
            .unwrap();
        assert_eq!(made.len(), 2);
        assert!(made.iter().all(|m| m.created));
        let lane_a = format!("{a}.lane-{l}");
        let lane_b = format!("{b}.lane-{l}");
        assert_eq!(made[0].topic, lane_a);
        let shape = k.shape(&lane_a).await.unwrap().expect("the lane topic");
        let base_shape = k.shape(&a).await.unwrap().unwrap();
        assert_eq!(shape.partitions, 3);
        assert_eq!(shape.configs, configs, "baseline's topic-level configs");
        assert_eq!(shape.configs, base_shape.configs);
        assert_eq!(shape.replication, base_shape.replication);
        assert_eq!(k.shape(&lane_b).await.unwrap().unwrap().configs, []);
        // A second deploy keeps what the lane has.
        let again = k
            .create_lane_topics(&l, std::slice::from_ref(&a))
            .await
            .unwrap();
        assert!(!again[0].created);

        // The lane writes to its own topic; baseline's offsets do not move.
        k.produce(&lane_a, 1, Some(b"k"), b"lane").await.unwrap();
        assert_eq!(
            k.read(&lane_a, 1, 0).await.unwrap(),
            [(0, b"lane".to_vec())]
        );
        assert_eq!(k.records(&lane_a).await.unwrap(), 1);

        // The lane's consumer commits an offset in the lane's group.
        let lane_group = format!("g.lane-{l}");
        k.commit_group_offset(&lane_group, &lane_a, 1, 1)
            .await
            .unwrap();

        // Teardown: the plan names exactly the lane's topics and group; running it deletes them.
        let specs = specs(url, &[&a, &b]);
        let plan = teardown::plan(&l, &specs, &[]).unwrap();
        let text = plan.to_string();
        assert!(
            text.contains(&format!("delete Kafka consumer group `{lane_group}`")),
            "{text}"
        );
        assert!(
            text.contains(&format!("delete Kafka topic `{lane_a}`")),
            "{text}"
        );
        assert!(
            text.contains(&format!("delete Kafka topic `{lane_b}`")),
            "{text}"
        );
        assert_eq!(plan.actions.len(), 3, "{text}");
        let done = teardown::execute(&plan, &specs).await.unwrap();
        assert!(done.iter().all(|d| d.removed));
        let mut k = Kafka::connect(url).await.unwrap();
        assert!(!k.topic_exists(&lane_a).await.unwrap());
        assert!(!k.topic_exists(&lane_b).await.unwrap());
        assert!(k.topic_exists(&a).await.unwrap() && k.topic_exists(&b).await.unwrap());
        assert_eq!(
            k.end_offsets(&a).await.unwrap(),
            before_a,
            "baseline untouched"
        );
        assert_eq!(k.end_offsets(&b).await.unwrap(), before_b);
        assert_eq!(k.read(&a, 2, 0).await.unwrap(), [(0, b"base-2".to_vec())]);
        // Twice is harmless.
        let done = teardown::execute(&plan, &specs).await.unwrap();
        assert!(done.iter().all(|d| !d.removed));

        drop_baseline(&mut k, &a).await;
        drop_baseline(&mut k, &b).await;
    });
}

#[test]
fn the_guard_refuses_baselines_and_other_lanes_topics() {
    let rt = rt();
    rt.block_on(async {
        let url = kafka_url();
        let mut k = Kafka::connect(url).await.unwrap();
        let a = topic();
        k.create_topic(&a, 1, 1, &[]).await.unwrap();
        k.produce(&a, 0, None, b"base").await.unwrap();
        let l = lane("kg-");
        let other = lane("kg-");
        k.create_lane_topics(&other, std::slice::from_ref(&a))
            .await
            .unwrap();
        let other_topic = format!("{a}.lane-{other}");
        for victim in [
            a.clone(),
            other_topic.clone(),
            "__consumer_offsets".to_owned(),
        ] {
            let err = k.delete_lane_topic(&a, &l, &victim).await.unwrap_err();
            assert!(matches!(err, DataError::Guard(_)), "{victim}: {err}");
            assert!(err.to_string().contains("nothing was deleted"), "{err}");
        }
        // A plan altered to name baseline's topic is refused when run.
        let specs = specs(url, &[&a]);
        let mut plan = teardown::plan(&l, &specs, &[]).unwrap();
        for action in &mut plan.actions {
            if let teardown::Action::DeleteTopic { topic, .. } = action {
                *topic = a.clone();
            }
        }
        let err = teardown::execute(&plan, &specs).await.unwrap_err();
        assert!(matches!(err, DataError::Guard(_)), "{err}");
        assert!(k.topic_exists(&a).await.unwrap());
        assert!(k.topic_exists(&other_topic).await.unwrap());
        assert_eq!(k.end_offsets(&a).await.unwrap(), [1]);

        assert!(k.delete_lane_topic(&a, &other, &other_topic).await.unwrap());
        drop_baseline(&mut k, &a).await;
    });
}

#[test]
fn bad_input_is_a_clear_error_and_leaves_nothing_behind() {
    let rt = rt();
    rt.block_on(async {
        // No broker there: a clear error, quickly.
        let started = std::time::Instant::now();
        let err = Kafka::connect("kafka://127.0.0.1:1").await.unwrap_err();
        assert!(matches!(err, DataError::Unreachable { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("cannot reach Kafka at kafka://127.0.0.1:1"),
            "{err}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
        assert!(matches!(
            Kafka::connect("kafka://b1:x").await.unwrap_err(),
            DataError::Invalid(_)
        ));

        let url = kafka_url();
        let mut k = Kafka::connect(url).await.unwrap();
        let (a, missing) = (topic(), topic());
        k.create_topic(&a, 2, 1, &[]).await.unwrap();
        let l = lane("kb-");
        // A missing baseline topic: nothing is created, not even the lane's copy of `a`.
        let err = k
            .create_lane_topics(&l, &[a.clone(), missing.clone()])
            .await
            .unwrap_err();
        assert!(matches!(err, DataError::MissingTopic { .. }), "{err}");
        assert!(err.to_string().contains(&missing), "{err}");
        assert!(!k.topic_exists(&format!("{a}.lane-{l}")).await.unwrap());
        assert!(
            !k.topic_exists(&format!("{missing}.lane-{l}"))
                .await
                .unwrap()
        );

        // Names with characters Kafka does not allow, or too long once the lane's suffix is on.
        for bad in ["a b", "x;y", "t/../u", "", "..", "tést"] {
            let err = k
                .create_lane_topics(&l, &[bad.to_owned()])
                .await
                .unwrap_err();
            assert!(matches!(err, DataError::Invalid(_)), "{bad}: {err}");
        }
        let long = "t".repeat(245);
        let err = k.create_lane_topics(&l, &[long]).await.unwrap_err();
        assert!(err.to_string().contains("lane `"), "{err}");
        drop_baseline(&mut k, &a).await;
    });
}

#[test]
fn twenty_lane_cycles_leave_baselines_end_offsets_as_they_were() {
    let rt = rt();
    rt.block_on(async {
        let url = kafka_url();
        let mut k = Kafka::connect(url).await.unwrap();
        let a = topic();
        k.create_topic(&a, 2, 1, &[("retention.ms".into(), "600000".into())])
            .await
            .unwrap();
        for p in 0..2 {
            k.produce(&a, p, None, b"base").await.unwrap();
        }
        let before = k.end_offsets(&a).await.unwrap();
        let specs = specs(url, &[&a]);
        for i in 0..20 {
            let l = lane("kc-");
            let made = k
                .create_lane_topics(&l, std::slice::from_ref(&a))
                .await
                .unwrap();
            let own = &made[0].topic;
            k.produce(own, i % 2, None, format!("lane-{i}").as_bytes())
                .await
                .unwrap();
            k.commit_group_offset(&format!("g.lane-{l}"), own, i % 2, 1)
                .await
                .unwrap();
            assert_eq!(k.records(own).await.unwrap(), 1, "cycle {i}");
            let plan = teardown::plan(&l, &specs, &[]).unwrap();
            let done = teardown::execute(&plan, &specs).await.unwrap();
            assert!(done.iter().all(|d| d.removed), "cycle {i}");
            assert!(!k.topic_exists(own).await.unwrap(), "cycle {i}");
            assert_eq!(k.end_offsets(&a).await.unwrap(), before, "cycle {i}");
        }
        drop_baseline(&mut k, &a).await;
    });
}
