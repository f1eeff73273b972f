//! The real servers the tests use: MariaDB and Redis started by `scripts/services.sh` (or the
//! servers `LANE_TEST_MYSQL_URL` / `LANE_TEST_REDIS_URL` name). A test that finds no server starts
//! one through the script; when that fails, the test fails.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn ensure(service: &str) {
    let out = Command::new(repo_root().join("scripts/services.sh"))
        .arg(service)
        .output()
        .expect("scripts/services.sh runs");
    assert!(
        out.status.success(),
        "scripts/services.sh {service} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn url(var: &str, service: &str) -> String {
    let out = Command::new(repo_root().join("scripts/services.sh"))
        .arg("env")
        .output()
        .expect("scripts/services.sh env runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let _ = service;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("export {var}=")))
        .unwrap_or_else(|| panic!("scripts/services.sh env prints {var}: {text}"))
        .to_owned()
}

/// The MariaDB server's address (user with every privilege), started when needed.
pub fn mysql_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        ensure("mariadb");
        url("LANE_TEST_MYSQL_URL", "mariadb")
    })
}

/// The Redis server's address (no database in it), started when needed.
pub fn redis_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        ensure("redis");
        url("LANE_TEST_REDIS_URL", "redis")
    })
}

/// The Kafka broker's bootstrap `host:port`, started when needed.
pub fn kafka_bootstrap() -> &'static str {
    static BOOTSTRAP: OnceLock<String> = OnceLock::new();
    BOOTSTRAP.get_or_init(|| {
        ensure("kafka");
        url("LANE_TEST_KAFKA_BOOTSTRAP", "kafka")
    })
}

/// A name unique to this test process: `<prefix><pid>_<n>` (letters, digits, `_`).
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A lane id unique to this test process.
pub fn lane(prefix: &str) -> lane_core::LaneId {
    unique(prefix).replace('_', "-").parse().expect("a lane id")
}

/// Kafka consumer-group membership, as a consumer makes it (`JoinGroup` v2, `LeaveGroup` v1),
/// hand-encoded over [`lane_data::kafka::wire::Conn::call`]: lane never joins groups itself.
pub mod kafka_member {
    use lane_data::kafka::wire::Conn;

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as i16).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    fn read_string(buf: &[u8], at: &mut usize) -> String {
        let n = i16::from_be_bytes([buf[*at], buf[*at + 1]]) as usize;
        let s = String::from_utf8(buf[*at + 2..*at + 2 + n].to_vec()).unwrap();
        *at += 2 + n;
        s
    }

    /// A live member of consumer group `group` subscribed to `topic` (the single test broker
    /// coordinates every group); it stays one until [`leave`] or its 60 s session times out.
    pub async fn join(bootstrap: &str, group: &str, topic: &str) -> (Conn, String) {
        let mut c = Conn::connect(bootstrap).await.unwrap();
        // The consumer protocol's subscription: version 0, the topics, no user data.
        let mut meta = Vec::new();
        meta.extend_from_slice(&0i16.to_be_bytes());
        meta.extend_from_slice(&1i32.to_be_bytes());
        string(&mut meta, topic);
        meta.extend_from_slice(&(-1i32).to_be_bytes());
        let mut body = Vec::new();
        string(&mut body, group);
        body.extend_from_slice(&60_000i32.to_be_bytes()); // session timeout
        body.extend_from_slice(&60_000i32.to_be_bytes()); // rebalance timeout
        string(&mut body, ""); // member id: new
        string(&mut body, "consumer");
        body.extend_from_slice(&1i32.to_be_bytes());
        string(&mut body, "range");
        body.extend_from_slice(&(meta.len() as i32).to_be_bytes());
        body.extend_from_slice(&meta);
        for _ in 0..40 {
            let buf = c.call(11, 2, &body).await.unwrap();
            let error = i16::from_be_bytes([buf[4], buf[5]]);
            match error {
                0 => {
                    let mut at = 10; // throttle, error, generation
                    read_string(&buf, &mut at); // protocol
                    read_string(&buf, &mut at); // leader
                    let member = read_string(&buf, &mut at);
                    return (c, member);
                }
                // The coordinator is loading or moving: ask again.
                14..=16 => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
                e => panic!("JoinGroup `{group}`: error {e}"),
            }
        }
        panic!("JoinGroup `{group}`: no coordinator");
    }

    /// The member leaves the group.
    pub async fn leave(mut c: Conn, group: &str, member: &str) {
        let mut body = Vec::new();
        string(&mut body, group);
        string(&mut body, member);
        let buf = c.call(13, 1, &body).await.unwrap();
        assert_eq!(
            i16::from_be_bytes([buf[4], buf[5]]),
            0,
            "LeaveGroup `{group}`"
        );
    }

    /// The committed offset of `topic`/`partition` in `group` (`OffsetFetch` v1; -1: none).
    pub async fn committed(bootstrap: &str, group: &str, topic: &str, partition: i32) -> i64 {
        let mut c = Conn::connect(bootstrap).await.unwrap();
        let mut body = Vec::new();
        string(&mut body, group);
        body.extend_from_slice(&1i32.to_be_bytes());
        string(&mut body, topic);
        body.extend_from_slice(&1i32.to_be_bytes());
        body.extend_from_slice(&partition.to_be_bytes());
        let buf = c.call(9, 1, &body).await.unwrap();
        // topics: count, name, partitions: count, partition, offset, metadata, error.
        let mut at = 4;
        read_string(&buf, &mut at);
        at += 4 + 4;
        let offset = i64::from_be_bytes(buf[at..at + 8].try_into().unwrap());
        at += 8;
        let n = i16::from_be_bytes([buf[at], buf[at + 1]]);
        at += 2 + n.max(0) as usize;
        assert_eq!(
            i16::from_be_bytes([buf[at], buf[at + 1]]),
            0,
            "OffsetFetch `{group}`"
        );
        offset
    }
}

/// Export and import in one call each, without progress or cancel.
pub mod xfer {
    use lane_core::LaneId;
    use lane_data::DataError;
    use lane_data::transfer::{self, Cancel, Progress, Target};

    pub fn no_progress(_: &Progress) {}

    /// The file of `targets`' data (its report checked to count its bytes).
    pub async fn export(lane: &LaneId, targets: &[Target]) -> Vec<u8> {
        let (bytes, report) =
            transfer::export(lane, targets, Vec::new(), &no_progress, &Cancel::new())
                .await
                .unwrap();
        assert_eq!(report.bytes as usize, bytes.len());
        bytes
    }

    pub async fn import(
        lane: &LaneId,
        targets: &[Target],
        file: &[u8],
        only: Option<&str>,
    ) -> Result<transfer::Report, DataError> {
        transfer::import(
            lane,
            targets,
            file,
            only,
            file.len() as u64,
            &no_progress,
            &Cancel::new(),
        )
        .await
    }
}
