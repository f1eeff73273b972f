//! Kafka bindings with SASL credentials on a real broker: the `SASL_PLAINTEXT` listener of the
//! broker `scripts/services.sh kafka` starts (user `lane`, password `lane-secret`; PLAIN,
//! SCRAM-SHA-256 and SCRAM-SHA-512), or the one `LANE_TEST_KAFKA_SASL_BOOTSTRAP` names. A lane's
//! topics and consumer group are made, written and torn down through it with each mechanism; a
//! wrong password, a missing one and an unknown mechanism are clear errors that never show the
//! password and leave nothing behind.

mod common;

use std::process::Command;
use std::sync::OnceLock;

use common::{lane, unique};
use lane_core::data::DataSpec;
use lane_data::DataError;
use lane_data::kafka::Kafka;
use lane_data::{provision, teardown};

const USER: &str = "lane";
const PASSWORD: &str = "lane-secret";
const WRONG: &str = "not-the-lane-secret";

/// The SASL listener's `host:port` (the broker is started when needed).
fn sasl_bootstrap() -> &'static str {
    static B: OnceLock<String> = OnceLock::new();
    B.get_or_init(|| {
        common::kafka_bootstrap();
        let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let out = Command::new(root.join("scripts/services.sh"))
            .arg("env")
            .output()
            .expect("scripts/services.sh env runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .find_map(|l| l.strip_prefix("export LANE_TEST_KAFKA_SASL_BOOTSTRAP="))
            .unwrap_or_else(|| {
                panic!("services.sh env prints LANE_TEST_KAFKA_SASL_BOOTSTRAP: {text}")
            })
            .to_owned()
    })
}

fn url(password: &str, mechanism: &str) -> String {
    format!(
        "kafka://{USER}:{password}@{}?mechanism={mechanism}",
        sasl_bootstrap()
    )
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

fn specs(url: &str, topic: &str, group: &str) -> Vec<DataSpec> {
    lane_core::manifest::Manifest::parse(
        std::path::Path::new("lane.toml"),
        &format!(
            "app = \"a\"\nproc = \"b\"\n[run]\ncommand = \"x\"\n[data.events]\nkind = \"kafka\"\n\
             url = \"{url}\"\nenv = \"K\"\ntopics = {{ T = \"{topic}\" }}\ngroups = {{ G = \"{group}\" }}\n"
        ),
    )
    .unwrap()
    .data
}

/// Deletes a baseline topic the test made (the teardown guard only deletes lanes' topics).
async fn drop_baseline(k: &Kafka, topic: &str) {
    let client = k.client_builder().build().await.unwrap();
    client
        .controller_client()
        .unwrap()
        .delete_topic(topic, 30_000)
        .await
        .unwrap();
}

/// One lane's whole life through the SASL listener with `mechanism`: provision makes the lane's
/// topic, the lane writes and reads it and commits a group offset (a connection to the group's
/// coordinator, authenticated too), teardown deletes topic and group; baseline is untouched.
fn lane_cycle(mechanism: &str) {
    rt().block_on(async {
        let url = url(PASSWORD, mechanism);
        let mut k = Kafka::connect(&url).await.unwrap();
        assert_eq!(k.sasl().unwrap().mechanism.name(), mechanism);
        assert!(!format!("{k:?}").contains(PASSWORD));
        let base = unique("ks_");
        let group = unique("ksg_");
        assert!(k.create_topic(&base, 2, 1, &[]).await.unwrap());
        k.produce(&base, 0, None, b"base").await.unwrap();
        let before = k.end_offsets(&base).await.unwrap();

        let l = lane("ks-");
        let specs = specs(&url, &base, &group);
        provision::provision_one(&l, &specs[0]).await.unwrap();
        let own = format!("{base}.lane-{l}");
        let shape = k.shape(&own).await.unwrap().expect("the lane's topic");
        assert_eq!(shape.partitions, 2);
        assert_eq!(k.produce(&own, 1, Some(b"k"), b"lane").await.unwrap(), 0);
        assert_eq!(k.read(&own, 1, 0).await.unwrap(), [(0, b"lane".to_vec())]);
        let lane_group = format!("{group}.lane-{l}");
        k.commit_group_offset(&lane_group, &own, 1, 1)
            .await
            .unwrap();

        let plan = teardown::plan(&l, &specs, &[]).unwrap();
        let text = plan.to_string();
        assert!(!text.contains(PASSWORD), "{text}");
        assert_eq!(plan.actions.len(), 2, "{text}");
        let done = teardown::execute(&plan, &specs).await.unwrap();
        assert!(done.iter().all(|d| d.removed), "{done:?}");
        let mut k = Kafka::connect(&url).await.unwrap();
        assert!(!k.topic_exists(&own).await.unwrap());
        assert_eq!(
            k.end_offsets(&base).await.unwrap(),
            before,
            "baseline untouched"
        );
        // The group went with the lane: deleting it again finds nothing.
        assert!(!k.delete_lane_group(&group, &l, &lane_group).await.unwrap());
        drop_baseline(&k, &base).await;
    });
}

#[test]
fn a_lane_lives_and_goes_through_sasl_plain() {
    lane_cycle("PLAIN");
}

#[test]
fn a_lane_lives_and_goes_through_sasl_scram_sha_256() {
    lane_cycle("SCRAM-SHA-256");
}

#[test]
fn a_lane_lives_and_goes_through_sasl_scram_sha_512() {
    lane_cycle("SCRAM-SHA-512");
}

#[test]
fn a_wrong_password_is_a_clear_error_that_leaves_nothing_behind() {
    rt().block_on(async {
        let mut good = Kafka::connect(&url(PASSWORD, "PLAIN")).await.unwrap();
        let base = unique("ksw_");
        good.create_topic(&base, 1, 1, &[]).await.unwrap();
        let l = lane("ksw-");
        for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
            let bad = url(WRONG, mechanism);
            let err = Kafka::connect(&bad).await.unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, DataError::Auth { .. }), "{text}");
            assert!(text.contains(sasl_bootstrap()), "names the broker: {text}");
            assert!(text.contains("authentication"), "{text}");
            assert!(text.contains(mechanism), "{text}");
            assert!(!text.contains(WRONG), "no password: {text}");
            // Provisioning a lane with it fails the same way and makes nothing.
            let specs = specs(&bad, &base, "g");
            let err = provision::provision_one(&l, &specs[0]).await.unwrap_err();
            assert!(matches!(err, DataError::Auth { .. }), "{err}");
            assert!(!err.to_string().contains(WRONG), "{err}");
        }
        assert!(
            !good
                .topic_exists(&format!("{base}.lane-{l}"))
                .await
                .unwrap()
        );
        drop_baseline(&good, &base).await;
    });
}

#[test]
fn no_credentials_an_unknown_user_or_an_unknown_mechanism_are_clear_errors() {
    rt().block_on(async {
        // No credentials to a listener that wants them: the broker closes the connection; the
        // message says credentials are probably missing.
        let err = Kafka::connect(&format!("kafka://{}", sasl_bootstrap()))
            .await
            .unwrap_err();
        assert!(matches!(err, DataError::Unreachable { .. }), "{err}");
        assert!(err.to_string().contains("user:password@"), "{err}");

        let err = Kafka::connect(&format!(
            "kafka://nobody:{PASSWORD}@{}?mechanism=SCRAM-SHA-256",
            sasl_bootstrap()
        ))
        .await
        .unwrap_err();
        assert!(matches!(err, DataError::Auth { .. }), "{err}");
        assert!(!err.to_string().contains(PASSWORD), "{err}");

        // Credentials for a listener that takes none.
        let err = Kafka::connect(&format!(
            "kafka://{USER}:{PASSWORD}@{}",
            common::kafka_bootstrap()
        ))
        .await
        .unwrap_err();
        assert!(matches!(err, DataError::Auth { .. }), "{err}");
        assert!(err.to_string().contains("takes no SASL"), "{err}");
        assert!(!err.to_string().contains(PASSWORD), "{err}");

        // A mechanism lane does not speak: refused before any connection.
        let err = Kafka::connect(&url(PASSWORD, "MD5")).await.unwrap_err();
        assert!(matches!(err, DataError::Invalid(_)), "{err}");
        let text = err.to_string();
        assert!(text.contains("`MD5` is not a SASL mechanism"), "{text}");
        assert!(!text.contains(PASSWORD), "{text}");
        // In lane.toml it is an error at the url's position.
        let err = lane_core::manifest::Manifest::parse(
            std::path::Path::new("svc/lane.toml"),
            &format!(
                "app = \"a\"\nproc = \"b\"\n[run]\ncommand = \"x\"\n[data.events]\nkind = \
                 \"kafka\"\nurl = \"{}\"\nenv = \"K\"\ntopics = {{ T = \"t\" }}\n",
                url(PASSWORD, "GSSAPI")
            ),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("svc/lane.toml:7:7: data.events: url:"),
            "{err}"
        );
        assert!(err.contains("GSSAPI"), "{err}");
        assert!(!err.contains(PASSWORD), "{err}");
    });
}

#[test]
fn export_and_import_go_through_sasl_too() {
    rt().block_on(async {
        let url = url(PASSWORD, "SCRAM-SHA-256");
        let mut k = Kafka::connect(&url).await.unwrap();
        let base = unique("ksx_");
        let group = unique("ksxg_");
        assert!(k.create_topic(&base, 2, 1, &[]).await.unwrap());
        k.produce(&base, 0, None, b"base").await.unwrap();
        let before = k.end_offsets(&base).await.unwrap();
        let specs = specs(&url, &base, &group);
        let spec = &specs[0];

        // Lane a writes its topic; its export goes into lane b (its group's offsets committed
        // through the coordinator's connection, authenticated too).
        let (a, b) = (lane("ksa-"), lane("ksb-"));
        let mut targets = Vec::new();
        for l in [&a, &b] {
            let target = provision::provision_one(l, spec).await.unwrap().unwrap();
            targets.push(lane_data::transfer::Target {
                spec: spec.clone(),
                target,
            });
        }
        let own_a = format!("{base}.lane-{a}");
        let own_b = format!("{base}.lane-{b}");
        for (p, v) in [(0, "a0"), (1, "a1"), (1, "a1-2")] {
            k.produce(&own_a, p, Some(b"k"), v.as_bytes())
                .await
                .unwrap();
        }
        let file = common::xfer::export(&a, &targets[..1]).await;
        let report = common::xfer::import(&b, &targets[1..], &file, None)
            .await
            .unwrap();
        assert_eq!(report.bindings[0].items, 3, "{report:?}");
        for p in 0..2 {
            let values = |rs: Vec<(i64, Vec<u8>)>| rs.into_iter().map(|r| r.1).collect::<Vec<_>>();
            assert_eq!(
                values(k.read(&own_b, p, 0).await.unwrap()),
                values(k.read(&own_a, p, 0).await.unwrap()),
                "partition {p}"
            );
        }

        for l in [&a, &b] {
            let plan = teardown::plan(l, &specs, &[]).unwrap();
            teardown::execute(&plan, &specs).await.unwrap();
        }
        let mut k = Kafka::connect(&url).await.unwrap();
        assert!(!k.topic_exists(&own_a).await.unwrap());
        assert!(!k.topic_exists(&own_b).await.unwrap());
        assert_eq!(
            k.end_offsets(&base).await.unwrap(),
            before,
            "baseline untouched"
        );
        drop_baseline(&k, &base).await;
    });
}
